"""A private CUDA_HOME assembled from the pinned pieces (nvcc, headers, cutlass), stamped so reruns reuse it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from pascal_forge.console import log
from pascal_forge.errors import (
    HashMismatchError,
    SourceError,
    ToolchainError,
)
from pascal_forge.verify.artifacts import (
    TIMEOUT,
    download,
    extract_wheel,
    tree_sha256,
    unpack_deb,
)
from pascal_forge.verify.toolchain_pins import CutlassPin, Pins

#: Files taken from the Debian nvidia-cuda-toolkit .deb: (path in the .deb, path in the toolchain).
#: Laid out like a CUDA_HOME so our own nvcc.profile can use relative paths ($(_HERE_)).
_DEB_FILES = (
    ("usr/lib/nvidia-cuda-toolkit/bin/nvcc", "bin/nvcc"),
    ("usr/lib/nvidia-cuda-toolkit/bin/cicc", "nvvm/bin/cicc"),
    ("usr/lib/nvidia-cuda-toolkit/bin/crt/link.stub", "bin/crt/link.stub"),
    ("usr/lib/nvidia-cuda-toolkit/bin/crt/prelink.stub", "bin/crt/prelink.stub"),
    ("usr/lib/nvidia-cuda-toolkit/libdevice/libdevice.10.bc", "nvvm/libdevice/libdevice.10.bc"),
    ("usr/bin/ptxas", "bin/ptxas"),
    ("usr/bin/fatbinary", "bin/fatbinary"),
    ("usr/bin/cudafe++", "bin/cudafe++"),
    ("usr/bin/nvlink", "bin/nvlink"),
    ("usr/bin/bin2c", "bin/bin2c"),
    ("usr/bin/cuobjdump", "bin/cuobjdump"),
)


_DEB_MEMBERS = frozenset(src for src, _ in _DEB_FILES)


_NVCC_PROFILE = """\
# written by pascal-forge: a relocatable CUDA_HOME (Debian's profile points at /usr)
TOP              = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
PATH            += $(TOP)/nvvm/bin:$(_HERE_):
INCLUDES        +=  "-I$(TOP)/include" $(_SPACE_)
LIBRARIES        =+ $(_SPACE_) "-L$(TOP)/lib64"
CUDAFE_FLAGS    +=
PTXAS_FLAGS     +=
"""


STAMP = "pascal-forge-toolchain.json"


@dataclass(frozen=True)
class Toolchain:
    root: Path  # CUDA_HOME-like: bin/nvcc, include/, lib64/, torch/include, cutlass/

    @property
    def nvcc(self) -> Path:
        return self.root / "bin" / "nvcc"

    @property
    def torch_include(self) -> Path:
        return self.root / "torch" / "include"

    @property
    def cutlass(self) -> Path:
        return self.root / "cutlass"


def toolchain_dir(cache: Path, pins: Pins) -> Path:
    return cache / pins.name


def setup_toolchain(cache: Path, pins: Pins, use_range: bool = True) -> Toolchain:
    """Download, verify and assemble the toolchain once; later calls reuse it (stamp file)."""
    root = toolchain_dir(cache, pins)
    stamp = root / STAMP
    want = _stamp_content(pins)
    if stamp.exists() and stamp.read_text() == want:
        return Toolchain(root)
    log(f"setting up the CUDA 12.4 toolchain in {root} (once; ~120 MB download)")
    tmp = root.with_name(root.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for deb in pins.debs:
        t0 = time.monotonic()
        path = download(
            deb.urls, cache / "downloads" / f"{deb.name}_{deb.version}_amd64.deb", deb.sha256, deb.size
        )
        unpack = tmp / "_deb"
        unpack_deb(path, unpack, _DEB_MEMBERS.__contains__)
        for src, dst in _DEB_FILES:
            (tmp / dst).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(unpack / src), tmp / dst)
        shutil.rmtree(unpack)
        log(f"  {deb.name} {deb.version}: {time.monotonic() - t0:.1f}s")
    for w in pins.wheels:
        t0 = time.monotonic()
        n = extract_wheel(w, tmp, cache, use_range=use_range and w.size > 8 << 20)
        log(f"  {w.name} {w.version}: {n} files, {time.monotonic() - t0:.1f}s")
    (tmp / "bin" / "nvcc.profile").write_text(_NVCC_PROFILE)
    lib = tmp / "lib64"
    if (lib / "libcudart.so.12").exists():
        (lib / "libcudart.so").symlink_to("libcudart.so.12")
    (tmp / STAMP).write_text(want)
    shutil.rmtree(root, ignore_errors=True)
    tmp.replace(root)
    tc = Toolchain(root)
    check_nvcc(tc.nvcc)
    return tc


def _stamp_content(pins: Pins) -> str:
    data = {
        "debs": [d.sha256 for d in pins.debs],
        "wheels": [w.sha256 for w in pins.wheels],
    }
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def ensure_cutlass(tc: Toolchain, pin: CutlassPin, cache: Path, src: Path | None) -> None:
    """Install the CUTLASS headers into the toolchain once, only when a selected source needs them
    (moe_wna16 and most Pascal sources do not; GitHub, where the tarball lives, may be out of reach)."""
    stamp = tc.root / "cutlass.stamp"
    if stamp.exists() and stamp.read_text() == pin.tree_sha256:
        return
    part = tc.root / "cutlass.part"
    shutil.rmtree(part, ignore_errors=True)
    _install_cutlass(pin, part, cache, src)
    shutil.rmtree(tc.cutlass, ignore_errors=True)
    part.replace(tc.cutlass)
    stamp.write_text(pin.tree_sha256)


def _install_cutlass(pin: CutlassPin, dest: Path, cache: Path, src: Path | None) -> None:
    """CUTLASS headers (vLLM's _C includes them even for Pascal); checked by tree digest."""
    if src is None:
        tarball = cache / "downloads" / f"cutlass-{pin.commit}.tar.gz"
        if not tarball.exists():
            try:
                with requests.get(pin.url, stream=True, timeout=TIMEOUT) as r:
                    r.raise_for_status()
                    with tarball.open("wb") as f:
                        shutil.copyfileobj(r.raw, f)
            except requests.RequestException as exc:
                raise SourceError(
                    f"could not download CUTLASS {pin.version} ({pin.url}): {exc}",
                    f"pass --cutlass-src DIR with a checkout of NVIDIA/cutlass at {pin.commit}",
                ) from exc
        unpack = dest.with_name("_cutlass")
        with tarfile.open(tarball) as tf:
            tf.extractall(unpack, filter="data")
        src = next(unpack.iterdir())
    for tree in pin.trees:
        shutil.copytree(src / tree, dest / tree)
    shutil.rmtree(dest.with_name("_cutlass"), ignore_errors=True)
    got = tree_sha256(dest, pin.trees)
    if got != pin.tree_sha256:
        raise HashMismatchError(
            f"CUTLASS headers digest {got}, pinned {pin.tree_sha256}",
            f"use NVIDIA/cutlass at commit {pin.commit} (tag v{pin.version})",
        )


_NVCC_VERSION = re.compile(r"release (\d+)\.(\d+), V(\d+\.\d+\.\d+)")


def check_nvcc(nvcc: Path) -> str:
    """Return nvcc's version; refuse CUDA >= 13, which cannot target sm_6x at all."""
    try:
        out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ToolchainError(
            f"cannot run {nvcc}: {exc}", "run: pascal-forge verify-cuda --setup-toolchain"
        ) from exc
    m = _NVCC_VERSION.search(out)
    if not m:
        raise ToolchainError(f"cannot read the CUDA version from `{nvcc} --version`")
    major = int(m.group(1))
    if major >= 13:
        raise ToolchainError(
            f"{nvcc} is CUDA {m.group(3)}: CUDA 13 dropped sm_60/sm_61 (neither nvcc nor ptxas can target Pascal)",
            "leave out --nvcc to use the pinned CUDA 12.4 toolchain pascal-forge sets up itself "
            "(pascal-forge verify-cuda --setup-toolchain), or pass --nvcc of a CUDA 12.x install (<= 12.9)",
        )
    if major < 12:
        raise ToolchainError(f"{nvcc} is CUDA {m.group(3)}; vLLM 0.8.5 needs CUDA 12")
    return m.group(3)

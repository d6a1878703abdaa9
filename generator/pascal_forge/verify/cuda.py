"""`pascal-forge verify-cuda`: prove that the patched vLLM CUDA sources compile for sm_60/sm_61.

Stages: toolchain (fetch the pinned CUDA 12.4 pieces, verify, assemble a private CUDA_HOME) →
source (vLLM sdist, patch series applied) → selection (cmake_archs: what vLLM's CMake would build
for the archs) → compile (nvcc per source, in parallel) → report (table / JSON, plus the unpatched
moe_wna16 control that must fail with the atomicAdd error).

Nothing is installed system-wide: .debs are unpacked, wheels are read as zip files, and the
~770 MB torch wheel is read through HTTP range requests for its torch/include members only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import sysconfig
import tarfile
import tempfile
import threading
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import requests

from pascal_forge.console import log
from pascal_forge.errors import (
    CompileError,
    HashMismatchError,
    PatchFailedError,
    PatchLibraryError,
    SourceError,
    ToolchainError,
)
from pascal_forge.stack.patches import apply_series
from pascal_forge.stack.sources import default_cache_dir, fetch_verified, obtain
from pascal_forge.stack.spec import PatchEntry, load_patch_library, load_spec
from pascal_forge.verify import cmake_archs

ATOMIC_ADD_ERROR = 'no instance of overloaded function "atomicAdd" matches the argument list'
CONTROL_SOURCE = "csrc/moe/moe_wna16.cu"
_CHUNK = 1 << 20
_TIMEOUT = 60


# --------------------------------------------------------------------------------------------
# pins
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deb:
    name: str
    version: str
    sha256: str
    size: int
    urls: tuple[str, ...]


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    url: str
    sha256: str
    size: int
    record_sha256: str
    extract: tuple[tuple[str, str], ...]  # (folder in wheel, folder in toolchain)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]


@dataclass(frozen=True)
class CutlassPin:
    version: str
    commit: str
    url: str
    tree_sha256: str
    trees: tuple[str, ...]


@dataclass(frozen=True)
class Pins:
    name: str
    host_compiler: str
    debs: tuple[Deb, ...]
    wheels: tuple[Wheel, ...]
    cutlass: CutlassPin


def load_pins() -> Pins:
    text = resources.files("pascal_forge.verify").joinpath("data/cuda_toolchain.toml").read_text()
    raw: dict[str, Any] = tomllib.loads(text)
    tc = raw["toolchain"]
    return Pins(
        name=tc["name"],
        host_compiler=tc["host_compiler"],
        debs=tuple(
            Deb(d["name"], d["version"], d["sha256"], d["size"], tuple(d["urls"])) for d in raw["deb"]
        ),
        wheels=tuple(
            Wheel(
                w["name"],
                w["version"],
                w["url"],
                w["sha256"],
                w["size"],
                w["record_sha256"],
                tuple(sorted(w["extract"].items())),
            )
            for w in raw["wheel"]
        ),
        cutlass=CutlassPin(
            raw["cutlass"]["version"],
            raw["cutlass"]["commit"],
            raw["cutlass"]["url"],
            raw["cutlass"]["tree_sha256"],
            tuple(raw["cutlass"]["trees"]),
        ),
    )


# --------------------------------------------------------------------------------------------
# downloads
# --------------------------------------------------------------------------------------------


def download(urls: Sequence[str], dest: Path, sha256: str, size: int | None = None) -> Path:
    """Fetch the first URL that works into dest (atomically), checked against its sha256 and size."""
    fetch_verified(
        urls,
        dest,
        sha256,
        dest.name,
        f"check network access to {urls[0]}, or copy the file into {dest.parent}",
    )
    if size is not None and dest.stat().st_size != size:
        raise HashMismatchError(f"{dest.name}: size {dest.stat().st_size}, pinned {size}")
    return dest


class RangeFile(io.RawIOBase):
    """A read-only, seekable view of a remote file through HTTP range requests, with block caching.

    zipfile reads the central directory and then each member's bytes; members of one folder sit
    next to each other in a wheel, so a few MB-sized blocks cover hundreds of headers.
    """

    def __init__(self, url: str, size: int, block: int = 8 << 20) -> None:
        self.url, self.size, self.block = url, size, block
        self.pos = 0
        self.cache: dict[int, bytes] = {}
        self.session = requests.Session()
        self.fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = base + offset
        return self.pos

    def _block(self, index: int) -> bytes:
        if index not in self.cache:
            start = index * self.block
            end = min(start + self.block, self.size) - 1
            r = self.session.get(self.url, headers={"Range": f"bytes={start}-{end}"}, timeout=_TIMEOUT)
            if r.status_code != 206:
                raise SourceError(f"{self.url}: range request answered {r.status_code}", "use --no-range")
            self.cache[index] = r.content
            self.fetched += len(r.content)
        return self.cache[index]

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        n = min(len(view), self.size - self.pos)
        done = 0
        while done < n:
            index, off = divmod(self.pos + done, self.block)
            data = self._block(index)[off : off + n - done]
            view[done : done + len(data)] = data
            done += len(data)
        self.pos += n
        return n


def _record_hashes(record_text: str) -> dict[str, str]:
    """RECORD rows `path,sha256=<urlsafe b64>,size` → {path: hex sha256}."""
    import base64

    out: dict[str, str] = {}
    for line in record_text.splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) == 3 and parts[1].startswith("sha256="):
            digest = base64.urlsafe_b64decode(parts[1][7:] + "==")
            out[parts[0]] = digest.hex()
    return out


def extract_wheel(pin: Wheel, dest: Path, cache: Path, use_range: bool = True) -> int:
    """Copy pin.extract folders of a wheel into dest; each member checked against the wheel's RECORD.

    With use_range the wheel is read through HTTP range requests (torch/include is 27 MiB of a
    770 MB wheel); RECORD itself is pinned by record_sha256. Returns the number of files written.
    """
    if use_range:
        source: BinaryIO = io.BufferedReader(RangeFile(pin.url, pin.size), buffer_size=1 << 16)
    else:
        wheel = download([pin.url], cache / "downloads" / pin.filename, pin.sha256, pin.size)
        source = wheel.open("rb")
    count = 0
    with source, zipfile.ZipFile(source) as zf:
        record_name = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
        record = zf.read(record_name)
        if hashlib.sha256(record).hexdigest() != pin.record_sha256:
            raise HashMismatchError(
                f"{record_name} in {pin.filename} does not match its pin",
                "the wheel on PyPI differs from the pinned one; do not use it",
            )
        hashes = _record_hashes(record.decode())
        for info in zf.infolist():
            for src, dst in pin.extract:
                if info.filename.startswith(src) and not info.is_dir():
                    data = zf.read(info)
                    if hashlib.sha256(data).hexdigest() != hashes.get(info.filename):
                        raise HashMismatchError(f"{info.filename} does not match {record_name}")
                    out = dest / dst / info.filename[len(src) :]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(data)
                    count += 1
    return count


def _ar_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """Members of a Debian .deb (an `ar` archive); avoids needing dpkg on the machine."""
    with path.open("rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise SourceError(f"{path} is not a .deb (ar) archive")
        while header := f.read(60):
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58])
            data = f.read(size)
            if size % 2:
                f.read(1)
            yield name, data


def unpack_deb(path: Path, dest: Path, want: Callable[[str], bool]) -> list[str]:
    """Extract the data.tar members of a .deb that `want` accepts (like `dpkg -x`, filtered)."""
    for name, data in _ar_members(path):
        if name.startswith("data.tar"):
            raw = lzma.decompress(data) if name.endswith(".xz") else data
            with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
                picked = [m for m in tf.getmembers() if want(m.name.removeprefix("./"))]
                tf.extractall(dest, members=picked, filter="tar")
                return [m.name for m in picked]
    raise SourceError(f"{path}: no data.tar member")


def tree_sha256(root: Path, trees: Iterable[str]) -> str:
    """Digest of the files under root/<tree> (path + content), independent of how they were packed."""
    h = hashlib.sha256()
    for tree in sorted(trees):
        for p in sorted((root / tree).rglob("*")):
            if p.is_file():
                rel = p.relative_to(root).as_posix()
                h.update(rel.encode() + b"\0" + hashlib.sha256(p.read_bytes()).hexdigest().encode() + b"\n")
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# toolchain
# --------------------------------------------------------------------------------------------

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
                with requests.get(pin.url, stream=True, timeout=_TIMEOUT) as r:
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


# --------------------------------------------------------------------------------------------
# vLLM source and patches
# --------------------------------------------------------------------------------------------


def vllm_series(patch_dir: Path | None = None) -> tuple[PatchEntry, ...]:
    """The vLLM patch series in apply order, from the spec's patch library (or a library whose
    vllm/ folder is ``patch_dir``); a missing file is an error, never a silent no-op."""
    if patch_dir is None:
        spec = load_spec()
        series = spec.patches_for("vllm", spec.stack().vllm)
    else:
        series = load_patch_library(patch_dir.resolve().parent, (patch_dir.name,))
    if not series:
        raise PatchLibraryError("the vLLM patch series is empty", "check patchlib/vllm/series.toml")
    return series


def apply_vllm_series(tree: Path, series: Sequence[PatchEntry]) -> list[str]:
    """Apply in order without fuzz (a patch that drifted must fail loudly, never half-apply)."""
    results = apply_series(tree, tuple(series))
    failed = [r for r in results if not r.ok]
    if failed:
        raise PatchFailedError(
            f"{failed[0].patch.file} does not apply to {tree}: {failed[0].summary}",
            "run `pascal-forge check --package vllm-pascal` for the full report",
        )
    return [r.patch.id for r in results]


def unpack_vllm(cache: Path, dest: Path, vllm_src: Path | None) -> tuple[Path, str]:
    """A pristine vLLM tree at dest (from --vllm-src or the spec's pinned sdist) and its version."""
    if vllm_src is not None:
        if not (vllm_src / "CMakeLists.txt").is_file():
            raise SourceError(
                f"{vllm_src} has no CMakeLists.txt", "pass the root of an unpacked vLLM 0.8.5 sdist"
            )
        shutil.copytree(vllm_src, dest, symlinks=True)
        return dest, "(--vllm-src)"
    stack = load_spec().stack()
    shutil.copytree(obtain(stack.patched_source("vllm-pascal"), cache).tree, dest, symlinks=True)
    return dest, stack.vllm


# --------------------------------------------------------------------------------------------
# compile
# --------------------------------------------------------------------------------------------

#: Flags vLLM's build gets besides its per-target COMPILE_FLAGS: from torch's exported CMake
#: config (the C++ ABI of the PyPI torch 2.6.0 wheel, its include dirs), vLLM's
#: define_gpu_extension_target (C++17, -fPIC; Py_LIMITED_API comes per target from USE_SABI) and the
#: RelWithDebInfo build type setup.py uses (-O2 -DNDEBUG; host -g left out: it only slows nvcc).
BASE_FLAGS = (
    "-std=c++17",
    "-O2",
    "-DNDEBUG",
    "-D_GLIBCXX_USE_CXX11_ABI=0",
)
CUDA_ONLY_FLAGS = ("--expt-extended-lambda", "-Xcompiler=-fPIC", "-Xfatbin", "-compress-all")


@dataclass(frozen=True)
class Job:
    source: str
    archs: tuple[str, ...]
    command: tuple[str, ...]
    label: str = ""


@dataclass(frozen=True)
class Result:
    source: str
    archs: tuple[str, ...]
    ok: bool
    seconds: float
    first_errors: tuple[str, ...]
    label: str = ""
    output: str = field(default="", repr=False)


def build_jobs(
    sel: cmake_archs.Selection,
    tree: Path,
    tc: Toolchain,
    nvcc: Path,
    outdir: Path,
    host_compiler: str,
    sources: Sequence[str] | None,
    include_cxx: bool,
    python_include: Path | None = None,
) -> list[Job]:
    py_include = str(python_include or sysconfig.get_paths()["include"])
    jobs = []
    units = [u for u in sel.units if include_cxx or u.language == "CUDA"]
    if sources is not None:
        known = {u.source for u in sel.units}
        unknown = [s for s in sources if s not in known]
        if unknown:
            raise CompileError(
                "not selected by vLLM's CMake for these archs: " + ", ".join(unknown),
                "run with --list to see what would be compiled",
            )
        units = [u for u in units if u.source in sources]
    for i, u in enumerate(units):
        includes = [
            str(tree / "csrc"),
            *(d.replace(cmake_archs.CUTLASS_PLACEHOLDER, str(tc.cutlass)) for d in u.include_dirs),
            str(tc.torch_include),
            str(tc.torch_include / "torch" / "csrc" / "api" / "include"),
            py_include,
        ]
        obj = outdir / f"{i:03d}_{Path(u.source).stem}.o"
        if u.language == "CUDA":
            cmd = [
                str(nvcc),
                "-ccbin",
                host_compiler,
                *BASE_FLAGS,
                *CUDA_ONLY_FLAGS,
                *u.flags,
                *(f"-I{d}" for d in includes),
                *cmake_archs.gencode_flags(u.archs, u.ptx_arch),
                "-c",
                str(tree / u.source),
                "-o",
                str(obj),
            ]
        else:  # host C++ of the extension, as CMake compiles it (with the CUDA headers on the path)
            cmd = [
                host_compiler,
                *BASE_FLAGS,
                "-fPIC",
                *u.flags,
                *(f"-I{d}" for d in includes),
                f"-I{tc.root / 'include'}",
                "-c",
                str(tree / u.source),
                "-o",
                str(obj),
            ]
        jobs.append(Job(u.source, u.archs if u.language == "CUDA" else (), tuple(cmd)))
    # longest first keeps the parallel run short (paged attention is the slowest by far)
    return sorted(jobs, key=lambda j: -_cost_hint(tree / j.source))


def _cost_hint(path: Path) -> int:
    name = path.name
    bonus = 10**9 if "paged_attention" in name else 0
    try:
        return bonus + path.stat().st_size
    except OSError:
        return bonus


_ERROR_LINE = re.compile(r"(error|Error|fatal)")


def first_errors(output: str, limit: int = 4) -> tuple[str, ...]:
    lines = [ln.strip() for ln in output.splitlines() if _ERROR_LINE.search(ln)]
    return tuple(lines[:limit]) or tuple(ln.strip() for ln in output.strip().splitlines()[-limit:])


def run_job(job: Job) -> Result:
    t0 = time.monotonic()
    r = subprocess.run(job.command, capture_output=True, text=True, check=False)
    dt = time.monotonic() - t0
    out = r.stdout + r.stderr
    return Result(
        job.source,
        job.archs,
        r.returncode == 0,
        dt,
        () if r.returncode == 0 else first_errors(out),
        job.label,
        out,
    )


def run_jobs(jobs: Sequence[Job], n: int, on_done: Callable[[Result, int, int], None]) -> list[Result]:
    results: list[Result] = []
    lock = threading.Lock()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, n)) as pool:
        futures = [pool.submit(run_job, j) for j in jobs]
        for fut in concurrent.futures.as_completed(futures):
            res = fut.result()
            with lock:
                results.append(res)
                on_done(res, len(results), len(jobs))
    return results


# --------------------------------------------------------------------------------------------
# command
# --------------------------------------------------------------------------------------------

_EXAMPLE = """\
examples:
  pascal-forge verify-cuda --sources csrc/moe/moe_wna16.cu --arch 6.0
  pascal-forge verify-cuda --arch 6.0,6.1 --jobs 16 --json > verify.json
  pascal-forge verify-cuda --setup-toolchain       # only fetch + check the CUDA 12.4 toolchain
  pascal-forge verify-cuda --list --arch 6.1      # what vLLM's CMake would compile, no compile
"""


def configure_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "verify-cuda",
        help="compile the patched vLLM CUDA sources for sm_60/sm_61 with a CUDA 12 nvcc",
        description=(
            "Compile the CUDA sources vLLM 0.8.5's CMake selects for the given Pascal archs, with the "
            "pascal-forge patch series applied, using a pinned CUDA 12.4 toolchain set up in the cache "
            "(nothing is installed system-wide). Also compiles the UNPATCHED csrc/moe/moe_wna16.cu for "
            "the lowest arch as a control that must fail with the atomicAdd error."
        ),
        epilog=_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--arch", default="6.0,6.1", help="comma-separated compute capabilities (default 6.0,6.1)")
    p.add_argument(
        "--jobs", "-j", type=int, default=os.cpu_count() or 1, help="parallel compiles (default: CPUs)"
    )
    p.add_argument(
        "--sources", default="all", help="'all' or comma-separated paths like csrc/moe/moe_wna16.cu"
    )
    p.add_argument("--nvcc", type=Path, help="a CUDA 12.x nvcc to use instead of the pinned toolchain")
    p.add_argument(
        "--vllm-src", type=Path, help="an unpacked, unpatched vLLM 0.8.5 tree (default: the PyPI sdist)"
    )
    p.add_argument("--cutlass-src", type=Path, help="NVIDIA/cutlass checkout at the pinned commit (offline)")
    p.add_argument(
        "--cache-dir", type=Path, default=None, help="default: $PASCAL_FORGE_CACHE or ~/.cache/pascal-forge"
    )
    p.add_argument(
        "--host-compiler", default=None, help="nvcc -ccbin (default g++-12; CUDA 12.4 takes gcc <= 13)"
    )
    p.add_argument("--cxx", action="store_true", help="also compile the extensions' host .cpp files")
    p.add_argument("--no-control", action="store_true", help="skip the unpatched moe_wna16 control")
    p.add_argument("--no-range", action="store_true", help="download whole wheels instead of HTTP ranges")
    p.add_argument("--setup-toolchain", action="store_true", help="only set up and check the toolchain")
    p.add_argument("--list", action="store_true", help="only print the selected sources")
    p.add_argument("--python-include", type=Path, help="Python.h folder (default: this interpreter's)")
    p.add_argument(
        "--patch-dir", type=Path, help="a patchlib/vllm-style folder to use instead of the built-in series"
    )
    p.add_argument(
        "--keep-tree", type=Path, help="also copy the patched vLLM tree here (e.g. for the harness)"
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.set_defaults(func=run_verify_cuda)


def _parse_archs(text: str) -> tuple[str, ...]:
    archs = tuple(a.strip() for a in text.split(",") if a.strip())
    bad = [a for a in archs if not re.fullmatch(r"\d+\.\d+a?", a)]
    if bad or not archs:
        raise ToolchainError(f"--arch {text!r}: expected e.g. 6.0,6.1")
    return archs


def run_verify_cuda(args: argparse.Namespace) -> int:
    pins = load_pins()
    cache: Path = args.cache_dir or default_cache_dir()
    archs = _parse_archs(args.arch)
    host = args.host_compiler or pins.host_compiler
    if shutil.which(host) is None:
        raise ToolchainError(
            f"host compiler {host} not found", "install g++-12 (apt install g++-12) or pass --host-compiler"
        )
    tc = setup_toolchain(cache, pins, use_range=not args.no_range)
    nvcc = args.nvcc or tc.nvcc
    version = check_nvcc(nvcc)
    if args.setup_toolchain:
        print(f"toolchain ready: {tc.root} (nvcc {version}, host compiler {host})")
        return 0

    work = Path(tempfile.mkdtemp(prefix="pascal-forge-verify-"))
    try:
        tree, vllm_version = unpack_vllm(cache, work / "patched", args.vllm_src)
        control_tree = work / "unpatched"
        shutil.copytree(tree, control_tree, symlinks=True)
        applied = apply_vllm_series(tree, vllm_series(args.patch_dir))
        if args.keep_tree:
            shutil.copytree(tree, args.keep_tree, dirs_exist_ok=True)
        sel = cmake_archs.select_sources((tree / "CMakeLists.txt").read_text(), tree, archs)
        if not sel.cuda_archs:
            raise ToolchainError(
                f"vLLM's CMake keeps none of {','.join(archs)} (CUDA_SUPPORTED_ARCHS lacks them)",
                "the cmake-pascal-archs patch must be in patchlib/vllm/series.toml",
            )
        wanted = None if args.sources == "all" else [s.strip() for s in args.sources.split(",") if s.strip()]
        objs = work / "obj"
        objs.mkdir()
        jobs = build_jobs(sel, tree, tc, nvcc, objs, host, wanted, args.cxx, args.python_include)
        if args.list:
            for j in jobs:
                print(f"{j.source}  [{','.join(j.archs) or 'host C++'}]")
            return 0
        selected = {j.source for j in jobs}
        if any(
            cmake_archs.CUTLASS_PLACEHOLDER in d
            for u in sel.units
            if u.source in selected
            for d in u.include_dirs
        ):
            ensure_cutlass(tc, pins.cutlass, cache, args.cutlass_src)
        control: list[Job] = []
        if not args.no_control:
            # same flags as the patched build (first arch only); only the source tree differs
            first = cmake_archs.select_sources((tree / "CMakeLists.txt").read_text(), tree, archs[:1])
            (objs / "control").mkdir()
            control = [
                dataclasses.replace(j, label="control")
                for j in build_jobs(
                    first,
                    control_tree,
                    tc,
                    nvcc,
                    objs / "control",
                    host,
                    [CONTROL_SOURCE],
                    False,
                    args.python_include,
                )
            ]
        log(f"vLLM {vllm_version} patched with: {', '.join(applied)}")
        log(
            f"nvcc {version} ({nvcc}), host compiler {host}, archs {','.join(sel.cuda_archs)}, {args.jobs} jobs"
        )
        log(f"compiling {len(jobs)} sources" + (" + 1 unpatched control" if control else ""))
        t0 = time.monotonic()

        def progress(r: Result, done: int, total: int) -> None:
            status = "ok" if r.ok else ("FAILED" if r.label != "control" else "failed")
            tag = " (unpatched control)" if r.label == "control" else ""
            log(f"[{done}/{total}] {status:6} {r.seconds:7.1f}s  {r.source}{tag}")

        results = run_jobs([*control, *jobs], args.jobs, progress)
        wall = time.monotonic() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _report(results, version, host, sel.cuda_archs, applied, wall, args.json)


def _report(
    results: list[Result],
    version: str,
    host: str,
    archs: tuple[str, ...],
    applied: list[str],
    wall: float,
    as_json: bool,
) -> int:
    main = sorted((r for r in results if r.label != "control"), key=lambda r: r.source)
    control = next((r for r in results if r.label == "control"), None)
    control_state = None
    if control is not None:
        if control.ok:
            control_state = "UNEXPECTED: the unpatched source compiled"
        elif ATOMIC_ADD_ERROR in control.output:
            control_state = "expected failure: confirmed"
        else:
            control_state = "UNEXPECTED: failed, but not with the atomicAdd error"
    failed = [r for r in main if not r.ok]
    control_bad = control_state is not None and not control_state.startswith("expected")
    if as_json:
        print(
            json.dumps(
                {
                    "nvcc": version,
                    "host_compiler": host,
                    "archs": list(archs),
                    "patches": applied,
                    "wall_seconds": round(wall, 1),
                    "results": [
                        {
                            "source": r.source,
                            "archs": list(r.archs),
                            "ok": r.ok,
                            "seconds": round(r.seconds, 1),
                            "errors": list(r.first_errors),
                        }
                        for r in main
                    ],
                    "control": None
                    if control is None
                    else {
                        "source": control.source,
                        "archs": list(control.archs),
                        "state": control_state,
                        "seconds": round(control.seconds, 1),
                        "errors": list(control.first_errors),
                    },
                },
                indent=1,
            )
        )
    else:
        width = max((len(r.source) for r in main), default=10)
        print(f"\n{'source':<{width}}  {'archs':<8} {'result':<6} {'seconds':>8}")
        for r in main:
            print(
                f"{r.source:<{width}}  {','.join(r.archs) or 'c++':<8} {'ok' if r.ok else 'ERROR':<6} {r.seconds:8.1f}"
            )
            for line in r.first_errors:
                print(f"    {line}")
        print(
            f"\n{len(main) - len(failed)}/{len(main)} compiled, {len(failed)} failed; wall {wall:.0f}s; "
            f"nvcc {version}, archs {','.join(archs)}"
        )
        if control is not None:
            print(
                f"control (unpatched {control.source}, sm_{control.archs[0].replace('.', '')}): {control_state}"
            )
            for line in control.first_errors[:2]:
                print(f"    {line}")
    return 1 if failed or control_bad else 0

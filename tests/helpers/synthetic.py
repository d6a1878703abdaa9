"""A synthetic upstream conda-forge pytorch artifact, laid out like the real one.

conda-forge is unreachable from our machines, so the overlay is tested on a .conda written here
in conda-forge's format (zip of metadata.json, info-*.tar.zst, pkg-*.tar.zst). Its metadata is
the real record of pytorch-2.6.0-cuda126_mkl_py312_h8bb5dc9_300.conda (name, version, build,
build number, depends, constrains, from data-apis/array-api-extra's pixi.lock at 45c9fbbe); its
files are the two gate files of the real torch 2.6.0 release (sha256-checked against the PyPI
wheel's RECORD), a torch/__init__.py, and two files carrying conda-forge's build placeholder
prefix (a text script and a binary blob) plus a relative symlink, to exercise relocation.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import zstandard

BUILD = "cuda126_mkl_py312_h8bb5dc9_300"
FILE_NAME = f"pytorch-2.6.0-{BUILD}.conda"
SP = "lib/python3.12/site-packages"
#: conda-build's placeholder shape: the feedstock's build prefix padded to 255 characters.
PLACEHOLDER = (
    "/home/conda/feedstock_root/build_artifacts/libtorch_1739487234567/_h_env_placehold" + "_placehold" * 20
)[:255]
GATE_FILES = ("torch/utils/_triton.py", "torch/_inductor/scheduler.py")

#: index.json of the real artifact (pixi.lock record; the lock keeps depends in this order).
UPSTREAM_DEPENDS = (
    "__cuda",
    "__glibc >=2.17,<3.0.a0",
    "_openmp_mutex >=4.5",
    "cuda-cudart >=12.6.77,<13.0a0",
    "cuda-cupti >=12.6.80,<13.0a0",
    "cuda-nvrtc >=12.6.85,<13.0a0",
    "cuda-nvtx >=12.6.77,<13.0a0",
    "cuda-version >=12.6,<13",
    "cudnn >=9.7.1.26,<10.0a0",
    "cusparselt >=0.7.0.0,<0.7.0.1.0a0",
    "filelock",
    "fsspec",
    "jinja2",
    "libabseil * cxx17*",
    "libabseil >=20240722.0,<20240723.0a0",
    "libblas * *mkl",
    "libcblas >=3.9.0,<4.0a0",
    "libcublas >=12.6.4.1,<13.0a0",
    "libcudss0 >=0.4.0.2,<0.4.1.0a0",
    "libcufft >=11.3.0.4,<12.0a0",
    "libcufile >=1.11.1.6,<2.0a0",
    "libcurand >=10.3.7.77,<11.0a0",
    "libcusolver >=11.7.1.2,<12.0a0",
    "libcusparse >=12.5.4.2,<13.0a0",
    "libgcc >=13",
    "libmagma >=2.8.0,<2.8.1.0a0",
    "libprotobuf >=5.28.3,<5.28.4.0a0",
    "libstdcxx >=13",
    "libtorch 2.6.0 cuda126_mkl_h8247c52_300",
    "libuv >=1.50.0,<2.0a0",
    "libzlib >=1.3.1,<2.0a0",
    "mkl >=2024.2.2,<2025.0a0",
    "nccl >=2.25.1.1,<3.0a0",
    "networkx",
    "numpy >=1.19,<3",
    "optree >=0.13.0",
    "pybind11",
    "python >=3.12,<3.13.0a0",
    "python_abi 3.12.* *_cp312",
    "setuptools",
    "sleef >=3.8,<4.0a0",
    "sympy >=1.13.1,!=1.13.2",
    "triton 3.2.0.*",
    "typing_extensions >=4.10.0",
)
UPSTREAM_CONSTRAINS = ("pytorch-gpu ==2.6.0", "pytorch-cpu ==99999999")


def upstream_files(torch_files: Path) -> dict[str, bytes]:
    """Package files (prefix-relative) of the synthetic artifact."""
    files = {f"{SP}/{rel}": (torch_files / rel).read_bytes() for rel in GATE_FILES}
    files[f"{SP}/torch/__init__.py"] = b'__version__ = "2.6.0"\n'
    files["bin/torchrun"] = (
        f"#!{PLACEHOLDER}/bin/python3.12\nimport sys\nfrom torch.distributed.run import main\nsys.exit(main())\n"
    ).encode()
    files["lib/libtorch_probe.bin"] = b"\x00\x01probe\x00" + PLACEHOLDER.encode() + b"/lib\x00tail\x00"
    return files


def _tar_zst(members: Mapping[str, bytes], links: Mapping[str, str] = {}) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(set(members) | set(links)):
            info = tarfile.TarInfo(name)
            info.mtime = 1739503025
            if name in links:
                info.type, info.linkname = tarfile.SYMTYPE, links[name]
                tar.addfile(info)
            else:
                info.size = len(members[name])
                info.mode = 0o755 if name.startswith("bin/") else 0o644
                tar.addfile(info, io.BytesIO(members[name]))
    return zstandard.ZstdCompressor(level=3).compress(raw.getvalue())


def write_conda(
    path: Path,
    index: dict[str, object],
    files: Mapping[str, bytes],
    links: Mapping[str, str] = {},
    placeholders: Mapping[str, str] = {},
    raw_members: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a .conda in conda-forge's layout; ``raw_members`` replaces the pkg tar (for bad archives)."""
    entries = []
    for rel in sorted(set(files) | set(links)):
        if rel in links:
            entries.append({"_path": rel, "path_type": "softlink"})
            continue
        entry: dict[str, object] = {
            "_path": rel,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(files[rel]).hexdigest(),
            "size_in_bytes": len(files[rel]),
        }
        if rel in placeholders:
            entry["file_mode"] = placeholders[rel]
            entry["prefix_placeholder"] = PLACEHOLDER
        entries.append(entry)
    info = {
        "info/index.json": json.dumps(index, indent=2, sort_keys=True).encode(),
        "info/paths.json": json.dumps({"paths": entries, "paths_version": 1}, indent=2).encode(),
        "info/files": "".join(f"{e['_path']}\n" for e in entries).encode(),
        "info/about.json": json.dumps({"license": "BSD-3-Clause", "summary": "PyTorch"}).encode(),
    }
    stem = path.name.removesuffix(".conda")
    pkg = _tar_zst(raw_members) if raw_members is not None else _tar_zst(files, links)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("metadata.json", json.dumps({"conda_pkg_format_version": 2}))
        zf.writestr(f"info-{stem}.tar.zst", _tar_zst(info))
        zf.writestr(f"pkg-{stem}.tar.zst", pkg)
    return path


def synthetic_pytorch(out_dir: Path, torch_files: Path) -> Path:
    """The stand-in for pytorch-2.6.0-cuda126_mkl_py312_h8bb5dc9_300.conda."""
    out_dir.mkdir(parents=True, exist_ok=True)
    index = {
        "arch": "x86_64",
        "build": BUILD,
        "build_number": 300,
        "constrains": list(UPSTREAM_CONSTRAINS),
        "depends": list(UPSTREAM_DEPENDS),
        "license": "BSD-3-Clause",
        "license_family": "BSD",
        "name": "pytorch",
        "platform": "linux",
        "subdir": "linux-64",
        "timestamp": 1739503025841,
        "version": "2.6.0",
    }
    return write_conda(
        out_dir / FILE_NAME,
        index,
        upstream_files(torch_files),
        links={"lib/libtorch_probe.so": "libtorch_probe.bin"},
        placeholders={"bin/torchrun": "text", "lib/libtorch_probe.bin": "binary"},
    )

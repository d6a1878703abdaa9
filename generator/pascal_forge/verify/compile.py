"""The compile runner: the patched vLLM tree, one nvcc job per selected source, run in parallel."""

from __future__ import annotations

import concurrent.futures
import re
import shutil
import subprocess
import sysconfig
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pascal_forge.errors import (
    CompileError,
    PatchFailedError,
    PatchLibraryError,
    SourceError,
)
from pascal_forge.stack.library import load_patch_library
from pascal_forge.stack.model import PatchEntry
from pascal_forge.stack.patches import apply_series
from pascal_forge.stack.sources import obtain
from pascal_forge.stack.spec import load_spec
from pascal_forge.verify import cmake_archs
from pascal_forge.verify.toolchain import (
    Toolchain,
)

ATOMIC_ADD_ERROR = 'no instance of overloaded function "atomicAdd" matches the argument list'


CONTROL_SOURCE = "csrc/moe/moe_wna16.cu"


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

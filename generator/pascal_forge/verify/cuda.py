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
import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from pascal_forge.console import log
from pascal_forge.errors import (
    ToolchainError,
)
from pascal_forge.stack.sources import default_cache_dir
from pascal_forge.verify import cmake_archs
from pascal_forge.verify.compile import (
    ATOMIC_ADD_ERROR,
    CONTROL_SOURCE,
    Job,
    Result,
    apply_vllm_series,
    build_jobs,
    run_jobs,
    unpack_vllm,
    vllm_series,
)
from pascal_forge.verify.toolchain import (
    check_nvcc,
    ensure_cutlass,
    setup_toolchain,
)
from pascal_forge.verify.toolchain_pins import load_pins

# --------------------------------------------------------------------------------------------
# pins
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# downloads
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# toolchain
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# vLLM source and patches
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# compile
# --------------------------------------------------------------------------------------------


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

"""Compile the CUDA sources a (patched) vLLM tree's CMake selects for Pascal, with a given toolchain.

For stacks newer than 0.8.5 (verify-cuda pins 0.8.5's toolchain and sdist): the caller supplies the
unpacked tree, a CUDA_HOME-like root (bin/nvcc, include/, torch/include, cutlass/) and the versions
CMake would see. Prints one line per source and, with --json, writes the results.

example:
  python scripts/compile_selected.py --tree /tmp/vllm-0.26.0-patched --toolchain /tmp/tc \
      --cuda 12.4.131 --torch 2.11.0 --arch 6.0 --sources csrc/libtorch_stable/moe/moe_wna16.cu
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from pascal_forge.verify import cmake_archs
from pascal_forge.verify.compile import Result, build_jobs, run_jobs
from pascal_forge.verify.toolchain import Toolchain


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", type=Path, required=True, help="unpacked vLLM tree (patched or not)")
    ap.add_argument("--toolchain", type=Path, required=True, help="CUDA_HOME-like root")
    ap.add_argument("--cuda", default="12.4.131", help="nvcc version CMake would see")
    ap.add_argument("--torch", default="2.11.0", help="torch version CMake would see")
    ap.add_argument("--arch", default="6.0,6.1", help="comma-separated compute capabilities")
    ap.add_argument("--sources", default="all", help="'all' or comma-separated paths")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--host-compiler", default="g++-12")
    ap.add_argument("--python-include", type=Path)
    ap.add_argument("--list", action="store_true", help="only print the selected sources")
    ap.add_argument("--json", type=Path, help="write the results here")
    a = ap.parse_args()
    tree = a.tree.resolve()
    archs = a.arch.split(",")
    sel = cmake_archs.select_sources(
        (tree / "CMakeLists.txt").read_text("utf-8"),
        tree,
        archs,
        cmake_archs.initial_variables(tree, a.cuda, a.torch),
    )
    units = sel.cuda_units()
    print(f"CUDA_ARCHS={';'.join(sel.cuda_archs)}: {len(units)} CUDA sources selected", flush=True)
    if a.list:
        for u in units:
            print(f"  {u.target} {u.source} {','.join(u.archs)}")
        return 0
    sources = None if a.sources == "all" else a.sources.split(",")
    tc = Toolchain(a.toolchain)
    with tempfile.TemporaryDirectory() as out:
        jobs = build_jobs(
            sel, tree, tc, tc.nvcc, Path(out), a.host_compiler, sources, False, a.python_include
        )

        def done(r: Result, i: int, n: int) -> None:
            status = "ok" if r.ok else "FAIL " + " | ".join(r.first_errors)
            print(f"[{i}/{n}] {r.source} {','.join(r.archs)} {r.seconds:.0f}s {status}", flush=True)

        results = run_jobs(jobs, a.jobs, done)
    if a.json:
        rows = [{k: v for k, v in asdict(r).items() if k != "output"} for r in results]
        a.json.write_text(json.dumps(rows, indent=1) + "\n")
    ok = sum(r.ok for r in results)
    print(f"{ok}/{len(results)} compiled", flush=True)
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())

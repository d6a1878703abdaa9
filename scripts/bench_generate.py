"""Benchmark: wall time of a full `pascal-forge generate` of the default stack (target: < 1 s).

Prints numbers, asserts nothing: machines are noisy. Run: python scripts/bench_generate.py [-n 20]
Reports the first (cold: imports, template compilation) run and the median/min of warm runs,
each in a fresh output folder, in-process and as a subprocess (what a user waits for).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=10, help="warm repetitions (default 10)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pascal_forge", "generate", "--out", f"{tmp}/cli"],
            check=True,
            capture_output=True,
        )
        cli = time.perf_counter() - start

        t0 = time.perf_counter()
        from pascal_forge.recipes.render import render_tree
        from pascal_forge.recipes.tree import write_tree
        from pascal_forge.stack.spec import load_spec

        imports = time.perf_counter() - t0
        times = []
        for i in range(args.n + 1):
            start = time.perf_counter()
            write_tree(render_tree(load_spec()), Path(tmp) / f"out{i}")
            times.append(time.perf_counter() - start)
    print(f"subprocess `pascal-forge generate` (cold, incl. interpreter start): {cli * 1000:.0f} ms")
    print(f"imports: {imports * 1000:.0f} ms; first in-process generate: {times[0] * 1000:.1f} ms")
    warm = times[1:]
    print(
        f"warm generate x{len(warm)}: median {statistics.median(warm) * 1000:.1f} ms, min {min(warm) * 1000:.1f} ms"
    )
    print(f"target < 1000 ms: cold subprocess is {cli / 1.0:.2f}x of the budget")


if __name__ == "__main__":
    main()

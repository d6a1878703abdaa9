"""Benchmark `pascal-forge survey`: fraction carried automatically, human count, cold and warm wall time.

Cold = an empty row cache (sdists already in --cache-dir are reused; pass a fresh --cache-dir for a
download-cold run); warm = the same command again. Usage:

    python scripts/bench_survey.py [--from 0.8.5] [--to 0.34.0] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def survey(low: str, high: str, cache: Path) -> tuple[float, list[dict[str, object]]]:
    cmd = [
        sys.executable,
        "-m",
        "pascal_forge.cli",
        "survey",
        "--from",
        low,
        "--to",
        high,
        "--json",
        "--no-doc",
    ]
    cmd += ["--cache-dir", str(cache)]
    start = time.monotonic()
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.monotonic() - start, json.loads(run.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--from", dest="low", default="0.8.5")
    parser.add_argument("--to", dest="high", default="0.34.0")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "pascal-forge")
    args = parser.parse_args()
    shutil.rmtree(args.cache_dir / "survey", ignore_errors=True)  # the row cache only
    cold, rows = survey(args.low, args.high, args.cache_dir)
    warm, again = survey(args.low, args.high, args.cache_dir)
    if again != rows:
        print("warm rerun differs from the cold run", file=sys.stderr)
        return 1
    steps = [str(p["step"]) for r in rows for p in r["patches"]]  # type: ignore[attr-defined]
    needed = [s for s in steps if s != "obsolete"]
    carried = [s for s in needed if s != "needs a human"]
    human = len(needed) - len(carried)
    frac = len(carried) / len(needed) if needed else 1.0
    print(f"releases: {len(rows)} ({args.low} .. {args.high})")
    print(
        f"carried automatically: {len(carried)}/{len(needed)} still-needed (release, patch) pairs = {frac:.1%}"
    )
    print(f"need a human: {human}")
    print(f"cold (empty row cache): {cold:.1f} s; warm: {warm:.1f} s")
    return 0 if frac >= 0.9 and warm < 60 else 1


if __name__ == "__main__":
    raise SystemExit(main())

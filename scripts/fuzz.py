"""A longer fuzz campaign over the targets of tests/fuzz (the same strategies and properties).

For each target: the examples tried, and the crashes found (an exception that is not one of ours,
or a broken property such as a write outside the work folder), with the smallest failing input
Hypothesis could shrink to. Exits 1 if any target crashed.

examples:
  python scripts/fuzz.py                          # every target, 2000 examples each
  python scripts/fuzz.py -n 20000 --target archive --target patch
  python scripts/fuzz.py --seed 7                 # another random walk (the default is random)
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, Phase, given, seed, settings

from helpers import fuzz

SERVE = "serve"


def campaign(name: str, examples: int, rng_seed: int | None) -> tuple[int, list[str]]:
    """(examples tried, crash reports) for one target."""
    tried = 0
    crashes: list[str] = []

    def once(check: Any, value: Any) -> None:
        nonlocal tried
        tried += 1
        check(value)

    def run(strategy: Any, check: Any) -> None:
        config = settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        test = config(given(strategy)(lambda value: once(check, value)))
        if rng_seed is not None:
            test = seed(rng_seed)(test)
        try:
            test()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            # The innermost frames and Hypothesis's note with the shrunk input, not 1000 recursive frames.
            frames = "".join(traceback.format_tb(exc.__traceback__, limit=-6))
            notes = "\n".join(getattr(exc, "__notes__", []))
            crashes.append(f"{frames}{type(exc).__name__}: {str(exc)[:500]}\n{notes[:2000]}")

    if name == SERVE:
        with fuzz.served_channel() as (port, errors):
            run(fuzz.REQUEST, lambda request: fuzz.check_request(port, errors, request))
    else:
        run(*fuzz.TARGETS[name])
    return tried, crashes


def main() -> int:
    sys.setrecursionlimit(20_000)  # Hypothesis's shrinker recurses deeply on nested examples
    names = [*sorted(fuzz.TARGETS), SERVE]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--examples", type=int, default=2000, help="examples per target (default 2000)")
    parser.add_argument("--target", action="append", choices=names, help="only these targets (repeatable)")
    parser.add_argument("--seed", type=int, help="a fixed random seed (default: a new one each run)")
    args = parser.parse_args()
    total_crashes = 0
    print(f"{'target':<12} {'examples':>9} {'crashes':>8} {'seconds':>8}")
    for name in args.target or names:
        start = time.perf_counter()
        tried, crashes = campaign(name, args.examples, args.seed)
        total_crashes += len(crashes)
        print(f"{name:<12} {tried:>9} {len(crashes):>8} {time.perf_counter() - start:>8.1f}", flush=True)
        for report in crashes:
            print("    " + report.replace("\n", "\n    "), file=sys.stderr)
    return 1 if total_crashes else 0


if __name__ == "__main__":
    sys.exit(main())

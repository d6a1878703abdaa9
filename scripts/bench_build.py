"""Benchmark: `pascal-forge build` of three small real recipes, then again with nothing to do.

Target (issue 5): the second, up-to-date run builds nothing and finishes in under 3 s. Prints
numbers, asserts nothing: machines are noisy. Each run is the real CLI in a subprocess (what a
user waits for: interpreter start, imports, engine render of every variant, hashing, lock).
Run: python scripts/bench_build.py [-n 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPES = {
    "base": ("demo-base", []),
    "overlay": ("demo-overlay", ["demo-base"]),
    "app": ("demo-app", ["demo-overlay", "demo-base"]),
}


def write_recipes(root: Path) -> Path:
    tree = root / "recipes"
    for folder, (name, deps) in RECIPES.items():
        (tree / folder).mkdir(parents=True)
        reqs = "".join(f"    - {d}\n" for d in deps)
        text = (
            f'package:\n  name: {name}\n  version: "1.0"\n'
            f"build:\n  number: 0\n  script:\n    - mkdir -p $PREFIX/share/{name} && echo {name} > $PREFIX/share/{name}/x\n"
        )
        if deps:
            text += "requirements:\n  host:\n" + reqs + "  run:\n" + reqs
        (tree / folder / "recipe.yaml").write_text(text, "utf-8")
    (tree / "variants.yaml").write_text('python:\n  - "3.10"\n  - "3.12"\n', "utf-8")
    return tree


def empty_channel(path: Path) -> Path:
    import rattler

    for sub in ("linux-64", "noarch"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    asyncio.run(rattler.index.index_fs(path))
    return path


def run_build(tree: Path, channel: Path, upstream: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pascal_forge",
            "build",
            "--recipes",
            str(tree),
            "--channel-dir",
            str(channel),
            "-c",
            str(upstream),
            "--test",
            "skip",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5, help="up-to-date repetitions (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tree, channel, upstream = write_recipes(root), root / "channel", empty_channel(root / "upstream")
        first = run_build(tree, channel, upstream)
        again = [run_build(tree, channel, upstream) for _ in range(args.n)]
        (tree / "app" / "extra.txt").write_text("changed\n", "utf-8")
        one = run_build(tree, channel, upstream)
    print(f"first build (3 recipes, 1 variant each): {first:.2f} s")
    print(
        f"up to date, nothing built: median {statistics.median(again):.2f} s, max {max(again):.2f} s "
        f"over {args.n} runs (target < 3 s)"
    )
    print(f"one recipe changed, one rebuilt:       {one:.2f} s")


if __name__ == "__main__":
    main()

"""Several stacks in one channel: which stacks a build or a planned resolve-check covers, each
rendered into its own recipes folder (one vllm-pascal per stack, each with its own torch/triton)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from packaging.version import Version

from pascal_forge.build.channel import ChannelPackage
from pascal_forge.errors import SpecError
from pascal_forge.recipes.render import render_tree
from pascal_forge.recipes.tree import write_tree
from pascal_forge.stack.model import Spec, Stack


def select_stacks(spec: Spec, names: list[str] | None, all_stacks: bool) -> list[Stack]:
    """--all-stacks: every non-draft stack; else each --stack NAME (default: the spec's default)."""
    if all_stacks and names:
        raise SpecError("--all-stacks and --stack both name the stacks to build", "give one of them")
    if all_stacks:
        return [s for s in spec.stacks if not s.draft]
    chosen = [spec.stack(n) for n in dict.fromkeys(names)] if names else [spec.stack(None)]
    drafts = [s.name for s in chosen if s.draft]
    if drafts:
        raise SpecError(
            f"stack {', '.join(drafts)} is a draft ({spec.stack(drafts[0]).draft})",
            "resolve what it lists (pascal-forge update), or leave it out",
        )
    return chosen


def render_stacks(spec: Spec, stacks: list[Stack], root: Path) -> list[Path]:
    """One rendered recipes folder per stack under ``root`` (root/<stack>), in the given order."""
    out = []
    for stack in stacks:
        tree = root / stack.name
        write_tree(render_tree(spec, stack.name), tree)
        out.append(tree)
    return out


def served_pythons(packages: Iterable[ChannelPackage]) -> dict[str, set[str]]:
    """vllm-pascal version -> the Pythons its builds in the channel serve (from ``python >=X.Y``)."""
    served: dict[str, set[str]] = {}
    for p in packages:
        if p.name == "vllm-pascal":
            pys = {d.split()[1].lstrip(">=").split(",")[0] for d in p.depends if d.startswith("python >=")}
            served.setdefault(p.version, set()).update(pys)
    return served


def solve_roots(packages: Iterable[ChannelPackage], guarded: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """(spec, Pythons) to solve: vllm-pascal for every Python the channel serves; with several
    stacks also each vllm-pascal version for its own Pythons; then each guarded Pascal package."""
    served = served_pythons(packages)
    pythons = sorted(set().union(*served.values())) if served else []
    if not pythons:
        return []
    roots = [("vllm-pascal", pythons)]
    if len(served) > 1:
        roots += [(f"vllm-pascal =={v}", sorted(served[v])) for v in sorted(served, key=Version)]
    return roots + [(g, pythons) for g in guarded]

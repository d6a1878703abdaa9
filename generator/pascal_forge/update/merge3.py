"""Three-way merges of one file (git merge-file) and unified diffs of the result.

``merge3(new, base, ours)`` carries our change (base → ours) onto upstream's new file, with the
base stack's pristine file as the common ancestor. xdiff calls two changes on adjacent lines a
conflict even when one side only inserted lines next to a block the other side rewrote; those
are settled here (the insertion kept, placed where it was, next to the rewrite), because they
are the commonest conflict in vLLM's history. Any other conflict is returned with both sides.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pascal_forge.errors import ToolchainError


@dataclass(frozen=True)
class Conflict:
    """One unresolved conflict: upstream's new lines, the base lines, our patched lines."""

    new: tuple[str, ...]
    base: tuple[str, ...]
    ours: tuple[str, ...]

    def render(self, where: str) -> str:
        head = f"<<<<<<< upstream (new) {where}"
        return "\n".join(
            [head, *self.new, "||||||| base", *self.base, "=======", *self.ours, ">>>>>>> patched base"]
        )


@dataclass(frozen=True)
class Merge:
    text: str  # the merged file; meaningful only when ``clean``
    conflicts: tuple[Conflict, ...]
    adjacent: int  # conflicts settled as adjacent insertions

    @property
    def clean(self) -> bool:
        return not self.conflicts


def _git() -> str:
    from shutil import which

    git = which("git")
    if git is None:
        raise ToolchainError("git is not installed (needed for 3-way merges)", "install git")
    return git


def merge3(new: str, base: str, ours: str) -> Merge:
    """Merge base→ours onto ``new``; conflicts that are only adjacent insertions are resolved."""
    with tempfile.TemporaryDirectory(prefix="pf-merge-") as tmp:
        paths = []
        for name, text in (("new", new), ("base", base), ("ours", ours)):
            path = Path(tmp) / name
            path.write_text(text, "utf-8")
            paths.append(str(path))
        run = subprocess.run(
            [_git(), "merge-file", "-p", "--diff3", "-L", "new", "-L", "base", "-L", "ours", *paths],
            capture_output=True,
            text=True,
            check=False,
        )
    if run.returncode < 0 or run.returncode > 127:
        raise ToolchainError(f"git merge-file failed: {run.stderr.strip()}", "check the git installation")
    return _settle(run.stdout)


def _settle(merged: str) -> Merge:
    lines = merged.split("\n")
    out: list[str] = []
    conflicts: list[Conflict] = []
    adjacent = 0
    i = 0
    while i < len(lines):
        if not lines[i].startswith("<<<<<<< new"):
            out.append(lines[i])
            i += 1
            continue
        sides: list[list[str]] = [[], [], []]
        part = 0
        i += 1
        while not lines[i].startswith(">>>>>>> ours"):
            if lines[i].startswith("||||||| base") and part == 0:
                part = 1
            elif lines[i] == "=======" and part == 1:
                part = 2
            else:
                sides[part].append(lines[i])
            i += 1
        i += 1
        new, base, ours = sides
        settled = adjacent_resolution(new, base, ours)
        if settled is None:
            conflicts.append(Conflict(tuple(new), tuple(base), tuple(ours)))
            out.extend(ours)
        else:
            adjacent += 1
            out.extend(settled)
    return Merge("\n".join(out), tuple(conflicts), adjacent)


def adjacent_resolution(new: list[str], base: list[str], ours: list[str]) -> list[str] | None:
    """If one side is the base block plus lines only above or only below it, keep those lines
    around the other side's change; else None (a real conflict)."""
    n = len(base)
    if not n:
        return None
    for insert, change in ((new, ours), (ours, new)):
        if len(insert) > n and insert[len(insert) - n :] == base:
            return insert[: len(insert) - n] + change
        if len(insert) > n and insert[:n] == base:
            return change + insert[n:]
    return None


def unified_diff(path: str, old: str | None, new: str) -> str:
    """A -p1 unified diff (a/ b/ labels, 3 lines of context) of one file; "" when unchanged.

    GNU diff writes it (not difflib), so "No newline at end of file" markers are right and the
    output is what `patch` expects byte for byte. ``old`` None means a new file.
    """
    if old == new:
        return ""
    with tempfile.TemporaryDirectory(prefix="pf-diff-") as tmp:
        a, b = Path(tmp) / "a", Path(tmp) / "b"
        a.write_text(old or "", "utf-8")
        b.write_text(new, "utf-8")
        label_a = "/dev/null" if old is None else f"a/{path}"
        run = subprocess.run(
            ["diff", "-u", "--label", label_a, "--label", f"b/{path}", str(a), str(b)],
            capture_output=True,
            text=True,
            check=False,
        )
    if run.returncode > 1:
        raise ToolchainError(f"diff failed: {run.stderr.strip()}", "install GNU diffutils")
    return run.stdout

"""Where did a patched file's code go? Same file name elsewhere, else the enclosing def/class.

A hunk's anchor is the innermost ``def``/``class`` above it in the base file (e.g.
``_get_and_verify_dtype`` in vLLM's old ``vllm/config.py``). The new tree is searched for files
of the same kind that define it; the anchored block is cut out of base, patched base and the new
file so the 3-way merge runs on the block, then spliced back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_DEF = re.compile(r"^(\s*)(?:async\s+)?(?:def|class)\s+(\w+)")
_SKIP_DIRS = {".git", "node_modules", "__pycache__"}


@dataclass(frozen=True)
class Block:
    start: int  # 0-based line index of the def line
    stop: int  # one past the last line

    def cut(self, text: str) -> str:
        return "".join(text.splitlines(keepends=True)[self.start : self.stop])

    def splice(self, text: str, block: str) -> str:
        lines = text.splitlines(keepends=True)
        return "".join([*lines[: self.start], block, *lines[self.stop :]])


def anchors(base: str, starts: tuple[int, ...]) -> tuple[str, ...]:
    """The innermost def/class enclosing each hunk (by its first base line), in order, unique."""
    lines = base.splitlines()
    found: list[str] = []
    for start in starts:
        line = min(max(start - 1 + 3, 0), len(lines) - 1)  # a hunk starts with ~3 context lines
        for i in range(line, -1, -1):
            m = _DEF.match(lines[i])
            if m and (not lines[line].strip() or _indent(lines[line]) > len(m.group(1)) or i == line):
                found.append(m.group(2))
                break
    return tuple(dict.fromkeys(found))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def block_of(text: str, name: str) -> Block | None:
    """The lines of the first ``def name``/``class name`` in ``text`` (decorators excluded)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _DEF.match(line)
        if not m or m.group(2) != name:
            continue
        depth = len(m.group(1))
        stop = i + 1
        while stop < len(lines):
            body = lines[stop]
            if body.strip() and _indent(body) <= depth and not body.lstrip().startswith((")", "]")):
                break
            stop += 1
        while stop > i + 1 and not lines[stop - 1].strip():
            stop -= 1
        return Block(i, stop)
    return None


def candidates(tree: Path, path: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """Files of the new tree that may hold ``path``'s code: the same file name elsewhere, else
    every file with the same suffix that defines all of ``names``."""
    suffix = Path(path).suffix
    files = sorted(
        p for p in tree.rglob(f"*{suffix}") if p.is_file() and not _SKIP_DIRS & set(p.relative_to(tree).parts)
    )
    same = [p for p in files if p.name == Path(path).name]
    if len(same) == 1:
        return (same[0].relative_to(tree).as_posix(),)
    if not names:
        return ()
    hits = []
    for p in files:
        text = p.read_text("utf-8", errors="replace")
        if all(
            re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(n)}\b", text, re.MULTILINE)
            for n in names
        ):
            hits.append(p.relative_to(tree).as_posix())
    return tuple(hits)


def lines_anywhere(tree: Path, suffix: str, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """Which of ``wanted`` (stripped lines) occur in any ``*suffix`` file of ``tree``."""
    left = set(wanted)
    seen: list[str] = []
    for p in sorted(tree.rglob(f"*{suffix}")):
        if not left or not p.is_file():
            continue
        have = {line.strip() for line in p.read_text("utf-8", errors="replace").splitlines()}
        for line in sorted(left & have):
            seen.append(line)
            left.discard(line)
    return tuple(seen)

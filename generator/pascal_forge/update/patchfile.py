"""A unified diff cut into its files and hunks (hunks cut by their header's line counts)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,(\d+))? @@")


@dataclass(frozen=True)
class FileDiff:
    old: str | None  # -p1 path; None for a created file
    new: str | None  # None for a deleted file
    old_starts: tuple[int, ...]  # 1-based first base line of each hunk

    @property
    def path(self) -> str:
        return self.old or self.new or ""


def _strip(name: str) -> str | None:
    name = name.split("\t", 1)[0].strip()
    if name == "/dev/null":
        return None
    return name.split("/", 1)[1] if "/" in name else name


def split_patch(text: str) -> tuple[FileDiff, ...]:
    lines = text.splitlines()
    files: list[FileDiff] = []
    old: str | None = None
    new: str | None = None
    starts: list[int] = []
    started = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            if started:
                files.append(FileDiff(old, new, tuple(starts)))
            old, new, starts, started = _strip(line[4:]), _strip(lines[i + 1][4:]), [], True
            i += 2
            continue
        m = _HUNK.match(line)
        if not m:
            i += 1
            continue
        starts.append(int(m.group(1)))
        left, right = int(m.group(2) or 1), int(m.group(3) or 1)
        i += 1
        while i < len(lines) and (left > 0 or right > 0):
            body = lines[i]
            if body.startswith("-"):
                left -= 1
            elif body.startswith("+"):
                right -= 1
            elif not body.startswith("\\"):
                left -= 1
                right -= 1
            i += 1
    if started:
        files.append(FileDiff(old, new, tuple(starts)))
    return tuple(files)

"""Apply a patch series to a source tree, in order, without fuzz, and report each patch's fate.

GNU patch does the work (it is what conda-build and a user's shell use); its messages are parsed
into one result per patch: applies cleanly / applies with offset / fails at hunk N / already
present upstream. A failed patch stops the series: later patches would be tested on a tree that
is not what the build would see.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pascal_forge.errors import ToolchainError
from pascal_forge.stack.model import PatchEntry


class Outcome(StrEnum):
    CLEAN = "applies cleanly"
    OFFSET = "applies with offset"
    FAILED = "fails"
    ALREADY = "already present upstream"
    NOT_CHECKED = "not checked"
    SKIPPED = "not reached"


@dataclass(frozen=True)
class PatchResult:
    patch: PatchEntry
    outcome: Outcome
    detail: str  # "hunk 2 of csrc/x.cu", "offset +3 lines", "source unreachable: …"
    files: tuple[str, ...]
    rejected: tuple[str, ...] = ()  # the text of each hunk that failed (header included)

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.CLEAN, Outcome.OFFSET)

    @property
    def summary(self) -> str:
        if not self.detail:
            return self.outcome.value
        sep = " " if self.detail.startswith("at hunk") else ": "
        return f"{self.outcome.value}{sep}{self.detail}"


_FILE = re.compile(r"^(?:patching|checking) file '?([^'\n]+?)'?$", re.MULTILINE)
_HUNK_FAIL = re.compile(r"^Hunk #(\d+) FAILED at (\d+)", re.MULTILINE)
_HUNK_OFFSET = re.compile(r"^Hunk #(\d+) succeeded at (\d+) \(offset (-?\d+) lines?\)", re.MULTILINE)
_HUNK_FUZZ = re.compile(r"^Hunk #(\d+) succeeded at \d+ with fuzz", re.MULTILINE)
_NO_FILE = re.compile(r"can't find file to patch", re.IGNORECASE)
_MALFORMED = re.compile(r"malformed patch at line (\d+)|Only garbage was found", re.IGNORECASE)


def patch_tool() -> str:
    tool = shutil.which("patch")
    if tool is None:
        raise ToolchainError("GNU patch is not installed", "install it (apt-get install patch)")
    return tool


def _run(tree: Path, patch: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    with patch.open("rb") as fh:
        return subprocess.run(
            [
                patch_tool(),
                "-p1",
                "--fuzz=0",
                "--forward",
                "--batch",
                "--no-backup-if-mismatch",
                "-d",
                str(tree),
                *extra,
            ],
            stdin=fh,
            capture_output=True,
            # GNU patch echoes file names from the patch, which need not be UTF-8 (see tests/fuzz).
            encoding="utf-8",
            errors="replace",
            check=False,
        )


def apply_one(tree: Path, entry: PatchEntry) -> PatchResult:
    """Try ``entry`` on ``tree`` (dry run first); apply it for real only if it fits."""
    dry = _run(tree, entry.path, "--dry-run")
    out = dry.stdout + dry.stderr
    files = tuple(dict.fromkeys(_FILE.findall(out)))
    if dry.returncode == 0 and not _HUNK_FUZZ.search(out):
        real = _run(tree, entry.path)
        if real.returncode != 0:  # dry run and real run disagree only on I/O errors
            return PatchResult(entry, Outcome.FAILED, real.stderr.strip()[:200], files)
        offsets = _HUNK_OFFSET.findall(out)
        if offsets:
            detail = ", ".join(f"hunk {h} offset {int(o):+d} lines" for h, _, o in offsets)
            return PatchResult(entry, Outcome.OFFSET, detail, files)
        return PatchResult(entry, Outcome.CLEAN, "", files)
    if "Reversed (or previously applied) patch detected" in out:
        reverse = _run(tree, entry.path, "--dry-run", "--reverse")
        if reverse.returncode == 0:
            return PatchResult(entry, Outcome.ALREADY, "the change is already in this source", files)
    if _NO_FILE.search(out):
        return PatchResult(
            entry, Outcome.FAILED, f"target file not found in the source ({', '.join(entry.targets)})", files
        )
    if m := _MALFORMED.search(out):
        return PatchResult(
            entry, Outcome.FAILED, f"malformed patch file {entry.path.name}: {m.group(0)}", files
        )
    if hunks := _failed_hunks(out):
        detail = "; ".join(f"at hunk {n} of {f} (line {at})" for f, n, at in hunks)
        rejected = tuple(hunk_text(entry.path, f, n) for f, n, _ in hunks)
        return PatchResult(entry, Outcome.FAILED, detail, files, rejected)
    return PatchResult(
        entry, Outcome.FAILED, out.strip().splitlines()[-1] if out.strip() else "patch failed", files
    )


def _failed_hunks(out: str) -> list[tuple[str, int, int]]:
    """(file, hunk number, line) of every failed hunk in GNU patch's output."""
    found = []
    current = "?"
    for line in out.splitlines():
        if m := _FILE.match(line):
            current = m.group(1)
        elif m := _HUNK_FAIL.match(line):
            found.append((current, int(m.group(1)), int(m.group(2))))
    return found


_HUNK_HEADER = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


def hunk_text(patch: Path, target: str, number: int) -> str:
    """Hunk ``number`` (1-based, counted per file as GNU patch does) of ``target`` in ``patch``.

    The hunk is cut by its header's line counts, so content lines that look like headers
    ("--- ", "diff ") cannot end it early.
    """
    lines = patch.read_text("utf-8", errors="replace").splitlines()
    current = ""
    seen = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(("+++ ", "--- ")):
            name = line[4:].split("\t", 1)[0].strip()
            if name != "/dev/null":
                current = name.split("/", 1)[1] if "/" in name else name  # -p1
            i += 1
            continue
        m = _HUNK_HEADER.match(line)
        if not m:
            i += 1
            continue
        old = int(m.group(1) or 1)
        new = int(m.group(2) or 1)
        end = i + 1
        while end < len(lines) and (old > 0 or new > 0):
            body = lines[end]
            if body.startswith("-"):
                old -= 1
            elif body.startswith("+"):
                new -= 1
            elif not body.startswith("\\"):
                old -= 1
                new -= 1
            end += 1
        while end < len(lines) and lines[end].startswith("\\"):  # "\ No newline at end of file"
            end += 1
        if current == target:
            seen += 1
            if seen == number:
                return "\n".join(lines[i:end])
        i = end
    return f"(hunk {number} of {target} not found in {patch.name})"


def apply_series(tree: Path, series: tuple[PatchEntry, ...], keep_going: bool = False) -> list[PatchResult]:
    """Apply ``series`` in order; after the first failure the rest are reported as not reached.

    ``keep_going`` (for `update`'s report) tries the rest anyway, on the tree without the failed
    patch: patches of a series rarely depend on each other, and a maintainer wants every breakage.
    """
    results: list[PatchResult] = []
    failed = False
    for entry in series:
        if failed and not keep_going:
            results.append(PatchResult(entry, Outcome.SKIPPED, "an earlier patch of the series failed", ()))
            continue
        result = apply_one(tree, entry)
        results.append(result)
        failed = failed or result.outcome == Outcome.FAILED
    return results

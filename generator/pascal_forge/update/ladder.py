"""The carry ladder: one base-stack patch brought to a new upstream release, step by step.

1. **applied**: the patch applies as is (``patch -F0``, offsets allowed, no fuzz);
2. **3-way**: each file merged (git merge-file) onto the new file, with the base stack's pinned
   pristine file as the common ancestor (adjacent-insertion conflicts settled, merge3.py);
3. **relocated**: a file that is gone is found again (same name elsewhere, or the def/class
   that enclosed the hunks) and the change merged there;
4. **intent rule**: the patch's [[intent]] rules from series.toml, checked to reproduce the
   patch byte for byte on the base source, applied with their declared match counts;
5. **obsolete**: upstream already has the change (the patch reverse-applies, or every
   [[obsolete]] probe matches), or the code it changes is nowhere in the new tree;
6. **needs a human**: the first conflicting hunk, both sides.

Every carried result is re-applied to the new source with ``patch -F0`` before it is reported.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from pascal_forge.errors import PatchLibraryError
from pascal_forge.stack.model import PatchEntry
from pascal_forge.stack.patches import Outcome, apply_one
from pascal_forge.update.merge3 import Conflict, merge3, unified_diff
from pascal_forge.update.patchfile import FileDiff, split_patch
from pascal_forge.update.relocate import anchors, block_of, candidates, lines_anywhere
from pascal_forge.update.rules import Intents, RuleMismatchError, apply_rules, probe_obsolete


class Step(StrEnum):
    APPLIED = "applied"
    THREE_WAY = "3-way"
    RELOCATED = "relocated"
    RULE = "intent rule"
    OBSOLETE = "obsolete"
    HUMAN = "needs a human"


@dataclass(frozen=True)
class Carry:
    patch: PatchEntry
    step: Step
    detail: str
    diff: str = ""  # the carried patch ("" when obsolete or for a human)
    evidence: tuple[str, ...] = ()
    hunk: str = ""  # for a human: the conflicting hunk, both sides
    targets: tuple[str, ...] = ()  # files of the carried patch (a relocated file has its new path)

    @property
    def carried(self) -> bool:
        return self.step not in (Step.OBSOLETE, Step.HUMAN)

    @property
    def needed(self) -> bool:
        return self.step != Step.OBSOLETE


def _read(tree: Path, path: str) -> str | None:
    file = tree / path
    return file.read_text("utf-8") if file.is_file() else None


def _apply_in_copy(entry: PatchEntry, files: dict[str, str]) -> tuple[Outcome, dict[str, str], str]:
    """Apply ``entry`` to a scratch tree of ``files``; (outcome, files after, detail)."""
    with tempfile.TemporaryDirectory(prefix="pf-carry-") as tmp:
        root = Path(tmp)
        for path, text in files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text, "utf-8")
        result = apply_one(root, entry)
        after = {
            p.relative_to(root).as_posix(): p.read_text("utf-8")
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }
    return result.outcome, after, result.detail


def patched_base(entry: PatchEntry, base: dict[str, str]) -> dict[str, str]:
    outcome, after, detail = _apply_in_copy(entry, base)
    if outcome not in (Outcome.CLEAN, Outcome.OFFSET):
        raise PatchLibraryError(
            f"{entry.path} does not apply to the base stack's own source ({detail or outcome.value})",
            "the base stack's series must apply to its pinned source: run `pascal-forge check` on it",
        )
    return after


def carry_patch(
    entry: PatchEntry, base: dict[str, str], new_tree: Path, intents: Intents, version: str, base_version: str
) -> Carry:
    """Carry ``entry`` (made for ``base``, the pristine base files it touches) onto ``new_tree``."""
    diffs = split_patch(entry.path.read_text("utf-8"))
    ours = patched_base(entry, base)
    present = {d.old: t for d in diffs if d.old and (t := _read(new_tree, d.old)) is not None}
    outcome, _, detail = _apply_in_copy(entry, present)
    if outcome in (Outcome.CLEAN, Outcome.OFFSET):
        return Carry(entry, Step.APPLIED, detail, entry.path.read_text("utf-8"), targets=entry.targets)
    if outcome == Outcome.ALREADY:
        return Carry(entry, Step.OBSOLETE, "already upstream", evidence=("the patch reverse-applies",))
    merged, conflicts, moved, notes = _three_way(diffs, base, ours, new_tree)
    if not conflicts and merged:
        step = Step.RELOCATED if moved else Step.THREE_WAY
        return _checked(entry, step, "; ".join(notes), merged, new_tree)
    if not conflicts:
        return Carry(entry, Step.OBSOLETE, "already upstream", evidence=("the 3-way merge changes nothing",))
    mismatch = ""
    if intents.rules:
        try:
            return _by_rules(entry, intents, base, ours, merged, conflicts, new_tree, version, base_version)
        except RuleMismatchError as exc:
            mismatch = str(exc)
    if evidence := probe_obsolete(intents.probes, new_tree):
        return Carry(
            entry, Step.OBSOLETE, "upstream does it (series.toml [[obsolete]] probes)", evidence=evidence
        )
    path, conflict = conflicts[0]
    if conflict is None:
        gone = _gone_evidence(base, new_tree, path)
        if gone:
            return Carry(entry, Step.OBSOLETE, "the code it changes is gone", evidence=gone)
        hunk = f"{path}: file not in the new source, and no file there holds its code"
    else:
        hunk = conflict.render(path)
    detail = f"{len(conflicts)} conflict(s); first in {path}" + (
        f"; intent rule: {mismatch}" if mismatch else ""
    )
    return Carry(entry, Step.HUMAN, detail, hunk=hunk)


_Merged = dict[str, tuple[str, str | None, str]]  # new path -> (new text, old text or None, old path)


def _three_way(
    diffs: tuple[FileDiff, ...], base: dict[str, str], ours: dict[str, str], tree: Path
) -> tuple[_Merged, list[tuple[str, Conflict | None]], bool, list[str]]:
    merged: _Merged = {}
    conflicts: list[tuple[str, Conflict | None]] = []
    moved = False
    notes: list[str] = []
    for d in diffs:
        if d.old is None or d.new is None:
            path = d.path
            now = _read(tree, path)
            if d.old is None and now is None:
                merged[path] = (ours[path], None, path)
            elif d.old is None and now != ours[path]:
                conflicts.append(
                    (path, Conflict(tuple((now or "").splitlines()), (), tuple(ours[path].splitlines())))
                )
            continue
        now = _read(tree, d.old)
        if now is not None:
            m = merge3(now, base[d.old], ours[d.old])
            if m.adjacent:
                notes.append(f"{d.old}: {m.adjacent} adjacent insertion(s) settled")
            if m.clean:
                merged[d.old] = (m.text, now, d.old)
            else:
                conflicts.extend((d.old, c) for c in m.conflicts)
            continue
        found = _relocated(d, base, ours, tree)
        if isinstance(found, tuple):
            where, text, now = found
            merged[where] = (text, now, where)
            moved = True
            notes.append(f"{d.old} -> {where}")
        else:
            conflicts.append((d.old, found))
    return {k: v for k, v in merged.items() if v[0] != v[1]}, conflicts, moved, notes


def _relocated(
    d: FileDiff, base: dict[str, str], ours: dict[str, str], tree: Path
) -> tuple[str, str, str] | Conflict | None:
    assert d.old is not None
    names = anchors(base[d.old], d.old_starts) if d.old.endswith(".py") else ()
    for where in candidates(tree, d.old, names):
        now = (tree / where).read_text("utf-8")
        if Path(where).name == Path(d.old).name:
            m = merge3(now, base[d.old], ours[d.old])
            return (where, m.text, now) if m.clean else m.conflicts[0]
        text = now
        for name in names:
            blocks = [block_of(t, name) for t in (text, base[d.old], ours[d.old])]
            if None in blocks:
                return None
            new_b, base_b, ours_b = blocks
            assert new_b is not None and base_b is not None and ours_b is not None
            m = merge3(new_b.cut(text), base_b.cut(base[d.old]), ours_b.cut(ours[d.old]))
            if not m.clean:
                return m.conflicts[0]
            text = new_b.splice(text, m.text)
        return where, text, now
    return None


def _by_rules(
    entry: PatchEntry,
    intents: Intents,
    base: dict[str, str],
    ours: dict[str, str],
    merged: _Merged,
    conflicts: list[tuple[str, Conflict | None]],
    tree: Path,
    version: str,
    base_version: str,
) -> Carry:
    on_base = apply_rules(intents.rules, base, base_version)
    wrong = sorted(p for p, t in on_base.items() if t != ours.get(p))
    if wrong:
        raise RuleMismatchError(
            f"{', '.join(wrong)}: the rules do not reproduce {entry.file} on the base source"
        )
    ruled = {r.file for r in intents.rules}
    left = sorted({p for p, _ in conflicts} - ruled)
    if left:
        raise RuleMismatchError(f"{', '.join(left)}: conflicts, and no intent rule covers it")
    now = {p: t for p in ruled if (t := _read(tree, p)) is not None}
    out = dict(merged)
    for path, text in apply_rules(intents.rules, now, version).items():
        out[path] = (text, now[path], path)
    return _checked(entry, Step.RULE, f"{len(intents.rules)} rule(s), counts as declared", out, tree)


def _checked(entry: PatchEntry, step: Step, detail: str, merged: _Merged, tree: Path) -> Carry:
    diff = "".join(unified_diff(path, old, text) for path, (text, old, _) in sorted(merged.items()))
    with tempfile.TemporaryDirectory(prefix="pf-carried-") as tmp:
        probe = replace(entry, path=Path(tmp) / entry.path.name)
        probe.path.write_text(diff, "utf-8")
        files = {p: t for p in merged if (t := _read(tree, p)) is not None}
        outcome, after, why = _apply_in_copy(probe, files)
    if outcome not in (Outcome.CLEAN, Outcome.OFFSET) or any(
        after.get(p) != t for p, (t, _, _) in merged.items()
    ):
        return Carry(entry, Step.HUMAN, f"the {step.value} result does not re-apply with patch -F0 ({why})")
    return Carry(entry, step, detail, diff, targets=tuple(sorted(merged)))


def _gone_evidence(base: dict[str, str], tree: Path, path: str) -> tuple[str, ...]:
    """Evidence that the file's code is nowhere in the new tree (its distinctive lines)."""
    wanted = tuple(sorted({s for line in base[path].splitlines() if len(s := line.strip()) >= 30}))[:400]
    if not wanted:
        return ()
    seen = lines_anywhere(tree, Path(path).suffix, wanted)
    if len(seen) > len(wanted) // 10:
        return ()
    return (
        f"{path} is gone and {len(wanted) - len(seen)} of its {len(wanted)} distinctive lines are in no *{Path(path).suffix} file",
    )


def base_files(entry: PatchEntry, tree: Path) -> dict[str, str]:
    """The pristine base files ``entry`` changes (read now: the cache reuses tree folders)."""
    out = {}
    for d in split_patch(entry.path.read_text("utf-8")):
        if d.old and (text := _read(tree, d.old)) is not None:
            out[d.old] = text
    return out


def copy_tree(src: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, symlinks=True)
    return dest

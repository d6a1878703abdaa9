"""Intent rules and obsolete probes declared in a series.toml, next to the patches they serve.

An intent rule says what a patch means where upstream keeps rewording the lines it touches
("add 6.0;6.1 to every CUDA 12 CUDA_SUPPORTED_ARCHS list"): a regular expression, its
replacement, and how many matches a file must have (per version range). A rule that matches
more or fewer times fails and names the file: a silently empty patch is never derived
(Nix's ``substituteInPlace --replace-fail``, not ``sed``). An obsolete probe names the upstream
code that makes a patch unnecessary; every probe of a patch must match for it to be obsolete.

    [[intent]]
    patch = "cmake-pascal-archs"
    file = "CMakeLists.txt"
    pattern = '(set\\(CUDA_SUPPORTED_ARCHS ")(7\\.0;)'
    replace = '\\g<1>6.0;6.1;\\g<2>'
    count = { "<0.9" = 1, ">=0.9" = 2 }   # or a plain integer; no count for a version = not applied

    [[obsolete]]
    patch = "auto-dtype-fp16-before-ampere"
    evidence = "upstream falls back to supported_dtypes[0]"
    files = ["vllm/config.py", "vllm/config/model.py"]
    pattern = 'def _resolve_auto_dtype\\('
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from pascal_forge.errors import PatchLibraryError

_INTENT_KEYS = {"patch", "file", "pattern", "replace", "count", "why"}
_OBSOLETE_KEYS = {"patch", "evidence", "files", "pattern"}


@dataclass(frozen=True)
class IntentRule:
    patch: str
    file: str
    pattern: re.Pattern[str]
    replace: str
    counts: tuple[tuple[str, int], ...]  # (specifier, count); "" = every version
    where: str  # "series.toml intent #N", for messages

    def expected(self, version: str) -> int | None:
        for spec, count in self.counts:
            if not spec or Version(version) in SpecifierSet(spec):
                return count
        return None


@dataclass(frozen=True)
class ObsoleteProbe:
    patch: str
    evidence: str
    files: tuple[str, ...]
    pattern: re.Pattern[str]


class RuleMismatchError(Exception):
    """A rule's match count differs from its declaration (the message names the file)."""


@dataclass(frozen=True)
class Intents:
    rules: tuple[IntentRule, ...] = ()
    probes: tuple[ObsoleteProbe, ...] = ()


def load_intents(series: Path) -> dict[str, Intents]:
    """Every [[intent]] and [[obsolete]] table of ``series``, by patch id."""
    if not series.is_file():
        return {}
    data = tomllib.loads(series.read_text("utf-8"))
    name = f"{series.parent.name}/{series.name}"  # relative: messages end up in docs/releases.md
    rules: dict[str, list[IntentRule]] = {}
    probes: dict[str, list[ObsoleteProbe]] = {}
    for n, raw in enumerate(data.get("intent", []), start=1):
        rule = _rule(raw, f"{name} intent #{n}")
        rules.setdefault(rule.patch, []).append(rule)
    for n, raw in enumerate(data.get("obsolete", []), start=1):
        probe = _probe(raw, f"{name} obsolete #{n}")
        probes.setdefault(probe.patch, []).append(probe)
    return {
        pid: Intents(tuple(rules.get(pid, ())), tuple(probes.get(pid, ())))
        for pid in sorted(set(rules) | set(probes))
    }


def _keys(raw: dict[str, Any], allowed: set[str], required: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    missing = sorted(required - set(raw))
    if unknown or missing:
        raise PatchLibraryError(
            f"{where}: unknown key(s) {unknown}, missing key(s) {missing}", f"allowed: {sorted(allowed)}"
        )


def _compile(pattern: object, where: str) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise PatchLibraryError(f"{where}: 'pattern' must be a non-empty string", "")
    try:
        return re.compile(pattern, re.MULTILINE)
    except re.error as exc:
        raise PatchLibraryError(f"{where}: bad pattern: {exc}", "fix the regular expression") from exc


def _rule(raw: dict[str, Any], where: str) -> IntentRule:
    _keys(raw, _INTENT_KEYS, {"patch", "file", "pattern", "replace", "count"}, where)
    count = raw["count"]
    pairs = (
        [("", count)] if isinstance(count, int) else list(count.items()) if isinstance(count, dict) else []
    )
    if not pairs or not all(isinstance(c, int) and c >= 1 for _, c in pairs):
        raise PatchLibraryError(
            f"{where}: 'count' must be a positive integer or a table of version range = integer",
            'e.g. count = 2 or count = { "<0.9" = 1, ">=0.9" = 2 }',
        )
    for spec, _ in pairs:
        try:
            SpecifierSet(spec)
        except InvalidSpecifier as exc:
            raise PatchLibraryError(f"{where}: bad version range {spec!r} in 'count'", "") from exc
    return IntentRule(
        str(raw["patch"]),
        str(raw["file"]),
        _compile(raw["pattern"], where),
        str(raw["replace"]),
        tuple(pairs),
        where,
    )


def _probe(raw: dict[str, Any], where: str) -> ObsoleteProbe:
    _keys(raw, _OBSOLETE_KEYS, _OBSOLETE_KEYS, where)
    files = raw["files"]
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise PatchLibraryError(f"{where}: 'files' must list where to look", "")
    return ObsoleteProbe(
        str(raw["patch"]), str(raw["evidence"]), tuple(files), _compile(raw["pattern"], where)
    )


def apply_rules(rules: tuple[IntentRule, ...], texts: dict[str, str], version: str) -> dict[str, str]:
    """The files the rules rewrite, each rule checked against its declared count for ``version``."""
    out: dict[str, str] = {}
    for rule in rules:
        expected = rule.expected(version)
        if expected is None:  # the rule declares no count for this version: it does not apply here
            continue
        if rule.file not in texts and rule.file not in out:
            raise RuleMismatchError(f"{rule.file}: file not in the source ({rule.where})")
        text = out.get(rule.file, texts[rule.file])
        found = len(rule.pattern.findall(text))
        if found != expected:
            raise RuleMismatchError(
                f"{rule.file}: pattern {rule.pattern.pattern!r} matches {found} time(s), "
                f"{expected} declared for {version} ({rule.where})"
            )
        out[rule.file] = rule.pattern.sub(rule.replace, text)
    return out


def probe_obsolete(probes: tuple[ObsoleteProbe, ...], tree: Path) -> tuple[str, ...] | None:
    """'evidence (file:line)' for every probe when all match in ``tree``; None otherwise."""
    if not probes:
        return None
    found = []
    for probe in probes:
        hit = None
        for name in probe.files:
            path = tree / name
            if path.is_file():
                text = path.read_text("utf-8", errors="replace")
                if m := probe.pattern.search(text):
                    hit = f"{probe.evidence} ({name}:{text.count(chr(10), 0, m.start()) + 1})"
                    break
        if hit is None:
            return None
        found.append(hit)
    return tuple(found)

"""Run the carry ladder over one recipe's base series, and write carried patches to the library.

The base stack's pristine source is the common ancestor of every 3-way merge; it is obtained
(sha256-checked, cached) and its target files read at once, because the cache reuses one tree
folder per source name and the new release's tree replaces it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pascal_forge.errors import SourceError
from pascal_forge.stack.model import PatchEntry, Stack
from pascal_forge.stack.sources import Obtained, obtain
from pascal_forge.update.ladder import Carry, Step, base_files, carry_patch
from pascal_forge.update.rules import Intents, load_intents

CARRIED_PROOF = "carried from "  # how a carried entry's proof starts (update/carry.py keys on it)


@dataclass(frozen=True)
class RecipeCarry:
    recipe: str
    upstream: str
    version: str  # the new release
    base_version: str
    source: str  # how the new source was verified ("" when it could not be obtained)
    carries: tuple[Carry, ...]
    unreachable: str = ""  # why the sources could not be obtained


def _tree(
    stack: Stack, recipe: str, cache: Path, local: dict[str, Path], members: tuple[str, ...]
) -> Obtained:
    reasons = []
    for src in stack.check_sources_for(recipe):
        wheel = src.url.endswith(".whl") or src.file_name.endswith(".whl")
        try:
            return obtain(src, cache, local.get(src.name), members if wheel else ())
        except SourceError as exc:
            if type(exc) is not SourceError:
                raise
            reasons.append(f"{src.name}: {exc.message}")
    raise SourceError("; ".join(reasons) or f"{recipe} has no patched source", "")


def carry_recipe(
    recipe: str,
    upstream: str,
    series: tuple[PatchEntry, ...],
    base: Stack,
    stack: Stack,
    library: Path,
    cache: Path,
    local: dict[str, Path],
) -> RecipeCarry:
    """Each patch of ``series`` (the base stack's) carried onto ``stack``'s source."""
    version, base_version = stack.version_of(upstream), base.version_of(upstream)
    intents = load_intents(library / upstream / "series.toml")
    ruled = (r.file for e in series for r in intents.get(e.id, Intents()).rules)
    members = tuple(dict.fromkeys([*(t for e in series for t in e.targets), *ruled]))
    try:
        old = _tree(base, recipe, cache, local, members)
        pristine = {e.id: base_files(e, old.tree) for e in series}
        new = _tree(stack, recipe, cache, local, members)
    except SourceError as exc:
        return RecipeCarry(recipe, upstream, version, base_version, "", (), exc.message)
    carries = tuple(
        carry_patch(e, pristine[e.id], new.tree, intents.get(e.id, Intents()), version, base_version)
        for e in series
    )
    return RecipeCarry(
        recipe, upstream, version, base_version, f"{new.source.name} ({new.verified})", carries
    )


def carried_file(c: Carry, version: str) -> str:
    """Where a carried patch lives in the library: a patch that applies as is keeps its file."""
    if c.step == Step.APPLIED:
        return c.patch.file
    return f"v{version}/{Path(c.patch.file).name}"


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def markers(upstream: str, version: str) -> tuple[str, str]:
    return f"# BEGIN carried {upstream} {version}", f"# END carried {upstream} {version}"


def series_block(rc: RecipeCarry, base_name: str) -> str:
    """The [[patch]] entries of the carried series (rendered, never dumped), between markers."""
    from pascal_forge.recipes.render import environment

    begin, end = markers(rc.upstream, rc.version)
    rows = []
    for c in rc.carries:
        proof = (
            f"{CARRIED_PROOF}{c.patch.file} ({base_name}) by `pascal-forge update`: {c.step.value}"
            + (f" ({c.detail})" if c.detail else "")
            + f"; the carried patch applies with patch -p1 -F0 to the {rc.upstream} {rc.version} source "
            f"({rc.source}). The base patch's semantic tests (its proof for {rc.base_version}) were not rerun."
        )
        rows.append(
            {
                "carry": c,
                "file": carried_file(c, rc.version),
                "targets": c.targets or c.patch.targets,
                "proof": proof,
            }
        )
    return (
        environment()
        .get_template("carried-series.toml.j2")
        .render(rc=rc, rows=rows, begin=begin, end=end, base=base_name, q=_toml)
    )


def write_carried(rc: RecipeCarry, library: Path, base_name: str) -> tuple[Path, ...]:
    """Write the carried patch files and replace (or append) the marked block in series.toml."""
    written = []
    for c in rc.carries:
        if c.carried and c.step != Step.APPLIED:
            path = library / rc.upstream / carried_file(c, rc.version)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(c.diff, "utf-8")
            tmp.replace(path)
            written.append(path)
    series = library / rc.upstream / "series.toml"
    text = series.read_text("utf-8")
    begin, end = markers(rc.upstream, rc.version)
    block = series_block(rc, base_name).rstrip("\n")
    if begin in text:
        start = text.index(begin)
        stop = text.index(end, start) + len(end)
        text = text[:start] + block + text[stop:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = series.with_name(".series.toml.tmp")
    tmp.write_text(text, "utf-8")
    tmp.replace(series)
    written.append(series)
    return tuple(written)

"""The patch library: each upstream's series.toml and its per-version folders, read into PatchEntry values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from pascal_forge.errors import PatchLibraryError
from pascal_forge.stack.fields import ID_RE, as_table, check_keys, opt_list, read_toml
from pascal_forge.stack.model import (
    RECIPES,
    PatchEntry,
    Spec,
)

_PATCH_KEYS = {"id", "file", "versions", "targets", "reason", "references", "proof"}


def load_patch_library(
    library: Path, folders: tuple[str, ...] = ("triton", "torch", "vllm")
) -> tuple[PatchEntry, ...]:
    """Every patch of ``library``; each folder (an upstream name) has a series.toml in apply order."""
    if not library.is_dir():
        raise PatchLibraryError(f"patch library {library} does not exist", "check patch_library in your spec")
    entries: list[PatchEntry] = []
    for upstream in folders:
        series = library / upstream / "series.toml"
        if not series.is_file():
            # A missing series must never mean "apply nothing" silently (pascal-pkgs-ci shipped
            # stock triton that way): recipes refuse to render without patches (see render.py).
            continue
        data = read_toml(series, PatchLibraryError, "fix the file's permissions")
        # One id may appear once per version range (a patch rebased for a newer upstream keeps
        # its id); two entries of one id that both select a version are caught per stack.
        seen: set[tuple[str, str]] = set()
        for order, item in enumerate(opt_list(data, "patch", str(series), PatchLibraryError), start=1):
            where = f"{series} patch #{order}"
            raw = as_table(item, where, PatchLibraryError)
            check_keys(raw, _PATCH_KEYS, where, error=PatchLibraryError)
            entry = _build_patch(raw, upstream, library, order, where)
            if (entry.id, entry.versions) in seen:
                raise PatchLibraryError(
                    f"{where}: duplicate patch id {entry.id!r} for versions {entry.versions!r}",
                    "an id may appear once per version range",
                )
            seen.add((entry.id, entry.versions))
            entries.append(entry)
    return tuple(entries)


def check_series_unambiguous(spec: Spec) -> None:
    """Every stack's version selects each patch id at most once."""
    for stack in spec.stacks:
        for kind in RECIPES:
            version = stack.version_of(kind.upstream)
            ids = [p.id for p in spec.patches_for(kind.upstream, version)]
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise PatchLibraryError(
                    f"{spec.patch_library / kind.upstream / 'series.toml'}: {kind.upstream} {version} "
                    f"(stack {stack.name}) is selected by more than one entry of patch id(s) {dupes}",
                    "make the version ranges of entries that share an id disjoint",
                )


def _build_patch(raw: dict[str, Any], upstream: str, library: Path, order: int, where: str) -> PatchEntry:
    def text(key: str) -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise PatchLibraryError(f"{where}: '{key}' must be a non-empty string", f'add {key} = "..."')
        return value

    pid = text("id")
    if not ID_RE.match(pid):
        raise PatchLibraryError(f"{where}: id {pid!r} must be kebab-case", 'e.g. id = "cmake-pascal-archs"')
    folder = (library / upstream).resolve()
    try:
        path = (folder / text("file")).resolve()
    except (OSError, ValueError) as exc:  # an embedded NUL byte, a symlink loop
        raise PatchLibraryError(
            f"{where} ({pid}): file {raw['file']!r} is not a usable path: {exc}", ""
        ) from exc
    if not path.is_relative_to(folder):
        raise PatchLibraryError(
            f"{where} ({pid}): file {raw['file']!r} points outside the patch library {folder}",
            "keep patch files inside the library folder of their package",
        )
    if not path.is_file():
        raise PatchLibraryError(
            f"{where} ({pid}): patch file {path} is missing", "add the file or fix 'file'"
        )
    try:
        SpecifierSet(text("versions"))
    except InvalidSpecifier as exc:
        raise PatchLibraryError(
            f"{where} ({pid}): bad versions {raw['versions']!r}", 'e.g. "==0.8.5"'
        ) from exc
    targets = raw.get("targets", [])
    refs = raw.get("references", [])
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise PatchLibraryError(f"{where} ({pid}): 'targets' must list the files the patch touches", "")
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise PatchLibraryError(f"{where} ({pid}): 'references' must be a list of strings (URLs)", "")
    return PatchEntry(
        id=pid,
        upstream=upstream,
        file=str(raw["file"]),
        path=path,
        versions=str(raw["versions"]),
        targets=tuple(targets),
        reason=" ".join(text("reason").split()),
        references=tuple(refs),
        proof=" ".join(text("proof").split()),
        order=order,
    )

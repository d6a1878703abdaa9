"""The spec: the single source of truth for stacks, pinned sources, dependencies and patches.

A spec is TOML. The built-in one (``data/default-spec.toml``) holds the default stack; a user
file given with ``--spec`` is merged on top of it (a stack of the same name replaces the built-in
one, new names add stacks). Everything downstream (recipes, docs, checks) derives from the frozen
dataclasses here.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from pascal_forge.errors import SpecError, UnknownPackageError
from pascal_forge.stack.fields import (
    as_table,
    check_keys,
    decode_utf8,
    opt_bool,
    opt_list,
    opt_str,
    parse_toml,
    str_key,
    str_list,
    table_key,
)
from pascal_forge.stack.library import check_series_unambiguous, load_patch_library
from pascal_forge.stack.model import (
    PASCAL_ARCHS,
    RECIPES,
    SCHEMA_VERSION,
    Dependency,
    RecipeRequirements,
    Source,
    Spec,
    Stack,
    recipe_kind,
)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_PY = re.compile(r"^3\.\d{1,2}$")
#: A stack name becomes a folder (recipes/<name>): no separators, no leading dot.
_STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# --------------------------------------------------------------------------------------------
# Loading and validation


def builtin_spec_path() -> Path:
    return Path(str(resources.files("pascal_forge.stack").joinpath("data/default-spec.toml")))


def builtin_spec_text() -> str:
    return builtin_spec_path().read_text("utf-8")


def builtin_patch_library() -> Path:
    return Path(str(resources.files("pascal_forge.stack").joinpath("patchlib")))


def load_spec(path: Path | None = None, text: str | None = None) -> Spec:
    """The built-in spec, with the user file at ``path`` merged on top of it.

    ``text`` stands for the file's content (`update` validates a new spec before writing it).
    """
    base = parse_toml(builtin_spec_text(), "built-in spec")
    origin = "built-in spec"
    library = builtin_patch_library()
    builtin: dict[str, Any] = {}
    for name, raw in table_key(base, "stacks", origin).items():
        # `update --spec <this file> --write` adds stacks that extend an earlier one.
        builtin[name] = _extend(
            as_table(raw, f"{origin}: stacks.{name}"), builtin, f"{origin}: stacks.{name}"
        )
    base["stacks"] = builtin
    if path is not None:
        if text is None:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise SpecError(
                    f"cannot read spec file {path}: {exc.strerror or exc}", "check the --spec path"
                ) from exc
            text = decode_utf8(data, str(path))
        user = parse_toml(text, str(path))
        origin = str(path)
        check_keys(user, {"schema", "default_stack", "stacks", "patch_library"}, origin)
        if "patch_library" in user:
            library = _library_path(path, str_key(user, "patch_library", origin), origin)
        stacks = dict(table_key(base, "stacks", origin))
        for name, raw in table_key(user, "stacks", origin).items():
            stacks[name] = _extend(
                as_table(raw, f"{origin}: stacks.{name}"), stacks, f"{origin}: stacks.{name}"
            )
        base = {**base, **user, "stacks": stacks}
    return _build_spec(base, origin, library)


def _extend(raw: dict[str, Any], known: dict[str, Any], where: str) -> dict[str, Any]:
    """`extends = "NAME"`: start from stack NAME and override only the keys given."""
    if "extends" not in raw:
        return raw
    parent = raw["extends"]
    if not isinstance(parent, str):
        raise SpecError(
            f"{where}: 'extends' must name one stack (a string), got {type(parent).__name__}",
            f"e.g. extends = {next(iter(sorted(known)), 'vllm-0.8.5')!r}",
        )
    if parent not in known:
        raise SpecError(
            f"{where}: extends unknown stack {parent!r}", f"use one of: {', '.join(sorted(known))}"
        )
    merged = {**known[parent], **{k: v for k, v in raw.items() if k != "extends"}}
    if "requirements" in raw:
        merged["requirements"] = {
            **table_key(known[parent], "requirements", f"stacks.{parent}"),
            **table_key(raw, "requirements", where),
        }
    if "python" in raw:
        # Narrowing the Python list drops the inherited per-Python entries of the other versions.
        keep = set(str_list(raw, "python", where)) | {""}

        def kept(items: list[Any]) -> list[Any]:
            # An entry whose `python` is not a string stays, so that the validator names it.
            return [i for i in items if not isinstance(i, dict) or _python_of(i) in keep]

        if "sources" not in raw:
            merged["sources"] = kept(opt_list(merged, "sources", where))
        merged["requirements"] = {
            recipe: {
                section: kept(opt_list(reqs, section, f"{where}.requirements.{recipe}"))
                for section in as_table(reqs, f"{where}.requirements.{recipe}")
            }
            for recipe, reqs in table_key(merged, "requirements", where).items()
        }
    return merged


def _python_of(item: dict[str, Any]) -> str:
    """The entry's `python`; one that is not a string is treated as "every Python" until validated."""
    value = item.get("python", "")
    return value if isinstance(value, str) else ""


def _library_path(spec_path: Path, value: str, origin: str) -> Path:
    try:
        return (spec_path.parent / value).resolve()
    except (OSError, ValueError) as exc:  # e.g. an embedded NUL byte, a symlink loop
        raise SpecError(
            f"{origin}: patch_library {value!r} is not a usable path: {exc}", "give a folder path"
        ) from exc


def _build_spec(data: dict[str, Any], origin: str, library: Path) -> Spec:
    check_keys(data, {"schema", "default_stack", "stacks", "patch_library"}, origin)
    schema = data.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise SpecError(f"{origin}: schema {schema!r} is not supported", f"set schema = {SCHEMA_VERSION}")
    stacks = tuple(
        _build_stack(name, as_table(raw, f"{origin}: stacks.{name}"), f"{origin}: stacks.{name}")
        for name, raw in sorted(table_key(data, "stacks", origin).items())
    )
    if not stacks:
        raise SpecError(f"{origin}: no stacks defined", "add a [stacks.NAME] table")
    default = str_key(data, "default_stack", origin)
    spec = Spec(stacks, default, load_patch_library(library), library, origin)
    spec.stack(default)  # validates the name
    check_series_unambiguous(spec)
    return spec


_STACK_KEYS = {
    "vllm",
    "torch",
    "triton",
    "cuda",
    "python",
    "archs",
    "build_number",
    "sources",
    "requirements",
    "draft",
}
_SOURCE_KEYS = {
    "recipe",
    "name",
    "pinned_by",
    "url",
    "sha256",
    "git",
    "rev",
    "file_name",
    "target",
    "python",
    "patched",
    "check_only",
}


def _build_stack(name: str, raw: dict[str, Any], where: str) -> Stack:
    if not _STACK_NAME.match(name):
        raise SpecError(
            f"{where}: stack name {name!r} cannot be a folder name",
            'use letters, digits, ".", "_" and "-" (e.g. [stacks."vllm-0.8.5-p100"])',
        )
    check_keys(raw, _STACK_KEYS, where)
    versions = {k: str_key(raw, k, where) for k in ("vllm", "torch", "triton", "cuda")}
    for key, value in versions.items():
        try:
            Version(value)
        except InvalidVersion as exc:
            raise SpecError(f"{where}.{key}: {value!r} is not a version", "use e.g. 0.8.5") from exc
    if Version(versions["cuda"]) >= Version("13") or Version(versions["cuda"]) < Version("12"):
        raise SpecError(
            f"{where}.cuda: CUDA {versions['cuda']} cannot be used: CUDA 13 dropped sm_6x and this channel "
            "pins CUDA 12.x",
            'use cuda = "12.6" (Pascal is supported up to CUDA 12.9)',
        )
    pythons = tuple(str_list(raw, "python", where))
    for py in pythons:
        if not _PY.match(py):
            raise SpecError(f"{where}.python: {py!r} is not a Python minor version", 'use e.g. "3.12"')
    archs = tuple(str_list(raw, "archs", where))
    for arch in archs:
        if arch not in PASCAL_ARCHS:
            raise SpecError(
                f"{where}.archs: {arch!r} is not a Pascal compute capability; this channel is Pascal-only",
                f"use a subset of {list(PASCAL_ARCHS)}",
            )
    build_number = raw.get("build_number", 0)
    # bool is an int in Python: `build_number = true` would otherwise be build 1.
    if isinstance(build_number, bool) or not isinstance(build_number, int) or build_number < 0:
        raise SpecError(
            f"{where}.build_number must be a non-negative integer, got {build_number!r}",
            "e.g. build_number = 0",
        )
    sources = tuple(
        _build_source(as_table(s, f"{where}.sources[{i}]"), f"{where}.sources[{i}]", pythons)
        for i, s in enumerate(opt_list(raw, "sources", where))
    )
    names = [(s.recipe, s.name, s.python) for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpecError(f"{where}: duplicate sources {dupes}", "give each source a unique name per recipe")
    draft = raw.get("draft", "")
    if not isinstance(draft, str):
        raise SpecError(f"{where}.draft must be a string saying why the stack is a draft", 'draft = "why"')
    for kind in RECIPES:
        if not draft and not any(s.recipe == kind.recipe and s.patched for s in sources):
            raise SpecError(
                f"{where}: recipe {kind.recipe} has no source marked patched = true",
                "mark the upstream source its patches apply to",
            )
    requirements: dict[str, RecipeRequirements] = {}
    for recipe, reqs in sorted(table_key(raw, "requirements", where).items()):
        _recipe(recipe, f"{where}.requirements")
        requirements[recipe] = _build_requirements(
            as_table(reqs, f"{where}.requirements.{recipe}"), f"{where}.requirements.{recipe}", pythons
        )
    return Stack(
        name=name,
        vllm=versions["vllm"],
        torch=versions["torch"],
        triton=versions["triton"],
        cuda=versions["cuda"],
        python=pythons,
        archs=archs,
        build_number=build_number,
        sources=sources,
        requirements=requirements,
        draft=" ".join(draft.split()),
    )


def _build_source(raw: dict[str, Any], where: str, pythons: tuple[str, ...]) -> Source:
    check_keys(raw, _SOURCE_KEYS, where)
    recipe = str_key(raw, "recipe", where)
    _recipe(recipe, where)
    src = Source(
        recipe=recipe,
        name=str_key(raw, "name", where),
        pinned_by=str_key(raw, "pinned_by", where),
        url=opt_str(raw, "url", where),
        sha256=opt_str(raw, "sha256", where),
        git=opt_str(raw, "git", where),
        rev=opt_str(raw, "rev", where),
        file_name=opt_str(raw, "file_name", where),
        target=opt_str(raw, "target", where),
        python=opt_str(raw, "python", where),
        patched=opt_bool(raw, "patched", where),
        check_only=opt_bool(raw, "check_only", where),
    )
    if bool(src.url) == bool(src.git):
        raise SpecError(f"{where} ({src.name}): give exactly one of url or git", "url + sha256, or git + rev")
    if src.url and not _SHA256.match(src.sha256):
        raise SpecError(
            f"{where} ({src.name}): sha256 must be 64 lowercase hex digits, got {src.sha256!r}",
            "pin the file by sha256 (PyPI's Simple API lists it; `sha256sum FILE` otherwise)",
        )
    if src.git and not _COMMIT.match(src.rev):
        raise SpecError(
            f"{where} ({src.name}): rev must be a full 40-hex commit, got {src.rev!r}",
            "tags and branches move; pin the commit they point to",
        )
    if src.python and src.python not in pythons:
        raise SpecError(f"{where} ({src.name}): python {src.python} is not in the stack's python list", "")
    if src.target.startswith("/") or ".." in Path(src.target).parts:
        raise SpecError(f"{where} ({src.name}): target must be a relative path inside the work dir", "")
    return src


def _recipe(name: str, where: str) -> None:
    try:
        recipe_kind(name)
    except UnknownPackageError as exc:
        raise SpecError(f"{where}: {exc.message}", exc.hint) from exc


def _build_requirements(raw: dict[str, Any], where: str, pythons: tuple[str, ...]) -> RecipeRequirements:
    sections = ("build", "host", "run", "run_constraints")
    check_keys(raw, set(sections), where)
    out: dict[str, tuple[Dependency, ...]] = {}
    for section in sections:
        deps = []
        for i, item in enumerate(opt_list(raw, section, where)):
            if isinstance(item, str):
                deps.append(Dependency(item))
                continue
            entry = as_table(item, f"{where}.{section}[{i}]")
            check_keys(entry, {"spec", "python", "note"}, f"{where}.{section}[{i}]")
            at = f"{where}.{section}[{i}]"
            dep = Dependency(
                str_key(entry, "spec", at), opt_str(entry, "python", at), opt_str(entry, "note", at)
            )
            if dep.python and dep.python not in pythons:
                raise SpecError(f"{where}.{section}[{i}]: python {dep.python} not in the stack", "")
            deps.append(dep)
        for i, dep in enumerate(deps):
            _check_match_spec(dep.spec, f"{where}.{section}[{i}]")
        out[section] = tuple(deps)
    return RecipeRequirements(**out)


def _check_match_spec(spec: str, where: str) -> None:
    """Reject what rattler-build would reject (e.g. "pkg 1.2.3" without an operator)."""
    kind, _, arg = spec.partition(":")
    if kind in {"compiler", "stdlib"} and arg.isidentifier():
        return
    import rattler  # lazy: keeps `import pascal_forge.stack.spec` light (verify-cuda runs on bare hosts)

    try:
        rattler.MatchSpec(spec, strict=True)
    except Exception as exc:  # rattler raises its own InvalidMatchSpecError
        raise SpecError(
            f"{where}: {spec!r} is not a valid conda match spec: {exc}", 'e.g. "pkg ==1.2.3"'
        ) from exc


# --------------------------------------------------------------------------------------------
# The patch library: <library>/<upstream>/series.toml lists patches in apply order.


# --------------------------------------------------------------------------------------------
# Small typed accessors that turn TOML shape errors into SpecErrors naming the key.

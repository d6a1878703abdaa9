"""The spec: the single source of truth for stacks, pinned sources, dependencies and patches.

A spec is TOML. The built-in one (``data/default-spec.toml``) holds the default stack; a user
file given with ``--spec`` is merged on top of it (a stack of the same name replaces the built-in
one, new names add stacks). Everything downstream (recipes, docs, checks) derives from the frozen
dataclasses here.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from pascal_forge.errors import PatchLibraryError, SpecError, UnknownPackageError, UnknownVersionError

SCHEMA_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_PY = re.compile(r"^3\.\d{1,2}$")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
#: Compute capabilities the channel is for. Anything else is refused: the channel stays Pascal-only.
PASCAL_ARCHS = ("6.0", "6.1")


@dataclass(frozen=True)
class RecipeKind:
    """A recipe pascal-forge knows how to generate, and the upstream project it patches."""

    recipe: str  # folder name under recipes/
    package: str  # conda package name
    upstream: str  # key in the patch library and in Stack versions


RECIPES: tuple[RecipeKind, ...] = (
    RecipeKind("triton-pascal", "triton", "triton"),
    RecipeKind("pytorch-pascal", "pytorch", "torch"),
    RecipeKind("vllm-pascal", "vllm-pascal", "vllm"),
)


def recipe_kind(name: str) -> RecipeKind:
    """Find a recipe by folder name, conda name or upstream name."""
    for kind in RECIPES:
        if name in (kind.recipe, kind.package, kind.upstream):
            return kind
    known = ", ".join(k.recipe for k in RECIPES)
    raise UnknownPackageError(f"unknown package {name!r}", f"use one of: {known}")


@dataclass(frozen=True)
class Source:
    """One pinned source of a recipe: a URL with sha256, or a git URL at a full commit."""

    recipe: str
    name: str
    pinned_by: str  # how the pin was obtained, with a citation
    url: str = ""
    sha256: str = ""
    git: str = ""
    rev: str = ""
    file_name: str = ""  # keep the download under this name (e.g. a .conda we unpack ourselves)
    target: str = ""  # sub-directory of the work dir; "" = the root
    python: str = ""  # only for this Python variant ("" = every variant)
    patched: bool = False  # the recipe's patch series applies to this source
    # Not part of the recipe: a reachable, faithful copy of the patched files of the same release,
    # used by `pascal-forge check` when the recipe's own source is out of reach (e.g. conda-forge).
    check_only: bool = False

    @property
    def is_git(self) -> bool:
        return bool(self.git)


@dataclass(frozen=True)
class Dependency:
    """A conda match spec, optionally only for one Python variant."""

    spec: str
    python: str = ""
    note: str = ""


@dataclass(frozen=True)
class RecipeRequirements:
    build: tuple[Dependency, ...] = ()
    host: tuple[Dependency, ...] = ()
    run: tuple[Dependency, ...] = ()
    run_constraints: tuple[Dependency, ...] = ()


@dataclass(frozen=True)
class Stack:
    """A consistent set of upstream versions and the build matrix for them."""

    name: str
    vllm: str
    torch: str
    triton: str
    cuda: str
    python: tuple[str, ...]
    archs: tuple[str, ...]
    build_number: int
    sources: tuple[Source, ...]
    requirements: dict[str, RecipeRequirements] = field(hash=False, compare=True)
    # Non-empty: why this stack is incomplete (written by `update --allow-failing`). A draft loads,
    # so `check` and `update` can work on it, but it never renders into recipes.
    draft: str = ""

    def version_of(self, upstream: str) -> str:
        return {"vllm": self.vllm, "torch": self.torch, "triton": self.triton}[upstream]

    def sources_for(self, recipe: str) -> tuple[Source, ...]:
        """The sources a recipe downloads (check-only copies excluded)."""
        return tuple(s for s in self.sources if s.recipe == recipe and not s.check_only)

    def patched_source(self, recipe: str) -> Source:
        """The one source a recipe's patch series applies to (vllm's sdist, triton's repository)."""
        (source,) = [s for s in self.sources_for(recipe) if s.patched]
        return source

    def check_sources_for(self, recipe: str) -> tuple[Source, ...]:
        """Sources the patch series can be proven on: the patched ones, then check-only copies."""
        mine = [s for s in self.sources if s.recipe == recipe]
        return tuple([s for s in mine if s.patched and not s.check_only] + [s for s in mine if s.check_only])

    @property
    def cuda_short(self) -> str:
        return self.cuda.replace(".", "")


@dataclass(frozen=True)
class PatchEntry:
    """One patch of the library, with the metadata that explains and scopes it."""

    id: str
    upstream: str  # "vllm" | "torch" | "triton"
    file: str  # relative to the upstream's folder in the library
    path: Path  # resolved absolute path
    versions: str  # PEP 440 specifier of upstream versions
    targets: tuple[str, ...]
    reason: str
    references: tuple[str, ...]
    proof: str
    order: int

    def applies_to(self, version: str) -> bool:
        return Version(version) in SpecifierSet(self.versions)


@dataclass(frozen=True)
class Spec:
    stacks: tuple[Stack, ...]
    default_stack: str
    patches: tuple[PatchEntry, ...]
    patch_library: Path
    origin: str  # what the spec was read from, for messages

    def stack(self, name: str | None = None) -> Stack:
        wanted = name or self.default_stack
        for stack in self.stacks:
            if stack.name == wanted:
                return stack
        known = ", ".join(s.name for s in self.stacks)
        raise SpecError(f"{self.origin}: no stack named {wanted!r}", f"use one of: {known}")

    def stack_for(self, upstream: str, version: str) -> Stack:
        """The stack that pins ``upstream`` (vllm/torch/triton) at ``version`` (complete stacks first)."""
        for stack in sorted(self.stacks, key=lambda s: bool(s.draft)):
            if stack.version_of(upstream) == version:
                return stack
        have = ", ".join(sorted({s.version_of(upstream) for s in self.stacks}))
        raise UnknownVersionError(
            f"{upstream} {version} is not in any stack of {self.origin} (have: {have})",
            f"add a stack for it to a spec file, or run `pascal-forge update --{upstream} {version}`",
        )

    def patches_for(self, upstream: str, version: str) -> tuple[PatchEntry, ...]:
        return tuple(p for p in self.patches if p.upstream == upstream and p.applies_to(version))


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
    base = _parse_toml(builtin_spec_text(), "built-in spec")
    origin = "built-in spec"
    library = builtin_patch_library()
    builtin: dict[str, Any] = {}
    for name, raw in _table(base, "stacks", origin).items():
        # `update --spec <this file> --write` adds stacks that extend an earlier one.
        builtin[name] = _extend(
            _as_table(raw, f"{origin}: stacks.{name}"), builtin, f"{origin}: stacks.{name}"
        )
    base["stacks"] = builtin
    if path is not None:
        if text is None:
            try:
                text = path.read_text("utf-8")
            except OSError as exc:
                raise SpecError(
                    f"cannot read spec file {path}: {exc.strerror}", "check the --spec path"
                ) from exc
        user = _parse_toml(text, str(path))
        origin = str(path)
        _check_keys(user, {"schema", "default_stack", "stacks", "patch_library"}, origin)
        if "patch_library" in user:
            library = (path.parent / _str(user, "patch_library", origin)).resolve()
        stacks = dict(_table(base, "stacks", origin))
        for name, raw in _table(user, "stacks", origin).items():
            stacks[name] = _extend(
                _as_table(raw, f"{origin}: stacks.{name}"), stacks, f"{origin}: stacks.{name}"
            )
        base = {**base, **user, "stacks": stacks}
    return _build_spec(base, origin, library)


def _extend(raw: dict[str, Any], known: dict[str, Any], where: str) -> dict[str, Any]:
    """`extends = "NAME"`: start from stack NAME and override only the keys given."""
    if "extends" not in raw:
        return raw
    parent = raw["extends"]
    if parent not in known:
        raise SpecError(
            f"{where}: extends unknown stack {parent!r}", f"use one of: {', '.join(sorted(known))}"
        )
    merged = {**known[parent], **{k: v for k, v in raw.items() if k != "extends"}}
    if "requirements" in raw:
        merged["requirements"] = {**known[parent].get("requirements", {}), **raw["requirements"]}
    if "python" in raw:
        # Narrowing the Python list drops the inherited per-Python entries of the other versions.
        keep = set(raw["python"]) | {""}

        def kept(items: list[Any]) -> list[Any]:
            return [i for i in items if not isinstance(i, dict) or i.get("python", "") in keep]

        if "sources" not in raw:
            merged["sources"] = kept(merged.get("sources", []))
        merged["requirements"] = {
            recipe: {section: kept(deps) for section, deps in reqs.items()}
            for recipe, reqs in merged.get("requirements", {}).items()
        }
    return merged


def _parse_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{origin}: not valid TOML: {exc}", "fix the syntax at the line named above") from exc


def _build_spec(data: dict[str, Any], origin: str, library: Path) -> Spec:
    _check_keys(data, {"schema", "default_stack", "stacks", "patch_library"}, origin)
    schema = data.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise SpecError(f"{origin}: schema {schema!r} is not supported", f"set schema = {SCHEMA_VERSION}")
    stacks = tuple(
        _build_stack(name, _as_table(raw, f"{origin}: stacks.{name}"), f"{origin}: stacks.{name}")
        for name, raw in sorted(_table(data, "stacks", origin).items())
    )
    if not stacks:
        raise SpecError(f"{origin}: no stacks defined", "add a [stacks.NAME] table")
    default = _str(data, "default_stack", origin)
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
    _check_keys(raw, _STACK_KEYS, where)
    versions = {k: _str(raw, k, where) for k in ("vllm", "torch", "triton", "cuda")}
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
    pythons = tuple(_str_list(raw, "python", where))
    for py in pythons:
        if not _PY.match(py):
            raise SpecError(f"{where}.python: {py!r} is not a Python minor version", 'use e.g. "3.12"')
    archs = tuple(_str_list(raw, "archs", where))
    for arch in archs:
        if arch not in PASCAL_ARCHS:
            raise SpecError(
                f"{where}.archs: {arch!r} is not a Pascal compute capability; this channel is Pascal-only",
                f"use a subset of {list(PASCAL_ARCHS)}",
            )
    build_number = raw.get("build_number", 0)
    if not isinstance(build_number, int) or build_number < 0:
        raise SpecError(f"{where}.build_number must be a non-negative integer", "e.g. build_number = 0")
    sources = tuple(
        _build_source(_as_table(s, f"{where}.sources[{i}]"), f"{where}.sources[{i}]", pythons)
        for i, s in enumerate(raw.get("sources", []))
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
    for recipe, reqs in sorted(_table(raw, "requirements", where).items()):
        recipe_kind(recipe)
        requirements[recipe] = _build_requirements(
            _as_table(reqs, f"{where}.requirements.{recipe}"), f"{where}.requirements.{recipe}", pythons
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
    _check_keys(raw, _SOURCE_KEYS, where)
    recipe = _str(raw, "recipe", where)
    recipe_kind(recipe)
    src = Source(
        recipe=recipe,
        name=_str(raw, "name", where),
        pinned_by=_str(raw, "pinned_by", where),
        url=raw.get("url", ""),
        sha256=raw.get("sha256", ""),
        git=raw.get("git", ""),
        rev=raw.get("rev", ""),
        file_name=raw.get("file_name", ""),
        target=raw.get("target", ""),
        python=raw.get("python", ""),
        patched=bool(raw.get("patched", False)),
        check_only=bool(raw.get("check_only", False)),
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


def _build_requirements(raw: dict[str, Any], where: str, pythons: tuple[str, ...]) -> RecipeRequirements:
    sections = ("build", "host", "run", "run_constraints")
    _check_keys(raw, set(sections), where)
    out: dict[str, tuple[Dependency, ...]] = {}
    for section in sections:
        deps = []
        for i, item in enumerate(raw.get(section, [])):
            if isinstance(item, str):
                deps.append(Dependency(item))
                continue
            entry = _as_table(item, f"{where}.{section}[{i}]")
            _check_keys(entry, {"spec", "python", "note"}, f"{where}.{section}[{i}]")
            dep = Dependency(_str(entry, "spec", where), entry.get("python", ""), entry.get("note", ""))
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
        try:
            data = tomllib.loads(series.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise PatchLibraryError(f"{series}: not valid TOML: {exc}", "fix the syntax") from exc
        # One id may appear once per version range (a patch rebased for a newer upstream keeps
        # its id); two entries of one id that both select a version are caught per stack.
        seen: set[tuple[str, str]] = set()
        for order, raw in enumerate(data.get("patch", []), start=1):
            where = f"{series} patch #{order}"
            _check_keys(raw, _PATCH_KEYS, where, error=PatchLibraryError)
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
    if not _ID.match(pid):
        raise PatchLibraryError(f"{where}: id {pid!r} must be kebab-case", 'e.g. id = "cmake-pascal-archs"')
    folder = (library / upstream).resolve()
    path = (folder / text("file")).resolve()
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
    if not targets or not all(isinstance(t, str) for t in targets):
        raise PatchLibraryError(f"{where} ({pid}): 'targets' must list the files the patch touches", "")
    return PatchEntry(
        id=pid,
        upstream=upstream,
        file=str(raw["file"]),
        path=path,
        versions=str(raw["versions"]),
        targets=tuple(targets),
        reason=" ".join(text("reason").split()),
        references=tuple(str(r) for r in refs),
        proof=" ".join(text("proof").split()),
        order=order,
    )


# --------------------------------------------------------------------------------------------
# Small typed accessors that turn TOML shape errors into SpecErrors naming the key.


def _check_keys(
    raw: dict[str, Any], allowed: set[str], where: str, error: type[SpecError | PatchLibraryError] = SpecError
) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise error(f"{where}: unknown key(s) {unknown}", f"allowed keys: {sorted(allowed)}")


def _as_table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"{where} must be a table", "")
    return value


def _table(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    return _as_table(raw.get(key, {}), f"{where}: {key}")


def _str(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}: '{key}' must be a non-empty string", f'set {key} = "..."')
    return value


def _str_list(raw: dict[str, Any], key: str, where: str) -> list[str]:
    value = raw.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where}: '{key}' must be a non-empty list of strings", f'set {key} = ["..."]')
    return value

"""The spec's typed values: stacks, sources, requirements, patch entries (frozen, built once by the loaders)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from pascal_forge.errors import SpecError, UnknownPackageError, UnknownVersionError

SCHEMA_VERSION = 1


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

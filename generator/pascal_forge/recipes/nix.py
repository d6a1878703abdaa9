"""Render a nixpkgs overlay from the same spec and patch files as the conda recipes.

The tree (``nix/`` by default) holds ``overlay.nix`` (the patch series on nixpkgs' triton, torch
and vllm), ``pins.nix`` (every source the overlay builds from, pinned as the spec pins it),
``config.nix`` (the nixpkgs config: CUDA on, the stack's Pascal capabilities), ``flake.nix``
(exposes the overlay and the packages), ``README.md`` and ``patches/<recipe>/``. As for conda,
the text comes from templates only (``templates/nix/``), so the same spec gives the same bytes.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from pascal_forge.errors import NixUnsupportedError, RenderError
from pascal_forge.recipes.render import VLLM_SOURCE_ENV, RecipePlan, environment, plan_recipes
from pascal_forge.recipes.tree import RenderedFile
from pascal_forge.stack.model import Source, Spec, Stack

#: The nixpkgs branch the flake builds against, per torch version. The overlay patches nixpkgs'
#: own torch and triton builds, so their versions must be the stack's; overlay.nix checks that
#: at evaluation time and stops with a message otherwise. nixos-25.05 branched off while
#: nixpkgs' torch 2.6.0 -> 2.7.0 update (NixOS/nixpkgs#401807) was still in review; it was not
#: evaluated here (no nixpkgs checkout or binary cache on our machines).
NIXPKGS_FOR_TORCH = {"2.6.0": "github:NixOS/nixpkgs/nixos-25.05"}
#: The only platform the CUDA builds target.
SYSTEM = "x86_64-linux"

_GITHUB = re.compile(r"^https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$")
#: Characters a Nix path literal may hold without quoting (patch files become ./patches/... paths).
_PATH_SAFE = re.compile(r"^[A-Za-z0-9._+-]+$")
#: Sources of the triton recipe that are not its patched tree, and the nixpkgs attribute they feed.
TRITON_AUX = {"llvm-project": "triton-llvm"}


@dataclass(frozen=True)
class NixSource:
    """One spec source as the overlay fetches it."""

    key: str  # "<recipe>/<source name>": the attribute in pins.nix and in pascalForgeGitHashes
    source: Source
    sri: str = ""  # url sources: the spec's sha256 as Nix's SRI hash
    owner: str = ""  # GitHub git sources (fetchFromGitHub); empty: plain fetchgit
    repo: str = ""


@dataclass(frozen=True)
class NixRecipe:
    """What the overlay does with one recipe: its patches, and where each source goes."""

    plan: RecipePlan
    patch_paths: tuple[str, ...]  # relative to the nix/ root, in series order
    src: NixSource | None  # replaces the nixpkgs package's src (None: keep nixpkgs' own)
    aux: tuple[tuple[NixSource, str], ...]  # (source, env var or nixpkgs attribute it feeds)
    unused: tuple[Source, ...]  # spec sources the Nix build has no use for (conda artefacts)


def sri_sha256(hexdigest: str) -> str:
    """Nix's SRI form of a sha256 hex digest: ``sha256-`` + base64 of the 32 bytes."""
    raw = bytes.fromhex(hexdigest)
    if len(raw) != 32:  # sha256 digest size
        raise ValueError(f"not a sha256 digest: {hexdigest!r}")
    return "sha256-" + base64.b64encode(raw).decode("ascii")


def nix_string(value: str) -> str:
    """A Nix double-quoted string literal (escapes ``\\``, ``"``, ``${`` and control characters)."""
    out = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    out = out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{out}"'


def _comment(value: str) -> str:
    """One line of text for a ``#`` comment (spec strings may span lines)."""
    return " ".join(value.split())


def _nix_source(src: Source) -> NixSource:
    key = f"{src.recipe}/{src.name}"
    if not src.is_git:
        return NixSource(key, src, sri=sri_sha256(src.sha256))
    match = _GITHUB.match(src.git)
    if match:
        return NixSource(key, src, owner=match.group(1), repo=match.group(2))
    return NixSource(key, src)


def _unsupported(recipe: str, src: Source, why: str) -> NixUnsupportedError:
    return NixUnsupportedError(
        f"source {src.name!r} of recipe {recipe}: {why}",
        "generate the conda recipes only for this stack, or teach pascal_forge/recipes/nix.py where the "
        "source goes in nixpkgs' build",
    )


def _patch_paths(plan: RecipePlan) -> tuple[str, ...]:
    paths = []
    for patch in plan.patches:
        if not _PATH_SAFE.match(patch.path.name):
            raise NixUnsupportedError(
                f"patch file {patch.path} of {plan.kind.upstream}: its name cannot be a Nix path literal",
                "rename it to letters, digits and . _ + - only",
            )
        paths.append(f"patches/{plan.kind.recipe}/{patch.path.name}")
    return tuple(paths)


def nix_recipes(plans: tuple[RecipePlan, ...]) -> tuple[NixRecipe, ...]:
    """Map every recipe's sources onto the nixpkgs build it modifies; refuse what has no place."""
    recipes = []
    for plan in plans:
        recipe = plan.kind.recipe
        patches = _patch_paths(plan)
        if recipe == "pytorch-pascal":
            # nixpkgs builds torch from source for the configured cudaCapabilities; the conda
            # recipe's inputs (conda-forge artefacts) have no place in it.
            recipes.append(NixRecipe(plan, patches, None, (), plan.sources))
            continue
        src: NixSource | None = None
        aux: list[tuple[NixSource, str]] = []
        for source in plan.sources:
            if source.python:
                raise _unsupported(recipe, source, "a per-Python source has no Nix counterpart")
            if source.patched:
                src = _nix_source(source)
            elif recipe == "triton-pascal" and source.name in TRITON_AUX:
                aux.append((_nix_source(source), TRITON_AUX[source.name]))
            elif recipe == "vllm-pascal" and source.name in VLLM_SOURCE_ENV:
                aux.append((_nix_source(source), VLLM_SOURCE_ENV[source.name]))
            else:
                raise _unsupported(recipe, source, "the overlay does not know where it goes")
        recipes.append(NixRecipe(plan, patches, src, tuple(aux), ()))
    return tuple(recipes)


def nixpkgs_input(stack: Stack) -> str:
    try:
        return NIXPKGS_FOR_TORCH[stack.torch]
    except KeyError:
        known = ", ".join(f"torch {v}: {ref}" for v, ref in sorted(NIXPKGS_FOR_TORCH.items()))
        raise NixUnsupportedError(
            f"stack {stack.name}: no nixpkgs branch is known whose python3Packages.torch is {stack.torch} "
            f"(known: {known})",
            "add that branch to NIXPKGS_FOR_TORCH in pascal_forge/recipes/nix.py, or generate the conda recipes only",
        ) from None


def _environment() -> jinja2.Environment:
    env = environment()
    env.filters["nix_str"] = nix_string
    env.filters["comment"] = _comment
    return env


def render_nix_tree(spec: Spec, stack_name: str | None = None) -> tuple[RenderedFile, ...]:
    """All files of a nix/ tree for one stack, in a stable order."""
    plans = plan_recipes(spec, stack_name)
    stack = plans[0].stack
    recipes = nix_recipes(plans)
    by_recipe = {r.plan.kind.recipe: r for r in recipes}
    origin = "built-in spec" if spec.origin == "built-in spec" else Path(spec.origin).name
    sources = [s for r in recipes for s in ((r.src,) if r.src else ()) + tuple(a for a, _ in r.aux)]
    ctx: dict[str, object] = {
        "stack": stack,
        "origin": origin,
        "recipes": recipes,
        "r": by_recipe,
        "sources": sources,
        "git_sources": [s for s in sources if s.source.is_git],
        "unused": [s for r in recipes for s in r.unused],
        "nixpkgs": nixpkgs_input(stack),
        "system": SYSTEM,
        "cuda_attr": "cudaPackages_" + stack.cuda.replace(".", "_"),
        "pythons": [(py, "python" + py.replace(".", "")) for py in stack.python],
        "archs_space": " ".join(stack.archs),
    }
    env = _environment()
    files: list[RenderedFile] = []
    for name in ("overlay.nix", "pins.nix", "config.nix", "flake.nix", "README.md"):
        template = f"nix/{name}.j2"
        try:
            text = env.get_template(template).render(**ctx)
        except jinja2.TemplateError as exc:
            raise RenderError(
                f"template {template} failed for {name}: {exc}", "this is a bug; report it"
            ) from exc
        files.append(RenderedFile(name, text.encode("utf-8")))
    for recipe in recipes:
        for patch, path in zip(recipe.plan.patches, recipe.patch_paths, strict=True):
            files.append(RenderedFile(path, patch.path.read_bytes()))
    return tuple(sorted(files, key=lambda f: f.path))

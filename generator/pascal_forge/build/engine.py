"""The rattler-build engine's render, shared by build and resolve-check (below both, so neither imports the other)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rattler_build.render import RenderConfig
from rattler_build.stage0 import Stage0Recipe
from rattler_build.tool_config import PlatformConfig
from rattler_build.variant_config import VariantConfig

from pascal_forge.errors import BuildError, RenderError

TARGET_PLATFORM = "linux-64"


@dataclass(frozen=True)
class EngineVariant:
    """One rendered variant of a recipe, as plain data."""

    variant: dict[str, str]
    name: str
    version: str
    build_string: str
    recipe: dict[str, Any]  # the stage-1 recipe as a dict (sources, requirements, ...)


def render_raw(recipe_file: Path, variant_file: Path) -> list[Any]:
    """The engine's rendered variants (``RenderedVariant``) of one recipe for linux-64."""
    try:
        return list(
            Stage0Recipe.from_file(recipe_file).render(
                VariantConfig.from_file(variant_file),
                RenderConfig(platform=PlatformConfig(target_platform=TARGET_PLATFORM)),
            )
        )
    except Exception as exc:  # the engine raises its own exception types; report them uniformly
        raise RenderError(
            f"rattler-build could not render {recipe_file} with {variant_file}: {exc}",
            "fix the template or spec that produced this recipe",
        ) from exc


def engine_render(recipe_file: Path, variant_file: Path) -> list[EngineVariant]:
    out = []
    for v in render_raw(recipe_file, variant_file):
        data = v.recipe.to_dict()
        out.append(
            EngineVariant(
                variant={k: str(val) for k, val in v.variant.items()},
                name=data["package"]["name"],
                version=data["package"]["version"],
                build_string=data["build"]["string"],
                recipe=data,
            )
        )
    return out


def discover_recipes(recipes_dir: Path) -> tuple[Path, ...]:
    found = tuple(sorted(p.parent for p in recipes_dir.glob("*/recipe.yaml")))
    if not found:
        raise BuildError(
            f"no recipes (*/recipe.yaml) under {recipes_dir}",
            "run `pascal-forge generate --out DIR` first, or pass --recipes DIR",
        )
    return found

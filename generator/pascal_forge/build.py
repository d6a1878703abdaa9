"""The rattler-build engine (py-rattler-build): render generated recipes for every variant.

Rendering evaluates the recipe exactly as `rattler-build build` would (selectors, variant keys,
the build-string hash) without solving environments, so it runs offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rattler_build.render import RenderConfig
from rattler_build.stage0 import Stage0Recipe
from rattler_build.tool_config import PlatformConfig
from rattler_build.variant_config import VariantConfig

from pascal_forge.errors import RenderError

TARGET_PLATFORM = "linux-64"


@dataclass(frozen=True)
class EngineVariant:
    """One rendered variant of a recipe, as plain data."""

    variant: dict[str, str]
    name: str
    version: str
    build_string: str
    recipe: dict[str, Any]  # the stage-1 recipe as a dict (sources, requirements, ...)


def engine_render(recipe_file: Path, variant_file: Path) -> list[EngineVariant]:
    try:
        recipe = Stage0Recipe.from_file(recipe_file)
        variants = recipe.render(
            VariantConfig.from_file(variant_file),
            RenderConfig(platform=PlatformConfig(target_platform=TARGET_PLATFORM)),
        )
    except Exception as exc:  # the engine raises its own exception types; report them uniformly
        raise RenderError(
            f"rattler-build could not render {recipe_file} with {variant_file}: {exc}",
            "fix the template or spec that produced this recipe",
        ) from exc
    out = []
    for v in variants:
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

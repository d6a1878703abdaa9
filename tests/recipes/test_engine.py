"""Every generated recipe renders with the real rattler-build engine, for every variant, and the
conda-build meta.yaml carries the same sources, pins, patches and dependencies."""

from __future__ import annotations

from pathlib import Path

import pytest
import rattler

from helpers.recipe_formats import from_engine, from_meta

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TREES = [ROOT / "recipes" / "vllm-0.8.5", ROOT / "tests" / "golden", ROOT / "recipes" / "vllm-0.11.0"]
RECIPES = ["triton-pascal", "pytorch-pascal", "vllm-pascal"]


@pytest.mark.parametrize("tree", TREES, ids=lambda p: p.name)
@pytest.mark.parametrize("recipe", RECIPES)
def test_engine_renders_every_variant_and_meta_yaml_agrees(tree: Path, recipe: str) -> None:
    rendered = from_engine(tree / recipe, tree / "variants.yaml")
    pythons = [
        line.strip()[3:-3] for line in (tree / "variants.yaml").read_text().splitlines() if '.*"' in line
    ]
    assert sorted(rendered) == sorted(pythons)
    for py, engine in rendered.items():
        meta = from_meta(tree / recipe, py)
        assert meta == engine, f"{recipe} py{py}: recipe.yaml and meta.yaml disagree"
        assert engine.sources, recipe
        assert any(patches for *_, patches in engine.sources) or recipe == "pytorch-pascal"


@pytest.mark.parametrize("recipe", RECIPES)
def test_build_strings_carry_the_pascal_token(recipe: str) -> None:
    from pascal_forge.build.engine import engine_render

    for v in engine_render(
        ROOT / "recipes" / "vllm-0.8.5" / recipe / "recipe.yaml",
        ROOT / "recipes" / "vllm-0.8.5" / "variants.yaml",
    ):
        py = v.variant["python"].removesuffix(".*").replace(".", "")
        if recipe == "pytorch-pascal":
            # Upstream's shape: conda-forge's libtorch constrains `pytorch ==2.6.0 cuda126_mkl_*_300`.
            assert v.build_string.startswith(f"cuda126_mkl_py{py}_pascal_h"), v.build_string
            assert v.build_string.endswith("_300"), v.build_string
            assert rattler.MatchSpec("pytorch ==2.6.0 cuda126_mkl_*_300").matches(
                rattler.PackageRecord(
                    name=rattler.PackageName("pytorch"),
                    version=rattler.VersionWithSource(v.version),
                    build=rattler.BuildString(v.build_string),
                    build_number=300,
                    subdir="linux-64",
                    arch=None,
                    platform=None,
                )
            )
        else:
            assert v.build_string.startswith(f"cuda126py{py}_pascal_h"), v.build_string


def test_dependants_pin_the_pascal_builds() -> None:
    vllm = from_engine(
        ROOT / "recipes" / "vllm-0.8.5" / "vllm-pascal", ROOT / "recipes" / "vllm-0.8.5" / "variants.yaml"
    )
    torch = from_engine(
        ROOT / "recipes" / "vllm-0.8.5" / "pytorch-pascal", ROOT / "recipes" / "vllm-0.8.5" / "variants.yaml"
    )
    for reqs in vllm.values():
        assert "triton ==3.2.0 *pascal*" in reqs.run
        assert "pytorch ==2.6.0 *pascal*" in reqs.run
        assert not any(r.startswith(("torch ", "triton 3")) for r in reqs.run)
    for reqs in torch.values():
        assert "triton ==3.2.0 *pascal*" in reqs.run
        assert not any(r.startswith("triton 3.2.0.*") for r in reqs.run)
        assert any(r.startswith("libtorch ==2.6.0 cuda126_") for r in reqs.run)


@pytest.mark.parametrize("recipe", RECIPES)
def test_second_stack_build_strings_carry_the_pascal_token(recipe: str) -> None:
    from pascal_forge.build.engine import engine_render

    tree = ROOT / "recipes" / "vllm-0.11.0"
    variants = engine_render(tree / recipe / "recipe.yaml", tree / "variants.yaml")
    assert [v.variant["python"] for v in variants] == ["3.13.*"]
    for v in variants:
        if recipe == "pytorch-pascal":  # upstream's shape: libtorch constrains cuda129_mkl_*_302
            assert v.build_string.startswith("cuda129_mkl_py313_pascal_h"), v.build_string
            assert v.build_string.endswith("_302"), v.build_string
        else:
            assert v.build_string.startswith("cuda129py313_pascal_h"), v.build_string


def test_second_stack_dependants_pin_its_pascal_builds() -> None:
    tree = ROOT / "recipes" / "vllm-0.11.0"
    vllm = from_engine(tree / "vllm-pascal", tree / "variants.yaml")
    torch = from_engine(tree / "pytorch-pascal", tree / "variants.yaml")
    for reqs in vllm.values():
        assert "triton ==3.4.0 *pascal*" in reqs.run
        assert "pytorch ==2.8.0 *pascal*" in reqs.run
        assert "pytorch ==2.8.0 *pascal*" in reqs.host
        assert not any(r.startswith(("torch ", "triton 3", "pytorch 2.6")) for r in reqs.run)
    for reqs in torch.values():
        assert "triton ==3.4.0 *pascal*" in reqs.run
        assert not any(r == "triton 3.4.0" for r in reqs.run)
        assert "libtorch ==2.8.0 cuda129_mkl_hf53477d_302" in reqs.run

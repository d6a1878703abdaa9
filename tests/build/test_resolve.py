"""resolve-check with the real solver (py-rattler) against the conda-forge stand-in.

The stand-in holds stock triton 3.2.0 (py310 build number 1, higher than ours), 3.3.1, 3.7.0/3.7.1,
stock pytorch 2.6.0 CUDA 12.6 (depends on triton 3.2.0.*) and pytorch 2.7.1 (triton 3.3.1.*), so a
loose pin really does let the solver pick stock builds: the check can fail, and these tests show when.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pascal_forge.build.resolve import planned_channel, resolve_check
from pascal_forge.cli import main
from pascal_forge.errors import StockResolvableError, UnsatisfiableError
from pascal_forge.recipes.render import render_tree
from pascal_forge.recipes.tree import write_tree
from pascal_forge.stack.spec import load_spec

pytestmark = pytest.mark.integration

PASCAL_TRITON = "triton ==3.2.0 *pascal*"


def recipes(tmp_path: Path) -> Path:
    out = tmp_path / "recipes"
    write_tree(render_tree(load_spec()), out)
    return out


def loosen(tree: Path, recipe: str) -> None:
    path = tree / recipe / "recipe.yaml"
    text = path.read_text("utf-8")
    assert f"- {PASCAL_TRITON}\n" in text
    path.write_text(text.replace(f"- {PASCAL_TRITON}\n", "- triton\n"), "utf-8")


def test_stand_in_has_what_the_guarantee_is_tested_against(standin_upstream: Path) -> None:
    from pascal_forge.build.channel import read_packages

    have = {(p.name, p.version, p.build_number) for p in read_packages(standin_upstream)}
    assert ("triton", "3.2.0", 1) in have  # stock, build number above our 0
    assert {("triton", "3.3.1"), ("triton", "3.7.1")} <= {(n, v) for n, v, _ in have}
    torch = {
        (p.version, d) for p in read_packages(standin_upstream) if p.name == "pytorch" for d in p.depends
    }
    assert ("2.6.0", "triton 3.2.0.*") in torch
    assert ("2.7.1", "triton 3.3.1.*") in torch


def test_planned_default_stack_passes(standin_upstream: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["resolve-check", "--planned", "-c", str(standin_upstream)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "resolve-check passed" in out
    assert "FAIL" not in out
    # Strict priority with the stand-in first cannot reach our triton: reported, with the fix.
    assert "vllm-pascal: python 3.12, strict, upstream first" in out
    assert "unsatisfiable (fails loudly, nothing swapped)" in out
    assert "fix: list the local channel first" in out
    # Every solve that succeeded holds only Pascal triton/pytorch from the local channel.
    ok_lines = [line for line in out.splitlines() if line.startswith("ok") and "Pascal builds only" in line]
    assert ok_lines
    assert all(
        "triton" in line and "_pascal_h" in line for line in ok_lines if line.split()[1] == "vllm-pascal:"
    )


@pytest.mark.parametrize("recipe", ["vllm-pascal", "pytorch-pascal"])
def test_a_loosened_triton_pin_fails_naming_the_package(
    recipe: str, tmp_path: Path, standin_upstream: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = recipes(tmp_path)
    loosen(tree, recipe)
    rc = main(["resolve-check", "--planned", "--recipes", str(tree), "-c", str(standin_upstream)])
    captured = capsys.readouterr()
    assert rc == StockResolvableError.exit_code
    name = "vllm-pascal" if recipe == "vllm-pascal" else "pytorch"
    assert "LOOSE PIN" in captured.out
    assert f"{name} " in captured.err and "`triton`" in captured.out
    assert "error[stock-triton-resolvable]" in captured.err


def test_with_both_pins_loose_the_solver_really_picks_stock_triton(
    tmp_path: Path, standin_upstream: Path
) -> None:
    tree = recipes(tmp_path)
    loosen(tree, "vllm-pascal")
    loosen(tree, "pytorch-pascal")
    local = planned_channel(tree, tmp_path / "planned")
    results = resolve_check(local, (str(standin_upstream),))
    stock = [r for r in results if r.status == "stock"]
    assert stock, "the stand-in should let a loose pin resolve to stock triton"
    picked = {(p.name, p.build) for r in stock for p in r.picked if p.name == "triton"}
    assert all("pascal" not in build for _, build in picked)
    assert any(r.case.priority == "disabled" for r in stock)


def test_local_channel_missing_triton_is_unsatisfiable_even_first(
    tmp_path: Path, standin_upstream: Path
) -> None:
    tree = recipes(tmp_path)
    local = planned_channel(tree, tmp_path / "planned", names=("vllm-pascal", "pytorch"))
    results = resolve_check(local, (str(standin_upstream),))
    assert any(r.failed and r.status == "unsatisfiable" and r.case.local_first for r in results)
    from pascal_forge.build.resolve import raise_on_failure

    with pytest.raises(UnsatisfiableError, match="even with the local channel first"):
        raise_on_failure(results)


def test_a_channel_without_vllm_pascal_is_refused(tmp_path: Path, standin_upstream: Path) -> None:
    local = planned_channel(recipes(tmp_path), tmp_path / "planned", names=("triton",))
    with pytest.raises(UnsatisfiableError, match="holds no vllm-pascal"):
        resolve_check(local, (str(standin_upstream),))

"""`pascal-forge generate`: reproducible bytes, atomic writes, --check, clear errors."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pascal_forge.cli import main
from pascal_forge.recipes.render import render_tree
from pascal_forge.stack.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_generate_writes_every_recipe_in_both_formats(tmp_path: Path) -> None:
    assert main(["generate", "--out", str(tmp_path / "r")]) == 0
    files = set(tree_digest(tmp_path / "r"))
    for recipe in ("triton-pascal", "pytorch-pascal", "vllm-pascal"):
        for name in ("recipe.yaml", "meta.yaml", "build.sh", "pascal_check.py"):
            assert f"{recipe}/{name}" in files
        assert any(f.startswith(f"{recipe}/patches/") for f in files)
    assert {"variants.yaml", "conda_build_config.yaml"} <= files
    assert os.access(tmp_path / "r" / "vllm-pascal" / "build.sh", os.X_OK)


def test_each_recipe_carries_exactly_its_patches(tmp_path: Path) -> None:
    spec = load_spec()
    main(["generate", "--out", str(tmp_path)])
    for recipe, upstream in (
        ("triton-pascal", "triton"),
        ("pytorch-pascal", "torch"),
        ("vllm-pascal", "vllm"),
    ):
        shipped = sorted(p.name for p in (tmp_path / recipe / "patches").iterdir())
        expected = sorted(p.path.name for p in spec.patches_for(upstream, spec.stack().version_of(upstream)))
        assert shipped == expected
        listed = (tmp_path / recipe / "meta.yaml").read_text() + (tmp_path / recipe / "build.sh").read_text()
        for name in expected:
            assert f"patches/{name}" in listed, (recipe, name)


def test_naming_keeps_stock_builds_out(tmp_path: Path) -> None:
    main(["generate", "--out", str(tmp_path)])
    vllm = (tmp_path / "vllm-pascal" / "recipe.yaml").read_text()
    torch = (tmp_path / "pytorch-pascal" / "recipe.yaml").read_text()
    assert "name: vllm-pascal" in vllm
    assert "- triton ==3.2.0 *pascal*" in vllm
    assert "- pytorch ==2.6.0 *pascal*" in vllm
    assert "name: pytorch" in torch
    assert "triton ==3.2.0 *pascal*" in torch
    for text in (vllm, torch, (tmp_path / "triton-pascal" / "recipe.yaml").read_text()):
        assert "_pascal_h${{ hash }}" in text
        assert "cuda-version >=12" in text or "cuda-version 12.6" in text


def test_generate_twice_and_across_hash_seeds_is_byte_identical(tmp_path: Path) -> None:
    digests = []
    for seed in ("0", "1", "12345"):
        out = tmp_path / f"out-{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [sys.executable, "-m", "pascal_forge", "generate", "--out", str(out)],
            check=True,
            env=env,
            cwd=tmp_path,
        )
        digests.append(tree_digest(out))
    assert digests[0] == digests[1] == digests[2]


def test_committed_recipes_are_up_to_date() -> None:
    assert main(["generate", "--check", "--out", str(ROOT / "recipes" / "vllm-0.8.5")]) == 0


def test_committed_recipes_of_the_second_stack_are_up_to_date() -> None:
    out = ROOT / "recipes" / "vllm-0.11.0"
    assert main(["generate", "--vllm", "0.11.0", "--check", "--out", str(out)]) == 0


def test_bare_check_covers_every_stack_tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "--all-stacks"]) == 0
    names = sorted(s.name for s in load_spec().stacks if not s.draft)
    assert sorted(p.name for p in (tmp_path / "recipes").iterdir()) == names
    assert main(["generate", "--check"]) == 0
    (tmp_path / "recipes" / names[-1] / "variants.yaml").write_text("edited\n")
    assert main(["generate", "--check"]) == 7  # the second tree is checked too, not only the default's
    assert main(["generate", "--check", "--stack", names[0]]) == 0  # the unedited one alone passes


def test_bare_check_fails_for_a_tree_of_no_stack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "--all-stacks"]) == 0
    assert main(["generate", "--check"]) == 0
    stray = tmp_path / "recipes" / "vllm-0.9.0" / "vllm-pascal"
    stray.mkdir(parents=True)
    (stray / "recipe.yaml").write_text("package: {name: vllm-pascal, version: 0.9.0}\n")
    capsys.readouterr()
    assert main(["generate", "--check"]) == 7
    err = capsys.readouterr().err
    assert "recipes/vllm-0.9.0/ (no stack of the spec renders it)" in err and "git rm -r" in err
    assert main(["generate", "--check", "--stack", "vllm-0.8.5"]) == 0  # one selected tree: not its business


def test_generate_writes_the_selected_stack_into_its_own_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "--vllm", "0.11.0"]) == 0
    assert sorted(p.name for p in (tmp_path / "recipes").iterdir()) == ["vllm-0.11.0"]
    assert main(["generate"]) == 0
    assert sorted(p.name for p in (tmp_path / "recipes").iterdir()) == ["vllm-0.11.0", "vllm-0.8.5"]


def test_check_lists_what_is_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["generate", "--out", str(tmp_path)])
    (tmp_path / "vllm-pascal" / "build.sh").write_text("edited\n")
    (tmp_path / "stray.txt").write_text("x\n")
    (tmp_path / "triton-pascal" / "meta.yaml").unlink()
    assert main(["generate", "--check", "--out", str(tmp_path)]) == 7
    err = capsys.readouterr().err
    assert "~ vllm-pascal/build.sh (differs)" in err
    assert "- stray.txt (not generated by the spec)" in err
    assert "+ triton-pascal/meta.yaml (missing)" in err


@pytest.mark.parametrize(
    ("spec_text", "code", "needle"),
    [
        ("[stacks.x\n", 2, "not valid TOML"),
        ('default_stack = "nope"\n', 2, "no stack named 'nope'"),
        ('[stacks.x]\nextends = "vllm-0.8.5"\narchs = ["8.0"]\n', 2, "not a Pascal compute capability"),
        ('patch_library = "missing-dir"\n', 3, "patch library"),
    ],
)
def test_bad_input_leaves_previous_recipes_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec_text: str, code: int, needle: str
) -> None:
    out = tmp_path / "recipes"
    main(["generate", "--out", str(out)])
    before = tree_digest(out)
    spec = tmp_path / "bad.toml"
    spec.write_text(spec_text)
    assert main(["generate", "--spec", str(spec), "--out", str(out)]) == code
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "recipes"]  # no temp leftovers


def test_failure_midway_through_writing_keeps_the_old_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pascal_forge.recipes import tree

    out = tmp_path / "recipes"
    main(["generate", "--out", str(out)])
    before = tree_digest(out)
    files = render_tree(load_spec())
    calls = {"n": 0}
    real = Path.write_bytes

    def flaky(self: Path, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", flaky)
    with pytest.raises(OSError, match="No space left"):
        tree.write_tree(files, out)
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipes"]


def test_golden_tree_is_current() -> None:
    """tests/golden is a maintainer's spec (extends the default stack) rendered; see README."""
    spec = ROOT / "tests" / "data" / "golden-spec.toml"
    assert main(["generate", "--spec", str(spec), "--out", str(ROOT / "tests" / "golden"), "--check"]) == 0


def test_patch_docs_are_current() -> None:
    assert main(["docs", "--check", "--out", str(ROOT / "docs")]) == 0


def test_every_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("generate", "check", "docs"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        assert "example" in capsys.readouterr().out


def test_unknown_version_and_package_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "recipes"
    main(["generate", "--out", str(out)])
    before = tree_digest(out)
    assert main(["generate", "--vllm", "0.9.2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "vllm 0.9.2 is not in any stack" in err
    assert "next:" in err
    spec = tmp_path / "bad.toml"
    spec.write_text(
        '[stacks.x]\nextends = "vllm-0.8.5"\n[[stacks.x.sources]]\nrecipe = "tensorflow"\nname = "t"\n'
        'url = "https://e.org/t.tar.gz"\nsha256 = "' + "0" * 64 + '"\npinned_by = "me"\n'
    )
    assert main(["generate", "--spec", str(spec), "--out", str(out)]) == 2
    assert "unknown package 'tensorflow'" in capsys.readouterr().err
    assert tree_digest(out) == before
    assert main(["generate", "--vllm", "0.8.5", "--out", str(out)]) == 0


@pytest.mark.parametrize("breakage", ["missing", "outside"])
def test_broken_patch_library_leaves_recipes_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], breakage: str
) -> None:
    import shutil

    from pascal_forge.stack.spec import builtin_patch_library

    out = tmp_path / "recipes"
    main(["generate", "--out", str(out)])
    before = tree_digest(out)
    lib = tmp_path / "lib"
    shutil.copytree(builtin_patch_library(), lib)
    victim = sorted((lib / "vllm").glob("0003-*.patch"))[0]
    if breakage == "missing":
        victim.unlink()
        needle = f"{victim.name} is missing"
    else:
        series = lib / "vllm" / "series.toml"
        series.write_text(
            series.read_text().replace(f'file = "{victim.name}"', 'file = "../../../etc/passwd"')
        )
        needle = "points outside the patch library"
    spec = tmp_path / "spec.toml"
    spec.write_text('patch_library = "lib"\n')
    assert main(["generate", "--spec", str(spec), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert needle in err
    assert "error[patch-library]" in err
    assert tree_digest(out) == before

"""The spec model: the built-in stack, user overrides, and one clear error per kind of bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pascal_forge.errors import PatchLibraryError, SpecError, UnknownPackageError, UnknownVersionError
from pascal_forge.stack.model import recipe_kind
from pascal_forge.stack.spec import builtin_patch_library, load_spec


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def test_builtin_default_stack_pins_the_design_versions() -> None:
    spec = load_spec()
    stack = spec.stack()
    assert (stack.vllm, stack.torch, stack.triton, stack.cuda) == ("0.8.5", "2.6.0", "3.2.0", "12.6")
    assert stack.python == ("3.10", "3.12")  # 3.11: no citable pytorch artifact pin (see the spec)
    assert stack.archs == ("6.0", "6.1")
    for src in stack.sources:
        assert (src.url and len(src.sha256) == 64) or (src.git and len(src.rev) == 40), src
        assert src.pinned_by


def test_every_recipe_has_patches_for_the_default_stack() -> None:
    spec = load_spec()
    stack = spec.stack()
    for upstream in ("vllm", "torch", "triton"):
        patches = spec.patches_for(upstream, stack.version_of(upstream))
        assert patches, upstream
        assert [p.order for p in patches] == sorted(p.order for p in patches)


def test_user_stack_extends_the_builtin_one(tmp_path: Path) -> None:
    spec = load_spec(
        write(tmp_path, '[stacks.p100]\nextends = "vllm-0.8.5"\narchs = ["6.0"]\npython = ["3.12"]\n')
    )
    stack = spec.stack("p100")
    assert stack.archs == ("6.0",)
    assert stack.python == ("3.12",)
    base = spec.stack("vllm-0.8.5").sources
    # Narrowing Python drops the inherited per-Python artifacts of the other versions, nothing else.
    assert stack.sources == tuple(s for s in base if s.python in ("", "3.12"))
    assert any(s.python == "3.10" for s in base)


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        ("[stacks.x\n", "not valid TOML"),
        ('[stacks.x]\nextends = "nope"\n', "extends unknown stack 'nope'"),
        ('[stacks.x]\nextends = "vllm-0.8.5"\narchs = ["7.0"]\n', "'7.0' is not a Pascal compute capability"),
        ('[stacks.x]\nextends = "vllm-0.8.5"\ncuda = "13.0"\n', "CUDA 13.0 cannot be used"),
        ('[stacks.x]\nextends = "vllm-0.8.5"\npython = ["three"]\n', "'three' is not a Python minor version"),
        ('[stacks.x]\nextends = "vllm-0.8.5"\nbogus = 1\n', "unknown key(s) ['bogus']"),
        ('default_stack = "missing"\n', "no stack named 'missing'"),
        (
            '[stacks.x]\nextends = "vllm-0.8.5"\n[[stacks.x.sources]]\nrecipe = "vllm-pascal"\nname = "v"\n'
            'url = "https://e.org/v.tar.gz"\nsha256 = "abc"\npinned_by = "me"\n',
            "sha256 must be 64 lowercase hex digits",
        ),
        (
            '[stacks.x]\nextends = "vllm-0.8.5"\n[[stacks.x.sources]]\nrecipe = "vllm-pascal"\nname = "v"\n'
            'git = "https://e.org/v.git"\nrev = "main"\npinned_by = "me"\npatched = true\n',
            "rev must be a full 40-hex commit",
        ),
        (
            '[stacks.x]\nextends = "vllm-0.8.5"\n[stacks.x.requirements.vllm-pascal]\nrun = ["numpy 1.2.3"]\n',
            "'numpy 1.2.3' is not a valid conda match spec",
        ),
    ],
)
def test_bad_spec_names_the_culprit(tmp_path: Path, text: str, culprit: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert culprit in info.value.message
    assert str(path) in info.value.message or "no stack named" in info.value.message


def test_unknown_package_and_version() -> None:
    with pytest.raises(UnknownPackageError, match="unknown package 'tensorflow'"):
        recipe_kind("tensorflow")
    with pytest.raises(UnknownVersionError, match=r"vllm 0\.9\.2 is not in any stack") as info:
        load_spec().stack_for("vllm", "0.9.2")
    assert "pascal-forge update --vllm 0.9.2" in info.value.hint


def _library_copy(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    shutil.copytree(builtin_patch_library(), lib)
    return lib


def test_missing_patch_file_is_named(tmp_path: Path) -> None:
    lib = _library_copy(tmp_path)
    victim = sorted((lib / "torch").glob("*.patch"))[0]
    victim.unlink()
    with pytest.raises(PatchLibraryError, match=rf"patch file .*{victim.name} is missing"):
        load_spec(write(tmp_path, 'patch_library = "lib"\n'))


def test_patch_path_outside_the_library_is_refused(tmp_path: Path) -> None:
    lib = _library_copy(tmp_path)
    (tmp_path / "evil.patch").write_text("--- a/x\n+++ b/x\n", "utf-8")
    series = lib / "torch" / "series.toml"
    text = series.read_text("utf-8")
    first = text.split('file = "', 1)[1].split('"', 1)[0]
    series.write_text(text.replace(f'file = "{first}"', 'file = "../../evil.patch"', 1), "utf-8")
    with pytest.raises(PatchLibraryError, match="points outside the patch library"):
        load_spec(write(tmp_path, 'patch_library = "lib"\n'))

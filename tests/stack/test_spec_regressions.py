"""Inputs that once crashed the spec or patch-library loader with a traceback (issue 16); each is now
an error naming the file and key, with a next step."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pascal_forge.cli import main
from pascal_forge.errors import PatchLibraryError, SpecError
from pascal_forge.stack.spec import builtin_patch_library, load_spec

EXT = '[stacks.x]\nextends = "vllm-0.8.5"\n'


def _spec(tmp_path: Path, data: bytes | str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        # TypeError: unhashable type: 'list' in _extend
        ('[stacks.x]\nextends = ["vllm-0.8.5"]\n', "'extends' must name one stack (a string), got list"),
        ("[stacks.x]\nextends = 1\n", "'extends' must name one stack (a string), got int"),
        # accepted as build 1: bool is an int
        (EXT + "build_number = true\n", "build_number must be a non-negative integer, got True"),
        (EXT + "build_number = -1\n", "build_number must be a non-negative integer, got -1"),
        (EXT + "sources = 5\n", "'sources' must be a list, got int"),
        (EXT + 'python = ["3.12"]\nrequirements = 3\n', "requirements must be a table, got int"),
        (EXT + 'python = ["3.12"]\n[stacks.x.requirements]\nvllm-pascal = 3\n', "must be a table, got int"),
        (EXT + '[stacks.x.requirements.vllm-pascal]\nrun = "numpy"\n', "'run' must be a list, got str"),
        (
            EXT + '[[stacks.x.requirements.vllm-pascal.run]]\nspec = "numpy"\nnote = 1\n',
            "'note' must be a string",
        ),
        (EXT + "python = [[1]]\n", "'python' must be a non-empty list of strings"),
        (
            EXT + '[[stacks.x.sources]]\nrecipe = "vllm-pascal"\nname = "v"\npinned_by = "me"\nurl = 5\n',
            "'url' must be a string, got int",
        ),
        (
            EXT + '[[stacks.x.sources]]\nrecipe = "vllm-pascal"\nname = "v"\npinned_by = "me"\n'
            'git = "https://e.org/v.git"\nrev = "' + "a" * 40 + '"\ntarget = 7\n',
            "'target' must be a string, got int",
        ),
        (
            # bool("no") is True: a string must not mark a source patched
            EXT + '[[stacks.x.sources]]\nrecipe = "vllm-pascal"\nname = "v"\npinned_by = "me"\n'
            'git = "https://e.org/v.git"\nrev = "' + "a" * 40 + '"\npatched = "no"\n',
            "'patched' must be true or false, got 'no'",
        ),
        (
            EXT + '[[stacks.x.sources]]\nrecipe = "tensorflow"\nname = "v"\npinned_by = "me"\n',
            "unknown package 'tensorflow'",
        ),
        ('[stacks."../../etc"]\nextends = "vllm-0.8.5"\n', "cannot be a folder name"),
        ("a = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        ('patch_library = "a\\u0000b"\n', "is not a usable path"),
    ],
)
def test_malformed_spec_is_a_spec_error(tmp_path: Path, text: str, culprit: str) -> None:
    path = _spec(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert culprit in info.value.message
    assert str(path) in info.value.message
    assert info.value.hint or "nested" in culprit or "usable path" in culprit


def test_non_utf8_spec_names_file_offset_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _spec(tmp_path, b'[stacks.x]\nextends = "vllm-0.8.5"\n# caf\xe9\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert f"{path}: not UTF-8 (byte 0xe9 at offset 39, line 3)" == info.value.message
    assert "UTF-8" in info.value.hint
    # Through the CLI: the documented exit code and an error line, no traceback.
    assert main(["generate", "--spec", str(path), "--check"]) == SpecError.exit_code
    err = capsys.readouterr().err
    assert "error[spec-invalid]" in err
    assert "Traceback" not in err


def _entry(**over: str) -> str:
    keys = {
        "id": '"inductor-gate-utils-triton"',
        "file": '"0001-inductor-gate-utils-triton.patch"',
        "versions": '"==2.6.0"',
        "targets": '["torch/utils/_triton.py"]',
        "reason": '"why"',
        "references": "[]",
        "proof": '"tests"',
        **over,
    }
    return "[[patch]]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items() if v)


def test_a_well_formed_one_entry_series_loads(tmp_path: Path) -> None:
    series, spec = _library(tmp_path)
    series.write_text(_entry(), "utf-8")
    (patch,) = [p for p in load_spec(spec).patches if p.upstream == "torch"]
    assert patch.targets == ("torch/utils/_triton.py",)


def _library(tmp_path: Path) -> tuple[Path, Path]:
    lib = tmp_path / "lib"
    shutil.copytree(builtin_patch_library(), lib)
    return lib / "torch" / "series.toml", _spec(tmp_path, 'patch_library = "lib"\n')


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        (_entry().encode() + b"# \xff\n", "not UTF-8 (byte 0xff"),
        (b"patch = 1\n", "'patch' must be a list, got int"),
        (b"patch = [1]\n", "patch #1 must be a table, got int"),
        # A string is iterable: "abc" once became the targets ("a", "b", "c").
        (_entry(targets='"setup.py"').encode(), "'targets' must list the files"),
        (_entry(references="3").encode(), "'references' must be a list of strings"),
        (_entry(references="[3]").encode(), "'references' must be a list of strings"),
        (_entry(file='"\\u0000x"').encode(), "is not a usable path"),
        (_entry(versions='"~=1"').encode(), "bad versions '~=1'"),
        (_entry(id='"Bad Id"').encode(), "must be kebab-case"),
    ],
)
def test_malformed_series_is_a_patch_library_error(tmp_path: Path, text: bytes, culprit: str) -> None:
    series, spec = _library(tmp_path)
    series.write_bytes(text)
    with pytest.raises(PatchLibraryError) as info:
        load_spec(spec)
    assert culprit in info.value.message
    assert str(series) in info.value.message


def test_concurrent_unpacks_of_one_tree_do_not_collide(tmp_path: Path) -> None:
    """Regression: two runs sharing the cache crashed with 'Directory not empty' on the final rename."""
    import io
    import tarfile
    from concurrent.futures import ThreadPoolExecutor

    from pascal_forge.stack.sources import unpack

    archive = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for i in range(200):
            data = f"file {i}\n".encode()
            info = tarfile.TarInfo(f"pkg-1.0/d{i % 7}/f{i}.txt")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    dest = tmp_path / "trees" / "pkg"
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: unpack(archive, dest), range(12)))
    assert results == [dest] * 12
    assert sorted(p.name for p in dest.rglob("*.txt")) == sorted(f"f{i}.txt" for i in range(200))

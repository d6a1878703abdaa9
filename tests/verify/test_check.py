"""`pascal-forge check` and the patch applier: every outcome is reported, none is a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pascal_forge.cli import main
from pascal_forge.stack.model import PatchEntry
from pascal_forge.stack.patches import Outcome, apply_series

ORIGINAL = "".join(f"line {i}\n" for i in range(1, 31))


def entry(tmp_path: Path, name: str, diff: str, order: int = 1) -> PatchEntry:
    path = tmp_path / f"{name}.patch"
    path.write_text(diff)
    return PatchEntry(name, "vllm", path.name, path, ">=0", ("f.txt",), "why", (), "proof", order)


def tree(tmp_path: Path, text: str = ORIGINAL) -> Path:
    root = tmp_path / "src"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir()
    (root / "f.txt").write_text(text)
    return root


def diff(old_line: int, new: str, context_shift: int = 0) -> str:
    lines = [f"line {i}" for i in range(old_line - 3, old_line + 4)]
    body = (
        "".join(f" {x}\n" for x in lines[:3])
        + f"-{lines[3]}\n+{new}\n"
        + "".join(f" {x}\n" for x in lines[4:])
    )
    start = old_line - 3 + context_shift
    return f"--- a/f.txt\n+++ b/f.txt\n@@ -{start},7 +{start},7 @@\n{body}"


def test_clean_offset_and_series_order(tmp_path: Path) -> None:
    root = tree(tmp_path)
    first = entry(tmp_path, "one", diff(10, "changed 10"))
    second = entry(
        tmp_path, "two", diff(20, "changed 20", context_shift=-4), order=2
    )  # header lies by 4 lines
    results = apply_series(root, (first, second))
    assert [r.outcome for r in results] == [Outcome.CLEAN, Outcome.OFFSET]
    assert "offset +4 lines" in results[1].detail
    assert "changed 10" in (root / "f.txt").read_text()
    assert results[0].files == ("f.txt",)


def test_failure_names_hunk_and_file_and_stops_the_series(tmp_path: Path) -> None:
    root = tree(tmp_path, ORIGINAL.replace("line 11\n", "line eleven\n"))
    bad = entry(tmp_path, "bad", diff(10, "changed 10"))
    later = entry(tmp_path, "later", diff(20, "changed 20"), order=2)
    results = apply_series(root, (bad, later))
    assert results[0].outcome == Outcome.FAILED
    assert results[0].summary == "fails at hunk 1 of f.txt (line 7)"
    assert results[1].outcome == Outcome.SKIPPED
    assert (root / "f.txt").read_text() == ORIGINAL.replace(
        "line 11\n", "line eleven\n"
    )  # nothing half-applied


def test_no_fuzz_is_accepted(tmp_path: Path) -> None:
    root = tree(tmp_path, ORIGINAL.replace("line 7\n", "line seven\n"))  # first context line differs
    results = apply_series(root, (entry(tmp_path, "fuzzy", diff(10, "changed 10")),))
    assert results[0].outcome == Outcome.FAILED


def test_already_present_upstream(tmp_path: Path) -> None:
    root = tree(tmp_path, ORIGINAL.replace("line 10\n", "changed 10\n"))
    results = apply_series(root, (entry(tmp_path, "dup", diff(10, "changed 10")),))
    assert results[0].outcome == Outcome.ALREADY


def test_missing_target_and_garbage(tmp_path: Path) -> None:
    root = tree(tmp_path)
    missing = entry(tmp_path, "missing", diff(10, "x").replace("f.txt", "nope.txt"))
    assert apply_series(root, (missing,))[0].detail.startswith("target file not found")
    garbage = entry(tmp_path, "garbage", "this is not a diff\n")
    assert apply_series(root, (garbage,))[0].outcome == Outcome.FAILED


# ---- the command, on the real pinned sources ---------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("package", ["vllm-pascal", "pytorch-pascal"])
def test_check_passes_on_the_real_sources(package: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--package", package, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (recipe,) = report
    assert recipe["patches"]
    assert all(p["ok"] for p in recipe["patches"])
    assert "verified" in recipe["verified"]


@pytest.mark.integration
def test_vllm_series_applies_with_gnu_patch_dry_run_in_order(tmp_path: Path) -> None:
    """Issue criterion: each vLLM patch applies to the sdist with `patch -p1 --dry-run`, no fuzz, in order."""
    import subprocess

    from pascal_forge.stack.sources import default_cache_dir, obtain
    from pascal_forge.stack.spec import load_spec

    spec = load_spec()
    stack = spec.stack()
    vllm = stack.patched_source("vllm-pascal")
    src = obtain(vllm, default_cache_dir()).tree
    work = tmp_path / "vllm"
    shutil.copytree(src, work)
    for patch in spec.patches_for("vllm", stack.vllm):
        with patch.path.open("rb") as fh:
            dry = subprocess.run(
                ["patch", "-p1", "--dry-run", "-F0", "-d", str(work)],
                stdin=fh,
                capture_output=True,
                check=False,
            )
        assert dry.returncode == 0, (patch.id, dry.stdout.decode())
        with patch.path.open("rb") as fh:
            subprocess.run(
                ["patch", "-p1", "-F0", "-d", str(work)], stdin=fh, capture_output=True, check=True
            )


@pytest.mark.integration
def test_corrupted_cache_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    assert main(["check", "--package", "vllm-pascal", "--cache-dir", str(cache)]) == 0
    (cached,) = list((cache / "downloads").rglob("vllm-0.8.5.tar.gz"))
    cached.write_bytes(cached.read_bytes()[:-10] + b"corrupted!")
    capsys.readouterr()
    assert main(["check", "--package", "vllm-pascal", "--cache-dir", str(cache)]) == 6
    err = capsys.readouterr().err
    assert str(cached) in err
    assert "Traceback" not in err


def test_wrong_pin_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A local copy that does not match the pin is refused, naming the file (no network needed)."""
    fake = tmp_path / "vllm-0.8.5.tar.gz"
    fake.write_bytes(b"not the sdist")
    code = main(
        [
            "check",
            "--package",
            "vllm-pascal",
            "--source-dir",
            f"vllm={fake}",
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    assert code == 6
    err = capsys.readouterr().err
    assert str(fake) in err
    assert "pinned to c7e04d10" in err


def test_unreachable_git_source_is_reported_not_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # vllm-0.11.0's triton is still a git source (vllm-0.8.5's is a sha256-pinned archive)
    args = ["check", "--stack", "vllm-0.11.0", "--package", "triton-pascal", "--cache-dir", str(tmp_path)]
    assert main(args) == 5
    out = capsys.readouterr().out
    assert "not checked: triton: triton is a git source" in out
    assert main([*args, "--allow-unreachable"]) == 0


def test_broken_patch_in_a_library_reports_the_hunk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deliberately broken patch yields 'fails at hunk N' with the file name, not a traceback."""
    from pascal_forge.stack.spec import builtin_patch_library

    lib = tmp_path / "lib"
    shutil.copytree(builtin_patch_library(), lib)
    first = sorted((lib / "torch").glob("0001-*.patch"))[0]
    text = first.read_text().splitlines(keepends=True)
    # Corrupt a context line of the first hunk so it no longer matches upstream.
    idx = next(i for i, line in enumerate(text) if line.startswith(" ") and line.strip())
    text[idx] = " definitely not upstream\n"
    first.write_text("".join(text))
    spec = tmp_path / "spec.toml"
    spec.write_text('patch_library = "lib"\n')
    root = tmp_path / "files"
    for rel, body in {"torch/utils/_triton.py": "x\n", "torch/_inductor/scheduler.py": "y\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(body)
    code = main(
        [
            "check",
            "--spec",
            str(spec),
            "--package",
            "pytorch-pascal",
            "--source-dir",
            f"pytorch-conda-forge={root}",
        ]
    )
    captured = capsys.readouterr()
    assert code == 4
    assert "fails at hunk 1 of torch/utils/_triton.py" in captured.out
    assert "Traceback" not in captured.err


@pytest.mark.integration
def test_wrong_pin_in_the_spec_fails_naming_the_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pascal_forge.stack.spec import builtin_spec_text

    good = "c7e04d1046304397b4580334038b558fe491af155fdea508224f140172cf9a82"
    bad = "0" * 64
    spec = tmp_path / "spec.toml"
    text = builtin_spec_text()
    assert good in text
    spec.write_text(text.replace(good, bad))
    code = main(
        ["check", "--spec", str(spec), "--package", "vllm-pascal", "--cache-dir", str(tmp_path / "cache")]
    )
    err = capsys.readouterr().err
    assert code == 6
    assert "vllm-0.8.5.tar.gz has sha256 " + good in err
    assert "pinned to " + bad in err
    assert not list((tmp_path / "cache").rglob("vllm-0.8.5.tar.gz"))  # nothing unverified kept


def test_conda_artifact_unpacks_to_site_packages(tmp_path: Path) -> None:
    """The overlay's upstream is a .conda (zip + tar.zst); its patches target site-packages paths."""
    import io
    import tarfile
    import zipfile

    import zstandard

    from pascal_forge.stack.sources import unpack

    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tf:
        data = b"def has_triton():\n    return True\n"
        info = tarfile.TarInfo("lib/python3.12/site-packages/torch/utils/_triton.py")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    artifact = tmp_path / "pytorch-2.6.0-x_300.conda"
    with zipfile.ZipFile(artifact, "w") as zf:
        zf.writestr("metadata.json", "{}")
        zf.writestr("info-pytorch-2.6.0-x_300.tar.zst", zstandard.ZstdCompressor().compress(b""))
        zf.writestr(
            "pkg-pytorch-2.6.0-x_300.tar.zst", zstandard.ZstdCompressor().compress(payload.getvalue())
        )
    tree = unpack(artifact, tmp_path / "tree")
    assert (tree / "torch" / "utils" / "_triton.py").read_text().startswith("def has_triton")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pytorch-2.6.0-x_300.conda", "tree"]

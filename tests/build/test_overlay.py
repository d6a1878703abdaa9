"""The pytorch overlay's transformation (generator/pascal_forge/overlay.py, shipped as repack.py).

Unit tests cover the archive safety, the dependency swap and relocation. The integration test
runs the same steps build.sh runs (extract, GNU patch without fuzz, install) on the synthetic
upstream artifact holding the real torch 2.6.0 gate files, and compares the result with an
untouched install of the same artifact.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from helpers.synthetic import GATE_FILES, PLACEHOLDER, SP, UPSTREAM_DEPENDS, synthetic_pytorch, write_conda
from pascal_forge.build import overlay
from pascal_forge.recipes.render import OVERLAY_MODULE
from pascal_forge.stack.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


def test_recipe_ships_the_tested_module_byte_for_byte() -> None:
    assert (
        ROOT / "recipes" / "vllm-0.8.5" / "pytorch-pascal" / "repack.py"
    ).read_bytes() == OVERLAY_MODULE.read_bytes()
    build_sh = (ROOT / "recipes" / "vllm-0.8.5" / "pytorch-pascal" / "build.sh").read_text("utf-8")
    assert 'repack.py" extract' in build_sh and 'repack.py" install' in build_sh


# --------------------------------------------------------------------------------------------
# unsafe archives


def _raw_tar(add: list[tarfile.TarInfo]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in add:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return raw.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


def _evil_conda(tmp_path: Path, members: list[tarfile.TarInfo]) -> Path:
    path = write_conda(tmp_path / "pytorch-2.6.0-evil_0.conda", {"name": "pytorch"}, {"ok.txt": b"ok"})
    # Rewrite the pkg tar with the hostile members (write_conda builds a valid one first).
    import zipfile

    stem = path.name.removesuffix(".conda")
    with zipfile.ZipFile(path) as zf:
        kept = {n: zf.read(n) for n in zf.namelist() if not n.startswith("pkg-")}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in kept.items():
            zf.writestr(name, data)
        zf.writestr(f"pkg-{stem}.tar.zst", zstandard.ZstdCompressor().compress(_raw_tar(members)))
    return path


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([_member("../escaped.txt")], "escapes the target folder"),
        ([_member("/tmp/absolute.txt")], "escapes the target folder"),
        ([_member("lib/a/../../../escaped.txt")], "escapes the target folder"),
        ([_member("lib/link", tarfile.SYMTYPE, "../../outside")], "outside the target folder"),
        ([_member("lib/link", tarfile.SYMTYPE, "/etc/passwd")], "outside the target folder"),
        ([_member("lib/hard", tarfile.LNKTYPE, "../outside")], "outside the target folder"),
        ([_member("dev/null0", tarfile.CHRTYPE)], "device, fifo or other special file"),
        ([_member("fifo", tarfile.FIFOTYPE)], "device, fifo or other special file"),
    ],
)
def test_extract_refuses_members_that_escape(
    tmp_path: Path, members: list[tarfile.TarInfo], why: str
) -> None:
    artifact = _evil_conda(tmp_path, [_member("lib/fine.txt"), *members])
    dest = tmp_path / "work" / "unpacked"
    with pytest.raises(overlay.UnsafeArchiveError, match=why) as err:
        overlay.extract(artifact, dest)
    assert artifact.name in str(err.value)
    assert not dest.exists(), "nothing may be written before every member is checked"
    assert not (tmp_path / "work" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()


def test_extract_follows_links_that_stay_inside(tmp_path: Path) -> None:
    # "lib/dir" -> "." is inside; a later "lib/dir/../../x" is caught by the name check, so plant a
    # link to a sibling folder that exists inside and then a member through a link to outside it.
    outside = tmp_path / "outside"
    outside.mkdir()
    artifact = _evil_conda(tmp_path, [_member("a/b", tarfile.SYMTYPE, ".."), _member("a/b/c.txt")])
    overlay.extract(artifact, tmp_path / "ok")  # resolves inside the target: allowed
    assert (tmp_path / "ok" / "c.txt").is_file()
    artifact = _evil_conda(tmp_path, [_member("a", tarfile.SYMTYPE, "."), _member("a/a/b/x.txt")])
    overlay.extract(artifact, tmp_path / "ok2")
    assert (tmp_path / "ok2" / "b" / "x.txt").is_file()


def test_repack_cli_reports_unsafe_archives_with_exit_1(tmp_path: Path) -> None:
    artifact = _evil_conda(tmp_path, [_member("../escaped.txt")])
    assert overlay.main(["extract", str(artifact), str(tmp_path / "dest")]) == 1
    assert overlay.main(["frobnicate"]) == 2


# --------------------------------------------------------------------------------------------
# dependencies and relocation


def test_overlay_depends_swaps_only_triton() -> None:
    out = overlay.overlay_depends(list(UPSTREAM_DEPENDS), "triton ==3.2.0 *pascal*")
    assert len(out) == len(UPSTREAM_DEPENDS)
    assert "triton ==3.2.0 *pascal*" in out
    assert "triton 3.2.0.*" not in out
    assert [d for d in out if not d.startswith("triton")] == [
        d for d in UPSTREAM_DEPENDS if not d.startswith("triton")
    ]
    with pytest.raises(ValueError, match="does not depend on triton"):
        overlay.overlay_depends(["python"], "triton ==3.2.0 *pascal*")


def test_spec_pins_the_upstream_depends_with_triton_swapped() -> None:
    """The recipe's run requirements (py3.12) are upstream's, with only triton swapped."""
    import rattler

    stack = load_spec().stack()
    run = [d.spec for d in stack.requirements["pytorch-pascal"].run if d.python in ("", "3.12")]
    want = overlay.overlay_depends(list(UPSTREAM_DEPENDS), "triton ==3.2.0 *pascal*")
    norm = sorted(str(rattler.MatchSpec(d)) for d in want)
    assert sorted(str(rattler.MatchSpec(d)) for d in run) == norm


def test_relocate_binary_keeps_every_offset() -> None:
    old, new = b"/very/long/placeholder/prefix", b"/opt/env"
    data = b"\x00head" + old + b"/lib\x00mid\x00" + old + b"\x00tail"
    out = overlay.relocate_binary(data, old, new)
    assert len(out) == len(data)
    assert out.split(b"\x00")[1] == b"head/opt/env/lib"
    assert out.endswith(b"\x00tail")
    with pytest.raises(ValueError, match="longer than the upstream placeholder"):
        overlay.relocate_binary(data, new, old)


# --------------------------------------------------------------------------------------------
# the whole transformation on the synthetic upstream (real torch 2.6.0 gate files)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.torchfiles import copy_pristine  # sha256-checked against torch 2.6.0's RECORD

    return synthetic_pytorch(
        tmp_path_factory.mktemp("upstream"), copy_pristine(tmp_path_factory.mktemp("torch"))
    )


def _transform(artifact: Path, work: Path, prefix: Path, patch: bool) -> None:
    """What build.sh does, step by step, with the same module and the same patch command."""
    unpacked = work / "unpacked"
    overlay.extract(artifact, unpacked)
    if patch:
        sp = unpacked / overlay.site_packages(unpacked)
        for entry in load_spec().patches_for("torch", "2.6.0"):
            with entry.path.open("rb") as fh:
                subprocess.run(
                    ["patch", "-p1", "-F0", "--no-backup-if-mismatch", "-d", str(sp)],
                    stdin=fh,
                    check=True,
                    capture_output=True,
                )
    overlay.install(unpacked, prefix)


@pytest.mark.integration
def test_only_the_gates_change_and_placeholders_are_relocated(artifact: Path, tmp_path: Path) -> None:
    # Two prefixes of equal length, so relocated files can be compared byte for byte after
    # swapping one prefix for the other.
    ours, theirs = tmp_path / "env-ours", tmp_path / "env-orig"
    _transform(artifact, tmp_path / "w1", ours, patch=True)
    _transform(artifact, tmp_path / "w2", theirs, patch=False)
    files = {p.relative_to(ours).as_posix() for p in ours.rglob("*") if p.is_file() or p.is_symlink()}
    assert files == {
        p.relative_to(theirs).as_posix() for p in theirs.rglob("*") if p.is_file() or p.is_symlink()
    }
    changed = set()
    for rel in sorted(files):
        a, b = ours / rel, theirs / rel
        if a.is_symlink():
            assert a.readlink() == b.readlink()
            continue
        if a.read_bytes().replace(str(ours).encode(), str(theirs).encode()) != b.read_bytes():
            changed.add(rel)
    assert changed == {f"{SP}/{g}" for g in GATE_FILES}
    # Placeholders became the prefix (text), and binary strings kept their length.
    torchrun = (ours / "bin" / "torchrun").read_text("utf-8")
    assert torchrun.startswith(f"#!{ours}/bin/python3.12\n")
    assert PLACEHOLDER not in torchrun
    blob = (ours / "lib" / "libtorch_probe.bin").read_bytes()
    assert len(blob) == len(f"{PLACEHOLDER}/lib".encode()) + len(b"\x00\x01probe\x00\x00tail\x00")
    assert f"{ours}/lib".encode() + b"\x00" in blob
    assert (ours / "bin" / "torchrun").stat().st_mode & 0o111
    # The gates accept major 6 now.
    gate = (ours / SP / "torch" / "utils" / "_triton.py").read_text("utf-8")
    assert ".major >= 6" in gate and ".major >= 7" not in gate
    assert (
        hashlib.sha256((theirs / SP / GATE_FILES[0]).read_bytes()).hexdigest()
        != hashlib.sha256(gate.encode()).hexdigest()
    )

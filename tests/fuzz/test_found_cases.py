"""Inputs that crashed a parser or the server before issue 16, found by fuzzing (tests/fuzz,
scripts/fuzz.py) or while writing its targets; each is now one of our errors or a 4xx."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from helpers import fuzz
from pascal_forge.build.channel import consistency_problems, read_build_record, read_packages
from pascal_forge.errors import ArchiveError, ChannelError, UpstreamError
from pascal_forge.stack.model import PatchEntry
from pascal_forge.stack.patches import Outcome, apply_one
from pascal_forge.stack.sources import unpack
from pascal_forge.update.upstream import parse_project_page

# --------------------------------------------------------------------------------------------
# archives


def _tar(tmp_path: Path, *members: tarfile.TarInfo, mode: str = "w") -> Path:
    path = tmp_path / "src.tar.gz"
    with tarfile.open(path, mode) as tf:
        for info in members:
            tf.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    return info


def test_zip_member_named_nul(tmp_path: Path) -> None:
    """zipfile cuts the name at NUL to "" and raises IndexError in ZipInfo.is_dir (scripts/fuzz.py)."""
    path = tmp_path / "src.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/a.py", b"")
        zf.writestr(zipfile.ZipInfo("\x00"), b"")
    with pytest.raises(ArchiveError, match=r"cannot unpack src\.zip: IndexError"):
        unpack(path, tmp_path / "tree")
    assert not (tmp_path / "tree").exists()


def test_link_that_leaves_the_tree_once_the_top_folder_is_dropped(tmp_path: Path) -> None:
    """tarfile's data filter accepts pkg/a -> ../b (inside the staging folder); the tree is pkg/."""
    path = _tar(tmp_path, _info("pkg/a.py", tarfile.SYMTYPE, "../outside.txt"), mode="w:gz")
    with pytest.raises(ArchiveError, match=r"a\.py links to '\.\./outside\.txt', outside the tree"):
        unpack(path, tmp_path / "work" / "tree")
    assert not (tmp_path / "work" / "tree").exists()
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == []  # no staging left


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (_info("../evil"), "OutsideDestinationError"),
        (_info("pkg/l", tarfile.SYMTYPE, "/etc/passwd"), "AbsoluteLinkError"),
        (_info("pkg/f", tarfile.FIFOTYPE), "SpecialFileError"),
    ],
)
def test_unsafe_tar_member_is_an_archive_error(tmp_path: Path, member: tarfile.TarInfo, why: str) -> None:
    """tarfile's FilterError once escaped as a traceback."""
    with pytest.raises(ArchiveError, match=why):
        unpack(_tar(tmp_path, member, mode="w:gz"), tmp_path / "tree")


def test_truncated_download(tmp_path: Path) -> None:
    path = _tar(tmp_path, _info("pkg/a.py"), mode="w:gz")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ArchiveError, match=r"cannot unpack src\.tar\.gz"):
        unpack(path, tmp_path / "tree")


# --------------------------------------------------------------------------------------------
# patch files


def test_patch_naming_a_non_utf8_file(tmp_path: Path) -> None:
    """GNU patch echoes the name; decoding its output as UTF-8 raised UnicodeDecodeError."""
    (tmp_path / "tree").mkdir()
    patch = tmp_path / "p.patch"
    patch.write_bytes(b"--- a/caf\xe9\n+++ b/caf\xe9\n@@ -1 +1 @@\n-a\n+b\n")
    entry = PatchEntry("p", "vllm", "p.patch", patch, "", ("x",), "r", (), "p", 1)
    result = apply_one(tmp_path / "tree", entry)
    assert result.outcome == Outcome.FAILED
    assert "caf\ufffd" in result.detail or "caf\ufffd" in " ".join(result.files) or result.detail


# --------------------------------------------------------------------------------------------
# channel serve


def test_segment_longer_than_a_file_name_is_404() -> None:
    """os.open raised ENAMETOOLONG inside the handler: a traceback and a dropped connection."""
    with fuzz.served_channel() as (port, errors):
        fuzz.check_request(port, errors, f"GET /linux-64/{'a' * 300}.conda HTTP/1.1\r\n\r\n".encode())
        assert not errors


# --------------------------------------------------------------------------------------------
# repodata and the build record


def _channel(tmp_path: Path, repodata: bytes) -> Path:
    (tmp_path / "noarch").mkdir()
    (tmp_path / "noarch" / "repodata.json").write_bytes(repodata)
    return tmp_path


RECORD = {"name": "d", "version": "1", "build": "h0_0", "size": 1, "sha256": "e" * 64}


@pytest.mark.parametrize(
    ("repodata", "why"),
    [
        (b"\xff", "cannot be read as JSON"),
        (b"[]", "is not a JSON object"),
        (b'{"packages": 1}', "'packages' is not an object"),
        (json.dumps({"packages.conda": {"../../x.conda": RECORD}}).encode(), "is not a package file name"),
        (
            json.dumps({"packages.conda": {"d-1-h0_0.conda": {**RECORD, "size": "1"}}}).encode(),
            ".size is not",
        ),
        (json.dumps({"packages.conda": {"d-1-h0_0.conda": {**RECORD, "depends": "x"}}}).encode(), ".depends"),
        (b"[" * 100_000, "cannot be read as JSON"),
    ],
)
def test_damaged_repodata_is_a_channel_error(tmp_path: Path, repodata: bytes, why: str) -> None:
    channel = _channel(tmp_path, repodata)
    with pytest.raises(ChannelError, match=r"repodata\.json") as info:
        read_packages(channel)
    assert why in info.value.message
    # ensure_channel's check: a damaged index is a reason to re-index, not a crash
    (problem,) = [p for p in consistency_problems(channel) if why in p]
    assert "repodata.json" in problem


def test_damaged_build_record_is_a_channel_error(tmp_path: Path) -> None:
    channel = _channel(tmp_path, b'{"packages": {}}')
    (channel / "noarch" / ".pascal-forge-build.json").write_text('{"a.conda": 1}')
    with pytest.raises(ChannelError, match=r"not a definition hash"):
        read_build_record(channel, "noarch")


# --------------------------------------------------------------------------------------------
# PEP 691 pages

PAGE = "https://pypi.example.org/simple/vllm/"
GOOD = {"filename": "vllm-0.8.5.tar.gz", "url": "../../f/vllm-0.8.5.tar.gz", "hashes": {"sha256": "c" * 64}}


def _page(*files: object) -> bytes:
    return json.dumps({"meta": {"api-version": "1.1"}, "files": list(files)}).encode()


def test_pep691_files_that_cannot_be_pinned_safely_are_left_out() -> None:
    files = parse_project_page(
        "vllm",
        PAGE,
        _page(
            GOOD,
            {**GOOD, "filename": "../../vllm-0.8.5.tar.gz"},  # would be written outside the cache
            {**GOOD, "url": "http://[::1/vllm-0.8.5.tar.gz"},  # urljoin: ValueError Invalid IPv6 URL
            {**GOOD, "hashes": {"sha256": "not-hex"}},
            {**GOOD, "filename": 5},
            7,
        ),
    )
    assert [(f.filename, f.url) for f in files] == [
        ("vllm-0.8.5.tar.gz", "https://pypi.example.org/f/vllm-0.8.5.tar.gz")
    ]


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"meta": {"api-version": "1.0"}, "files": 5}).encode(),  # TypeError: not iterable
        b"[" * 100_000,  # RecursionError in the JSON parser
        b"\xff\xfe",
    ],
)
def test_pep691_page_that_is_not_one(body: bytes) -> None:
    with pytest.raises(UpstreamError, match="not a PEP 691 project page"):
        parse_project_page("vllm", PAGE, body)

"""Fuzz targets: a Hypothesis strategy of hostile inputs for each user-facing parser or server, and the
property each must keep: it succeeds or raises one of our error classes (never another exception),
and writes nothing outside its own folder.

Shared by tests/fuzz/test_fuzz.py (a bounded, derandomized number of examples in every test run) and
scripts/fuzz.py (a longer campaign that prints the examples tried and the crashes found per target).
"""

from __future__ import annotations

import io
import json
import math
import os
import socket
import tarfile
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from pascal_forge.build.channel import consistency_problems, read_build_record, read_packages
from pascal_forge.errors import PascalForgeError
from pascal_forge.hosting.serve import (
    BadRequestError,
    ChannelServer,
    NotServedError,
    make_server,
    request_segments,
)
from pascal_forge.stack.model import PatchEntry
from pascal_forge.stack.patches import Outcome, apply_one
from pascal_forge.stack.sources import unpack
from pascal_forge.stack.spec import load_spec
from pascal_forge.update.upstream import parse_project_page

SECRET = b"outside: must never be changed, linked to or served\n"


class Blob(bytes):
    """Bytes with a short repr: Hypothesis prints every failing example, some are 100 kB."""

    def __repr__(self) -> str:
        return (
            f"Blob({bytes(self[:160])!r}... {len(self)} bytes)"
            if len(self) > 160
            else f"Blob({bytes(self)!r})"
        )


# --------------------------------------------------------------------------------------------
# building blocks

#: Text that hurts parsers: separators, traversal, NUL and control characters, non-BMP, long.
NASTY = st.sampled_from(
    [
        "",
        ".",
        "..",
        "../..",
        "/",
        "/etc/passwd",
        "a/../../b",
        "\x00",
        "\x7f",
        "\u202e",
        "\ud7ff",
        "😀",
        "%2e%2e",
        "\\",
    ]
)
TEXT = st.one_of(NASTY, st.text(max_size=40), st.text(alphabet="ab./-_\\%0", max_size=300))
SCALAR = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
VALUE = st.recursive(
    SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8
)


def toml_value(value: Any) -> str:
    """A TOML literal for ``value`` (fuzz input only; recipes are rendered from templates)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return (
        "{"
        + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in value.items())
        + "}"
    )


def toml_doc(table: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}\n" for k, v in table.items())


def _mutated(plausible: dict[str, Any], keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """``plausible`` with some keys dropped or replaced by any value, and maybe a stray key."""
    return st.fixed_dictionaries(
        {},
        optional={k: st.one_of(st.just(plausible[k]), VALUE) if k in plausible else VALUE for k in keys},
    )


# --------------------------------------------------------------------------------------------
# spec files


_SOURCE = {
    "recipe": "vllm-pascal",
    "name": "v",
    "pinned_by": "me",
    "url": "https://example.org/v.tar.gz",
    "sha256": "a" * 64,
    "git": "https://example.org/v.git",
    "rev": "b" * 40,
    "patched": True,
    "python": "3.12",
    "target": "sub",
}
_STACK = {
    "extends": "vllm-0.8.5",
    "vllm": "0.8.5",
    "cuda": "12.6",
    "python": ["3.12"],
    "archs": ["6.1"],
    "build_number": 0,
    "draft": "",
    "requirements": {"vllm-pascal": {"run": ["numpy >=1"]}},
}
SOURCE = _mutated(_SOURCE, [*_SOURCE, "check_only", "file_name", "bogus"])
STACK = st.tuples(_mutated(_STACK, [*_STACK, "torch", "triton"]), st.lists(SOURCE, max_size=2)).map(
    lambda t: {**t[0], **({"sources": t[1]} if t[1] else {})}
)
SPEC_TABLE = st.fixed_dictionaries(
    {"stacks": st.dictionaries(st.one_of(st.just("x"), st.just("vllm-0.8.5"), TEXT), STACK, max_size=2)},
    optional={"default_stack": st.one_of(st.just("x"), VALUE), "schema": st.one_of(st.just(1), VALUE)},
)
#: A whole spec file: structured (mostly valid TOML, hostile values) or any text or bytes.
SPEC = st.one_of(
    SPEC_TABLE.map(lambda t: toml_doc(t).encode()),
    VALUE.map(lambda v: toml_doc({"stacks": v}).encode()),
    st.text(max_size=200).map(str.encode),
    st.binary(max_size=200),
)


def check_spec(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.toml"
        path.write_bytes(data)
        with suppress(PascalForgeError):
            load_spec(path)
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["spec.toml"], "the loader wrote something"


# --------------------------------------------------------------------------------------------
# series.toml

_PATCH_FILE = "0001-fix.patch"
_PATCH = {
    "id": "fix-one",
    "file": _PATCH_FILE,
    "versions": "==2.6.0",
    "targets": ["torch/x.py"],
    "reason": "why",
    "references": ["https://example.org"],
    "proof": "tests",
}
SERIES = st.one_of(
    st.lists(_mutated(_PATCH, [*_PATCH, "bogus"]), max_size=3).map(
        lambda ps: toml_doc({"patch": ps}).encode()
    ),
    VALUE.map(lambda v: toml_doc({"patch": v}).encode()),
    st.binary(max_size=200),
)


def check_series(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / "lib" / "torch"
        lib.mkdir(parents=True)
        (lib / _PATCH_FILE).write_text("--- a/torch/x.py\n+++ b/torch/x.py\n", "utf-8")
        (lib / "series.toml").write_bytes(data)
        spec = Path(tmp) / "spec.toml"
        spec.write_text('patch_library = "lib"\n', "utf-8")
        with suppress(PascalForgeError):
            load_spec(spec)


# --------------------------------------------------------------------------------------------
# patch files


def st_prefix(text: str) -> str:
    return ("+-  "[len(text) % 4]) + text


_NAME = st.one_of(
    st.sampled_from(["a/x", "b/x", "a/new", "a/../../outside.txt", "/tmp/abs", "a/caf\xe9"]), TEXT
)
_LINE = st.one_of(
    st.sampled_from(["-a", "+a", " a", "-b", "+B", " b", "\\ No newline at end of file", "@@ -1 +1 @@", ""]),
    st.text(max_size=20).map(st_prefix),
)


_HUNK = st.tuples(
    st.integers(0, 5), st.integers(0, 5), st.integers(0, 5), st.integers(0, 5), st.lists(_LINE, max_size=6)
).map(lambda h: f"@@ -{h[0]},{h[1]} +{h[2]},{h[3]} @@\n" + "".join(f"{line}\n" for line in h[4]))
_GIT_HEADER = st.sampled_from(
    [
        "",
        "diff --git a/x b/x\n",
        "diff --git a/link b/link\nnew file mode 120000\n",
        "diff --git a/x b/y\nrename from x\nrename to ../../outside.txt\n",
        "diff --git a/x b/x\ndeleted file mode 100644\n",
        "diff --git a/x b/x\nold mode 100644\nnew mode 100755\n",
    ]
)
_FILE_DIFF = st.tuples(_GIT_HEADER, _NAME, _NAME, st.lists(_HUNK, max_size=2)).map(
    lambda f: f"{f[0]}--- {f[1]}\n+++ {f[2]}\n" + "".join(f[3])
)
PATCH = st.one_of(
    st.lists(_FILE_DIFF, min_size=1, max_size=3).map(lambda fs: "".join(fs).encode("utf-8", "surrogatepass")),
    st.lists(_FILE_DIFF, min_size=1, max_size=2).map(lambda fs: "".join(fs).encode("latin-1", "replace")),
    st.binary(max_size=300),
)


def check_patch(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tree = root / "tree"
        tree.mkdir()
        (tree / "x").write_text("a\nb\nc\n", "utf-8")
        (root / "outside.txt").write_bytes(SECRET)
        patch = root / "p.patch"
        patch.write_bytes(data)
        entry = PatchEntry("fuzz", "vllm", "p.patch", patch, "", ("x",), "fuzz", (), "fuzz", 1)
        try:
            result = apply_one(tree, entry)
            assert isinstance(result.outcome, Outcome)
        except PascalForgeError:
            pass
        assert (root / "outside.txt").read_bytes() == SECRET, "a patch changed a file outside the tree"
        assert sorted(p.name for p in root.iterdir()) == ["outside.txt", "p.patch", "tree"], (
            "a patch wrote outside the tree"
        )
        _assert_links_inside(tree)


def _assert_links_inside(tree: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():  # realpath, not resolve(): a link loop is harmless, not a crash
                assert Path(os.path.realpath(path)).is_relative_to(os.path.realpath(tree)), (
                    f"{path} links outside"
                )


# --------------------------------------------------------------------------------------------
# archives (sources unpacking)

_KINDS = st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo", "chardev"])
_MEMBER = st.tuples(
    st.one_of(
        st.sampled_from(["pkg/a.py", "pkg", "pkg/sub/b.py", "../evil", "/abs/evil", "pkg/../../evil"]), TEXT
    ),
    _KINDS,
    st.one_of(st.sampled_from(["../../outside.txt", "/etc/passwd", "pkg/a.py", "a.py"]), TEXT),
    st.binary(max_size=20),
)


@dataclass(frozen=True)
class Archive:
    name: str  # the file name decides how unpack() reads it
    data: bytes


def _tar(members: list[tuple[str, str, str, bytes]], mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for name, kind, link, data in members:
            info = tarfile.TarInfo(name)
            info.type = {
                "file": tarfile.REGTYPE,
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
                "chardev": tarfile.CHRTYPE,
            }[kind]
            info.linkname = link if kind in {"symlink", "hardlink"} else ""
            info.size = len(data) if kind == "file" else 0
            tf.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return buf.getvalue()


def _zip(members: list[tuple[str, str, str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # duplicate names are part of the fuzz
        for name, kind, link, data in members:
            info = zipfile.ZipInfo(name or "empty")
            if kind == "symlink":
                info.external_attr = 0o120777 << 16  # a symlink to unzip; zipfile writes a plain file
            zf.writestr(info, link.encode("utf-8", "surrogatepass") if kind == "symlink" else data)
    return buf.getvalue()


def _archive(members: list[tuple[str, str, str, bytes]], fmt: str, cut: int) -> Archive:
    data = {
        "tar": lambda: _tar(members, "w"),
        "tar.gz": lambda: _tar(members, "w:gz"),
        "zip": lambda: _zip(members),
    }[fmt]()
    return Archive(f"src.{fmt}", Blob(data[:cut] if cut else data))  # cut: a truncated download


ARCHIVE = st.one_of(
    st.builds(_archive, st.lists(_MEMBER, max_size=4), st.sampled_from(["tar", "tar.gz", "zip"]), st.just(0)),
    st.builds(
        _archive,
        st.lists(_MEMBER, max_size=3),
        st.sampled_from(["tar", "tar.gz", "zip"]),
        st.integers(1, 600),
    ),
    st.builds(
        Archive,
        st.sampled_from(["src.tar.gz", "src.zip", "src.tar.bz2", "src.whl"]),
        st.binary(max_size=200).map(Blob),
    ),
)


def check_archive(archive: Archive) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "outside.txt").write_bytes(SECRET)
        path = root / archive.name
        path.write_bytes(archive.data)
        dest = root / "work" / "tree"
        try:
            unpack(path, dest)
        except PascalForgeError:
            assert not dest.exists(), "a failed unpack left a half-written tree"
        assert (root / "outside.txt").read_bytes() == SECRET, "an archive member changed a file outside"
        assert sorted(p.name for p in root.iterdir()) == sorted(["outside.txt", archive.name, "work"])
        assert {p.name for p in (root / "work").iterdir()} <= {"tree"}, "staging was left behind"
        if dest.exists():
            _assert_links_inside(dest)


# --------------------------------------------------------------------------------------------
# channel serve


_SEGMENT = st.one_of(
    st.sampled_from(["noarch", "linux-64", "repodata.json", "demo-1.0-h0_0.conda", "shards", "index.html"]),
    st.sampled_from(
        ["..", ".", "%2e%2e", "%2F", "%00", "%ff", "a" * 300 + ".conda", ".pascal-forge-build.json"]
    ),
    TEXT.map(lambda t: "".join(c for c in t if c > " " and c != "/")),
)
TARGET = st.one_of(
    st.lists(_SEGMENT, max_size=4).map(lambda s: "/" + "/".join(s)),
    st.sampled_from(["*", "//x", "http://127.0.0.1/noarch/repodata.json", "/?q", "/#f", "/" + "a" * 3000]),
    st.text(max_size=40).map(lambda t: "/" + t.replace(" ", "").replace("\r", "").replace("\n", "")),
)
_HEADER = st.one_of(
    st.sampled_from(
        [
            "If-None-Match: *",
            'If-None-Match: "x"',
            "Content-Length: -1",
            "Content-Length: 99999999999999999999",
            "Transfer-Encoding: chunked",
            "Expect: 100-continue",
            "Range: bytes=5-1",
            "Host:",
            "X: " + "a" * 70000,
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=30),
)
REQUEST = st.tuples(
    st.one_of(
        st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "BREW", "get"]),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", max_size=10),
    ),
    TARGET,
    st.sampled_from(
        ["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "", "HTTP/1.1 x", "HTTP/99.99", "http/1.1"]
    ),
    st.lists(_HEADER, max_size=3),
).map(
    lambda r: Blob(
        (f"{r[0]} {r[1]} {r[2]}".rstrip() + "\r\n" + "".join(f"{h}\r\n" for h in r[3]) + "\r\n").encode(
            "utf-8", "surrogatepass"
        )
    )
)


class RecordingServer(ChannelServer):
    """Records exceptions that escape a request handler (socketserver prints them as tracebacks)."""

    errors: list[str]

    def handle_error(self, request: Any, client_address: Any) -> None:
        import traceback

        del request, client_address
        self.errors.append(traceback.format_exc())


@contextmanager
def served_channel() -> Iterator[tuple[int, list[str]]]:
    """A channel-shaped folder served on 127.0.0.1 (port, list of handler errors)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        channel = root / "channel"
        for sub in ("linux-64", "noarch"):
            (channel / sub).mkdir(parents=True)
            (channel / sub / "repodata.json").write_text('{"packages": {}}', "utf-8")
        (channel / "linux-64" / "demo-1.0-h0_0.conda").write_bytes(b"package bytes\n")
        (channel / "linux-64" / ".pascal-forge-build.json").write_bytes(SECRET)
        (root / "outside.txt").write_bytes(SECRET)
        (channel / "linux-64" / "link.conda").symlink_to(root / "outside.txt")
        server = make_server(channel, "127.0.0.1", 0, io.StringIO())
        server.__class__ = RecordingServer
        server.errors = []
        server.timeout = 5
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield int(server.server_address[1]), server.errors
        finally:
            server.shutdown()
            server.server_close()


def check_request(port: int, errors: list[str], request: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer (and close) before reading an oversized request
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    assert not errors, f"the handler raised: {errors[-1]}"
    assert SECRET not in data, "the server sent a file it must not serve"
    if data:
        words = data.split(b"\r\n", 1)[0].split(b" ")
        # An HTTP/0.9-style request line gets http.server's bare "400 ..." answer, without a status line.
        code = words[0] if words[0].isdigit() else words[1]
        assert words[0].startswith(b"HTTP/1.") or words[0].isdigit(), data[:100]
        assert int(code) < 500 or int(code) in {501, 505}, data[:200]


def check_target(target: str) -> None:
    """The pure path check: segments of a servable file, or one of the two 4xx answers."""
    try:
        segments = request_segments(target)
    except (BadRequestError, NotServedError):
        return
    assert all(s and not s.startswith(".") and "/" not in s and "\x00" not in s for s in segments)


# --------------------------------------------------------------------------------------------
# PEP 691 pages and repodata

_FILE_ENTRY = {
    "filename": "vllm-0.8.5.tar.gz",
    "url": "https://files.example.org/vllm-0.8.5.tar.gz",
    "hashes": {"sha256": "c" * 64},
    "core-metadata": {"sha256": "d" * 64},
    "yanked": False,
}
PEP691_PAGE = st.one_of(
    st.tuples(
        st.one_of(st.just("1.1"), VALUE),
        st.lists(_mutated(_FILE_ENTRY, [*_FILE_ENTRY, "data-dist-info-metadata"]), max_size=3),
    ).map(lambda t: json.dumps({"meta": {"api-version": t[0]}, "files": t[1]}).encode()),
    VALUE.map(lambda v: json.dumps({"meta": {"api-version": "1.0"}, "files": v}).encode()),
    VALUE.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.sampled_from([100, 5000, 100_000]).map(lambda n: Blob(b"[" * n)),
)


def check_pep691(body: bytes) -> None:
    try:
        files = parse_project_page("vllm", "https://pypi.example.org/simple/vllm/", body)
    except PascalForgeError:
        return
    for f in files:
        assert "/" not in f.filename and "\x00" not in f.filename and f.filename not in {".", ".."}
        assert len(f.sha256) == 64


_RECORD = {
    "name": "demo",
    "version": "1.0",
    "build": "h0_0",
    "build_number": 0,
    "depends": [],
    "size": 14,
    "sha256": "e" * 64,
}
REPODATA = st.one_of(
    st.dictionaries(
        st.one_of(
            st.sampled_from(["demo-1.0-h0_0.conda", "../../outside.txt", ".hidden.conda", "x/y.conda"]), TEXT
        ),
        st.one_of(_mutated(_RECORD, [*_RECORD, "bogus"]), VALUE),
        max_size=3,
    ).map(lambda p: json.dumps({"packages.conda": p}).encode()),
    VALUE.map(lambda v: json.dumps({"packages": v}).encode()),
    VALUE.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=100),
)


def check_repodata(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        channel = Path(tmp) / "channel"
        (channel / "noarch").mkdir(parents=True)
        (channel / "noarch" / "repodata.json").write_bytes(data)
        (channel / "noarch" / ".pascal-forge-build.json").write_bytes(data)
        try:
            for p in read_packages(channel):
                assert (channel / p.subdir / p.file_name).resolve().parent == (channel / p.subdir).resolve()
        except PascalForgeError:
            pass
        with suppress(PascalForgeError):
            read_build_record(channel, "noarch")
        assert isinstance(consistency_problems(channel), list)


#: name -> (strategy, check); "serve" needs a running server (see served_channel).
TARGETS: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], None]]] = {
    "spec": (SPEC, check_spec),
    "series": (SERIES, check_series),
    "patch": (PATCH, check_patch),
    "archive": (ARCHIVE, check_archive),
    "serve-path": (TARGET, check_target),
    "pep691": (PEP691_PAGE, check_pep691),
    "repodata": (REPODATA, check_repodata),
}

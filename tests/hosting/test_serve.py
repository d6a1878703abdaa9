"""`pascal-forge channel serve`: read-only, nothing outside the channel, installable with py-rattler."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest

from helpers.condapkgs import Pkg, install_prefix, make_channel
from helpers.hostutil import FileWatch, cli_server, raw_request, stop_and_log
from pascal_forge.errors import ChannelError, ServeError
from pascal_forge.hosting.serve import (
    BadRequestError,
    ChannelServer,
    NotServedError,
    make_server,
    request_segments,
)

SECRET = b"TOP-SECRET-7f3a9c outside the channel\n"
PACKAGE = b"not really a package, but bytes the server must return exactly\n"


def _plain_channel(root: Path) -> Path:
    """A channel-shaped folder (the file server does not parse packages)."""
    for sub in ("linux-64", "noarch"):
        (root / sub).mkdir(parents=True)
        (root / sub / "repodata.json").write_text(json.dumps({"info": {"subdir": sub}, "packages": {}}))
    (root / "linux-64" / "demo-1.0-h0_0.conda").write_bytes(PACKAGE)
    (root / "linux-64" / ".pascal-forge-build.json").write_text('{"demo-1.0-h0_0.conda": "hash"}\n')
    (root / "index.html").write_text("<html>channel</html>\n")
    return root


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ChannelServer, StringIO]]:
    channel = _plain_channel(tmp_path / "channel")
    log = StringIO()
    server = make_server(channel, "127.0.0.1", 0, log)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, log
    finally:
        server.shutdown()
        server.server_close()


def _port(server: ChannelServer) -> int:
    return int(server.server_address[1])


def test_serves_channel_files_exactly(served: tuple[ChannelServer, StringIO]) -> None:
    server, _ = served
    got = raw_request(_port(server), "/linux-64/demo-1.0-h0_0.conda")
    assert got.status == 200
    assert got.body == PACKAGE
    assert got.headers["content-length"] == str(len(PACKAGE))
    assert got.headers["content-type"] == "application/octet-stream"
    repodata = raw_request(_port(server), "/noarch/repodata.json")
    assert repodata.status == 200
    assert repodata.headers["content-type"] == "application/json"
    assert json.loads(repodata.body)["info"]["subdir"] == "noarch"
    assert raw_request(_port(server), "/").body == b"<html>channel</html>\n"


def test_head_and_etag(served: tuple[ChannelServer, StringIO]) -> None:
    server, _ = served
    head = raw_request(_port(server), "/linux-64/demo-1.0-h0_0.conda", method="HEAD")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == str(len(PACKAGE))
    etag = head.headers["etag"]
    cached = raw_request(_port(server), "/linux-64/demo-1.0-h0_0.conda", extra=f"If-None-Match: {etag}\r\n")
    assert cached.status == 304
    assert cached.body == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_only_get_and_head(served: tuple[ChannelServer, StringIO], method: str) -> None:
    server, _ = served
    target = server.root / "linux-64" / "demo-1.0-h0_0.conda"
    got = raw_request(_port(server), "/linux-64/demo-1.0-h0_0.conda", method=method)
    assert got.status == 405
    assert got.headers["allow"] == "GET, HEAD"
    assert target.read_bytes() == PACKAGE  # untouched


def test_unknown_method_is_501(served: tuple[ChannelServer, StringIO]) -> None:
    server, _ = served
    assert raw_request(_port(server), "/", method="BREW").status == 501


@pytest.mark.parametrize(
    "target",
    [
        "/linux-64",  # directories: no listings
        "/linux-64/",
        "/noarch/",
        "/linux-64/.pascal-forge-build.json",  # dotfiles (the build record)
        "/linux-64/%2epascal-forge-build.json",
        "/README.md",  # not a channel file
        "/linux-64/notes.txt",
        "/linux-64/deep/x.conda",
    ],
)
def test_no_listings_no_dotfiles_no_other_files(served: tuple[ChannelServer, StringIO], target: str) -> None:
    server, _ = served
    (server.root / "linux-64" / "notes.txt").write_text("private notes\n")
    (server.root / "README.md").write_text("readme\n")
    got = raw_request(_port(server), target)
    assert got.status == 404, target
    assert b"demo-1.0" not in got.body
    assert b"hash" not in got.body


def test_one_log_line_per_request(served: tuple[ChannelServer, StringIO]) -> None:
    server, log = served
    targets = ["/noarch/repodata.json", "/missing.conda", "/../x", "/linux-64/demo-1.0-h0_0.conda"]
    for target in targets:
        raw_request(_port(server), target)
    raw_request(_port(server), "/", method="POST")
    lines = log.getvalue().splitlines()
    assert len(lines) == len(targets) + 1
    assert re.fullmatch(r'127\.0\.0\.1 \[.+\] "GET /noarch/repodata\.json HTTP/1\.1" 200 \d+', lines[0])
    assert lines[1].endswith('"GET /missing.conda HTTP/1.1" 404 0')
    assert lines[3].endswith(f'"GET /linux-64/demo-1.0-h0_0.conda HTTP/1.1" 200 {len(PACKAGE)}')
    assert lines[4].endswith('"POST / HTTP/1.1" 405 0')


def _escape_targets(secret: Path) -> list[str]:
    abs_secret = secret.as_posix()
    quoted = abs_secret.replace("/", "%2f")
    return [
        "/../secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/linux-64/../../secret.txt",
        "/linux-64/%2e%2e/%2e%2e/secret.txt",
        "/linux-64/..%2f..%2fsecret.txt",
        "/noarch/..%5c..%5csecret.txt",
        "/..\\secret.txt",
        "/%252e%252e/secret.txt",  # double encoding
        "/%c0%ae%c0%ae/secret.txt",  # overlong UTF-8 dots
        "/./secret.txt",
        "//secret.txt",
        abs_secret,  # an absolute path as the request path
        "/" + quoted,
        f"/{quoted}",
        f"/%2f{abs_secret.lstrip('/')}",
        "/linux-64/repodata.json%00/../../secret.txt",
        "/index.html/../../secret.txt",
        "http://127.0.0.1/../secret.txt",  # absolute-form target
        "../secret.txt",
        "secret.txt",
        "/linux-64/leak.conda",  # symlink to the secret
        "/noarch/repodata.json.zst",  # symlink to the secret, with an allowed name
        "/escape-64/repodata.json",  # a subdir that is a symlink to a folder outside
        "/linux-64/shards/" + "a" * 64 + ".msgpack.zst",  # shards folder is a symlink outside
    ]


def test_nothing_outside_the_channel_is_read(tmp_path: Path) -> None:
    """Plant a secret beside the channel and links to it inside; no request may open it."""
    channel = _plain_channel(tmp_path / "channel")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "repodata.json").write_bytes(SECRET)
    (outside / ("a" * 64 + ".msgpack.zst")).write_bytes(SECRET)
    (channel / "linux-64" / "leak.conda").symlink_to("../../secret.txt")
    (channel / "noarch" / "repodata.json.zst").symlink_to(secret)
    (channel / "escape-64").symlink_to(outside)
    (channel / "linux-64" / "shards").symlink_to(outside)

    watch = FileWatch([secret, outside / "repodata.json", outside / ("a" * 64 + ".msgpack.zst")])
    try:
        assert secret.read_bytes() == SECRET
        assert watch.events() == [secret, secret]  # the watch works: our own open and read
        log = StringIO()
        server = make_server(channel, "127.0.0.1", 0, log)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            for target in _escape_targets(secret):
                got = raw_request(_port(server), target)
                assert got.status in {400, 403, 404}, (target, got.status)
                assert b"TOP-SECRET" not in got.body, target
            # The server still serves the channel itself.
            assert raw_request(_port(server), "/linux-64/demo-1.0-h0_0.conda").body == PACKAGE
        finally:
            server.shutdown()
            server.server_close()
        assert watch.events() == [], "a file outside the channel was opened"
    finally:
        watch.close()
    assert len(log.getvalue().splitlines()) == len(_escape_targets(secret)) + 1


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/", ("index.html",)),
        ("/linux-64/repodata.json", ("linux-64", "repodata.json")),
        ("/linux-64/repodata.json?x=1", ("linux-64", "repodata.json")),
        ("/noarch/foo-1.0-py_0.tar.bz2", ("noarch", "foo-1.0-py_0.tar.bz2")),
        (
            "/linux-64/vllm-pascal-0.8.5-cuda126py312_pascal_h1_0.conda",
            ("linux-64", "vllm-pascal-0.8.5-cuda126py312_pascal_h1_0.conda"),
        ),
        ("/linux-64/shards/" + "0" * 64 + ".msgpack.zst", ("linux-64", "shards", "0" * 64 + ".msgpack.zst")),
        ("/linux-64/vllm%2Dpascal-0.8.5-h_0.conda", ("linux-64", "vllm-pascal-0.8.5-h_0.conda")),
    ],
)
def test_request_segments_accepts_channel_paths(target: str, expected: tuple[str, ...]) -> None:
    assert request_segments(target) == expected


@pytest.mark.parametrize("target", ["", "*", "x", "http://h/", "//etc/passwd"])
def test_request_segments_bad_targets(target: str) -> None:
    with pytest.raises(BadRequestError):
        request_segments(target)


@pytest.mark.parametrize(
    "target",
    [
        "/%ff.conda",
        "/linux-64/%00.conda",
        "/LINUX-64/repodata.json",
        "/linux-64/x.conda/",
        "/..",
        "/linux-64/..",
        "/linux-64/%2e%2e",
        "/linux-64/shards/..",
        "/./repodata.json",
    ],
)
def test_request_segments_not_served(target: str) -> None:
    with pytest.raises(NotServedError):
        request_segments(target)


def test_serve_refuses_a_folder_that_is_not_a_channel(tmp_path: Path) -> None:
    with pytest.raises(ChannelError, match="not an indexed channel"):
        make_server(tmp_path, "127.0.0.1", 0)
    with pytest.raises(ChannelError, match="not a folder"):
        make_server(tmp_path / "missing", "127.0.0.1", 0)


def test_port_in_use_is_a_serve_error(served: tuple[ChannelServer, StringIO]) -> None:
    server, _ = served
    with pytest.raises(ServeError) as info:
        make_server(server.root, "127.0.0.1", _port(server))
    assert info.value.exit_code == 31
    assert "--port" in info.value.hint


@pytest.mark.integration
def test_install_over_http_from_served_channel(tmp_path: Path) -> None:
    """Criterion 1: py-rattler solves and installs from `channel serve` on 127.0.0.1."""
    channel = make_channel(
        tmp_path / "channel",
        [
            Pkg("triton", "3.2.0", "cuda126py312_pascal_h1a2b3c4_0"),
            Pkg("pytorch", "2.6.0", "cuda126_py312_pascal_h5d6e7f8_0", depends=("triton ==3.2.0 *pascal*",)),
            Pkg(
                "vllm-pascal",
                "0.8.5",
                "cuda126py312_pascal_h9a8b7c6_0",
                depends=("pytorch ==2.6.0 *pascal*", "triton ==3.2.0 *pascal*"),
            ),
            Pkg("pascal-forge-docs", "1.0", "0", subdir="noarch"),
        ],
    )
    (channel / "linux-64" / ".pascal-forge-build.json").write_text("{}\n")
    prefix = tmp_path / "env"
    with cli_server(channel) as (url, proc):
        records = install_prefix(prefix, [url], ["vllm-pascal", "pascal-forge-docs"], tmp_path / "pkgs")
        code, log = stop_and_log(proc)
    assert code == 0
    names = sorted(r.name.normalized for r in records)
    assert names == ["pascal-forge-docs", "pytorch", "triton", "vllm-pascal"]
    assert all(str(r.url).startswith(url) for r in records)
    assert all("_pascal_" in str(r.build) for r in records if r.name.normalized != "pascal-forge-docs")
    for name in names:
        assert (prefix / "share" / "pascal-forge-test" / f"{name}.txt").read_text() == f"{name}\n"
        assert list((prefix / "conda-meta").glob(f"{name}-*.json"))
    # One log line per request; each package file was fetched once, with 200.
    assert all(
        re.fullmatch(r'127\.0\.0\.1 \[.+\] "(GET|HEAD) \S+ HTTP/1\.1" \d{3} \d+', line) for line in log
    ), log
    for rec in records:
        fetched = [line for line in log if f"/{rec.file_name} " in line]
        assert len(fetched) == 1, (rec.file_name, log)
        assert '" 200 ' in fetched[0]
    assert not any(".pascal-forge-build.json" in line and '" 200 ' in line for line in log)

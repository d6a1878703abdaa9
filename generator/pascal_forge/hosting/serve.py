"""Serve a channel (or a published tree) read-only over HTTP for a LAN.

Only what a conda client asks for is served: ``index.html`` and ``channeldata.json`` at the top,
repodata files and packages in a subdir, and shards below ``<subdir>/shards/``. Anything else is
404, directories included (no listings), and so is every dotfile (the build record). Paths are
checked as text first (no ``..``, ``.``, empty, encoded ``/`` or ``\\`` or NUL segments), then
opened one component at a time below the channel folder with ``O_NOFOLLOW``: a symlink anywhere
inside the channel is refused rather than followed, so no file outside it is ever opened, even if
a link is swapped in between a check and the open. The channel folder is re-opened per request,
so a tree that `channel publish` swaps in is served from the next request on.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socket import AF_INET6
from typing import TextIO
from urllib.parse import unquote

from pascal_forge.errors import ChannelError, ServeError

TOP_FILES = frozenset({"index.html", "channeldata.json"})
REPODATA_FILES = frozenset(
    {
        "repodata.json",
        "repodata.json.zst",
        "repodata.json.bz2",
        "current_repodata.json",
        "repodata_shards.msgpack.zst",
        "run_exports.json",
    }
)
PACKAGE_SUFFIXES = (".conda", ".tar.bz2")
#: conda subdir names: noarch, linux-64, osx-arm64, linux-ppc64le, win-64, ...
SUBDIR_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9_]+)?$")
SHARD_RE = re.compile(r"^[0-9a-f]{64}\.msgpack\.zst$")
CONTENT_TYPES = {
    ".json": "application/json",
    ".zst": "application/zstd",
    ".bz2": "application/x-bzip2",
    ".html": "text/html; charset=utf-8",
}
_CHUNK = 1 << 20
_MAX_TARGET = 2048


class NotServedError(Exception):
    """The request names nothing this server serves (answered 404)."""


class BadRequestError(Exception):
    """The request target is not an origin-form path (answered 400)."""


def request_segments(target: str) -> tuple[str, ...]:
    """Validate a request target and return its decoded path segments.

    Raises BadRequestError for a target that is not "/path", NotServedError for any path that is
    not a channel file (this is the only place request text becomes a path).
    """
    if len(target) > _MAX_TARGET or not target.startswith("/") or target.startswith("//"):
        raise BadRequestError(target)
    path = target.split("?", 1)[0].split("#", 1)[0]
    if path == "/":
        return ("index.html",)
    segments = []
    for raw in path[1:].split("/"):
        try:
            seg = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise NotServedError(target) from None
        if not seg or seg.startswith(".") or any(c in seg for c in "/\\\x00") or not seg.isprintable():
            raise NotServedError(target)
        segments.append(seg)
    if not _allowed(segments):
        raise NotServedError(target)
    return tuple(segments)


def _allowed(segments: list[str]) -> bool:
    match segments:
        case [name]:
            return name in TOP_FILES
        case [subdir, name]:
            return bool(SUBDIR_RE.match(subdir)) and (
                name in REPODATA_FILES or name.endswith(PACKAGE_SUFFIXES)
            )
        case [subdir, "shards", name]:
            return bool(SUBDIR_RE.match(subdir)) and bool(SHARD_RE.match(name))
        case _:
            return False


@contextmanager
def open_below(root: Path, segments: tuple[str, ...]) -> Iterator[int]:
    """Open root/segments[0]/.../segments[-1] read-only, refusing any symlink on the way.

    Yields a file descriptor of a regular file; raises NotServedError otherwise.
    """
    nofollow = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fds = []
    try:
        fds.append(os.open(root, nofollow | os.O_DIRECTORY))
        for seg in segments[:-1]:
            fds.append(os.open(seg, nofollow | os.O_DIRECTORY, dir_fd=fds[-1]))
        # O_NONBLOCK: opening a FIFO planted in the channel must not hang the thread.
        fd = os.open(segments[-1], nofollow | os.O_NONBLOCK, dir_fd=fds[-1])
        fds.append(fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotServedError("/".join(segments))
        yield fd
    except OSError as exc:
        # ENAMETOOLONG: a segment over 255 bytes (the target may be 2048); see tests/fuzz.
        if exc.errno in {
            errno.ENOENT,
            errno.ELOOP,
            errno.ENOTDIR,
            errno.EACCES,
            errno.EISDIR,
            errno.ENAMETOOLONG,
        }:
            raise NotServedError("/".join(segments)) from exc
        raise
    finally:
        for fd in reversed(fds):
            os.close(fd)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() and c != '"' else f"\\x{ord(c):02x}" for c in text[:300])


class ChannelRequestHandler(BaseHTTPRequestHandler):
    """GET and HEAD for channel files; every other method is 405 (known) or 501 (unknown)."""

    server: ChannelServer
    protocol_version = "HTTP/1.1"  # keep-alive: a solve fetches several files
    server_version = "pascal-forge-channel"
    timeout = 60  # a stalled client cannot hold a thread forever
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"

    _status: int | None = None
    _sent = 0

    def version_string(self) -> str:
        return self.server_version  # no Python version in the Server header

    def handle_one_request(self) -> None:
        self._status = None
        self._sent = 0
        super().handle_one_request()
        if self._status is not None:
            self.server.log_line(
                f'{self.client_address[0]} [{self.log_date_time_string()}] "{_printable(self.requestline)}" '
                f"{self._status} {self._sent}"
            )

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        del size
        self._status = int(code) if str(code).isdigit() else 0

    def log_error(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        del format, args  # the request's one line is written by handle_one_request

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _not_allowed(self) -> None:
        self.close_connection = True  # the request body (if any) is never read
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    # http.server dispatches on do_<METHOD>; methods without one get 501.
    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_CONNECT = do_TRACE = _not_allowed  # noqa: N815

    def _serve(self, body: bool) -> None:
        try:
            segments = request_segments(self.path)
            with open_below(self.server.root, segments) as fd:
                info = os.fstat(fd)
                etag = f'"{info.st_size:x}-{info.st_mtime_ns:x}"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", _content_type(segments[-1]))
                self.send_header("Content-Length", str(info.st_size))
                self.send_header("Last-Modified", formatdate(info.st_mtime, usegmt=True))
                self.send_header("ETag", etag)
                self.send_header("Cache-Control", "no-cache")  # repodata changes in place
                self.end_headers()
                if body:
                    self._send_file(fd, info.st_size)
        except BadRequestError:
            self.send_error(400)
        except NotServedError:
            self.send_error(404)

    def _send_file(self, fd: int, size: int) -> None:
        with os.fdopen(os.dup(fd), "rb") as handle:
            remaining = size
            while remaining > 0:
                block = handle.read(min(_CHUNK, remaining))
                if not block:
                    break
                self.wfile.write(block)
                self._sent += len(block)
                remaining -= len(block)


def _content_type(name: str) -> str:
    for suffix, kind in CONTENT_TYPES.items():
        if name.endswith(suffix):
            return kind
    return "application/octet-stream"


class ChannelServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one channel folder."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], root: Path, log: TextIO) -> None:
        if ":" in address[0]:
            self.address_family = AF_INET6
        self.root = root
        self._log = log
        self._log_lock = threading.Lock()
        super().__init__(address, ChannelRequestHandler)

    def log_line(self, line: str) -> None:
        with self._log_lock, suppress(ValueError):  # the stream may be closed at shutdown
            self._log.write(line + "\n")
            self._log.flush()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


def make_server(
    root: Path, bind: str = "127.0.0.1", port: int = 8000, log: TextIO | None = None
) -> ChannelServer:
    """A server for the channel folder ``root`` (not started: call serve_forever)."""
    root = root.resolve()
    if not root.is_dir():
        raise ChannelError(f"{root} is not a folder", "pass the channel with --channel-dir")
    if not (root / "noarch" / "repodata.json").is_file():
        raise ChannelError(
            f"{root} is not an indexed channel (no noarch/repodata.json)",
            "build into it with `pascal-forge build`, or run `pascal-forge channel index`",
        )
    try:
        return ChannelServer((bind, port), root, log if log is not None else sys.stderr)
    except OSError as exc:
        raise ServeError(
            f"cannot serve on {bind}:{port}: {exc.strerror or exc}",
            "choose another --port (0 picks a free one) or --bind address",
        ) from exc

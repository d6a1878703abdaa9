"""A real HTTP server on 127.0.0.1 that speaks PyPI's Simple API (PEP 691 JSON, PEP 658 metadata).

Files are registered with their bytes; project pages list them with sha256 and, for wheels, the
sha256 of their ``.metadata`` file, as PyPI does. Faults (a delay, an HTTP status, a truncated
body, other bytes than the index promises) can be set per path, for all or the first N requests.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PEP691 = "application/vnd.pypi.simple.v1+json"


@dataclass
class Fault:
    delay: float = 0.0  # seconds before answering
    status: int = 0  # answer this status instead of the file
    truncate: bool = False  # promise the full Content-Length, send half, close
    body: bytes | None = None  # serve these bytes instead (e.g. for a wrong sha256)
    content_type: str = ""  # override the content type
    times: int = -1  # how many requests it applies to (-1: all)


@dataclass
class LocalIndex:
    """Serve ``files`` and the project pages listing them; ``url`` is set once started."""

    url: str = ""
    pages: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    @property
    def index_url(self) -> str:
        return f"{self.url}/simple"

    def add(
        self,
        project: str,
        filename: str,
        content: bytes,
        metadata: bytes | None = None,
        listed_sha256: str | None = None,
        advertise_metadata: bool = True,
    ) -> str:
        """Register a file; returns its URL. ``listed_sha256`` lies about the hash when given."""
        path = f"/files/{project}/{filename}"
        self.blobs[path] = content
        entry: dict[str, object] = {
            "filename": filename,
            "url": f"../../files/{project}/{filename}",  # relative, as PEP 691 allows
            "hashes": {"sha256": listed_sha256 or hashlib.sha256(content).hexdigest()},
            "yanked": False,
        }
        if metadata is not None:
            self.blobs[path + ".metadata"] = metadata
            if advertise_metadata:
                entry["core-metadata"] = {"sha256": hashlib.sha256(metadata).hexdigest()}
        self.pages.setdefault(project, []).append(entry)
        return self.url + path

    def file_url(self, project: str, filename: str) -> str:
        return f"{self.url}/files/{project}/{filename}"

    def page(self, project: str) -> bytes:
        return json.dumps(
            {"meta": {"api-version": "1.1"}, "name": project, "files": self.pages[project]}
        ).encode()


def _handler(index: LocalIndex) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            index.hits.append(path)
            fault = index.faults.get(path)
            if fault is not None and fault.times == 0:
                fault = None
            if fault is not None and fault.times > 0:
                fault.times -= 1
            if fault is not None and fault.delay:
                time.sleep(fault.delay)
            if fault is not None and fault.status:
                self._send(fault.status, b"fault", "text/plain")
                return
            if path.startswith("/simple/"):
                project = path.removeprefix("/simple/").strip("/")
                if project not in index.pages:
                    self._send(404, b"not found", "text/plain")
                    return
                body, ctype = index.page(project), PEP691
            elif path in index.blobs:
                body, ctype = index.blobs[path], "application/octet-stream"
            else:
                self._send(404, b"not found", "text/plain")
                return
            if fault is not None and fault.body is not None:
                body = fault.body
            if fault is not None and fault.content_type:
                ctype = fault.content_type
            self._send(200, body, ctype, truncate=fault is not None and fault.truncate)

        def _send(self, status: int, body: bytes, ctype: str, truncate: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if truncate else body)
            self.wfile.flush()
            if truncate:
                self.connection.shutdown(socket.SHUT_RDWR)

    return Handler


@contextmanager
def serve(index: LocalIndex) -> Iterator[LocalIndex]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(index))
    server.daemon_threads = True
    index.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield index
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Plain static files under ``root`` (a conda channel) at the returned URL."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/conda-forge"


# ---- archives built in the test ------------------------------------------------------------------


def sdist(name: str, version: str, files: Mapping[str, str]) -> bytes:
    """A .tar.gz sdist: ``files`` under ``{name}-{version}/``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for rel, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{rel}")
            info.size = len(data)
            info.mtime = 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def wheel(files: Mapping[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for rel, text in sorted(files.items()):
            zf.writestr(rel, text)
    return buf.getvalue()

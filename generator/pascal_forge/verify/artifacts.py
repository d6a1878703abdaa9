"""Reading pinned artifacts without installing them: sha256-checked downloads, wheels as zips (HTTP ranges), .debs as ar archives."""

from __future__ import annotations

import hashlib
import io
import lzma
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import requests

from pascal_forge.errors import (
    HashMismatchError,
    SourceError,
)
from pascal_forge.stack.sources import fetch_verified
from pascal_forge.verify.toolchain_pins import Wheel

_CHUNK = 1 << 20


TIMEOUT = 60


def download(urls: Sequence[str], dest: Path, sha256: str, size: int | None = None) -> Path:
    """Fetch the first URL that works into dest (atomically), checked against its sha256 and size."""
    fetch_verified(
        urls,
        dest,
        sha256,
        dest.name,
        f"check network access to {urls[0]}, or copy the file into {dest.parent}",
    )
    if size is not None and dest.stat().st_size != size:
        raise HashMismatchError(f"{dest.name}: size {dest.stat().st_size}, pinned {size}")
    return dest


class RangeFile(io.RawIOBase):
    """A read-only, seekable view of a remote file through HTTP range requests, with block caching.

    zipfile reads the central directory and then each member's bytes; members of one folder sit
    next to each other in a wheel, so a few MB-sized blocks cover hundreds of headers.
    """

    def __init__(self, url: str, size: int, block: int = 8 << 20) -> None:
        self.url, self.size, self.block = url, size, block
        self.pos = 0
        self.cache: dict[int, bytes] = {}
        self.session = requests.Session()
        self.fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = base + offset
        return self.pos

    def _block(self, index: int) -> bytes:
        if index not in self.cache:
            start = index * self.block
            end = min(start + self.block, self.size) - 1
            r = self.session.get(self.url, headers={"Range": f"bytes={start}-{end}"}, timeout=TIMEOUT)
            if r.status_code != 206:
                raise SourceError(f"{self.url}: range request answered {r.status_code}", "use --no-range")
            self.cache[index] = r.content
            self.fetched += len(r.content)
        return self.cache[index]

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        n = min(len(view), self.size - self.pos)
        done = 0
        while done < n:
            index, off = divmod(self.pos + done, self.block)
            data = self._block(index)[off : off + n - done]
            view[done : done + len(data)] = data
            done += len(data)
        self.pos += n
        return n


def record_hashes(record_text: str) -> dict[str, str]:
    """RECORD rows `path,sha256=<urlsafe b64>,size` → {path: hex sha256}."""
    import base64

    out: dict[str, str] = {}
    for line in record_text.splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) == 3 and parts[1].startswith("sha256="):
            digest = base64.urlsafe_b64decode(parts[1][7:] + "==")
            out[parts[0]] = digest.hex()
    return out


def extract_wheel(pin: Wheel, dest: Path, cache: Path, use_range: bool = True) -> int:
    """Copy pin.extract folders of a wheel into dest; each member checked against the wheel's RECORD.

    With use_range the wheel is read through HTTP range requests (torch/include is 27 MiB of a
    770 MB wheel); RECORD itself is pinned by record_sha256. Returns the number of files written.
    """
    if use_range:
        source: BinaryIO = io.BufferedReader(RangeFile(pin.url, pin.size), buffer_size=1 << 16)
    else:
        wheel = download([pin.url], cache / "downloads" / pin.filename, pin.sha256, pin.size)
        source = wheel.open("rb")
    count = 0
    with source, zipfile.ZipFile(source) as zf:
        record_name = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
        record = zf.read(record_name)
        if hashlib.sha256(record).hexdigest() != pin.record_sha256:
            raise HashMismatchError(
                f"{record_name} in {pin.filename} does not match its pin",
                "the wheel on PyPI differs from the pinned one; do not use it",
            )
        hashes = record_hashes(record.decode())
        for info in zf.infolist():
            for src, dst in pin.extract:
                if info.filename.startswith(src) and not info.is_dir():
                    data = zf.read(info)
                    if hashlib.sha256(data).hexdigest() != hashes.get(info.filename):
                        raise HashMismatchError(f"{info.filename} does not match {record_name}")
                    out = dest / dst / info.filename[len(src) :]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(data)
                    count += 1
    return count


def _ar_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """Members of a Debian .deb (an `ar` archive); avoids needing dpkg on the machine."""
    with path.open("rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise SourceError(f"{path} is not a .deb (ar) archive")
        while header := f.read(60):
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58])
            data = f.read(size)
            if size % 2:
                f.read(1)
            yield name, data


def unpack_deb(path: Path, dest: Path, want: Callable[[str], bool]) -> list[str]:
    """Extract the data.tar members of a .deb that `want` accepts (like `dpkg -x`, filtered)."""
    for name, data in _ar_members(path):
        if name.startswith("data.tar"):
            raw = lzma.decompress(data) if name.endswith(".xz") else data
            with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
                picked = [m for m in tf.getmembers() if want(m.name.removeprefix("./"))]
                tf.extractall(dest, members=picked, filter="tar")
                return [m.name for m in picked]
    raise SourceError(f"{path}: no data.tar member")


def tree_sha256(root: Path, trees: Iterable[str]) -> str:
    """Digest of the files under root/<tree> (path + content), independent of how they were packed."""
    h = hashlib.sha256()
    for tree in sorted(trees):
        for p in sorted((root / tree).rglob("*")):
            if p.is_file():
                rel = p.relative_to(root).as_posix()
                h.update(rel.encode() + b"\0" + hashlib.sha256(p.read_bytes()).hexdigest().encode() + b"\n")
    return h.hexdigest()

"""Discover upstream releases: PyPI's Simple API (PEP 691 JSON, PEP 658 metadata) and conda channels.

PyPI's JSON API is not reachable from our machines; the Simple API is, and its PEP 691 JSON form
lists every file with its sha256 and whether a PEP 658 ``.metadata`` file (the wheel's METADATA,
without downloading the wheel) exists. Every request has a timeout and retries (urllib3 ``Retry``
on connection errors and 429/5xx); every downloaded byte is checked against the index's sha256
before it is used. Nothing here writes outside the download cache, which only ever holds verified
files under their final names (see sources.fetch_verified).

Conda channels are read with py-rattler's ``Gateway`` (sharded repodata where the channel has it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urljoin

import requests
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from pascal_forge.errors import HashMismatchError, UpstreamError, UpstreamNotFoundError
from pascal_forge.stack.sources import fetch_verified

DEFAULT_INDEX = "https://pypi.org/simple"
DEFAULT_CONDA_CHANNEL = "https://conda.anaconda.org/conda-forge"
PEP691 = "application/vnd.pypi.simple.v1+json"
#: What the Linux x86_64 builds we package are evaluated for (requirement markers).
LINUX_X86_64 = {
    "platform_system": "Linux",
    "sys_platform": "linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


@dataclass(frozen=True)
class IndexFile:
    """One file of a project page of the Simple API."""

    project: str
    filename: str
    url: str  # absolute
    sha256: str
    version: str
    metadata: bool  # a PEP 658 .metadata file exists (advertised, or assumed on a PyPI-like index)
    metadata_sha256: str  # "" when the index advertises no hash for it
    yanked: bool

    @property
    def is_sdist(self) -> bool:
        return self.filename.endswith((".tar.gz", ".zip"))


def make_session(retries: int) -> requests.Session:
    """A session that retries connection failures and 429/5xx answers, with backoff."""
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=0.5,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=False,  # a hostile Retry-After must not stall us beyond the timeout
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "pascal-forge (+update)"
    return session


class SimpleIndex:
    """A PEP 691 client for one index (PyPI or a mirror speaking the same API)."""

    def __init__(self, url: str = DEFAULT_INDEX, timeout: float = 30, retries: int = 3) -> None:
        self.url = url.rstrip("/") + "/"
        self.timeout = timeout
        self.retries = retries
        self.session = make_session(retries)
        self._pages: dict[str, tuple[IndexFile, ...]] = {}

    def _get(self, url: str, what: str, accept: str = "") -> requests.Response:
        headers = {"Accept": accept} if accept else {}
        try:
            resp = self.session.get(url, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise UpstreamError(
                f"{what}: {url} did not answer after {self.retries} retries: {_short(exc)}",
                "check the network or the --index-url; raise --timeout/--retries for a slow index",
            ) from exc
        if resp.status_code == 404:
            raise UpstreamNotFoundError(f"{what}: {url} answered 404 Not Found", "check the name and version")
        if resp.status_code >= 400:
            raise UpstreamError(f"{what}: {url} answered HTTP {resp.status_code}", "try again later")
        return resp

    def files(self, project: str) -> tuple[IndexFile, ...]:
        """Every file of ``project`` the index lists (PEP 691 JSON)."""
        name = canonicalize_name(project)
        if name in self._pages:
            return self._pages[name]
        page = urljoin(self.url, f"{name}/")
        resp = self._get(page, f"project page of {name}", accept=PEP691)
        ctype = resp.headers.get("content-type", "").split(";", 1)[0].strip()
        if ctype != PEP691:
            raise UpstreamError(
                f"{page} answered {ctype or 'no content type'}, not PEP 691 JSON ({PEP691})",
                "use an index that serves the JSON form of the Simple API (PyPI does)",
            )
        self._pages[name] = parse_project_page(name, page, resp.content)
        return self._pages[name]

    def versions(self, project: str) -> list[str]:

        return sorted({f.version for f in self.files(project)}, key=Version)

    def sdist(self, project: str, version: str) -> IndexFile:
        """The sdist of ``project`` ``version`` (exact release, e.g. 0.8.5.post1)."""
        want = Version(version)
        found = [
            f
            for f in self.files(project)
            if f.is_sdist and Version(f.version) == want and f.filename.endswith(".tar.gz")
        ]
        if not found:
            near = [v for v in self.versions(project) if Version(v).release[:2] == want.release[:2]]
            raise UpstreamNotFoundError(
                f"{self.url} lists no sdist of {project} {version}"
                + (f" (releases of the same series: {', '.join(near)})" if near else ""),
                "check the version (exact release, e.g. 0.8.5.post1)",
            )
        live = [f for f in found if not f.yanked]
        return (live or found)[0]

    def linux_wheels(self, project: str, version: str) -> list[IndexFile]:
        """CPython manylinux x86_64 wheels of a release, newest Python first."""
        out = []
        for f in self.files(project):
            if not f.filename.endswith(".whl") or Version(f.version) != Version(version):
                continue
            _, _, _, tags = parse_wheel_filename(f.filename)
            if any(
                t.interpreter.startswith("cp") and "manylinux" in t.platform and t.platform.endswith("x86_64")
                for t in tags
            ):
                out.append(f)
        return sorted(out, key=lambda f: f.filename, reverse=True)

    def metadata(self, file: IndexFile) -> Message:
        """The PEP 658 metadata of a wheel (its METADATA file), verified when the index hashes it."""
        if not file.metadata:
            raise UpstreamNotFoundError(
                f"{file.filename}: the index offers no PEP 658 metadata for it",
                "use an index that does (PyPI)",
            )
        url = file.url.split("#", 1)[0] + ".metadata"
        try:
            body = self._get(url, f"metadata of {file.filename}").content
        except UpstreamNotFoundError as exc:
            raise UpstreamNotFoundError(
                f"{file.filename}: the index has no PEP 658 metadata file for it ({url}: 404)",
                "use an index that serves .metadata files (PyPI does)",
            ) from exc
        if file.metadata_sha256:
            actual = hashlib.sha256(body).hexdigest()
            if actual != file.metadata_sha256:
                raise HashMismatchError(
                    f"{url} has sha256 {actual}, but the index lists {file.metadata_sha256}",
                    "the index or a proxy served a different file; try again or another --index-url",
                )
        return HeaderParser().parsestr(body.decode("utf-8", errors="replace"))

    def download(self, file: IndexFile, cache: Path, progress: Callable[[str], None] | None = None) -> Path:
        """``file`` in the download cache (the layout sources.download uses), sha256-verified."""
        dest = cache / "downloads" / file.sha256[:2] / file.filename
        return fetch_verified(
            [file.url],
            dest,
            file.sha256,
            file.filename,
            "check the network or --index-url; nothing was written",
            progress,
            session=self.session,
            timeout=self.timeout,
        )


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def parse_project_page(project: str, page: str, body: bytes) -> tuple[IndexFile, ...]:
    """The files of a PEP 691 project page; a body that is not one raises UpstreamError.

    Files the index lists without a sha256, with a name that is no wheel or sdist of a release, or
    with a name that is not a plain file name (it becomes a path in the download cache) are left out.
    """
    try:
        data = json.loads(body)
        major = str(data["meta"]["api-version"]).split(".", 1)[0]
        raw_files = data["files"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:  # ValueError: bad JSON or not UTF-8
        raise UpstreamError(
            f"{page}: not a PEP 691 project page ({type(exc).__name__}: {_short(exc)})", "check --index-url"
        ) from exc
    if major != "1":
        raise UpstreamError(f"{page}: unsupported Simple API version {major[:40]!r}", "")
    if not isinstance(raw_files, list):
        raise UpstreamError(
            f"{page}: not a PEP 691 project page ('files' is not a list)", "check --index-url"
        )
    return tuple(f for raw in raw_files if (f := _index_file(project, page, raw)) is not None)


def _index_file(project: str, page: str, raw: Any) -> IndexFile | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("hashes"), dict):
        return None
    filename, href, sha256 = raw.get("filename"), raw.get("url"), raw["hashes"].get("sha256")
    if not (isinstance(filename, str) and isinstance(href, str) and isinstance(sha256, str)):
        return None  # a file without a sha256 cannot be pinned; it is not offered at all
    sha256 = sha256.lower()
    if not _SHA256.match(sha256) or PurePosixPath(filename).name != filename or set("\\\x00") & set(filename):
        return None  # a "filename" with "/" would be written outside the cache
    version = _file_version(filename)
    if version is None:
        return None
    try:
        url = urljoin(page, href)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    meta = raw.get("core-metadata", raw.get("data-dist-info-metadata", False))
    meta_sha = str(meta.get("sha256", "")).lower() if isinstance(meta, dict) else ""
    return IndexFile(
        project=project,
        filename=filename,
        url=url,
        sha256=sha256,
        version=version,
        # PyPI serves .metadata for every wheel (backfilled) but some proxies drop the key.
        metadata=bool(meta) or filename.endswith(".whl"),
        metadata_sha256=meta_sha,
        yanked=bool(raw.get("yanked", False)),
    )


def _file_version(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        if filename.endswith((".tar.gz", ".zip")):
            return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


def pinned_requirement(lines: Iterable[str], name: str, python: str) -> tuple[str, str] | None:
    """(version, line) of the ``==`` pin of ``name`` among requirement ``lines`` for Linux x86_64."""
    want = canonicalize_name(name)
    env = {**LINUX_X86_64, "python_version": python, "python_full_version": f"{python}.0"}
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) != want or (req.marker and not req.marker.evaluate(env)):
            continue
        pins = [s.version for s in req.specifier if s.operator in {"==", "==="} and "*" not in s.version]
        if len(pins) == 1:
            return pins[0], line.strip()
    return None


# --------------------------------------------------------------------------------------------
# conda channels (py-rattler)


@dataclass(frozen=True)
class CondaArtifact:
    """One conda package file, as its channel's repodata describes it."""

    python: str  # "3.12"
    url: str
    sha256: str
    file_name: str
    build: str
    build_number: int
    depends: tuple[str, ...]
    constrains: tuple[str, ...]
    channel: str


class CondaUnreachableError(Exception):
    """Internal: the channel could not be read (callers fall back to the spec)."""


_PY_IN_BUILD = re.compile(r"(?:^|_)py(\d)(\d{1,2})(?:_|$)")


def conda_artifacts(
    channel: str,
    package: str,
    version: str,
    build_glob: str,
    pythons: tuple[str, ...],
    cache: Path,
    timeout: float,
    prefer: str = "",
) -> dict[str, CondaArtifact]:
    """The newest linux-64 build of ``package ==version build_glob`` per Python of ``pythons``.

    Among builds for the same Python, those containing ``prefer`` (e.g. "_mkl_", the BLAS flavour
    of the base stack) win, then the highest build number, then the file name. Pythons without a
    build are missing from the result. Raises CondaUnreachableError when the channel cannot be read
    within ``timeout`` seconds.
    """
    import rattler  # lazy: the update command is the only user

    gateway = rattler.Gateway(cache_dir=cache / "rattler", show_progress=False)
    spec = rattler.MatchSpec(f"{package} =={version} {build_glob}")

    async def query() -> Any:
        return await asyncio.wait_for(
            gateway.query([rattler.Channel(channel)], ["linux-64"], [spec], recursive=False), timeout
        )

    try:
        result = asyncio.run(query())
    except TimeoutError as exc:
        raise CondaUnreachableError(f"{channel}: no answer within {timeout:g} s") from exc
    except Exception as exc:  # rattler's GatewayError and friends; the message says what failed
        raise CondaUnreachableError(f"{channel}: {_first_line(exc)}") from exc
    best: dict[str, CondaArtifact] = {}
    for records in result:
        for rec in records:
            if not spec.matches(rec):
                continue
            build = str(rec.build)
            m = _PY_IN_BUILD.search(build)
            if not m or f"{m.group(1)}.{m.group(2)}" not in pythons:
                continue
            art = CondaArtifact(
                python=f"{m.group(1)}.{m.group(2)}",
                url=str(rec.url),
                sha256=rec.sha256.hex() if isinstance(rec.sha256, bytes) else str(rec.sha256),
                file_name=str(rec.file_name),
                build=build,
                build_number=int(rec.build_number),
                depends=tuple(str(d) for d in rec.depends),
                constrains=tuple(str(c) for c in rec.constrains),
                channel=channel,
            )
            old = best.get(art.python)
            if old is None or _rank(art, prefer) > _rank(old, prefer):
                best[art.python] = art
    return best


def _rank(art: CondaArtifact, prefer: str) -> tuple[bool, int, str]:
    return (bool(prefer) and prefer in art.build, art.build_number, art.file_name)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 240 else text[:240] + "…"

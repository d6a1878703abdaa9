"""Obtain pinned sources: download into a cache and verify, or take a local directory/archive.

Downloads go to a temporary name in the cache and are renamed only after the sha256 matched, so a
cache never holds a half-written or unverified file under its final name. A cached file is
re-verified on every use: a corrupted cache is reported, never used.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import requests

from pascal_forge.errors import ArchiveError, HashMismatchError, SourceError
from pascal_forge.stack.model import Source

CHUNK = 1 << 20
#: What a malformed or hostile archive raises from tarfile/zipfile and their decompressors
#: (tarfile.FilterError, a TarError, is the `data` filter refusing a member that escapes).
_BAD_ARCHIVE = (
    tarfile.TarError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    ValueError,
    KeyError,
    IndexError,  # zipfile, for a member named "\x00" (found by scripts/fuzz.py)
    NotImplementedError,  # zipfile: an unknown compression method
    RuntimeError,  # zipfile: an encrypted member
)
Progress = Callable[[str], None]


def default_cache_dir() -> Path:
    """$PASCAL_FORGE_CACHE, else $XDG_CACHE_HOME/pascal-forge, else ~/.cache/pascal-forge."""
    if env := os.environ.get("PASCAL_FORGE_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pascal-forge"


@dataclass(frozen=True)
class Obtained:
    """A source ready to patch: an unpacked tree, and how its pin was verified."""

    source: Source
    tree: Path
    verified: str  # e.g. "sha256 c7e04d10… verified" / "git commit 35c6c7c6 verified"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_name(source: Source) -> str:
    return source.file_name or PurePosixPath(source.url.split("?", 1)[0]).name


def fetch_verified(
    urls: Sequence[str],
    dest: Path,
    sha256: str,
    name: str,
    offline_hint: str,
    progress: Progress | None = None,
    session: requests.Session | None = None,
    timeout: float = 60,
) -> Path:
    """``dest``, verified against ``sha256``: the cached copy, or the first of ``urls`` that answers.

    The download goes to a temporary name beside ``dest`` and is renamed only once its hash matched;
    a cached copy that no longer matches is an error naming the file, never silently used or replaced.
    ``session`` (e.g. one that retries, see upstream.py) and ``timeout`` apply to each request.
    """
    get = session.get if session is not None else requests.get
    if dest.exists():
        actual = sha256_of(dest)
        if actual != sha256:
            raise HashMismatchError(
                f"cached file {dest} has sha256 {actual}, but {name} is pinned to {sha256}",
                f"delete {dest} and run again; if a fresh download also differs, the pin or the upstream file changed",
            )
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            try:
                with get(url, stream=True, timeout=timeout) as resp:
                    resp.raise_for_status()
                    total = int(resp.headers.get("content-length", 0))
                    done = 0
                    with os.fdopen(fd, "wb") as out:
                        for chunk in resp.iter_content(CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            done += len(chunk)
                            if progress and total and done % (64 * CHUNK) < len(chunk):
                                progress(f"{name}: {done >> 20}/{total >> 20} MiB")
            except requests.RequestException as exc:
                errors.append(f"{url}: {_short(exc)}")
                continue
            if digest.hexdigest() != sha256:
                raise HashMismatchError(
                    f"{url} has sha256 {digest.hexdigest()}, but {name} is pinned to {sha256}",
                    "the upstream file changed or the pin is wrong: check the pin's citation before updating it",
                )
            tmp.replace(dest)
            return dest
        finally:
            tmp.unlink(missing_ok=True)
    raise SourceError(f"cannot download {name}: " + "; ".join(errors), offline_hint)


def download(source: Source, cache: Path, progress: Progress | None = None) -> Path:
    """The verified file of a url source, from the cache or downloaded into it."""
    dest = cache / "downloads" / source.sha256[:2] / file_name(source)
    return fetch_verified([source.url], dest, source.sha256, source.name, _offline_hint(source), progress)


def _unpack_conda(archive: Path, staging: Path) -> Path:
    """A .conda package's files; returns its site-packages folder (what overlay patches target)."""
    import zstandard  # lazy: only .conda sources need it

    with zipfile.ZipFile(archive) as zf:
        pkgs = [n for n in zf.namelist() if n.startswith("pkg-") and n.endswith(".tar.zst")]
        if len(pkgs) != 1:
            raise ArchiveError(f"{archive.name}: expected one pkg-*.tar.zst member, found {len(pkgs)}", "")
        (pkg,) = pkgs
        with (
            zf.open(pkg) as raw,
            zstandard.ZstdDecompressor().stream_reader(raw) as zst,
            tarfile.open(fileobj=zst, mode="r|") as tf,
        ):
            try:
                tf.extractall(staging, filter="data")
            except zstandard.ZstdError as exc:
                raise ArchiveError(f"{archive.name}: damaged zstd stream: {exc}", "fetch it again") from exc
    site = sorted(staging.glob("lib/python3.*/site-packages"))
    if len(site) != 1:
        raise SourceError(f"{archive.name}: expected one lib/python3.*/site-packages, found {len(site)}", "")
    return site[0]


def unpack(archive: Path, dest: Path, members: tuple[str, ...] = ()) -> Path:
    """Unpack a .tar.*, a .whl/.zip or a .conda into ``dest``, dropping a single top-level folder.

    For wheels only ``members`` are extracted (a torch wheel is ~800 MB; patches touch two files);
    for .conda packages ``dest`` becomes the package's site-packages folder.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Two runs sharing a cache (CI jobs, a survey beside a test run) unpack into the same folder:
    # one at a time, or one's rmtree meets the other's rename ("Directory not empty").
    # The lock lives outside the cache so nothing is left beside the tree.
    key = hashlib.sha256(str(dest.resolve()).encode()).hexdigest()[:16]
    with (Path(tempfile.gettempdir()) / f"pascal-forge-unpack-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dest.exists():
            shutil.rmtree(dest)
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
        try:
            _unpack_into(archive, staging, dest, members)
        except (*_BAD_ARCHIVE, OSError) as exc:  # OSError: a member name too long, a file where a folder goes
            shutil.rmtree(dest, ignore_errors=True)
            raise ArchiveError(
                f"cannot unpack {archive.name}: {type(exc).__name__}: {_short(exc)}",
                "the file is damaged or not what the pin names: delete it from the cache and fetch it again",
            ) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _unpack_into(archive: Path, staging: Path, dest: Path, members: tuple[str, ...]) -> None:
    if archive.name.endswith(".conda"):
        _unpack_conda(archive, staging).rename(dest)
        return
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if not members or n in members]
            missing = sorted(set(members) - set(names))
            if missing:
                raise SourceError(f"{archive.name} lacks {missing}", "is the pin the right release?")
            for name in names:
                zf.extract(name, staging)  # zipfile drops "..", drive and root parts; it writes no links
    elif ".tar" in archive.name or archive.suffix == ".tgz":
        with tarfile.open(archive) as tf:
            tf.extractall(staging, filter="data")
    else:
        raise SourceError(f"don't know how to unpack {archive.name}", "give an unpacked directory instead")
    entries = list(staging.iterdir())
    root = entries[0] if len(entries) == 1 and entries[0].is_dir() and not members else staging
    _check_links(root, archive)
    root.rename(dest)


def _check_links(root: Path, archive: Path) -> None:
    """Every symlink stays inside ``root``: tarfile's data filter checks them against the staging
    folder, but dropping the top-level folder makes "pkg/a -> ../b" point outside the tree."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                continue
            link = path.readlink()
            if link.is_absolute() or os.path.normpath(path.parent.relative_to(root) / link).startswith(".."):
                raise ArchiveError(
                    f"{archive.name}: {path.relative_to(root)} links to {str(link)!r}, outside the tree",
                    "the archive is not what the pin names; check its source",
                )


def git_tree(source: Source, repo: Path, dest: Path) -> Path:
    """Export the pinned commit of ``source`` from a local git repository (bare or not)."""
    git = ["git", f"--git-dir={_git_dir(repo)}"]
    probe = subprocess.run(
        [*git, "cat-file", "-e", f"{source.rev}^{{commit}}"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        raise SourceError(
            f"{repo} does not contain commit {source.rev} of {source.name}",
            f"fetch {source.git} into it (git fetch origin {source.rev}) or point --source-dir at another copy",
        )
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    archive = subprocess.run(
        [*git, "archive", "--format=tar", source.rev], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tf:
        tf.extractall(dest, filter="data")
    return dest


def _git_dir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").exists() else repo


def obtain(
    source: Source,
    cache: Path,
    local: Path | None = None,
    members: tuple[str, ...] = (),
    progress: Progress | None = None,
) -> Obtained:
    """An unpacked tree of ``source`` under ``cache/trees``, with how its pin was verified."""
    trees = cache / "trees"
    trees.mkdir(parents=True, exist_ok=True)
    dest = trees / f"{source.recipe}--{source.name}{('-py' + source.python) if source.python else ''}"
    if local is not None:
        return _obtain_local(source, local, dest, members)
    if source.is_git:
        raise SourceError(
            f"{source.name} is a git source ({source.git} at {source.rev}); it is not downloaded by this command",
            f"clone it and pass --source-dir {source.name}=DIR (a checkout or bare repository containing the commit)",
        )
    archive = download(source, cache, progress)
    unpack(archive, dest, members)
    return Obtained(source, dest, f"sha256 {source.sha256[:12]}… verified")


def _obtain_local(source: Source, local: Path, dest: Path, members: tuple[str, ...]) -> Obtained:
    if not local.exists():
        raise SourceError(f"--source-dir {source.name}={local}: no such file or directory", "check the path")
    if source.is_git and ((local / "HEAD").exists() or (local / ".git").exists()):
        git_tree(source, local, dest)
        return Obtained(source, dest, f"git commit {source.rev[:12]} exported from {local}")
    if local.is_file():
        if source.sha256:
            actual = sha256_of(local)
            if actual != source.sha256:
                raise HashMismatchError(
                    f"{local} has sha256 {actual}, but {source.name} is pinned to {source.sha256}",
                    "pass the pinned file, or fix the pin if upstream really changed",
                )
        unpack(local, dest, members)
        return Obtained(
            source, dest, f"local archive {local.name}, sha256 verified" if source.sha256 else "local archive"
        )
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(local, dest, symlinks=True)
    return Obtained(source, dest, f"local directory {local} (content not verifiable against the pin)")


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "…"


def _offline_hint(source: Source) -> str:
    return (
        "check the network; or download the file elsewhere and pass it with "
        f"--source-dir {source.name}=FILE (it is verified against the pinned sha256)"
    )

"""The local conda channel: index it with py-rattler and change it only in atomic steps.

Invariant: at every instant each subdir's repodata lists exactly the package files in it. New
packages are never copied into a live subdir. A staging copy of the subdir (hard links of the
packages that stay, plus the new ones) is indexed beside the channel and then swapped in with one
``renameat2(RENAME_EXCHANGE)``, so a build killed at any point leaves the old or the new subdir,
each consistent. A lock beside the channel keeps two writers apart.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pascal_forge.errors import ChannelError, ChannelLockedError

#: Subdirs we publish; noarch must exist in every conda channel even when empty.
SUBDIRS = ("linux-64", "noarch")
PACKAGE_SUFFIXES = (".conda", ".tar.bz2")
#: Per-subdir record of what defined each package we built (hidden, swapped with the subdir).
BUILD_RECORD = ".pascal-forge-build.json"
#: World-readable packages: the engine writes 0600, which a web server or another user cannot read.
PACKAGE_MODE = 0o644

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass(frozen=True)
class ChannelPackage:
    """One package of an indexed channel, as its repodata lists it."""

    subdir: str
    file_name: str
    name: str
    version: str
    build: str
    build_number: int
    depends: tuple[str, ...]
    size: int
    sha256: str


def is_package(path: Path) -> bool:
    return path.is_file() and path.name.endswith(PACKAGE_SUFFIXES) and not path.name.startswith(".")


def channel_url(channel: str | Path) -> str:
    """A channel as the engine and the solver take it: a folder becomes its file:// URL; a name
    (``conda-forge``) or a URL stays as given."""
    if isinstance(channel, Path) or ("://" not in channel and Path(channel).is_dir()):
        return Path(channel).resolve().as_uri()
    return channel


def staging_dir(channel: Path) -> Path:
    return channel.parent / f".{channel.name}.staging"


def lock_path(channel: Path) -> Path:
    return channel.parent / f".{channel.name}.lock"


@contextmanager
def channel_lock(channel: Path) -> Iterator[None]:
    """Hold the channel's write lock (non-blocking: a second writer fails at once, naming the first)."""
    path = lock_path(channel.resolve())
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ChannelLockedError(
                f"{channel} is being written by {holder} (lock {path})",
                "wait for that build to finish; the lock is released when its process exits",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def index_channel(channel: Path, subdir: str | None = None) -> None:
    """Write repodata.json (+ .zst and shards) for every subdir, or just ``subdir`` and noarch."""
    import rattler  # heavy import: only when indexing

    for name in SUBDIRS:
        (channel / name).mkdir(parents=True, exist_ok=True)
    target = rattler.Subdir(subdir) if subdir and subdir != "noarch" else None
    try:
        asyncio.run(rattler.index.index_fs(channel, target_platform=target, force=True))
    except Exception as exc:  # rattler raises its own exception types
        raise ChannelError(
            f"py-rattler could not index {channel}: {exc}",
            "remove the file named above from the channel, or rebuild it",
        ) from exc
    scratch = channel / ".tmp"  # the indexer's empty scratch folder: not part of a channel
    if scratch.is_dir() and not any(scratch.iterdir()):
        scratch.rmdir()


def read_packages(channel: Path) -> tuple[ChannelPackage, ...]:
    """The packages the channel's repodata lists, sorted by subdir and file name."""
    out = []
    for subdir in SUBDIRS:
        repodata = channel / subdir / "repodata.json"
        if not repodata.is_file():
            continue
        data = _read_json(repodata)
        for key in ("packages", "packages.conda"):
            table = data.get(key, {})
            if not isinstance(table, dict):
                raise _bad_index(repodata, f"{key!r} is not an object")
            for file_name, rec in table.items():
                out.append(_package_entry(repodata, subdir, key, file_name, rec))
    return tuple(sorted(out, key=lambda p: (p.subdir, p.file_name)))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or not UTF-8
        raise _bad_index(path, f"cannot be read as JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _bad_index(path, "is not a JSON object")
    return data


def _bad_index(path: Path, why: str) -> ChannelError:
    return ChannelError(
        f"{path} {why}" if why.startswith(("is ", "cannot ")) else f"{path}: {why}",
        "re-index the channel: pascal-forge channel index (a build does it too)",
    )


def _package_entry(repodata: Path, subdir: str, key: str, file_name: str, rec: Any) -> ChannelPackage:
    where = f"{key}[{file_name!r}]"
    # The name becomes a path under the subdir: no separators, no dotfiles (see tests/fuzz).
    if (
        not file_name.endswith(PACKAGE_SUFFIXES)
        or file_name.startswith(".")
        or set("/\\\x00") & set(file_name)
    ):
        raise _bad_index(repodata, f"{where} is not a package file name")
    if not isinstance(rec, dict):
        raise _bad_index(repodata, f"{where} is not an object")
    strings = {}
    for field in ("name", "version", "build", "sha256"):
        value = rec.get(field)
        if not isinstance(value, str) or not value:
            raise _bad_index(repodata, f"{where}.{field} is not a non-empty string")
        strings[field] = value
    depends = rec.get("depends", [])
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        raise _bad_index(repodata, f"{where}.depends is not a list of strings")
    numbers = {}
    for field, default in (("build_number", 0), ("size", None)):
        value = rec.get(field, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _bad_index(repodata, f"{where}.{field} is not a non-negative integer")
        numbers[field] = value
    return ChannelPackage(
        subdir=subdir,
        file_name=file_name,
        name=strings["name"],
        version=strings["version"],
        build=strings["build"],
        build_number=numbers["build_number"],
        depends=tuple(depends),
        size=numbers["size"],
        sha256=strings["sha256"],
    )


def consistency_problems(channel: Path) -> list[str]:
    """Every way the index and the files disagree (empty: the channel is consistent)."""
    problems = []
    try:
        listed = {(p.subdir, p.file_name): p for p in read_packages(channel)}
    except ChannelError as exc:  # a damaged index is one more reason to re-index, not a crash
        return [exc.message]
    for subdir in SUBDIRS:
        folder = channel / subdir
        if not (folder / "repodata.json").is_file():
            problems.append(f"{folder}/repodata.json is missing")
            continue
        present = {p.name for p in folder.iterdir() if is_package(p)}
        indexed = {name for (sd, name) in listed if sd == subdir}
        problems += [f"{folder / n} is not in repodata.json" for n in sorted(present - indexed)]
        problems += [
            f"{folder / n} is listed in repodata.json but missing" for n in sorted(indexed - present)
        ]
        for name in sorted(present & indexed):
            rec = listed[(subdir, name)]
            path = folder / name
            if path.stat().st_size != rec.size or _sha256(path) != rec.sha256:
                problems.append(f"{path} does not match its repodata entry (size or sha256)")
    return problems


def ensure_channel(channel: Path) -> None:
    """Create an empty indexed channel, or re-index one whose index disagrees with its files.

    Called under the lock before any change; also clears a staging folder left by a killed run.
    """
    shutil.rmtree(staging_dir(channel), ignore_errors=True)
    if not channel.exists() or consistency_problems(channel):
        channel.mkdir(parents=True, exist_ok=True)
        index_channel(channel)


def read_build_record(channel: Path, subdir: str) -> dict[str, str]:
    """package file name -> definition hash, for packages pascal-forge built into this subdir."""
    path = channel / subdir / BUILD_RECORD
    if not path.is_file():
        return {}
    data = _read_json(path)
    if not all(isinstance(v, str) for v in data.values()):
        raise ChannelError(
            f"{path}: a value is not a definition hash", f"delete {path}; the next build rewrites it"
        )
    return dict(data)


def add_packages(channel: Path, subdir: str, packages: Mapping[Path, str]) -> None:
    """Add (or replace) built packages in one subdir atomically.

    ``packages`` maps each built file to the definition hash recorded for it. The subdir is rebuilt
    in a staging folder beside the channel (hard links for what stays), indexed there, and swapped
    in with a single atomic exchange.
    """
    staging = staging_dir(channel)
    shutil.rmtree(staging, ignore_errors=True)
    for name in SUBDIRS:
        (staging / name).mkdir(parents=True)
    try:
        new_names = {p.name for p in packages}
        for name in SUBDIRS:
            live = channel / name
            if not live.is_dir():
                continue
            for item in sorted(live.iterdir()):
                if is_package(item) and not (name == subdir and item.name in new_names):
                    os.link(item, staging / name / item.name)
        for src in packages:
            dst = staging / subdir / src.name
            tmp = dst.with_name(f".{src.name}.partial")
            shutil.copyfile(src, tmp)
            tmp.chmod(PACKAGE_MODE)
            tmp.replace(dst)
        record = read_build_record(channel, subdir)
        record.update({src.name: digest for src, digest in packages.items()})
        present = {p.name for p in (staging / subdir).iterdir() if is_package(p)}
        record = {k: v for k, v in sorted(record.items()) if k in present}
        (staging / subdir / BUILD_RECORD).write_text(
            json.dumps(record, indent=1, sort_keys=True) + "\n", "utf-8"
        )
        index_channel(staging, subdir)
        swap_in(staging / subdir, channel / subdir)
        if not (channel / "noarch" / "repodata.json").is_file():
            swap_in(staging / "noarch", channel / "noarch")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def swap_in(new: Path, live: Path) -> None:
    live.parent.mkdir(parents=True, exist_ok=True)
    if not live.exists():
        new.rename(live)
        return
    if not _exchange(new, live):
        # No renameat2 (non-Linux or old libc): two renames; a kill in between leaves `live`
        # missing, which the next run's ensure_channel re-creates from `.old` or re-indexes.
        old = live.with_name(f".{live.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        live.rename(old)
        new.rename(live)
        shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        if err in {22, 38, 95}:  # EINVAL / ENOSYS / EOPNOTSUPP: filesystem cannot exchange
            return False
        raise OSError(err, os.strerror(err), str(a), None, str(b))
    return True


def fix_permissions(channel: Path) -> None:
    """Make every package world-readable (the engine writes 0600)."""
    for subdir in SUBDIRS:
        folder = channel / subdir
        if folder.is_dir():
            for item in folder.iterdir():
                if is_package(item):
                    item.chmod(PACKAGE_MODE)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def human_size(size: int) -> str:
    """Bytes as people read them in tables (B, KiB, MiB, GiB)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"

"""Read an installed conda environment: its package records and its Python distributions.

conda, mamba, pixi and rattler all record each installed package in ``<prefix>/conda-meta/
<name>-<version>-<build>.json`` with the files it owns (``files``) and, for most, their sha256
(``paths_data``). A ``*.dist-info`` folder in site-packages that no record owns was written by pip
(or uv) behind conda's back; one that a record owns but whose INSTALLER/METADATA/RECORD no longer
match the record's sha256 was overwritten by such an installer.

Reading never raises for a damaged environment: malformed records are collected with the reason,
so the doctor can name them instead of crashing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pascal_forge.errors import PrefixError

#: Dist-info files whose sha256 tells whether another installer rewrote the distribution.
_IDENTITY_FILES = ("INSTALLER", "METADATA", "RECORD")
_PYTHON_DIR = re.compile(r"python(\d+)\.(\d+)")


@dataclass(frozen=True)
class Record:
    """One installed conda package, as ``conda-meta/*.json`` records it."""

    meta: Path
    name: str
    version: str
    build: str
    url: str
    files: tuple[str, ...]
    sha256: dict[str, str] = field(hash=False, compare=False)  # path -> sha256 where recorded as-is

    @property
    def channel(self) -> str:
        """The channel it came from (its URL without ``/<subdir>/<file>``)."""
        return self.url.rsplit("/", 2)[0] if self.url.count("/") >= 3 else self.url

    @property
    def label(self) -> str:
        return f"{self.name} {self.version} {self.build}"


@dataclass(frozen=True)
class BadRecord:
    meta: Path
    reason: str


@dataclass(frozen=True)
class DistInfo:
    """A ``<name>-<version>.dist-info`` folder: which distribution, who installed it, who owns it."""

    path: Path
    name: str  # canonical (PEP 503) name from METADATA, else from the folder name
    version: str
    installer: str  # INSTALLER's first line, "" if there is none
    owner: Record | None  # the conda record listing its files, None for a pip install


@dataclass(frozen=True)
class Prefix:
    """An environment's records, site-packages and (if enabled) the user's site-packages."""

    root: Path
    records: tuple[Record, ...]
    bad_records: tuple[BadRecord, ...]
    python: tuple[int, int] | None
    site_packages: Path | None
    user_site: Path | None
    owners: dict[str, Record] = field(hash=False, compare=False)  # file -> the record listing it

    def record(self, name: str) -> Record | None:
        return next((r for r in self.records if r.name == name), None)

    def rel(self, path: Path) -> str:
        """``path`` relative to the prefix where it lies inside it (for messages)."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def owner_of(self, rel: str) -> Record | None:
        return self.owners.get(rel)

    def dist_infos(self, *names: str) -> tuple[DistInfo, ...]:
        """Dist-info folders of these distributions (canonical names) in site-packages, then the
        user site (which Python puts first on sys.path)."""
        want = {canonical(n) for n in names}
        out = []
        for folder in (self.site_packages, self.user_site):
            if folder is None or not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.dist-info")):
                dist = self._dist_info(path)
                if dist.name in want:
                    out.append(dist)
        return tuple(out)

    def _dist_info(self, path: Path) -> DistInfo:
        stem_name, _, stem_version = path.name.removesuffix(".dist-info").partition("-")
        name, version = stem_name, stem_version
        meta = _read_text(path / "METADATA")
        for line in meta.splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            if key.lower() == "name":
                name = value.strip()
            elif key.lower() == "version":
                version = value.strip()
        installer = _read_text(path / "INSTALLER").strip().splitlines()
        owner = None
        if self.site_packages is not None and path.parent == self.site_packages:
            owner = self.owner_of(self.rel(path / "METADATA")) or self.owner_of(self.rel(path / "RECORD"))
        return DistInfo(path, canonical(name), version, installer[0] if installer else "", owner)

    def rewritten(self, dist: DistInfo) -> list[str]:
        """The owned dist-info's identity files whose content no longer matches its record."""
        if dist.owner is None:
            return []
        changed = []
        for name in _IDENTITY_FILES:
            rel = self.rel(dist.path / name)
            want = dist.owner.sha256.get(rel)
            if want is None:
                continue
            try:
                got = hashlib.sha256((self.root / rel).read_bytes()).hexdigest()
            except OSError:
                got = ""
            if got != want:
                changed.append(name)
        return changed

    def missing_files(self, record: Record) -> list[str]:
        """Files the record owns that are gone (byte-code caches excepted: Python rewrites them)."""
        return [f for f in record.files if not f.endswith(".pyc") and not os.path.lexists(self.root / f)]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve_prefix(given: Path | None, create: Callable[[Path], str] | None = None) -> Path:
    """The environment to inspect: ``given``, else the active one ($CONDA_PREFIX).

    ``create`` gives the command that makes an environment at a path (for an empty folder).
    """
    if given is None:
        active = os.environ.get("CONDA_PREFIX", "")
        if not active:
            raise PrefixError(
                "no conda environment given and none is active ($CONDA_PREFIX is not set)",
                "activate it (`conda activate NAME`) or pass its path: pascal-forge doctor --prefix /path/to/env",
            )
        given = Path(active)
    root = given.expanduser().absolute()
    try:
        is_dir, exists = root.is_dir(), root.exists()
        has_meta = is_dir and (root / "conda-meta").is_dir()
        entries = sorted(p.name for p in root.iterdir()) if is_dir and not has_meta else []
    except (OSError, ValueError) as exc:  # unreadable folder, a NUL byte in the argument
        raise PrefixError(
            f"{root} cannot be read: {exc}", "pass the path of a conda environment with --prefix"
        ) from exc
    if not exists:
        raise PrefixError(f"{root} does not exist", "pass the path of a conda environment with --prefix")
    if not is_dir:
        raise PrefixError(
            f"{root} is a file, not a conda environment", "pass the environment's folder with --prefix"
        )
    if has_meta:
        return root
    if not entries:
        raise PrefixError(
            f"{root} is an empty folder, not a conda environment (no conda-meta/)",
            f"create the environment there: {create(root)}" if create else "create a conda environment there",
        )
    envs = sorted(e.name for e in _iter_dirs(root / "envs") if (e / "conda-meta").is_dir())
    if envs:
        raise PrefixError(
            f"{root} is a conda installation, not one environment: its environments are under envs/ "
            f"({', '.join(envs[:5])}{', ...' if len(envs) > 5 else ''})",
            f"pass one of them: pascal-forge doctor --prefix {root / 'envs' / envs[0]}",
        )
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise PrefixError(
        f"{root} is not a conda environment (it has no conda-meta/ folder; it holds {shown})",
        "pass the environment's root folder, e.g. ~/miniforge3/envs/pascal (`conda env list` shows them)",
    )


def read_prefix(root: Path) -> Prefix:
    records: list[Record] = []
    bad: list[BadRecord] = []
    for meta in sorted((root / "conda-meta").glob("*.json")):
        try:
            records.append(_read_record(meta))
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
            bad.append(BadRecord(meta, _reason(exc)))
    python = _python_version(root, records)
    site = root / "lib" / f"python{python[0]}.{python[1]}" / "site-packages" if python else None
    owners = {f: r for r in records for f in r.files}
    return Prefix(root, tuple(records), tuple(bad), python, site, _user_site(python), owners)


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
    if isinstance(exc, KeyError):
        return f"has no {exc.args[0]!r} field"
    if isinstance(exc, OSError):
        return f"cannot be read ({exc.strerror or exc})"
    return str(exc)


def _read_record(meta: Path) -> Record:
    data = json.loads(meta.read_text("utf-8"))
    if not isinstance(data, dict):
        raise TypeError("is not a JSON object")
    strings = {}
    for key in ("name", "version", "build"):
        value = data[key]
        if not isinstance(value, str) or not value:
            raise ValueError(f"field {key!r} is not a non-empty string")
        strings[key] = value
    files = data.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ValueError("field 'files' is not a list of paths")
    sha = {}
    paths = data.get("paths_data", {}).get("paths", []) if isinstance(data.get("paths_data"), dict) else []
    for entry in paths if isinstance(paths, list) else []:
        # files with the build prefix replaced at install time no longer match the package's sha256
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and "prefix_placeholder" not in entry
        ):
            sha[str(entry.get("_path"))] = entry["sha256"]
    url = data.get("url") or data.get("channel") or ""
    return Record(meta, strings["name"], strings["version"], strings["build"], str(url), tuple(files), sha)


def _python_version(root: Path, records: list[Record]) -> tuple[int, int] | None:
    py = next((r for r in records if r.name == "python"), None)
    if py is not None:
        parts = py.version.split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            return int(parts[0]), int(parts[1])
    found = sorted(
        (int(m.group(1)), int(m.group(2)))
        for d in _iter_dirs(root / "lib")
        if (m := _PYTHON_DIR.fullmatch(d.name)) and (d / "site-packages").is_dir()
    )
    return found[-1] if found else None


def _iter_dirs(folder: Path) -> Iterator[Path]:
    try:
        yield from (p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return


def _user_site(python: tuple[int, int] | None) -> Path | None:
    """The user site-packages that Python of this version would put on sys.path (before the
    environment's own), unless disabled with PYTHONNOUSERSITE."""
    if python is None or os.environ.get("PYTHONNOUSERSITE"):
        return None
    base = os.environ.get("PYTHONUSERBASE") or str(Path.home() / ".local")
    return Path(base) / "lib" / f"python{python[0]}.{python[1]}" / "site-packages"


def _read_text(path: Path) -> str:
    try:
        return path.read_text("utf-8", errors="replace")
    except OSError:
        return ""

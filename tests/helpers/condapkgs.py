"""Make real conda packages, channels and prefixes in tests (py-rattler-build + py-rattler).

Packages are assembled by the rattler-build engine (``assemble_package``), channels indexed and
environments solved/installed by py-rattler: the same code paths a user's conda/mamba/pixi reads.
Stand-ins for conda-forge packages use real names, versions, build strings and dependency specs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import rattler
from rattler_build import assemble_package

from pascal_forge.build import resolve
from pascal_forge.build.channel import channel_url, index_channel

#: Fixed timestamp: the same inputs give byte-identical packages.
TIMESTAMP = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Executable:
    """File content installed with mode 0755 (a script or tool the package ships)."""

    data: bytes


@dataclass(frozen=True)
class Symlink:
    """A symbolic link; ``target`` is relative to the link's folder, as packages ship them."""

    target: str


FileContent = bytes | Executable | Symlink


@dataclass(frozen=True)
class Pkg:
    """A package to assemble: metadata plus files (path relative to the prefix -> content)."""

    name: str
    version: str
    build: str
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    build_number: int = 0
    subdir: str = "linux-64"
    files: Mapping[str, FileContent] = field(default_factory=dict)


def make_package(pkg: Pkg, out_dir: Path) -> Path:
    """Assemble ``pkg`` into ``out_dir`` and return the .conda path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pf-pkg-") as tmp:
        files_dir = Path(tmp) / "files"
        files_dir.mkdir()
        contents = dict(pkg.files) or {f"share/pascal-forge-test/{pkg.name}.txt": f"{pkg.name}\n".encode()}
        for rel, data in contents.items():
            target = files_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, Symlink):
                target.symlink_to(data.target)
            elif isinstance(data, Executable):
                target.write_bytes(data.data)
                target.chmod(0o755)
            else:
                target.write_bytes(data)
        scratch = Path(tmp) / "out"
        output = assemble_package(
            name=pkg.name,
            version=pkg.version,
            target_platform=pkg.subdir,
            build_string=pkg.build,
            output_dir=scratch,
            files_dir=files_dir,
            depends=list(pkg.depends),
            constrains=list(pkg.constrains),
            build_number=pkg.build_number,
            noarch="generic" if pkg.subdir == "noarch" else None,
            timestamp=TIMESTAMP,
            detect_prefix=False,
        )
        built = Path(output.path)
        dest = out_dir / built.name
        shutil.copyfile(built, dest)
    return dest


STANDIN = Path(__file__).resolve().parents[1] / "data" / "conda-forge-standin.json"


def standin_packages() -> list[Pkg]:
    """The conda-forge stand-in: real records from public lock files (see conda-forge-standin.md)."""
    records = json.loads(STANDIN.read_text("utf-8"))["records"]
    seen, out = set(), []
    for r in records:
        key = (r["subdir"], r["name"], r["version"], r["build"])
        if key in seen:
            continue
        seen.add(key)
        out.append(
            Pkg(
                r["name"],
                r["version"],
                r["build"],
                tuple(r["depends"]),
                tuple(r.get("constrains", ())),
                int(r["build_number"]),
                r["subdir"],
            )
        )
    return out


def make_channel(channel: Path, packages: Sequence[Pkg]) -> Path:
    """An indexed channel holding ``packages`` (each in its own subdir)."""
    for sub in ("linux-64", "noarch"):
        (channel / sub).mkdir(parents=True, exist_ok=True)
    for pkg in packages:
        make_package(pkg, channel / pkg.subdir).chmod(0o644)
    index_channel(channel)
    return channel


def solve(
    channels: Sequence[str | Path], specs: Sequence[str], priority: str = "strict"
) -> list[rattler.RepoDataRecord]:
    """Solve ``specs`` for linux-64 from channels given as paths or URLs (in priority order), with
    the solver call resolve-check makes (its virtual packages: a CUDA 12.6 Linux box)."""
    return resolve.solve([channel_url(c) for c in channels], list(specs), priority)


def install_prefix(
    prefix: Path,
    channels: Sequence[str | Path],
    specs: Sequence[str],
    cache_dir: Path,
    priority: str = "strict",
) -> list[rattler.RepoDataRecord]:
    """Solve and install ``specs`` into ``prefix`` with py-rattler; returns the installed records."""
    records = solve(channels, specs, priority)
    asyncio.run(rattler.install(records, target_prefix=prefix, cache_dir=cache_dir, show_progress=False))
    return records


def overwrite(path: Path, data: bytes) -> None:
    """Replace an installed file the way another installer (pip) does: a new file. Writing into
    the existing one would change rattler's package cache too, which the file is hard-linked to."""
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)

"""Publish the channel as a static tree for any web server or GitHub Pages.

The tree holds, per subdir, ``repodata.json`` and ``repodata.json.zst`` (and the package files
unless ``base_url`` is given), an ``index.html`` listing every package, and nothing from the
build (no build record, shards, staging or lock files).

With ``base_url`` (CEP-15) only the repodata is published and clients fetch each package from
``base_url + file name`` instead, e.g. GitHub Release assets: Pages sites are limited to 1 GB and
100 MB per file, and a CUDA package is larger. Sharded repodata (CEP-16) is not published: it
pays off for channels with thousands of packages, and a rewritten repodata would need its shards
rewritten in step; clients fall back to ``repodata.json.zst``.

The tree is written beside the target and swapped in at once, so a web server never serves a
half-published channel; a target that exists must be empty or an earlier publish output.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import zstandard

from pascal_forge.build.channel import (
    PACKAGE_MODE,
    SUBDIRS,
    ChannelPackage,
    channel_lock,
    consistency_problems,
    human_size,
    read_packages,
    swap_in,
)
from pascal_forge.errors import ChannelError, HostingUrlError, PublishError
from pascal_forge.recipes.render import environment

#: Written into every published tree; a non-empty target without it is never replaced.
MARKER = ".pascal-forge-publish.json"
#: GitHub Pages would otherwise run Jekyll over a branch-deployed tree and drop `_`-prefixed files.
NOJEKYLL = ".nojekyll"
#: Fixed level: the same repodata always compresses to the same bytes.
ZSTD_LEVEL = 19


@dataclass(frozen=True)
class PublishedChannel:
    """What `publish` wrote: the target, the packages it lists and every file of the tree."""

    target: Path
    base_url: str | None
    packages: tuple[ChannelPackage, ...]
    files: tuple[str, ...]


def normalize_base_url(url: str) -> str:
    """An absolute http(s) URL ending in "/", so ``base_url + file name`` is the package URL."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise HostingUrlError(
            f"--base-url {url!r} is not an absolute http(s) URL",
            "pass where the package files will be, e.g. https://github.com/OWNER/REPO/releases/download/TAG/",
        )
    if parts.query or parts.fragment:
        raise HostingUrlError(
            f"--base-url {url!r} has a query or fragment; clients append the file name to it",
            "drop everything after '?' or '#'",
        )
    return url if url.endswith("/") else url + "/"


def publish(channel: Path, target: Path, base_url: str | None = None) -> PublishedChannel:
    """Publish ``channel`` into ``target`` (replaced as a whole, atomically)."""
    channel = channel.resolve()
    target = target.resolve()
    base = normalize_base_url(base_url) if base_url is not None else None
    _check_target(channel, target)
    with channel_lock(channel):
        problems = consistency_problems(channel)
        if problems:
            raise ChannelError(
                f"{channel} is not consistent: " + "; ".join(problems[:5]),
                "rebuild, or run `pascal-forge channel index` to re-index the files that are there",
            )
        packages = read_packages(channel)
        if base is not None:
            _check_flat_names(packages)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.publish-", dir=target.parent))
        try:
            files = _write_tree(channel, staging, packages, base)
            _verify_tree(staging, packages, base)
            staging.chmod(0o755)  # mkdtemp makes it 0700; a web server must read it
            if target.exists():
                swap_in(staging, target)  # the old tree is now at `staging` and removed below
            else:
                staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return PublishedChannel(target=target, base_url=base, packages=packages, files=files)


def _check_target(channel: Path, target: Path) -> None:
    if not (channel / "noarch" / "repodata.json").is_file():
        raise ChannelError(
            f"{channel} is not an indexed channel (no noarch/repodata.json)",
            "build into it with `pascal-forge build`, or index it with `pascal-forge channel index`",
        )
    if target == channel or target.is_relative_to(channel) or channel.is_relative_to(target):
        raise PublishError(
            f"publish target {target} overlaps the channel {channel}",
            "publish into a separate folder, e.g. `--to site`",
        )
    if target.exists():
        if not target.is_dir() or target.is_symlink():
            raise PublishError(f"publish target {target} is not a folder", "choose a new or empty folder")
        if any(target.iterdir()) and not (target / MARKER).is_file():
            raise PublishError(
                f"{target} is not empty and was not written by `pascal-forge channel publish` "
                f"(no {MARKER}); publishing would replace everything in it",
                "choose a new or empty folder, or remove this one yourself",
            )


def _check_flat_names(packages: tuple[ChannelPackage, ...]) -> None:
    """With one base_url for every subdir, two subdirs must not hold the same file name."""
    seen: dict[str, str] = {}
    for pkg in packages:
        if pkg.file_name in seen:
            raise PublishError(
                f"{pkg.file_name} is in both {seen[pkg.file_name]} and {pkg.subdir}; "
                "with --base-url every file is fetched from the same folder",
                "remove one of them from the channel and re-index it",
            )
        seen[pkg.file_name] = pkg.subdir


def _write_tree(
    channel: Path, out: Path, packages: tuple[ChannelPackage, ...], base: str | None
) -> tuple[str, ...]:
    written: list[str] = []

    def write(rel: str, data: bytes) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(PACKAGE_MODE)
        written.append(rel)

    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    for subdir in SUBDIRS:
        source = (channel / subdir / "repodata.json").read_bytes()
        repodata = source if base is None else _with_base_url(source, base)
        write(f"{subdir}/repodata.json", repodata)
        write(f"{subdir}/repodata.json.zst", compressor.compress(repodata))
        if base is None:
            for pkg in packages:
                if pkg.subdir == subdir:
                    dest = out / subdir / pkg.file_name
                    shutil.copyfile(channel / subdir / pkg.file_name, dest)
                    dest.chmod(PACKAGE_MODE)
                    written.append(f"{subdir}/{pkg.file_name}")
    write("index.html", render_index(packages, base).encode("utf-8"))
    write(NOJEKYLL, b"")
    marker = {"base_url": base, "files": sorted([*written, MARKER])}
    write(MARKER, (json.dumps(marker, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    for folder in [out, *(out / s for s in SUBDIRS)]:
        folder.chmod(0o755)
    return tuple(sorted(written))


def _with_base_url(repodata: bytes, base: str) -> bytes:
    """CEP-15: ``info.base_url`` plus ``repodata_version: 2`` tell clients where packages live."""
    data = json.loads(repodata)
    info = data.get("info") or {}
    info["base_url"] = base
    data["info"] = info
    data["repodata_version"] = 2
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _verify_tree(out: Path, packages: tuple[ChannelPackage, ...], base: str | None) -> None:
    """The staged tree lists exactly the channel's packages, and (without base_url) holds them."""
    listed = read_packages(out)
    problems = consistency_problems(out) if base is None else []
    if listed != packages:
        problems.append("its repodata does not list the channel's packages")
    for subdir in SUBDIRS:
        plain = (out / subdir / "repodata.json").read_bytes()
        packed = (out / subdir / "repodata.json.zst").read_bytes()
        if zstandard.ZstdDecompressor().decompress(packed) != plain:
            problems.append(f"{subdir}/repodata.json.zst differs from repodata.json")
        if base is not None and json.loads(plain).get("info", {}).get("base_url") != base:
            problems.append(f"{subdir}/repodata.json lacks base_url {base}")
    if problems:
        raise PublishError(
            "the staged publish tree is inconsistent: " + "; ".join(problems[:5]),
            "this is a bug in pascal-forge; the previous publish output was left in place",
        )


def render_index(packages: tuple[ChannelPackage, ...], base: str | None) -> str:
    """index.html: one row per package, sorted, with no timestamps (same channel, same bytes)."""
    env = environment(html=True)
    env.filters["human_size"] = human_size
    rows = sorted(packages, key=lambda p: (p.name, p.version, p.build, p.subdir))
    links = {
        (p.subdir, p.file_name): (base + p.file_name if base else f"{p.subdir}/{p.file_name}")
        for p in packages
    }
    return env.get_template("channel-index.html.j2").render(
        packages=rows, links=links, base_url=base, subdirs=SUBDIRS
    )

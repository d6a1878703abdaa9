"""Repackage an upstream conda artifact (the pytorch overlay): extract, locate, relocate, re-depend.

This file is copied byte for byte into the pytorch recipe as ``repack.py`` and run by its build.sh
under the build environment's Python, so it uses only the standard library and ``zstandard`` and
never imports pascal_forge. The tests run the same functions on a synthetic upstream artifact.

Steps build.sh runs:
  extract        unpack the .conda (or .tar.bz2), refusing members that escape the target folder
  site-packages  print the site-packages folder holding torch/ (the patches are relative to it)
  install        copy every file into PREFIX; files that carry the upstream placeholder prefix
                 (info/paths.json) get PREFIX instead (text: replaced; binary: conda's same-length,
                 NUL-padded rewrite), so the engine records and relocates them again
  depends        print upstream's depends with triton swapped for the Pascal build
"""

from __future__ import annotations

import json
import posixpath
import shutil
import stat
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import zstandard


class UnsafeArchiveError(Exception):
    """An archive member would be written outside the target folder, or is not a plain file/link."""


def _members(artifact: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """Every tar member of a .conda (pkg and info tars) or .tar.bz2, with its tar file.

    Streamed (tar mode ``r|``): a member's data must be read before the next one is requested,
    and nothing holds the whole archive (torch's pkg tar is gigabytes) in memory.
    """
    if artifact.name.endswith(".tar.bz2"):
        with tarfile.open(artifact, "r|bz2") as tar:
            for member in tar:
                yield tar, member
        return
    with zipfile.ZipFile(artifact) as zf:
        for name in sorted(zf.namelist()):
            if not name.endswith(".tar.zst"):
                continue
            with (
                zf.open(name) as packed,
                zstandard.ZstdDecompressor().stream_reader(packed) as raw,
                tarfile.open(fileobj=raw, mode="r|") as tar,
            ):
                for member in tar:
                    yield tar, member


def _check_member(member: tarfile.TarInfo, artifact: Path) -> None:
    name = member.name
    where = f"{artifact.name}: member {name!r}"
    normal = posixpath.normpath(name)
    if name.startswith("/") or normal == ".." or normal.startswith("../"):
        raise UnsafeArchiveError(f"{where} escapes the target folder")
    if member.issym() or member.islnk():
        link = member.linkname
        base = posixpath.dirname(normal) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, link))
        if link.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchiveError(f"{where} links to {link!r}, outside the target folder")
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{where} is a device, fifo or other special file")


def extract(artifact: Path, dest: Path) -> None:
    """Unpack ``artifact`` into ``dest`` (created), checking every member before writing any."""
    for _tar, member in _members(artifact):
        _check_member(member, artifact)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    for tar, member in _members(artifact):
        target = root / member.name
        # A symlink written earlier could redirect a later member: refuse instead of following it.
        if not target.parent.resolve().is_relative_to(root):
            msg = f"{artifact.name}: member {member.name!r} would be written through a symlink out of {dest}"
            raise UnsafeArchiveError(msg)
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        if member.issym():
            target.symlink_to(member.linkname)
        elif member.islnk():
            target.hardlink_to(root / member.linkname)
        else:
            handle = tar.extractfile(member)
            if handle is None:
                raise UnsafeArchiveError(f"{artifact.name}: member {member.name!r} has no data")
            with target.open("wb") as out:
                shutil.copyfileobj(handle, out)
            target.chmod(stat.S_IMODE(member.mode) or 0o644)


def site_packages(root: Path) -> str:
    """The site-packages folder (relative to ``root``) that holds torch/."""
    hits = sorted(
        p.parent.relative_to(root) for p in root.glob("lib/python3.*/site-packages/torch/__init__.py")
    )
    if len(hits) != 1:
        msg = f"expected exactly one site-packages with torch/ under {root}, found {[str(h) for h in hits]}"
        raise FileNotFoundError(msg)
    return hits[0].parent.as_posix()


def relocate_binary(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replace ``old`` by ``new`` inside NUL-terminated strings, padding to keep every offset."""
    if len(new) > len(old):
        msg = f"prefix {new!r} is longer than the upstream placeholder; use a shorter build prefix"
        raise ValueError(msg)
    out, start = bytearray(), 0
    while (i := data.find(old, start)) != -1:
        end = data.find(b"\0", i)
        end = len(data) if end == -1 else end
        chunk = data[i:end].replace(old, new)
        out += data[start:i] + chunk + b"\0" * (end - i - len(chunk))
        start = end
    return bytes(out + data[start:])


def paths_entries(root: Path) -> list[dict[str, object]]:
    """info/paths.json entries of an extracted artifact."""
    entries: list[dict[str, object]] = json.loads((root / "info" / "paths.json").read_text("utf-8"))["paths"]
    return entries


def install(root: Path, prefix: Path) -> None:
    """Copy the package files of an extracted artifact into ``prefix``, relocating placeholders."""
    for entry in paths_entries(root):
        rel = str(entry["_path"])
        src, dst = root / rel, prefix / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        if src.is_symlink():
            dst.symlink_to(src.readlink())
            continue
        placeholder = entry.get("prefix_placeholder")
        if not placeholder:
            shutil.copy2(src, dst)
            continue
        data, old, new = src.read_bytes(), str(placeholder).encode(), str(prefix).encode()
        data = (
            relocate_binary(data, old, new) if entry.get("file_mode") == "binary" else data.replace(old, new)
        )
        dst.write_bytes(data)
        shutil.copymode(src, dst)


def overlay_depends(upstream: list[str], triton_spec: str) -> list[str]:
    """Upstream's depends with every ``triton`` entry replaced by ``triton_spec`` (order kept)."""
    out, swapped = [], False
    for dep in upstream:
        if dep.split()[0] == "triton":
            if not swapped:
                out.append(triton_spec)
            swapped = True
        else:
            out.append(dep)
    if not swapped:
        msg = "the upstream artifact does not depend on triton; its layout changed, check the pin"
        raise ValueError(msg)
    return out


def upstream_depends(root: Path) -> list[str]:
    depends: list[str] = json.loads((root / "info" / "index.json").read_text("utf-8")).get("depends", [])
    return depends


def main(argv: list[str]) -> int:
    cmd, *args = argv
    try:
        if cmd == "extract":
            extract(Path(args[0]), Path(args[1]))
        elif cmd == "site-packages":
            print(site_packages(Path(args[0])))
        elif cmd == "install":
            install(Path(args[0]), Path(args[1]))
        elif cmd == "depends":
            print("\n".join(overlay_depends(upstream_depends(Path(args[0])), args[1])))
        else:
            print(f"repack.py: unknown command {cmd!r}", file=sys.stderr)
            return 2
    except (UnsafeArchiveError, FileNotFoundError, ValueError) as exc:
        print(f"repack.py {cmd}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Which GPU code a compiled CUDA library carries: its ``.nv_fatbin`` entries, read without CUDA.

An nvcc-built shared object keeps every translation unit's device code in the ELF section
``.nv_fatbin`` as one fatbin per unit: a 16-byte header (magic 0xBA55ED50, version, header size,
payload size) followed by entries, each with a kind (1 = PTX, 2 = ELF/SASS), its target arch
(60 = sm_60) and its payload size. Only headers are read (seek over payloads, compressed or
not), so a 500 MB ``_C.abi3.so`` costs a few reads. ``cuobjdump --list-elf --list-ptx`` lists the
same entries; tests/verify/test_fatbin.py cross-checks the two.

Whether code runs on a device follows CUDA's compatibility rules: SASS for sm_XY runs on
devices X.Z with Z >= Y (same major); PTX for compute_XY is JIT-compiled for any device >= X.Y.
A library runs on a device only if every fatbin in it does (each unit registers its own).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import BinaryIO

from pascal_forge.errors import FatbinError

FATBIN_MAGIC = 0xBA55ED50
SECTION = ".nv_fatbin"

_ELF_MAGIC = b"\x7fELF"
_FATBIN_HEADER = struct.Struct("<IHHQ")  # magic, version, header size, payload size
# kind, ?, header size, payload size, compressed size, ?, minor, major, arch, name offset, name size, flags
_ENTRY_HEADER = struct.Struct("<HHIQIIHHIIIQ")
_ENTRY_FLAG_COMPRESSED = 0x2000
_ALIGN = 8


class Kind(IntEnum):
    PTX = 1
    ELF = 2


@dataclass(frozen=True, order=True)
class Entry:
    """One fatbin entry: SASS (ELF) or PTX for one arch, e.g. (ELF, 61) = sm_61 code."""

    kind: Kind
    arch: int
    compressed: bool = False

    @property
    def label(self) -> str:
        return f"sm_{self.arch}" if self.kind == Kind.ELF else f"PTX compute_{self.arch}"


@dataclass(frozen=True)
class Fatbin:
    """One translation unit's device code (one fatbin blob of the section)."""

    offset: int  # in the file
    entries: tuple[Entry, ...]

    def runs_on(self, cc: tuple[int, int]) -> bool:
        major, minor = cc
        for e in self.entries:
            if e.kind == Kind.ELF and e.arch // 10 == major and e.arch % 10 <= minor:
                return True
            if e.kind == Kind.PTX and e.arch <= major * 10 + minor:
                return True
        return False


@dataclass(frozen=True)
class DeviceCode:
    """All fatbins of one ELF file (empty if it has no ``.nv_fatbin`` section)."""

    path: Path
    fatbins: tuple[Fatbin, ...]

    @property
    def entries(self) -> tuple[Entry, ...]:
        """Every distinct entry, sorted (SASS before PTX, then by arch)."""
        return tuple(sorted({Entry(e.kind, e.arch) for f in self.fatbins for e in f.entries}, key=_order))

    def runs_on(self, cc: tuple[int, int]) -> bool:
        return bool(self.fatbins) and all(f.runs_on(cc) for f in self.fatbins)

    def summary(self) -> str:
        return ", ".join(e.label for e in self.entries) or "no device code"


def _order(e: Entry) -> tuple[int, int]:
    return (0 if e.kind == Kind.ELF else 1, e.arch)


def read_device_code(path: Path) -> DeviceCode:
    """Parse ``path``'s ``.nv_fatbin`` section; raise FatbinError naming the file if it is malformed."""
    try:
        with path.open("rb") as fh:
            section = _find_section(fh, path, SECTION)
            if section is None:
                return DeviceCode(path, ())
            offset, size = section
            return DeviceCode(path, tuple(_read_fatbins(fh, path, offset, size)))
    except OSError as exc:
        raise FatbinError(
            f"cannot read {path}: {exc.strerror or exc}", "check the file's permissions"
        ) from exc


def _read(fh: BinaryIO, path: Path, offset: int, size: int) -> bytes:
    fh.seek(offset)
    data = fh.read(size)
    if len(data) != size:
        raise FatbinError(
            f"{path} is truncated: {size} bytes wanted at offset {offset}, {len(data)} there",
            "reinstall the package that owns it",
        )
    return data


def _find_section(fh: BinaryIO, path: Path, name: str) -> tuple[int, int] | None:
    """(file offset, size) of the named section of a 64-bit little-endian ELF file."""
    ident = fh.read(64)
    if ident[:4] != _ELF_MAGIC:
        raise FatbinError(f"{path} is not an ELF file", "point at a compiled extension (.so)")
    if len(ident) < 64 or ident[4] != 2 or ident[5] != 1:  # ELFCLASS64, ELFDATA2LSB
        raise FatbinError(
            f"{path} is not a 64-bit little-endian ELF file", "CUDA extensions on x86_64 Linux are ELF64 LE"
        )
    (shoff,) = struct.unpack_from("<Q", ident, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ident, 0x3A)
    if shoff == 0 or shnum == 0:
        return None
    if shentsize < 64 or shstrndx >= shnum:  # size of an Elf64_Shdr
        raise FatbinError(
            f"{path} has a malformed section header table", "reinstall the package that owns it"
        )
    table = _read(fh, path, shoff, shentsize * shnum)
    headers = [struct.unpack_from("<IIQQQQ", table, i * shentsize) for i in range(shnum)]
    _, _, _, _, str_off, str_size = headers[shstrndx]
    names = _read(fh, path, str_off, str_size)
    want = name.encode()
    for sh_name, sh_type, _, _, sh_offset, sh_size in headers:
        end = names.find(b"\0", sh_name)
        if names[sh_name : end if end >= 0 else None] == want:
            if sh_type == 8:  # SHT_NOBITS: no bytes in the file
                return None
            return sh_offset, sh_size
    return None


def _read_fatbins(fh: BinaryIO, path: Path, offset: int, size: int) -> list[Fatbin]:
    out = []
    pos = 0
    while pos + _FATBIN_HEADER.size <= size:
        magic, _version, header_size, payload = _FATBIN_HEADER.unpack(
            _read(fh, path, offset + pos, _FATBIN_HEADER.size)
        )
        if magic != FATBIN_MAGIC:
            if magic == 0:  # padding between units
                pos += _ALIGN
                continue
            raise FatbinError(
                f"{path}: {SECTION} at offset {offset + pos} does not start a fatbin (magic {magic:#010x})",
                "the file is damaged or not an nvcc-built library; reinstall the package that owns it",
            )
        if pos + header_size + payload > size:
            raise FatbinError(
                f"{path}: fatbin at offset {offset + pos} runs past the end of {SECTION}",
                "reinstall the package that owns it",
            )
        entries = _read_entries(fh, path, offset + pos + header_size, payload)
        out.append(Fatbin(offset + pos, entries))
        pos += header_size + payload
        pos += -pos % _ALIGN
    return out


def _read_entries(fh: BinaryIO, path: Path, offset: int, size: int) -> tuple[Entry, ...]:
    entries = []
    pos = 0
    while pos + _ENTRY_HEADER.size <= size:
        fields = _ENTRY_HEADER.unpack(_read(fh, path, offset + pos, _ENTRY_HEADER.size))
        kind, header_size, payload, arch, flags = fields[0], fields[2], fields[3], fields[8], fields[11]
        if kind not in (Kind.PTX, Kind.ELF) or header_size < _ENTRY_HEADER.size:
            raise FatbinError(
                f"{path}: fatbin entry at offset {offset + pos} has kind {kind}, header size {header_size}",
                "the file is damaged or uses a fatbin layout this reader does not know",
            )
        entries.append(Entry(Kind(kind), arch, bool(flags & _ENTRY_FLAG_COMPRESSED)))
        pos += header_size + payload
    return tuple(entries)

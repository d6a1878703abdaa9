"""The ``.nv_fatbin`` reader on real nvcc 12.4 output (tests/data/fatbin), cross-checked with cuobjdump."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from pascal_forge.errors import FatbinError
from pascal_forge.verify.fatbin import FATBIN_MAGIC, Kind, read_device_code

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fatbin"
SO = sorted(p.name for p in FIXTURES.glob("*.so"))

#: per fixture: each unit's entries in file order, and whether it runs on cc 6.0 / 6.1 / 7.0 / 9.0
EXPECTED = {
    "sm60_sm61.so": ([["sm_60", "sm_61"], ["sm_60", "sm_61"]], (True, True, False, False)),
    "sm70_sm80_ptx80.so": ([["sm_70", "sm_80", "PTX compute_80"]], (False, False, True, True)),
    "sm60_sm61_ptx60_compressed.so": ([["sm_60", "PTX compute_60", "sm_61"]], (True, True, True, True)),
    "sm61_only_unit.so": ([["sm_60", "sm_61"], ["sm_61"]], (False, True, False, False)),
}


def test_every_fixture_is_covered() -> None:
    assert sorted(EXPECTED) == SO


@pytest.mark.parametrize("name", SO)
def test_entries_per_unit_and_where_they_run(name: str) -> None:
    code = read_device_code(FIXTURES / name)
    units, runs = EXPECTED[name]
    assert [[e.label for e in f.entries] for f in code.fatbins] == units
    assert tuple(code.runs_on(cc) for cc in ((6, 0), (6, 1), (7, 0), (9, 0))) == runs


def test_compression_flag_and_summary() -> None:
    code = read_device_code(FIXTURES / "sm60_sm61_ptx60_compressed.so")
    assert all(e.compressed for f in code.fatbins for e in f.entries)
    assert code.summary() == "sm_60, sm_61, PTX compute_60"
    plain = read_device_code(FIXTURES / "sm60_sm61.so")
    assert not any(e.compressed for f in plain.fatbins for e in f.entries)
    # PTX (nvcc 12.4 always compresses it) is flagged as such even without -compress-all
    ptx = read_device_code(FIXTURES / "sm70_sm80_ptx80.so").fatbins[0].entries[-1]
    assert (ptx.kind, ptx.compressed) == (Kind.PTX, True)


def test_elf_without_device_code() -> None:
    code = read_device_code(Path(shutil.which("sh") or "/bin/sh").resolve())
    assert code.fatbins == ()
    assert code.summary() == "no device code"
    assert not code.runs_on((6, 1))


def test_not_an_elf_file(tmp_path: Path) -> None:
    bad = tmp_path / "_C.abi3.so"
    bad.write_text("not a library\n")
    with pytest.raises(FatbinError, match=r"_C\.abi3\.so is not an ELF file"):
        read_device_code(bad)


def test_truncated_file(tmp_path: Path) -> None:
    data = (FIXTURES / "sm60_sm61.so").read_bytes()
    cut = tmp_path / "cut.so"
    cut.write_bytes(data[: len(data) // 2])  # the section header table is at the end
    with pytest.raises(FatbinError, match=r"cut\.so is truncated"):
        read_device_code(cut)


def test_damaged_fatbin_header(tmp_path: Path) -> None:
    data = bytearray((FIXTURES / "sm60_sm61.so").read_bytes())
    magic = FATBIN_MAGIC.to_bytes(4, "little")
    at = data.index(magic)
    data[at : at + 4] = b"\x01\x02\x03\x04"
    damaged = tmp_path / "damaged.so"
    damaged.write_bytes(bytes(data))
    with pytest.raises(FatbinError, match=r"damaged\.so: \.nv_fatbin at offset \d+ does not start a fatbin"):
        read_device_code(damaged)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FatbinError, match="cannot read"):
        read_device_code(tmp_path / "nothing.so")


# --------------------------------------------------------------------------------------------
# integration: cuobjdump of the pinned CUDA 12.4 toolchain lists the same entries


def _toolchain() -> Path:
    from pascal_forge.stack.sources import default_cache_dir
    from pascal_forge.verify.toolchain import setup_toolchain
    from pascal_forge.verify.toolchain_pins import load_pins

    try:
        return setup_toolchain(default_cache_dir(), load_pins()).root
    except Exception as exc:  # no network and no cached toolchain
        pytest.skip(f"CUDA 12.4 toolchain unavailable: {exc}")


_LISTED = re.compile(r"^(ELF|PTX) file\s+\d+: .*\.sm_(\d+)\.(?:cubin|ptx)$", re.MULTILINE)


def _cuobjdump(tool: Path, so: Path) -> Counter[tuple[Kind, int]]:
    out = subprocess.run(
        [str(tool), "--list-elf", "--list-ptx", str(so)], capture_output=True, text=True, check=True
    ).stdout
    return Counter((Kind.ELF if k == "ELF" else Kind.PTX, int(a)) for k, a in _LISTED.findall(out))


def _ours(so: Path) -> Counter[tuple[Kind, int]]:
    return Counter((e.kind, e.arch) for f in read_device_code(so).fatbins for e in f.entries)


@pytest.mark.integration
def test_matches_cuobjdump_on_the_fixtures() -> None:
    tool = _toolchain() / "bin" / "cuobjdump"
    for name in SO:
        assert _ours(FIXTURES / name) == _cuobjdump(tool, FIXTURES / name), name


@pytest.mark.integration
def test_fixtures_rebuild_and_still_match(tmp_path: Path) -> None:
    """make.sh recompiles every fixture with nvcc 12.4; reader and cuobjdump agree on the new files."""
    if shutil.which("g++-12") is None:
        pytest.skip("needs g++-12 as nvcc 12.4's host compiler")
    root = _toolchain()
    work = tmp_path / "fatbin"
    shutil.copytree(FIXTURES, work)
    for so in work.glob("*.so"):
        so.unlink()
    subprocess.run([str(work / "make.sh"), str(root / "bin" / "nvcc")], check=True, capture_output=True)
    assert sorted(p.name for p in work.glob("*.so")) == SO
    for name in SO:
        assert _ours(work / name) == _cuobjdump(root / "bin" / "cuobjdump", work / name), name
        assert [[e.label for e in f.entries] for f in read_device_code(work / name).fatbins] == EXPECTED[
            name
        ][0]


@pytest.mark.integration
def test_matches_cuobjdump_on_torch_2_6_0(tmp_path: Path) -> None:
    """A real, large library: libtorch_cuda_linalg.so of the sha256-pinned PyPI torch 2.6.0 wheel
    (~100 fatbins, one per unit). Reader and cuobjdump list the same entries; it has sm_60 SASS."""
    import zipfile

    from pascal_forge.stack.sources import default_cache_dir, download
    from pascal_forge.stack.spec import load_spec

    tool = _toolchain() / "bin" / "cuobjdump"
    (wheel,) = [s for s in load_spec().stack().check_sources_for("pytorch-pascal") if s.check_only]
    with zipfile.ZipFile(download(wheel, default_cache_dir())) as zf:
        lib = Path(zf.extract("torch/lib/libtorch_cuda_linalg.so", tmp_path))
    code = read_device_code(lib)
    assert len(code.fatbins) > 100
    assert _ours(lib) == _cuobjdump(tool, lib)
    assert code.runs_on((6, 0))
    assert code.runs_on((6, 1))

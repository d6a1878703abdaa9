"""nvidia-smi and ptxas probes: parsers on captured real output, the probes on stand-in tools.

No NVIDIA driver or Pascal GPU is reachable here. The parsers are tested on output captured from
real tools (tests/data/doctor: nvidia-smi 580.159.04 on an H100, ptxas 12.4.131 and 13.0.88); the
probes run fake tools that print those layouts (tests/helpers/fake_tools.py) from a PATH holding nothing
else, and real ptxas binaries where this machine has them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import fake_tools
from pascal_forge.doctor.probes import (
    Gpu,
    SmiState,
    parse_cuda_version,
    parse_gpu_csv,
    probe_nvidia_smi,
    probe_version,
)

DATA = fake_tools.DATA


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def test_parse_real_h100_output() -> None:
    gpus, driver = parse_gpu_csv((DATA / "nvidia-smi-h100-580-query.csv").read_text())
    assert gpus == (Gpu(0, "NVIDIA H100 80GB HBM3", (9, 0)),)
    assert driver == "580.159.04"
    assert parse_cuda_version((DATA / "nvidia-smi-h100-580.txt").read_text()) == (13, 0)


def test_parse_version_command_layout() -> None:
    # `nvidia-smi --version` (same machine): "CUDA Version        : 13.0"
    assert parse_cuda_version("NVIDIA-SMI version  : 580.159.04\nCUDA Version        : 13.0\n") == (13, 0)
    assert parse_cuda_version("no version here") is None


def test_parse_skips_noise_and_old_drivers() -> None:
    text = "0, Tesla P40, 6.1, 550.144.03\nsome warning line\n1, Tesla P100-PCIE-16GB, 6.0, 550.144.03\n"
    gpus, _ = parse_gpu_csv(text)
    assert [(g.index, g.cc) for g in gpus] == [(0, (6, 1)), (1, (6, 0))]
    old, driver = parse_gpu_csv("0, Tesla P40, 470.256.02\n", has_cc=False)
    assert old == (Gpu(0, "Tesla P40", None),)
    assert driver == "470.256.02"
    assert old[0].cc_text == "unknown"


@pytest.mark.usefixtures("bin_dir")
def test_no_nvidia_smi() -> None:
    assert probe_nvidia_smi().state == SmiState.ABSENT


def test_probe_pascal_machine(bin_dir: Path) -> None:
    fake_tools.nvidia_smi(
        bin_dir, [("Tesla P40", "6.1"), ("Tesla P100-PCIE-16GB", "6.0")], "550.144.03", "12.4"
    )
    smi = probe_nvidia_smi()
    assert smi.state == SmiState.OK
    assert smi.gpus == (Gpu(0, "Tesla P40", (6, 1)), Gpu(1, "Tesla P100-PCIE-16GB", (6, 0)))
    assert (smi.driver, smi.cuda) == ("550.144.03", (12, 4))


def test_probe_driver_before_510(bin_dir: Path) -> None:
    fake_tools.nvidia_smi_pre510(bin_dir, [("Tesla P40", "6.1")], "470.256.02", "11.4")
    smi = probe_nvidia_smi()
    assert smi.state == SmiState.OK
    assert smi.gpus == (Gpu(0, "Tesla P40", None),)
    assert smi.cuda == (11, 4)


def test_probe_driver_not_loaded(bin_dir: Path) -> None:
    fake_tools.nvidia_smi_failing(bin_dir)
    smi = probe_nvidia_smi()
    assert smi.state == SmiState.FAILED
    assert smi.error == fake_tools.FAILED_DRIVER.strip()


def test_probe_no_devices(bin_dir: Path) -> None:
    fake_tools.nvidia_smi(bin_dir, [])
    smi = probe_nvidia_smi()
    assert (smi.state, smi.gpus) == (SmiState.OK, ())


@pytest.mark.parametrize(
    ("capture", "version", "full"),
    [("ptxas-12.4.131.txt", (12, 4), "12.4.131"), ("ptxas-13.0.88.txt", (13, 0), "13.0.88")],
)
def test_ptxas_version_from_real_output(
    bin_dir: Path, capture: str, version: tuple[int, int], full: str
) -> None:
    tool = fake_tools.install(bin_dir, "ptxas", fake_tools.script((DATA / capture).read_text()))
    found = probe_version(tool)
    assert (found.version, found.full, found.error) == (version, full, "")


def test_ptxas_that_fails_or_says_nothing(bin_dir: Path) -> None:
    broken = fake_tools.install(bin_dir, "ptxas", fake_tools.script("ptxas: error while loading libs\n", 127))
    assert probe_version(broken).error == "ptxas: error while loading libs"
    mute = fake_tools.install(bin_dir, "ptxas2", fake_tools.script("hello\n"))
    assert probe_version(mute).error == "no version in its output: hello"
    assert probe_version(bin_dir / "absent").error.startswith("cannot run")


REAL_PTXAS = [
    Path.home() / ".cache" / "pascal-forge" / "cuda-12.4.131" / "bin" / "ptxas",
    Path("/usr/local/cuda-13.0/bin/ptxas"),
]


@pytest.mark.parametrize("tool", REAL_PTXAS, ids=lambda p: p.parts[-3])
def test_real_ptxas_binaries(tool: Path) -> None:
    if not tool.is_file():
        pytest.skip(f"{tool} is not on this machine")
    found = probe_version(tool)
    assert found.version is not None
    assert found.full.startswith(f"{found.version[0]}.{found.version[1]}.")

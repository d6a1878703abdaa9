"""Stand-ins for NVIDIA tools we cannot run here (no Pascal GPU, no driver on this machine).

Each fake is a /bin/sh script using only shell built-ins (tests run with PATH set to the fakes'
folder alone) that prints what the real tool prints: the layouts are the captures in
tests/data/doctor (real nvidia-smi 580.159.04 on an H100, real ptxas 12.4.131 and 13.0.88), with
the GPU name, compute capability, driver and versions of the machine being imitated.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "doctor"
_H100_NAME = "NVIDIA H100 80GB HBM3"
FAILED_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n"
)


def script(stdout: str, rc: int = 0) -> str:
    return f"#!/bin/sh\nprintf '%s' {shlex.quote(stdout)}\nexit {rc}\n"


def install(bin_dir: Path, name: str, text: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def ptxas_text(version: str) -> str:
    """`ptxas --version` of ``version`` (e.g. 12.6.77), in the layout of the real 12.4.131 output."""
    major_minor = ".".join(version.split(".")[:2])
    real = (DATA / "ptxas-12.4.131.txt").read_text()
    return real.replace("release 12.4, V12.4.131", f"release {major_minor}, V{version}").replace(
        "cuda_12.4.r12.4", f"cuda_{major_minor}.r{major_minor}"
    )


def smi_header(driver: str, cuda: str, gpus: Sequence[tuple[str, str]]) -> str:
    """Plain `nvidia-smi` output: the real 580 layout with this driver, CUDA version and GPUs."""
    lines = (DATA / "nvidia-smi-h100-580.txt").read_text().splitlines(keepends=True)
    head = (
        "".join(lines[:8])
        .replace("580.159.04", driver.ljust(10))
        .replace("CUDA Version: 13.0", f"CUDA Version: {cuda}")
    )
    row = "".join(lines[8:12])
    rows = "".join(
        row.replace("|   0  " + _H100_NAME.ljust(25), f"|   {i}  " + name[:25].ljust(25))
        for i, (name, _) in enumerate(gpus)
    )
    return head + rows + "".join(lines[12:])


def smi_query(driver: str, gpus: Sequence[tuple[str, str]], with_cc: bool = True) -> str:
    """`--query-gpu=index,name[,compute_cap],driver_version --format=csv,noheader` rows."""
    return "".join(
        f"{i}, {name}, {cc}, {driver}\n" if with_cc else f"{i}, {name}, {driver}\n"
        for i, (name, cc) in enumerate(gpus)
    )


def nvidia_smi(
    bin_dir: Path, gpus: Sequence[tuple[str, str]], driver: str = "550.144.03", cuda: str = "12.4"
) -> Path:
    """A driver that knows ``compute_cap`` (>= 510): GPUs as (name, compute capability)."""
    query = smi_query(driver, gpus) if gpus else "No devices were found\n"
    return install(
        bin_dir,
        "nvidia-smi",
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  --query-gpu=*) printf '%s' {shlex.quote(query)}; exit {0 if gpus else 6} ;;\n"
        f"  *) printf '%s' {shlex.quote(smi_header(driver, cuda, gpus))} ;;\n"
        "esac\n",
    )


def nvidia_smi_pre510(bin_dir: Path, gpus: Sequence[tuple[str, str]], driver: str, cuda: str) -> Path:
    """A driver older than 510: refuses the compute_cap field (exit 2), answers without it."""
    refusal = (DATA / "nvidia-smi-invalid-field.txt").read_text().replace("compute_capx", "compute_cap")
    return install(
        bin_dir,
        "nvidia-smi",
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  --query-gpu=*compute_cap*) printf '%s' {shlex.quote(refusal)}; exit 2 ;;\n"
        f"  --query-gpu=*) printf '%s' {shlex.quote(smi_query(driver, gpus, with_cc=False))} ;;\n"
        f"  *) printf '%s' {shlex.quote(smi_header(driver, cuda, gpus))} ;;\n"
        "esac\n",
    )


def nvidia_smi_failing(bin_dir: Path) -> Path:
    """nvidia-smi installed but the kernel driver is not loaded (exit status 9)."""
    return install(bin_dir, "nvidia-smi", script(FAILED_DRIVER, 9))

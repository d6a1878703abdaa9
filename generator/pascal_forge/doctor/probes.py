"""Ask the machine's tools: ``nvidia-smi`` for GPUs and the driver, ``ptxas --version`` for CUDA.

Each probe runs the real tool with a timeout and parses its documented output; a missing or
failing tool is a result (with the tool's own words), never an exception.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

TIMEOUT = 60
_CUDA_VERSION = re.compile(r"CUDA Version\s*:\s*(\d+)\.(\d+)")
_RELEASE = re.compile(r"release (\d+)\.(\d+), V(\d+(?:\.\d+)*)")
_QUERY = "--query-gpu=index,name,compute_cap,driver_version"
_QUERY_OLD = "--query-gpu=index,name,driver_version"  # drivers before 510 know no compute_cap


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    cc: tuple[int, int] | None  # None: the driver cannot report it

    @property
    def cc_text(self) -> str:
        return f"{self.cc[0]}.{self.cc[1]}" if self.cc else "unknown"


class SmiState(StrEnum):
    ABSENT = "absent"  # no nvidia-smi on PATH
    FAILED = "failed"  # it ran and failed (driver not loaded, version mismatch, ...)
    OK = "ok"


@dataclass(frozen=True)
class Smi:
    state: SmiState
    gpus: tuple[Gpu, ...] = ()
    driver: str = ""
    cuda: tuple[int, int] | None = None  # newest CUDA the driver supports
    error: str = ""


def _run(argv: list[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return -1, f"`{' '.join(argv)}` did not answer within {TIMEOUT}s"
    except OSError as exc:
        return -1, f"cannot run {argv[0]}: {exc.strerror or exc}"
    return done.returncode, (done.stdout + done.stderr).strip()


def probe_nvidia_smi() -> Smi:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return Smi(SmiState.ABSENT)
    rc, out = _run([exe, _QUERY, "--format=csv,noheader"])
    has_cc = True
    if rc != 0 and "compute_cap" in out:
        has_cc = False
        rc, out = _run([exe, _QUERY_OLD, "--format=csv,noheader"])
    if rc != 0 and "No devices were found" not in out:
        return Smi(SmiState.FAILED, error=out.splitlines()[0] if out else f"exit status {rc}")
    gpus, driver = parse_gpu_csv(out if rc == 0 else "", has_cc=has_cc)
    _, header = _run([exe])
    return Smi(SmiState.OK, gpus, driver, parse_cuda_version(header))


def parse_gpu_csv(text: str, has_cc: bool = True) -> tuple[tuple[Gpu, ...], str]:
    """Rows of ``--query-gpu=index,name[,compute_cap],driver_version --format=csv,noheader``."""
    gpus = []
    driver = ""
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if len(row) != (4 if has_cc else 3) or not row[0].strip().isdigit():
            continue
        cc = None
        if has_cc:
            major, _, minor = row[2].strip().partition(".")
            if major.isdigit() and minor.isdigit():
                cc = (int(major), int(minor))
        gpus.append(Gpu(int(row[0]), row[1].strip(), cc))
        driver = row[-1].strip()
    return tuple(gpus), driver


def parse_cuda_version(text: str) -> tuple[int, int] | None:
    """``CUDA Version: 12.4`` from nvidia-smi's header (or ``CUDA Version : 13.0`` from --version)."""
    m = _CUDA_VERSION.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


@dataclass(frozen=True)
class ToolVersion:
    path: Path
    version: tuple[int, int] | None  # None: could not run it or read a version
    full: str = ""  # e.g. 12.4.131
    error: str = ""


def probe_version(path: Path) -> ToolVersion:
    """``<tool> --version`` of an NVIDIA compiler tool (ptxas, nvcc): ``release 12.4, V12.4.131``."""
    rc, out = _run([str(path), "--version"])
    m = _RELEASE.search(out)
    if rc != 0 or m is None:
        first = out.splitlines()[0] if out else f"exit status {rc}"
        return ToolVersion(path, None, error=first if rc != 0 else f"no version in its output: {first}")
    return ToolVersion(path, (int(m.group(1)), int(m.group(2))), m.group(3))

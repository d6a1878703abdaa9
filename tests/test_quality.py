"""The code stays ruff- and mypy-clean (the project's strict settings in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_lint_and_format() -> None:
    lint = run("ruff", "check", "generator", "tests", "scripts")
    assert lint.returncode == 0, lint.stdout[-4000:]
    fmt = run("ruff", "format", "--check", "generator", "tests", "scripts")
    assert fmt.returncode == 0, fmt.stdout[-4000:]


def test_mypy_strict() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout[-4000:]

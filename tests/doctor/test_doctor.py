"""`pascal-forge doctor` without the engine: the CLI's errors, the machine checks, damaged records.

Prefixes here are folders with ``conda-meta/*.json`` written in the layout py-rattler writes (see
tests/doctor/test_doctor_env.py for prefixes installed by py-rattler itself); the machine is described by
``Smi`` values, the result type of the nvidia-smi probe (tests/doctor/test_probes.py runs the probe).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import rattler

from pascal_forge import cli
from pascal_forge.doctor.checks import check_records, diagnose
from pascal_forge.doctor.command import as_json, format_report
from pascal_forge.doctor.context import Context, Finding, Status, pascal_spec
from pascal_forge.doctor.prefix import read_prefix
from pascal_forge.doctor.probes import Gpu, Smi, SmiState
from pascal_forge.doctor.system import check_cuda_version, check_driver, check_gpu
from pascal_forge.stack.spec import load_spec

STACK = load_spec().stack()
P40 = Gpu(0, "Tesla P40", (6, 1))
M40 = Gpu(1, "Tesla M40 24GB", (5, 2))


def record(prefix: Path, name: str, version: str, build: str, files: tuple[str, ...] = ()) -> Path:
    meta = prefix / "conda-meta" / f"{name}-{version}-{build}.json"
    meta.parent.mkdir(parents=True, exist_ok=True)
    url = f"https://conda.anaconda.org/conda-forge/linux-64/{name}-{version}-{build}.conda"
    data = {"name": name, "version": version, "build": build, "url": url, "files": list(files)}
    meta.write_text(json.dumps(data))
    return meta


def context(prefix: Path, smi: Smi | None = None) -> Context:
    return Context(
        read_prefix(prefix), STACK, "https://example.org/pascal", "--channel", smi or Smi(SmiState.ABSENT), {}
    )


@pytest.fixture(autouse=True)
def _user_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's own site-packages and CUDA variables stay out of these tests."""
    monkeypatch.setenv("PYTHONUSERBASE", str(tmp_path / "userbase"))
    for var in ("PYTHONNOUSERSITE", "TRITON_PTXAS_PATH", "CONDA_PREFIX"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    root = tmp_path / "env"
    record(root, "python", "3.12.9", "h9e4cc4f_0_cpython")
    return root


# --------------------------------------------------------------------------------------------
# the command line


def test_no_prefix_and_none_active(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    assert cli.main(["doctor"]) == 41
    err = capsys.readouterr().err
    assert err.startswith("error[prefix-invalid]: no conda environment given and none is active")
    assert "pascal-forge doctor --prefix /path/to/env" in err


def test_not_a_conda_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("x")
    assert cli.main(["doctor", "--prefix", str(tmp_path)]) == 41
    assert (
        f"{tmp_path} is not a conda environment (it has no conda-meta/ folder; it holds notes.txt)"
        in capsys.readouterr().err
    )
    assert cli.main(["doctor", "--prefix", str(tmp_path / "nope")]) == 41
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["doctor", "--prefix", str(tmp_path / "notes.txt")]) == 41
    assert f"{tmp_path / 'notes.txt'} is a file, not a conda environment" in capsys.readouterr().err


ALL_THREE = "'triton ==3.2.0 *pascal*' 'pytorch ==2.6.0 *pascal*' 'vllm-pascal ==0.8.5 *pascal*'"


def test_empty_folder_says_so_and_how_to_create_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["doctor", "--prefix", str(empty), "--channel", "https://example.org/pascal"]) == 41
    err = capsys.readouterr().err
    assert err.startswith(f"error[prefix-invalid]: {empty} is an empty folder, not a conda environment")
    assert (
        f"next: create the environment there: conda create -p {empty} -c https://example.org/pascal "
        f"-c conda-forge -y {ALL_THREE}"
    ) in err
    # --json: the same list shape, with the one check that ran
    assert cli.main(["doctor", "--prefix", str(empty), "--json"]) == 41
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["check"], row["status"]) == ("prefix", "problem")
    assert row["fix"].endswith(f"conda create -p {empty} -c ./channel -c conda-forge -y {ALL_THREE}")


def test_conda_installation_root_names_its_environments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "base" / "envs" / "vllm" / "conda-meta").mkdir(parents=True)
    assert cli.main(["doctor", "--prefix", str(tmp_path / "base")]) == 41
    err = capsys.readouterr().err
    assert "is a conda installation, not one environment: its environments are under envs/ (vllm)" in err
    assert f"pascal-forge doctor --prefix {tmp_path / 'base' / 'envs' / 'vllm'}" in err


def test_environment_without_the_pascal_packages_names_all_three(
    prefix: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fresh `conda create` environment: "vllm-pascal is not installed" is the answer, not "not checked"."""
    monkeypatch.setenv("CONDA_PREFIX", str(prefix))
    monkeypatch.setenv("PATH", str(prefix))  # no nvidia-smi
    assert cli.main(["doctor", "--json", "--channel", "https://example.org/pascal"]) == 40
    rows = {r["check"]: r for r in json.loads(capsys.readouterr().out)}
    want = f"conda install -p {prefix} -c https://example.org/pascal -c conda-forge -y {ALL_THREE}"
    problems = {k: r for k, r in rows.items() if r["status"] == "problem"}
    assert set(problems) == {"triton", "pytorch", "vllm"}
    for check, name in (("triton", "triton"), ("pytorch", "pytorch"), ("vllm", "vllm-pascal")):
        assert problems[check]["detail"].startswith(f"{name} is not installed as a conda package in {prefix}")
        assert problems[check]["fix"] == want
    # what cannot be checked without a GPU or without the packages stays "not checked"
    assert rows["gpu"]["status"] == rows["vllm-kernels"]["status"] == "not checked"
    assert cli.main(["doctor", "--channel", "https://example.org/pascal"]) == 40
    out = capsys.readouterr().out
    assert out.endswith(f"to fix, run in this order:\n  {want}\n")  # one command, listed once
    assert "3 problem(s), 8 not checked, 4 ok" in out


def test_one_missing_package_is_installed_alone(prefix: Path) -> None:
    record(prefix, "triton", "3.2.0", "cuda126py312_pascal_h0_0")
    record(prefix, "pytorch", "2.6.0", "cuda126_pascal_py312_h0_0")
    found = {f.check: f for f in diagnose(context(prefix))}
    assert found["vllm"].status == Status.PROBLEM
    assert found["vllm"].fix == (
        f"conda install -p {prefix} -c https://example.org/pascal -c conda-forge -y 'vllm-pascal ==0.8.5 *pascal*'"
    )


def test_stock_vllm_is_removed_before_vllm_pascal_is_installed(prefix: Path) -> None:
    record(prefix, "triton", "3.2.0", "cuda126py312_pascal_h0_0")
    record(prefix, "pytorch", "2.6.0", "cuda126_pascal_py312_h0_0")
    record(prefix, "vllm", "0.8.5", "cuda126py312h0_0")
    found = {f.check: f for f in diagnose(context(prefix))}
    assert found["vllm"].detail.startswith(
        "vllm 0.8.5 cuda126py312h0_0 from https://conda.anaconda.org/conda-forge is stock vLLM"
    )
    assert found["vllm"].fix == (
        f"conda remove -p {prefix} -y --force vllm && conda install -p {prefix} -c https://example.org/pascal "
        "-c conda-forge -y 'vllm-pascal ==0.8.5 *pascal*'"
    )


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["doctor", "--help"])
    out = capsys.readouterr().out
    assert "pascal-forge doctor --prefix ~/miniforge3/envs/vllm" in out
    assert "--channel URL" in out


# --------------------------------------------------------------------------------------------
# GPU, driver, CUDA


def test_gpu_lines() -> None:
    ctx = context(Path("/nonexistent"), Smi(SmiState.OK, (P40,), "550.144.03", (12, 4)))
    assert check_gpu(ctx) == Finding("gpu", Status.OK, "GPU 0 Tesla P40: compute capability 6.1 (Pascal)")


def test_gpu_too_old_among_others() -> None:
    ctx = context(Path("/nonexistent"), Smi(SmiState.OK, (P40, M40), "550.144.03", (12, 4)))
    f = check_gpu(ctx)
    assert f.status == Status.PROBLEM
    assert "GPU 1 Tesla M40 24GB: compute capability 5.2 (too old: Triton needs 6.0)" in f.detail
    assert f.fix.startswith("export CUDA_VISIBLE_DEVICES=0 ")
    only_old = check_gpu(context(Path("/nonexistent"), Smi(SmiState.OK, (M40,), "550.144.03", (12, 4))))
    assert only_old.fix == "none in software: this stack needs a GPU of compute capability 6.0 or newer"


def test_no_gpu_listed() -> None:
    f = check_gpu(context(Path("/nonexistent"), Smi(SmiState.OK, (), "550.144.03", (12, 4))))
    assert (f.status, f.detail) == (Status.NOT_CHECKED, "nvidia-smi lists no GPU")


@pytest.mark.parametrize(
    ("cuda", "status", "tail"),
    [
        ((11, 4), Status.PROBLEM, "needs a CUDA 12 driver"),
        ((12, 2), Status.OK, "runs on it through CUDA minor-version compatibility"),
        ((12, 6), Status.OK, "supports CUDA <= 12.6; cuda-version 12.6"),
        ((13, 0), Status.OK, "supports CUDA <= 13.0; cuda-version 12.6"),
    ],
)
def test_driver_against_cuda_version(prefix: Path, cuda: tuple[int, int], status: Status, tail: str) -> None:
    record(prefix, "cuda-version", "12.6", "h7480c83_3")
    f = check_driver(context(prefix, Smi(SmiState.OK, (P40,), "535.230.02", cuda)))
    assert f.status == status
    assert tail in f.detail


@pytest.mark.parametrize(
    ("version", "status"),
    [("12.6", Status.OK), ("12.8", Status.OK), ("13.0", Status.PROBLEM), ("11.8", Status.PROBLEM)],
)
def test_cuda_version(prefix: Path, version: str, status: Status) -> None:
    record(prefix, "cuda-version", version, "h0")
    f = check_cuda_version(context(prefix))
    assert f.status == status
    if version == "13.0":
        assert f.detail == (
            "cuda-version 13.0 is outside >=12.0,<13: CUDA 13 cannot compile for sm_60/sm_61 (neither nvcc nor ptxas)"
        )
        assert f.fix == f"conda install -p {prefix} -c conda-forge -y 'cuda-version 12.6.*'"
        assert rattler.MatchSpec(shlex.split(f.fix)[-1], strict=True).version == "12.6.*"


# --------------------------------------------------------------------------------------------
# damaged environments never crash the doctor


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON (line 1 column 2: Expecting property name enclosed in double quotes)"),
        ("[1, 2]", "is not a JSON object"),
        ('{"name": "triton", "version": "3.2.0"}', "has no 'build' field"),
        (
            '{"name": "triton", "version": "3.2.0", "build": "", "files": []}',
            "field 'build' is not a non-empty string",
        ),
        (
            '{"name": "triton", "version": "3.2.0", "build": "b", "files": "x"}',
            "field 'files' is not a list of paths",
        ),
    ],
)
def test_damaged_record_named(prefix: Path, content: str, reason: str) -> None:
    bad = prefix / "conda-meta" / "triton-3.2.0-b.json"
    bad.write_text(content)
    findings = diagnose(context(prefix))
    f = check_records(context(prefix))
    assert f.status == Status.PROBLEM
    assert f"{bad} {reason}" in f.detail
    # the Pascal packages are missing too (this prefix has only python)
    assert [x.check for x in findings if x.status == Status.PROBLEM] == [
        "conda-meta",
        "triton",
        "pytorch",
        "vllm",
    ]
    # a damaged record may hide files conda would keep: the install forces a reinstall
    assert all(x.fix.endswith(f"-y --force-reinstall {ALL_THREE}") for x in findings[4:] if x.fix)


def test_unreadable_site_packages_is_a_finding(prefix: Path) -> None:
    """A check that trips over the filesystem reports it instead of crashing the run."""
    site = prefix / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    (site / "vllm").mkdir()
    record(prefix, "vllm-pascal", "0.8.5", "cuda126py312_pascal_h1d85c34_0")
    (site / "vllm" / "_C.abi3.so").write_text("not an ELF file")
    f = {x.check: x for x in diagnose(context(prefix))}["vllm-kernels"]
    assert f.status == Status.PROBLEM
    assert "_C.abi3.so is not an ELF file" in f.detail


# --------------------------------------------------------------------------------------------
# output


def test_report_and_json_shapes(prefix: Path) -> None:
    ctx = context(prefix)
    findings = [
        Finding("gpu", Status.NOT_CHECKED, "no nvidia-smi on PATH (no NVIDIA driver)"),
        Finding("triton", Status.PROBLEM, "stock", "cmd one"),
        Finding("triton-pip", Status.PROBLEM, "shadow", "cmd one"),
        Finding("ptxas", Status.OK, "fine"),
    ]
    text = format_report(ctx, findings)
    assert text.splitlines()[0] == f"pascal-forge doctor: {prefix}"
    assert "not checked  gpu         no nvidia-smi on PATH (no NVIDIA driver)" in text
    assert "problem      triton      stock\n                         fix: cmd one" in text
    assert text.endswith("2 problem(s), 1 not checked, 1 ok\n\nto fix, run in this order:\n  cmd one")
    rows = json.loads(as_json(findings))
    assert rows[1] == {"check": "triton", "status": "problem", "detail": "stock", "fix": "cmd one"}


def test_fix_specs_parse_strictly() -> None:
    """Fix commands use `name ==version *pascal*`: rattler's strict parser (pixi) accepts it."""
    for name, version in (("triton", STACK.triton), ("pytorch", STACK.torch), ("vllm-pascal", STACK.vllm)):
        spec = rattler.MatchSpec(pascal_spec(STACK, name), strict=True)
        assert (spec.name.normalized, str(spec.version), str(spec.build)) == (
            name,
            f"=={version}",
            "*pascal*",
        )

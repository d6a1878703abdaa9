"""`pascal-forge doctor` on real conda prefixes (py-rattler solve + install from engine-built packages).

The channels are described in tests/helpers/pascal_env.py: a good one (the default stack's three Pascal
packages, the pytorch overlay carrying the real torch 2.6.0 gate files with our patches applied)
and one with the faults users hit. Each test installs a prefix, breaks it the way users do (a
later `pip install`, a removed file, a damaged record), and checks the doctor's diagnosis and the
exact fix. There is no GPU or driver here: nvidia-smi is a stand-in printing real output layouts
(tests/helpers/fake_tools.py), and PATH holds nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import rattler

from helpers import fake_tools, pascal_env, torchfiles
from helpers.condapkgs import install_prefix, make_channel, overwrite
from pascal_forge.doctor.checks import diagnose
from pascal_forge.doctor.context import Finding, Status, make_context, pascal_spec
from pascal_forge.stack.spec import load_spec

pytestmark = pytest.mark.integration

SITE = pascal_env.SITE
ALL_CHECKS = (
    "gpu",
    "driver",
    "cuda-version",
    "conda-meta",
    "triton",
    "triton-pip",
    "ptxas",
    "pytorch",
    "pytorch-pip",
    "inductor-gate-has-triton",
    "inductor-gate-scheduler",
    "vllm",
    "vllm-pip",
    "vllm-dist",
    "vllm-kernels",
)
P40 = ("Tesla P40", "6.1")
P100 = ("Tesla P100-PCIE-16GB", "6.0")


@dataclass(frozen=True)
class Channels:
    good: Path
    faults: Path
    cache: Path


@pytest.fixture(scope="module")
def channels(tmp_path_factory: pytest.TempPathFactory) -> Channels:
    if shutil.which("patch") is None:
        pytest.skip("GNU patch is not installed (it applies the torch series)")
    root = tmp_path_factory.mktemp("channels")
    pristine = torchfiles.copy_pristine(root / "torch-pristine")
    patched = torchfiles.apply_series(torchfiles.copy_pristine(root / "torch-patched"))
    return Channels(
        make_channel(root / "good", pascal_env.good_packages(patched)),
        make_channel(root / "faults", pascal_env.fault_packages(pristine)),
        root / "pkgs",
    )


@dataclass(frozen=True)
class Machine:
    bin: Path
    user_base: Path


@pytest.fixture(autouse=True)
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Machine:
    """No NVIDIA tools unless a test installs a fake; a private user site; no CUDA variables."""
    m = Machine(tmp_path / "bin", tmp_path / "userbase")
    m.bin.mkdir()
    monkeypatch.setenv("PATH", str(m.bin))
    monkeypatch.setenv("PYTHONUSERBASE", str(m.user_base))
    for var in ("PYTHONNOUSERSITE", "TRITON_PTXAS_PATH", "CONDA_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    return m


def install(tmp_path: Path, channels: Channels, specs: list[str]) -> Path:
    """Install from the good channel and the faults one (no priority: the specs pick the builds)."""
    prefix = tmp_path / "env"
    install_prefix(prefix, [channels.good, channels.faults], specs, channels.cache, "disabled")
    return prefix


@pytest.fixture
def good_prefix(tmp_path: Path, channels: Channels) -> Path:
    """A user's `conda install -c <channel> vllm-pascal` from the good channel alone.

    To run these tests on the end-to-end test's channel, point ``channels.good`` at it: the checks
    need what pascal_env.good_packages() provides (see its docstring)."""
    prefix = tmp_path / "env"
    install_prefix(prefix, [channels.good], pascal_env.good_specs(), channels.cache)
    return prefix


def doctor(prefix: Path, channel: str | None = None) -> dict[str, Finding]:
    findings = diagnose(make_context(prefix, channel))
    assert tuple(f.check for f in findings) == ALL_CHECKS
    return {f.check: f for f in findings}


def statuses(found: dict[str, Finding]) -> dict[str, str]:
    return {k: f.status.value for k, f in found.items()}


def problems(found: dict[str, Finding]) -> set[str]:
    return {k for k, f in found.items() if f.status == Status.PROBLEM}


def cli(prefix: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pascal_forge", "doctor", "--prefix", str(prefix), *args],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
        timeout=120,
    )


def conda_install(prefix: Path, channel: str, spec: str) -> str:
    return f"conda install -p {prefix} -c {channel} -c conda-forge -y --force-reinstall '{spec}'"


def pip_uninstall(prefix: Path, dist: str) -> str:
    return f"{prefix}/bin/python -m pip uninstall -y {dist}"


def good_channel_url(channels: Channels) -> str:
    return channels.good.resolve().as_uri()


# --------------------------------------------------------------------------------------------
# 1. a good prefix: everything ok except what needs a GPU


def test_good_prefix_all_ok_but_the_gpu(good_prefix: Path, channels: Channels) -> None:
    found = doctor(good_prefix)
    want = dict.fromkeys(ALL_CHECKS, "ok") | {"gpu": "not checked", "driver": "not checked"}
    assert statuses(found) == want, {k: f.detail for k, f in found.items() if f.status != Status.OK}
    assert found["gpu"].detail == "no nvidia-smi on PATH (no NVIDIA driver)"
    _, _, triton_build, _ = pascal_env._rendered("triton-pascal")
    assert found["triton"].detail == f"triton 3.2.0 {triton_build} from {good_channel_url(channels)}"
    assert "ptxas 12.6.77 (allowed: >=12.0,<12.7)" in found["ptxas"].detail
    assert found["inductor-gate-has-triton"].detail.startswith(f"{SITE}/torch/utils/_triton.py:72 ")
    assert found["inductor-gate-has-triton"].detail.endswith(
        "return device_interface.Worker.get_device_properties().major >= 6"
    )
    assert found["inductor-gate-scheduler"].detail.startswith(f"{SITE}/torch/_inductor/scheduler.py:3426 ")
    assert found["vllm-dist"].detail.startswith(f"{SITE}/vllm-0.8.5.dist-info names the distribution 'vllm'")
    assert found["vllm-kernels"].detail == (
        f"code for compute capability 6.0, 6.1: {SITE}/vllm/_C.abi3.so: sm_60, sm_61; "
        f"{SITE}/vllm/_moe_C.abi3.so: sm_60, sm_61, PTX compute_60"
    )
    assert all(not f.fix for f in found.values())

    run = cli(good_prefix)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 problem(s), 2 not checked, 13 ok" in run.stdout
    assert (
        f"fixes install from {good_channel_url(channels)} (the channel the installed vllm-pascal came from)"
        in (run.stdout)
    )
    rows = json.loads(cli(good_prefix, "--json").stdout)
    assert [r["check"] for r in rows] == list(ALL_CHECKS)
    assert {r["status"] for r in rows} == {"ok", "not checked"}
    assert set(rows[0]) == {"check", "status", "detail", "fix"}


def test_good_prefix_on_pascal_gpus(good_prefix: Path, machine: Machine) -> None:
    fake_tools.nvidia_smi(machine.bin, [P40, P100], driver="550.144.03", cuda="12.4")
    found = doctor(good_prefix)
    assert set(statuses(found).values()) == {"ok"}, {k: f.detail for k, f in found.items()}
    assert found["gpu"].detail == (
        "GPU 0 Tesla P40: compute capability 6.1 (Pascal); "
        "GPU 1 Tesla P100-PCIE-16GB: compute capability 6.0 (Pascal)"
    )
    assert found["driver"].detail == (
        "driver 550.144.03 supports CUDA <= 12.4; cuda-version 12.6 runs on it through CUDA minor-version compatibility"
    )
    assert found["vllm-kernels"].detail.startswith("code for compute capability 6.0, 6.1: ")


def test_driver_too_old_for_the_runtime(good_prefix: Path, machine: Machine) -> None:
    fake_tools.nvidia_smi_pre510(machine.bin, [P40], driver="470.256.02", cuda="11.4")
    found = doctor(good_prefix)
    assert problems(found) == {"driver"}
    assert found["gpu"].status == Status.OK
    assert (
        found["gpu"].detail == "GPU 0 Tesla P40: compute capability unknown (the driver does not report it)"
    )
    assert found["driver"].detail.startswith(
        "driver 470.256.02 supports CUDA <= 11.4; the environment's runtime is cuda-version 12.6, which needs a CUDA 12 driver"
    )
    assert "'CUDA driver version is insufficient for CUDA runtime version'" in found["driver"].detail
    assert found["driver"].fix.startswith(
        "install an NVIDIA driver >= 525.60.13 (CUDA 12) of branch 580 or older"
    )


def test_driver_not_loaded(good_prefix: Path, machine: Machine) -> None:
    fake_tools.nvidia_smi_failing(machine.bin)
    found = doctor(good_prefix)
    assert problems(found) == {"gpu"}
    assert found["gpu"].detail == f"nvidia-smi fails: {fake_tools.FAILED_DRIVER.strip()}"
    assert found["driver"].status == Status.NOT_CHECKED


# --------------------------------------------------------------------------------------------
# 2. pip-installed triton shadowing the conda one


def test_pip_triton_beside_the_conda_one(good_prefix: Path, channels: Channels) -> None:
    """`pip install triton==3.3.0` (e.g. pulled by a newer torch) writes an unowned dist-info."""
    for rel, data in pascal_env.dist_info("triton", "3.3.0", installer="pip").items():
        overwrite(good_prefix / rel, data)
    found = doctor(good_prefix)
    assert problems(found) == {"triton-pip"}
    f = found["triton-pip"]
    assert f.detail == (
        "pip-installed triton 3.3.0 shadows the conda package (stock triton cannot compile fp16 dots for sm_6x): "
        f"{SITE}/triton-3.3.0.dist-info (INSTALLER: pip) belongs to no conda package"
    )
    spec = "triton ==3.2.0 *pascal*"
    url = good_channel_url(channels)
    assert f.fix == f"{pip_uninstall(good_prefix, 'triton')} && {conda_install(good_prefix, url, spec)}"

    run = cli(good_prefix)
    assert run.returncode == 40
    assert "problem      triton-pip" in run.stdout
    assert f"fix: {f.fix}" in run.stdout
    assert "error[environment-broken]: 1 problem(s)" in run.stderr


def test_pip_triton_over_the_conda_one(good_prefix: Path) -> None:
    """`pip install --force-reinstall triton==3.2.0` rewrites the conda package's own dist-info."""
    for rel, data in pascal_env.dist_info(
        "triton", "3.2.0", installer="pip", files=["triton/_C/libtriton.so"]
    ).items():
        overwrite(good_prefix / rel, data)
    found = doctor(good_prefix)
    assert problems(found) == {"triton-pip"}
    assert found["triton-pip"].detail.endswith(
        f"{SITE}/triton-3.2.0.dist-info of the conda package was rewritten by another installer "
        "(INSTALLER: pip; changed: INSTALLER, RECORD)"
    )
    assert found["triton-pip"].fix.startswith(pip_uninstall(good_prefix, "triton") + " && conda install ")


def test_pip_triton_in_the_user_site(good_prefix: Path, machine: Machine) -> None:
    """`pip install --user triton`: Python searches the user site before the environment."""
    user_site = machine.user_base / "lib" / "python3.12" / "site-packages"
    for rel, data in pascal_env.dist_info("triton", "3.2.0", installer="pip").items():
        overwrite(user_site / rel.removeprefix(SITE + "/"), data)
    found = doctor(good_prefix)
    assert problems(found) == {"triton-pip"}
    assert found["triton-pip"].detail.endswith(
        f"{user_site}/triton-3.2.0.dist-info (INSTALLER: pip) is in the user site-packages, which Python searches first"
    )
    assert found["triton-pip"].fix == pip_uninstall(good_prefix, "triton")  # conda's files are untouched


def test_fix_specs_select_the_pascal_builds_only(channels: Channels) -> None:
    """The match specs in the fixes pick our builds and refuse the conda-forge ones (checked by rattler)."""
    stack = load_spec().stack()
    records = [
        r
        for ch in (channels.good, channels.faults)
        for sub in ("linux-64", "noarch")
        for r in rattler.RepoData.from_path(ch / sub / "repodata.json").into_repo_data(
            rattler.Channel(ch.as_uri())
        )
    ]
    for name in ("triton", "pytorch", "vllm-pascal"):
        spec = rattler.MatchSpec(pascal_spec(stack, name), strict=True)
        builds = {str(r.build): spec.matches(r) for r in records if r.name.normalized == name}
        assert builds, name
        assert builds == {b: "_pascal_" in b for b in builds}, name
    assert {
        str(r.build)
        for r in records
        if r.name.normalized in {"triton", "pytorch"} and "_pascal_" not in str(r.build)
    } == {
        "cuda126py312h5a3d8a8_0",
        "cuda126_mkl_py312_h8bb5dc9_300",
    }


# --------------------------------------------------------------------------------------------
# 3. unpatched torch gates


def test_stock_pytorch_gates_quoted_with_the_fix(tmp_path: Path, channels: Channels) -> None:
    prefix = install(
        tmp_path, channels, [pascal_env.STOCK_PYTORCH, "triton ==3.2.0 *pascal*", "cuda-version ==12.6"]
    )
    found = doctor(prefix, channel="https://example.org/pascal")
    # vllm-pascal is not installed here either: a problem of its own, with its own install
    assert problems(found) == {"pytorch", "inductor-gate-has-triton", "inductor-gate-scheduler", "vllm"}
    spec = "pytorch ==2.6.0 *pascal*"
    fix = conda_install(prefix, "https://example.org/pascal", spec)
    assert found["pytorch"].detail.startswith("pytorch 2.6.0 cuda126_mkl_py312_h8bb5dc9_300 from file://")
    assert "is not the Pascal build (no 'pascal' in its build string)" in found["pytorch"].detail
    gate = found["inductor-gate-has-triton"]
    assert gate.detail == (
        f"{SITE}/torch/utils/_triton.py:72 (has_triton) refuses compute capability 6.x: "
        "`return device_interface.Worker.get_device_properties().major >= 7`; "
        "has_triton() is False on cc 6.x, so Inductor treats Triton as unusable"
    )
    sched = found["inductor-gate-scheduler"]
    assert sched.detail == (
        f"{SITE}/torch/_inductor/scheduler.py:3426 (Scheduler.create_backend) refuses compute capability 6.x: "
        "`and (device_props := torch.cuda.get_device_properties(device)).major < 7`; torch.compile raises "
        '"Found <GPU> which is too old to be supported by the triton GPU compiler"'
    )
    assert gate.fix == sched.fix == found["pytorch"].fix == fix

    run = cli(prefix, "--channel", "https://example.org/pascal")
    assert run.returncode == 40
    assert "torch/utils/_triton.py:72 (has_triton) refuses compute capability 6.x" in run.stdout
    assert run.stdout.count(f"fix: {fix}") == 3
    install_vllm = f"conda install -p {prefix} -c https://example.org/pascal -c conda-forge -y 'vllm-pascal ==0.8.5 *pascal*'"
    assert found["vllm"].fix == install_vllm
    assert run.stdout.endswith(f"to fix, run in this order:\n  {fix}\n  {install_vllm}\n")  # once each
    assert "4 problem(s)" in run.stdout


def test_gate_files_reverted_under_the_pascal_build(good_prefix: Path, tmp_path: Path) -> None:
    """The gates are read from the files, not trusted from the build string."""
    pristine = torchfiles.copy_pristine(tmp_path / "pristine")
    for rel in (torchfiles.TRITON_PY, torchfiles.SCHEDULER_PY):
        overwrite(good_prefix / SITE / rel, (pristine / rel).read_bytes())
    found = doctor(good_prefix)
    assert problems(found) == {"inductor-gate-has-triton", "inductor-gate-scheduler"}
    assert found["pytorch"].status == Status.OK
    assert "`return device_interface.Worker.get_device_properties().major >= 7`" in (
        found["inductor-gate-has-triton"].detail
    )


# --------------------------------------------------------------------------------------------
# triton, ptxas and CUDA


def test_stock_triton_with_cuda_12_8(tmp_path: Path, channels: Channels) -> None:
    """conda-forge's triton 3.2.0 next to cuda-nvcc-tools 12.8, as array-api-extra's lock has them."""
    prefix = install(tmp_path, channels, [pascal_env.STOCK_TRITON, "cuda-version ==12.8"])
    found = doctor(prefix)
    assert problems(found) == {"triton", "pytorch", "vllm"}
    assert found["triton"].detail.startswith("triton 3.2.0 cuda126py312h5a3d8a8_0 from file://")
    assert "'Unsupported conversion from f16 to f16'" in found["triton"].detail
    assert found["triton"].fix == conda_install(prefix, "./channel", "triton ==3.2.0 *pascal*")
    assert found["ptxas"].status == Status.NOT_CHECKED
    assert found["cuda-version"].detail == "cuda-version 12.8 (allowed: >=12.0,<13)"
    assert found["pytorch"].detail == (
        f"pytorch is not installed as a conda package in {prefix}, "
        "but vLLM on Pascal needs vllm-pascal with the Pascal builds of pytorch and triton"
    )
    # one command installs both missing ones; the stock triton gets its own forced reinstall
    assert (
        found["pytorch"].fix
        == found["vllm"].fix
        == (
            f"conda install -p {prefix} -c ./channel -c conda-forge -y 'pytorch ==2.6.0 *pascal*' 'vllm-pascal ==0.8.5 *pascal*'"
        )
    )


@pytest.mark.parametrize(
    ("version", "why"),
    [
        ("13.0.88", "CUDA 13 ptxas cannot target sm_60/sm_61"),
        (
            "12.8.61",
            "triton 3.2.0 misreads ptxas >= 12.7 ('Triton only support CUDA 10.0 or higher, but got CUDA version: 12.8')",
        ),
    ],
)
def test_ptxas_from_triton_ptxas_path(
    good_prefix: Path, machine: Machine, monkeypatch: pytest.MonkeyPatch, version: str, why: str
) -> None:
    ptxas = fake_tools.install(machine.bin, "ptxas", fake_tools.script(fake_tools.ptxas_text(version)))
    monkeypatch.setenv("TRITON_PTXAS_PATH", str(ptxas))
    found = doctor(good_prefix)
    assert problems(found) == {"ptxas"}
    assert found["ptxas"].detail == f"$TRITON_PTXAS_PATH: ptxas {version}: {why}"
    assert found["ptxas"].fix == "unset TRITON_PTXAS_PATH   # or point it at a ptxas of CUDA >=12.0,<12.7"


def test_ptxas_link_dangling(good_prefix: Path) -> None:
    (good_prefix / "bin" / "ptxas").unlink()
    found = doctor(good_prefix)
    assert problems(found) == {"ptxas"}
    assert found["ptxas"].detail.startswith(
        f"{SITE}/triton/backends/nvidia/bin/ptxas links to ../../../../../../../bin/ptxas, which does not exist"
    )
    assert (
        found["ptxas"].fix
        == f"conda install -p {good_prefix} -c conda-forge -y 'cuda-nvcc-tools >=12.0,<12.7'"
    )


def test_conda_files_removed_by_pip_uninstall(good_prefix: Path) -> None:
    (good_prefix / SITE / "triton" / "__init__.py").unlink()
    found = doctor(good_prefix)
    assert problems(found) == {"triton"}
    assert found["triton"].detail.endswith(
        f"1 of its 5 files are missing (first: {SITE}/triton/__init__.py); "
        "`pip uninstall` of a package sharing them removes conda's files too"
    )


def test_damaged_record_is_named_not_a_crash(good_prefix: Path) -> None:
    (meta,) = (good_prefix / "conda-meta").glob("triton-3.2.0-*.json")
    overwrite(meta, meta.read_bytes()[:200])
    found = doctor(good_prefix)
    # its files are now owned by no readable record: triton-pip says so, pointing at conda-meta
    assert problems(found) == {"conda-meta", "triton", "triton-pip"}
    assert found["triton-pip"].detail.endswith("belongs to no readable conda package record (see conda-meta)")
    assert found["conda-meta"].detail.startswith("1 unreadable package record(s)")
    assert f"{meta} not valid JSON (line " in found["conda-meta"].detail
    assert found["triton"].detail == (
        f"triton is not installed as a conda package in {good_prefix}, but pytorch and vllm-pascal need(s) the Pascal build"
    )
    run = cli(good_prefix)
    assert run.returncode == 40
    assert "Traceback" not in run.stderr


# --------------------------------------------------------------------------------------------
# vLLM


def test_pip_vllm_shadow(good_prefix: Path, channels: Channels) -> None:
    for rel, data in pascal_env.dist_info("vllm", "0.9.0", installer="pip").items():
        overwrite(good_prefix / rel, data)
    found = doctor(good_prefix)
    assert problems(found) == {"vllm-pip"}
    assert "PyPI vLLM wheels have no sm_6x kernels" in found["vllm-pip"].detail
    assert found["vllm-pip"].fix == (
        f"{pip_uninstall(good_prefix, 'vllm')} && "
        + conda_install(good_prefix, good_channel_url(channels), "vllm-pascal ==0.8.5 *pascal*")
    )


def test_vllm_without_pascal_kernels(tmp_path: Path, channels: Channels) -> None:
    prefix = install(tmp_path, channels, [pascal_env.vllm_fault_spec(1)])
    found = doctor(prefix)
    assert problems(found) == {"vllm-kernels"}
    assert found["vllm-kernels"].detail == (
        f"{SITE}/vllm/_C.abi3.so: sm_70, sm_80, PTX compute_80: no code that runs on compute capability 6.0, 6.1 "
        "(CUDA: 'no kernel image is available for execution on the device')"
    )
    assert found["vllm-kernels"].fix.endswith("--force-reinstall 'vllm-pascal ==0.8.5 *pascal*'")


def test_vllm_dist_renamed(tmp_path: Path, channels: Channels) -> None:
    prefix = install(tmp_path, channels, [pascal_env.vllm_fault_spec(2)])
    found = doctor(prefix)
    assert problems(found) == {"vllm-dist"}
    assert (
        "installs vllm_pascal-0.8.5.dist-info, not a distribution named 'vllm'" in found["vllm-dist"].detail
    )
    assert "('No platform detected')" in found["vllm-dist"].detail


@pytest.mark.parametrize(("gpu", "ok"), [(P40, True), (P100, False)])
def test_vllm_kernels_per_gpu(
    tmp_path: Path, channels: Channels, machine: Machine, gpu: tuple[str, str], ok: bool
) -> None:
    """One unit of _C has only sm_61 SASS: fine on a P40 (6.1), no kernel image on a P100 (6.0)."""
    prefix = install(tmp_path, channels, [pascal_env.vllm_fault_spec(3)])
    fake_tools.nvidia_smi(machine.bin, [gpu])
    found = doctor(prefix)
    assert problems(found) == (set() if ok else {"vllm-kernels"})
    if not ok:
        assert "no code that runs on compute capability 6.0" in found["vllm-kernels"].detail

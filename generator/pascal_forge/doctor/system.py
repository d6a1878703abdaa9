"""The machine's side of doctor: GPU, driver, CUDA version, ptxas."""

from __future__ import annotations

from pathlib import Path

from pascal_forge.doctor.context import (
    Context,
    Finding,
    Status,
    major_minor,
    requirement,
)
from pascal_forge.doctor.probes import SmiState, probe_version
from pascal_forge.recipes.render import BUILD_TOKEN


def check_gpu(ctx: Context) -> Finding:
    smi = ctx.smi
    if smi.state == SmiState.ABSENT:
        return Finding("gpu", Status.NOT_CHECKED, "no nvidia-smi on PATH (no NVIDIA driver)")
    if smi.state == SmiState.FAILED:
        return Finding(
            "gpu",
            Status.PROBLEM,
            f"nvidia-smi fails: {smi.error}",
            "load or reinstall the NVIDIA driver (branches 525 to 580 support Pascal with CUDA 12; "
            "580 is the last with Pascal), reboot, and check that `nvidia-smi` lists the GPU",
        )
    if not smi.gpus:
        return Finding("gpu", Status.NOT_CHECKED, "nvidia-smi lists no GPU")
    parts = []
    old = []
    for gpu in smi.gpus:
        kind = "Pascal" if gpu.cc and gpu.cc[0] == 6 else "not Pascal"
        if gpu.cc is None:
            kind = "the driver does not report it"
        elif gpu.cc < (6, 0):
            old.append(gpu)
            kind = "too old: Triton needs 6.0"
        parts.append(f"GPU {gpu.index} {gpu.name}: compute capability {gpu.cc_text} ({kind})")
    if old:
        usable = [str(g.index) for g in smi.gpus if g not in old]
        fix = (
            f"export CUDA_VISIBLE_DEVICES={','.join(usable)}   # use only the GPUs of compute capability >= 6.0"
            if usable
            else "none in software: this stack needs a GPU of compute capability 6.0 or newer"
        )
        return Finding("gpu", Status.PROBLEM, "; ".join(parts), fix)
    return Finding("gpu", Status.OK, "; ".join(parts))


def check_driver(ctx: Context) -> Finding:
    smi = ctx.smi
    if smi.state != SmiState.OK or not smi.gpus:
        why = {
            SmiState.ABSENT: "no nvidia-smi on PATH (no NVIDIA driver)",
            SmiState.FAILED: "nvidia-smi fails (see gpu)",
        }.get(smi.state, "nvidia-smi lists no GPU")
        return Finding("driver", Status.NOT_CHECKED, why)
    if smi.cuda is None:
        return Finding(
            "driver", Status.NOT_CHECKED, f"driver {smi.driver}: nvidia-smi shows no 'CUDA Version'"
        )
    cuda = ctx.prefix.record("cuda-version")
    runtime = cuda.version if cuda else ctx.stack.cuda
    runtime_major = int(runtime.split(".")[0]) if runtime.split(".")[0].isdigit() else 12
    driver_cuda = f"{smi.cuda[0]}.{smi.cuda[1]}"
    head = f"driver {smi.driver} supports CUDA <= {driver_cuda}"
    source = f"cuda-version {runtime}" if cuda else f"the stack's CUDA {runtime}"
    if smi.cuda[0] < runtime_major:
        return Finding(
            "driver",
            Status.PROBLEM,
            f"{head}; the environment's runtime is {source}, which needs a CUDA {runtime_major} driver "
            f"(CUDA calls fail: 'CUDA driver version is insufficient for CUDA runtime version')",
            f"install an NVIDIA driver >= {CUDA12_DRIVER} (CUDA 12) of branch 580 or older "
            "(580 is the last with Pascal support), then reboot",
        )
    if (smi.cuda[0], smi.cuda[1]) < major_minor(runtime):
        return Finding(
            "driver",
            Status.OK,
            f"{head}; {source} runs on it through CUDA minor-version compatibility",
        )
    return Finding("driver", Status.OK, f"{head}; {source}")


def check_cuda_version(ctx: Context) -> Finding:
    import rattler

    rec = ctx.prefix.record("cuda-version")
    if rec is None:
        return Finding(
            "cuda-version", Status.NOT_CHECKED, "no cuda-version package (no conda CUDA libraries here)"
        )
    allowed = requirement(ctx.stack, "vllm-pascal", "cuda-version")
    ok = True
    try:
        ok = rattler.VersionSpec(allowed).matches(rattler.Version(rec.version))
    except Exception as exc:  # rattler raises its own types for an unparsable version
        return Finding(
            "cuda-version", Status.PROBLEM, f"cuda-version {rec.version!r} is not a version: {exc}"
        )
    if ok:
        return Finding("cuda-version", Status.OK, f"cuda-version {rec.version} (allowed: {allowed})")
    why = (
        "CUDA 13 cannot compile for sm_60/sm_61 (neither nvcc nor ptxas)"
        if major_minor(rec.version) >= (13, 0)
        else "the Pascal packages are built for CUDA 12"
    )
    return Finding(
        "cuda-version",
        Status.PROBLEM,
        f"cuda-version {rec.version} is outside {allowed}: {why}",
        ctx.conda_install(f"cuda-version {ctx.stack.cuda}.*", force=False, pascal=False),
    )


def check_ptxas(ctx: Context) -> Finding:
    import rattler

    site = ctx.prefix.site_packages
    if site is None or not (site / "triton").is_dir():
        return Finding("ptxas", Status.NOT_CHECKED, "triton is not installed")
    rec = ctx.prefix.record("triton")
    if rec is not None and BUILD_TOKEN not in rec.build:
        return Finding(
            "ptxas",
            Status.NOT_CHECKED,
            f"{rec.label} is not the Pascal build (see triton); its ptxas lookup differs",
        )
    bundled = site / "triton" / "backends" / "nvidia" / "bin" / "ptxas"
    env = ctx.environ.get("TRITON_PTXAS_PATH", "")
    # triton 3.2.0 (_path_to_binary): $TRITON_PTXAS_PATH if it is a file, else the bundled path
    if env and Path(env).is_file():
        path, origin = Path(env), "$TRITON_PTXAS_PATH"
    else:
        path, origin = bundled, ctx.where(bundled)
    tools = requirement(ctx.stack, "triton-pascal", "cuda-nvcc-tools")
    install_tools = ctx.conda_install(f"cuda-nvcc-tools {tools}", force=False, pascal=False)
    if not path.is_file():
        dangling = path.is_symlink()
        detail = (
            f"{origin} links to {path.readlink()}, which does not exist"
            if dangling
            else f"no ptxas at {origin}"
        )
        return Finding(
            "ptxas",
            Status.PROBLEM,
            f"{detail}: triton finds ptxas only there or in $TRITON_PTXAS_PATH and fails with 'Cannot find ptxas'",
            install_tools if dangling else ctx.reinstall("triton"),
        )
    found = probe_version(path)
    if found.version is None:
        return Finding("ptxas", Status.PROBLEM, f"{origin}: {found.error}", install_tools)
    version = f"{found.version[0]}.{found.version[1]}"
    if rattler.VersionSpec(tools).matches(rattler.Version(version)):
        return Finding("ptxas", Status.OK, f"{origin}: ptxas {found.full} (allowed: {tools})")
    if found.version >= (13, 0):
        why = "CUDA 13 ptxas cannot target sm_60/sm_61"
    elif found.version >= (12, 0):
        why = (
            f"triton {ctx.stack.triton} misreads ptxas >= 12.7 "
            f"('Triton only support CUDA 10.0 or higher, but got CUDA version: {version}')"
        )
    else:
        why = "the Pascal triton is built and tested with ptxas from CUDA 12"
    fix = install_tools
    if origin == "$TRITON_PTXAS_PATH":
        fix = f"unset TRITON_PTXAS_PATH   # or point it at a ptxas of CUDA {tools}"
    return Finding("ptxas", Status.PROBLEM, f"{origin}: ptxas {found.full}: {why}", fix)


#: The first driver of CUDA 12 (minor-version compatibility covers every 12.x runtime from it).
CUDA12_DRIVER = "525.60.13"

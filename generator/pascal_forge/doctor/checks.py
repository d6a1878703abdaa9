"""`pascal-forge doctor`: say exactly why a Pascal environment is broken, and how to fix it.

Stages: locate the prefix → read it (conda records, dist-infos; pascal_forge.doctor.prefix) → probe the
machine (nvidia-smi, ptxas; pascal_forge.doctor.probes) → run the checks → print one line per check
(ok / problem / not checked) with the exact command that fixes each problem.

Most Pascal failures are environments, not recipes: stock triton pulled back in by a later
`pip install`, a pytorch whose Inductor gates refuse cc 6.x, a vLLM without sm_6x kernels, a
driver too old for the CUDA runtime, a CUDA 13 ptxas. Each check below names one of them.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence

from pascal_forge.doctor.context import (
    VLLM_EXTENSIONS,
    Context,
    Finding,
    Status,
    major_minor,
)
from pascal_forge.doctor.system import check_cuda_version, check_driver, check_gpu, check_ptxas
from pascal_forge.errors import FatbinError
from pascal_forge.recipes.render import BUILD_TOKEN
from pascal_forge.verify.fatbin import read_device_code
from pascal_forge.verify.gates import TORCH_GATES, GateResult, State, inspect_gate

Check = Callable[[Context], Finding]


# --------------------------------------------------------------------------------------------
# the machine
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# conda records and pip shadows
# --------------------------------------------------------------------------------------------


def check_records(ctx: Context) -> Finding:
    bad = ctx.prefix.bad_records
    if not bad:
        return Finding(
            "conda-meta",
            Status.OK,
            f"{len(ctx.prefix.records)} package records in {ctx.prefix.root}/conda-meta",
        )
    listing = "; ".join(f"{b.meta} {b.reason}" for b in bad)
    return Finding(
        "conda-meta",
        Status.PROBLEM,
        f"{len(bad)} unreadable package record(s), so their packages are invisible to conda and to these checks: "
        + listing,
        "move the file(s) named above out of conda-meta/, then reinstall those packages with `conda install -p "
        f"{shlex.quote(str(ctx.prefix.root))} --force-reinstall NAME`",
    )


def _package(ctx: Context, check: str, name: str, why_stock: str, needed_by: Sequence[str]) -> Finding:
    rec = ctx.prefix.record(name)
    if rec is None:
        users = [n for n in needed_by if ctx.prefix.record(n)]
        if users:
            why = f"{' and '.join(users)} need(s) the Pascal build"
        else:
            # Nothing to check is still the answer to "why does vLLM not work here".
            why = "vLLM on Pascal needs vllm-pascal with the Pascal builds of pytorch and triton"
        return Finding(
            check,
            Status.PROBLEM,
            f"{name} is not installed as a conda package in {ctx.prefix.root}, but {why}",
            ctx.install_missing(),
        )
    if BUILD_TOKEN not in rec.build:
        return Finding(
            check,
            Status.PROBLEM,
            f"{rec.label} from {rec.channel} is not the Pascal build (no '{BUILD_TOKEN}' in its build string): "
            + why_stock,
            ctx.reinstall(name),
        )
    missing = ctx.prefix.missing_files(rec)
    if missing:
        return Finding(
            check,
            Status.PROBLEM,
            f"{rec.label}: {len(missing)} of its {len(rec.files)} files are missing (first: {missing[0]}); "
            "`pip uninstall` of a package sharing them removes conda's files too",
            ctx.reinstall(name),
        )
    return Finding(check, Status.OK, f"{rec.label} from {rec.channel}")


def check_triton(ctx: Context) -> Finding:
    return _package(
        ctx,
        "triton",
        "triton",
        "stock triton 3.2.0 aborts compiling fp16 tl.dot for sm_6x "
        "('Unsupported conversion from f16 to f16') and emits evict_* hints ptxas rejects below sm_70",
        ("pytorch", "vllm-pascal"),
    )


def check_pytorch(ctx: Context) -> Finding:
    return _package(
        ctx,
        "pytorch",
        "pytorch",
        "its Inductor gates refuse compute capability 6.x "
        "('Found <GPU> which is too old to be supported by the triton GPU compiler')",
        ("vllm-pascal",),
    )


def _pip(ctx: Context, check: str, dists: tuple[str, ...], conda_name: str, harm: str) -> Finding:
    found = [d for d in ctx.prefix.dist_infos(*dists) if ctx.pip_owned(d)]
    if not found:
        where = "site-packages or the user site" if ctx.prefix.user_site else "site-packages"
        return Finding(check, Status.OK, f"no pip-installed {' or '.join(dists)} in {where}")
    parts = []
    for d in found:
        who = f"INSTALLER: {d.installer}" if d.installer else "no INSTALLER file"
        if d.owner is not None:
            parts.append(
                f"{ctx.where(d.path)} of the conda package was rewritten by another installer "
                f"({who}; changed: {', '.join(ctx.prefix.rewritten(d))})"
            )
        elif ctx.prefix.site_packages is not None and d.path.parent == ctx.prefix.site_packages:
            owner = (
                "no readable conda package record (see conda-meta)"
                if ctx.prefix.bad_records
                else "no conda package"
            )
            parts.append(f"{ctx.where(d.path)} ({who}) belongs to {owner}")
        else:
            parts.append(f"{d.path} ({who}) is in the user site-packages, which Python searches first")
    first = found[0]
    label = f"pip-installed {first.name} {first.version}"
    fix = ctx.pip_uninstall(*sorted({d.name for d in found}))
    in_prefix = any(d.path.parent == ctx.prefix.site_packages for d in found)
    if in_prefix and ctx.prefix.record(conda_name):
        # pip's uninstall also deletes the conda package's files at the same paths
        fix += " && " + ctx.conda_install(ctx.spec(conda_name))
    return Finding(
        check, Status.PROBLEM, f"{label} shadows the conda package ({harm}): " + "; ".join(parts), fix
    )


def check_triton_pip(ctx: Context) -> Finding:
    return _pip(ctx, "triton-pip", ("triton",), "triton", "stock triton cannot compile fp16 dots for sm_6x")


def check_pytorch_pip(ctx: Context) -> Finding:
    return _pip(
        ctx,
        "pytorch-pip",
        ("torch",),
        "pytorch",
        "PyPI torch carries the unpatched Inductor gates and its own triton pin",
    )


# --------------------------------------------------------------------------------------------
# triton's ptxas
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# the torch gates
# --------------------------------------------------------------------------------------------


def _gate(ctx: Context, index: int) -> Finding:
    gate = TORCH_GATES[index]
    site = ctx.prefix.site_packages
    if site is None or not (site / "torch").is_dir():
        return Finding(gate.id, Status.NOT_CHECKED, "torch is not installed")
    res: GateResult = inspect_gate(gate, site)
    where = f"{ctx.where(res.path)}:{res.line}" if res.line else ctx.where(res.path)
    name = ".".join(gate.scope)
    if res.state == State.ACCEPTS:
        return Finding(gate.id, Status.OK, f"{where} ({name}) accepts major 6: {res.text}")
    if res.state == State.NOT_FOUND:
        torch = ctx.prefix.record("pytorch")
        version = f"torch {torch.version}" if torch else "this torch"
        return Finding(
            gate.id,
            Status.NOT_CHECKED,
            f"{ctx.where(res.path)}: {res.detail} ({version}; the gate checked is torch {ctx.stack.torch}'s)",
        )
    if res.state == State.UNREADABLE:
        return Finding(gate.id, Status.PROBLEM, f"{where}: {res.detail}", ctx.reinstall("pytorch"))
    return Finding(
        gate.id,
        Status.PROBLEM,
        f"{where} ({name}) refuses compute capability 6.x: `{res.text}`; {gate.blocked}",
        ctx.reinstall("pytorch"),
    )


def check_gate_has_triton(ctx: Context) -> Finding:
    return _gate(ctx, 0)


def check_gate_scheduler(ctx: Context) -> Finding:
    return _gate(ctx, 1)


# --------------------------------------------------------------------------------------------
# vLLM
# --------------------------------------------------------------------------------------------


def check_vllm(ctx: Context) -> Finding:
    stock = ctx.prefix.record("vllm")
    if stock is not None:
        return Finding(
            "vllm",
            Status.PROBLEM,
            f"{stock.label} from {stock.channel} is stock vLLM: no sm_6x kernels "
            "('no kernel image is available for execution on the device')",
            # Both own vllm/: removing the stock one deletes vllm-pascal's files, hence the reinstall.
            ctx.install_missing()
            if ctx.prefix.record("vllm-pascal") is None
            else shlex.join(["conda", "remove", "-p", str(ctx.prefix.root), "-y", "--force", "vllm"])
            + " && "
            + ctx.conda_install(ctx.spec("vllm-pascal")),
        )
    return _package(
        ctx,
        "vllm",
        "vllm-pascal",
        "a vllm-pascal not built by pascal-forge may lack the Pascal patches",
        (),
    )


def check_vllm_pip(ctx: Context) -> Finding:
    return _pip(
        ctx,
        "vllm-pip",
        ("vllm", "vllm-pascal"),
        "vllm-pascal",
        "PyPI vLLM wheels have no sm_6x kernels; a 'vllm-pascal' distribution breaks platform detection",
    )


def check_vllm_dist(ctx: Context) -> Finding:
    rec = ctx.prefix.record("vllm-pascal")
    if rec is None:
        return Finding("vllm-dist", Status.NOT_CHECKED, "vllm-pascal is not installed")
    metas = sorted(f for f in rec.files if f.endswith(".dist-info/METADATA") and "/site-packages/" in f)
    if not metas:
        return Finding(
            "vllm-dist",
            Status.PROBLEM,
            f"{rec.label} installs no *.dist-info: importlib.metadata.version('vllm') fails, so vLLM's "
            "platform detection fails ('No package metadata was found for vllm')",
            ctx.reinstall("vllm-pascal"),
        )
    dists = [d for d in ctx.prefix.dist_infos("vllm", "vllm-pascal") if d.owner == rec]
    named = [d for d in dists if d.name == "vllm"]
    if named:
        return Finding(
            "vllm-dist",
            Status.OK,
            f"{ctx.where(named[0].path)} names the distribution 'vllm' (what vLLM's platform detection looks up)",
        )
    shown = ", ".join(f.rsplit("/", 2)[-2] for f in metas)
    return Finding(
        "vllm-dist",
        Status.PROBLEM,
        f"{rec.label} installs {shown}, not a distribution named 'vllm': vLLM's platform detection calls "
        "importlib.metadata.version('vllm') and fails ('No platform detected')",
        ctx.reinstall("vllm-pascal"),
    )


def check_vllm_kernels(ctx: Context) -> Finding:
    site = ctx.prefix.site_packages
    if ctx.prefix.record("vllm-pascal") is None or site is None:
        return Finding("vllm-kernels", Status.NOT_CHECKED, "vllm-pascal is not installed")
    pascal_gpus = [g.cc for g in ctx.smi.gpus if g.cc and g.cc[0] == 6]
    targets = sorted(set(pascal_gpus)) or [major_minor(a) for a in ctx.stack.archs]
    target_text = ", ".join(f"{a}.{b}" for a, b in targets)
    parts = []
    problems = []
    for ext in VLLM_EXTENSIONS:
        files = sorted((site / "vllm").glob(f"{ext}.*so"))
        if not files:
            problems.append(f"vllm/{ext}.*.so is missing")
            continue
        for path in files:
            try:
                code = read_device_code(path)
            except FatbinError as exc:
                problems.append(exc.message)
                continue
            lacking = [cc for cc in targets if not code.runs_on(cc)]
            summary = f"{ctx.where(path)}: {code.summary()}"
            if lacking:
                text = ", ".join(f"{a}.{b}" for a, b in lacking)
                problems.append(f"{summary}: no code that runs on compute capability {text}")
            else:
                parts.append(summary)
    if problems:
        return Finding(
            "vllm-kernels",
            Status.PROBLEM,
            "; ".join(problems) + " (CUDA: 'no kernel image is available for execution on the device')",
            ctx.reinstall("vllm-pascal"),
        )
    return Finding(
        "vllm-kernels", Status.OK, f"code for compute capability {target_text}: " + "; ".join(parts)
    )


# --------------------------------------------------------------------------------------------
# running and reporting
# --------------------------------------------------------------------------------------------

#: Every check in report order, with its id (also used when a check itself fails).
CHECKS: tuple[tuple[str, Check], ...] = (
    ("gpu", check_gpu),
    ("driver", check_driver),
    ("cuda-version", check_cuda_version),
    ("conda-meta", check_records),
    ("triton", check_triton),
    ("triton-pip", check_triton_pip),
    ("ptxas", check_ptxas),
    ("pytorch", check_pytorch),
    ("pytorch-pip", check_pytorch_pip),
    (TORCH_GATES[0].id, check_gate_has_triton),
    (TORCH_GATES[1].id, check_gate_scheduler),
    ("vllm", check_vllm),
    ("vllm-pip", check_vllm_pip),
    ("vllm-dist", check_vllm_dist),
    ("vllm-kernels", check_vllm_kernels),
)


def diagnose(ctx: Context) -> list[Finding]:
    out = []
    for check_id, check in CHECKS:
        try:
            out.append(check(ctx))
        except Exception as exc:  # a damaged prefix is a finding, never a crash
            out.append(
                Finding(check_id, Status.PROBLEM, f"could not be checked: {type(exc).__name__}: {exc}")
            )
    return out

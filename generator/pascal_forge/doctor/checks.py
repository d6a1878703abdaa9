"""`pascal-forge doctor`: say exactly why a Pascal environment is broken, and how to fix it.

Stages: locate the prefix → read it (conda records, dist-infos; pascal_forge.doctor.prefix) → probe the
machine (nvidia-smi, ptxas; pascal_forge.doctor.probes) → run the checks → print one line per check
(ok / problem / not checked) with the exact command that fixes each problem.

Most Pascal failures are environments, not recipes: stock triton pulled back in by a later
`pip install`, a pytorch whose Inductor gates refuse cc 6.x, a vLLM without sm_6x kernels, a
driver too old for the CUDA runtime, a CUDA 13 ptxas. Each check below names one of them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from pascal_forge.doctor.prefix import DistInfo, Prefix, read_prefix, resolve_prefix
from pascal_forge.doctor.probes import Smi, SmiState, probe_nvidia_smi, probe_version
from pascal_forge.errors import EnvironmentBrokenError, FatbinError, UnknownVersionError
from pascal_forge.recipes.render import BUILD_TOKEN
from pascal_forge.stack.spec import Stack, load_spec
from pascal_forge.verify.fatbin import read_device_code
from pascal_forge.verify.gates import TORCH_GATES, GateResult, State, inspect_gate

#: Where fixes install from when neither --channel nor an installed Pascal package names a channel:
#: the folder `pascal-forge build` writes.
DEFAULT_CHANNEL = "./channel"
#: The first driver of CUDA 12 (minor-version compatibility covers every 12.x runtime from it).
CUDA12_DRIVER = "525.60.13"
#: vLLM extensions every CUDA platform loads; others (FlashMLA, flash-attn) serve sm_80+ only.
VLLM_EXTENSIONS = ("_C", "_moe_C")


class Status(StrEnum):
    OK = "ok"
    PROBLEM = "problem"
    NOT_CHECKED = "not checked"


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    detail: str
    fix: str = ""  # the exact command(s) for a problem


@dataclass(frozen=True)
class Context:
    prefix: Prefix
    stack: Stack
    channel: str
    channel_origin: str  # where the channel for fixes came from, for the report header
    smi: Smi
    environ: Mapping[str, str]

    # ---- fix commands ------------------------------------------------------------------------

    def spec(self, name: str) -> str:
        return pascal_spec(self.stack, name)

    def conda_install(self, *specs: str, force: bool = True, pascal: bool = True) -> str:
        argv = ["conda", "install", "-p", str(self.prefix.root)]
        if pascal:
            argv += ["-c", self.channel]
        argv += ["-c", "conda-forge", "-y"]
        if force:
            argv.append("--force-reinstall")
        return shlex.join([*argv, *specs])

    def pip_uninstall(self, *dists: str) -> str:
        return shlex.join([str(self.prefix.root / "bin" / "python"), "-m", "pip", "uninstall", "-y", *dists])

    def reinstall(self, name: str) -> str:
        """Remove pip's copies of the package's distribution (they share its files), then reinstall."""
        dist = {"triton": "triton", "pytorch": "torch", "vllm-pascal": "vllm"}[name]
        shadows = [d for d in self.prefix.dist_infos(dist) if self.pip_owned(d)]
        install = self.conda_install(self.spec(name))
        return f"{self.pip_uninstall(dist)} && {install}" if shadows else install

    def pip_owned(self, dist: DistInfo) -> bool:
        return dist.owner is None or bool(self.prefix.rewritten(dist))

    def where(self, path: Path) -> str:
        return self.prefix.rel(path)


Check = Callable[[Context], Finding]


def pascal_spec(stack: Stack, name: str) -> str:
    """The match spec of our build of ``name``, as the recipes write it: ``name ==version *pascal*``
    (conda, mamba and rattler/pixi's strict parser all read this form; ``name==version=build`` is
    refused by the strict one)."""
    version = {"triton": stack.triton, "pytorch": stack.torch, "vllm-pascal": stack.vllm}[name]
    return f"{name} =={version} *{BUILD_TOKEN}*"


# --------------------------------------------------------------------------------------------
# the machine
# --------------------------------------------------------------------------------------------


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
    if (smi.cuda[0], smi.cuda[1]) < _major_minor(runtime):
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
    allowed = _requirement(ctx.stack, "vllm-pascal", "cuda-version")
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
        if _major_minor(rec.version) >= (13, 0)
        else "the Pascal packages are built for CUDA 12"
    )
    return Finding(
        "cuda-version",
        Status.PROBLEM,
        f"cuda-version {rec.version} is outside {allowed}: {why}",
        ctx.conda_install(f"cuda-version {ctx.stack.cuda}.*", force=False, pascal=False),
    )


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
            return Finding(
                check,
                Status.PROBLEM,
                f"{name} is not installed as a conda package, but {' and '.join(users)} need(s) the Pascal build",
                ctx.reinstall(name),
            )
        return Finding(check, Status.NOT_CHECKED, f"{name} is not installed in {ctx.prefix.root}")
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
    tools = _requirement(ctx.stack, "triton-pascal", "cuda-nvcc-tools")
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
            shlex.join(["conda", "remove", "-p", str(ctx.prefix.root), "-y", "--force", "vllm"])
            + " && "
            + ctx.conda_install(ctx.spec("vllm-pascal"), force=False),
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
    targets = sorted(set(pascal_gpus)) or [_major_minor(a) for a in ctx.stack.archs]
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


def make_context(
    prefix_dir: Path | None, channel: str | None, environ: Mapping[str, str] | None = None
) -> Context:
    root = resolve_prefix(prefix_dir)
    prefix = read_prefix(root)
    stack = _stack_for(prefix)
    origin = "--channel"
    if channel is None:
        channel, origin = _installed_channel(prefix)
    return Context(
        prefix, stack, channel, origin, probe_nvidia_smi(), dict(os.environ if environ is None else environ)
    )


def _stack_for(prefix: Prefix) -> Stack:
    spec = load_spec()
    for rec_name, upstream in (("vllm-pascal", "vllm"), ("pytorch", "torch")):
        rec = prefix.record(rec_name)
        if rec is not None:
            try:
                return spec.stack_for(upstream, rec.version)
            except UnknownVersionError:
                continue
    return spec.stack()


def _installed_channel(prefix: Prefix) -> tuple[str, str]:
    for name in ("vllm-pascal", "pytorch", "triton"):
        rec = prefix.record(name)
        if rec is not None and BUILD_TOKEN in rec.build and rec.channel:
            return rec.channel, f"the channel the installed {name} came from"
    return DEFAULT_CHANNEL, "the folder `pascal-forge build` writes; pass --channel if yours is elsewhere"


def _requirement(stack: Stack, recipe: str, name: str) -> str:
    """The version range a recipe's run requirements give ``name`` (e.g. '>=12.0,<13')."""
    for dep in stack.requirements[recipe].run:
        dep_name, _, rest = dep.spec.partition(" ")
        if dep_name == name and rest:
            return rest.strip()
    msg = f"recipe {recipe} has no versioned run requirement on {name}"
    raise ValueError(msg)


def _major_minor(version: str) -> tuple[int, int]:
    parts = [int(p) if p.isdigit() else 0 for p in [*version.split("."), "0"][:2]]
    return parts[0], parts[1]


_WIDTH = max(len(s.value) for s in Status)


def format_report(ctx: Context, findings: Sequence[Finding]) -> str:
    check_width = max(len(f.check) for f in findings)
    lines = [
        f"pascal-forge doctor: {ctx.prefix.root}",
        f"stack {ctx.stack.name}; fixes install from {ctx.channel} ({ctx.channel_origin})",
        "",
    ]
    for f in findings:
        lines.append(f"{f.status.value:<{_WIDTH}}  {f.check:<{check_width}}  {f.detail}")
        if f.fix:
            lines.append(f"{'':<{_WIDTH}}  {'':<{check_width}}  fix: {f.fix}")
    counts = {s: sum(1 for f in findings if f.status == s) for s in Status}
    lines += [
        "",
        f"{counts[Status.PROBLEM]} problem(s), {counts[Status.NOT_CHECKED]} not checked, {counts[Status.OK]} ok",
    ]
    fixes = unique_fixes(findings)
    if fixes:
        lines += ["", "to fix, run in this order:", *(f"  {fix}" for fix in fixes)]
    return "\n".join(lines)


def unique_fixes(findings: Sequence[Finding]) -> list[str]:
    """Each problem's fix once, in report order (several problems often share one reinstall)."""
    return list(dict.fromkeys(f.fix for f in findings if f.status == Status.PROBLEM and f.fix))


def as_json(findings: Sequence[Finding]) -> str:
    return json.dumps([asdict(f) for f in findings], indent=2)


def run_doctor(args: argparse.Namespace) -> int:
    ctx = make_context(args.prefix, args.channel)
    findings = diagnose(ctx)
    print(as_json(findings) if args.json else format_report(ctx, findings))
    problems = [f for f in findings if f.status == Status.PROBLEM]
    if problems:
        raise EnvironmentBrokenError(
            f"{len(problems)} problem(s) in {ctx.prefix.root}: {', '.join(f.check for f in problems)}",
            "run the commands under 'to fix' above, then `pascal-forge doctor` again",
        )
    return 0


def configure_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "doctor",
        help="diagnose a conda environment for vLLM on Pascal: one line per check, with fixes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  pascal-forge doctor                         # the active environment ($CONDA_PREFIX)\n"
            "  pascal-forge doctor --prefix ~/miniforge3/envs/vllm\n"
            "  pascal-forge doctor --json > doctor.json    # exit 40 if any check finds a problem"
        ),
    )
    parser.add_argument(
        "--prefix", type=Path, metavar="DIR", help="conda environment to inspect (default: $CONDA_PREFIX)"
    )
    parser.add_argument(
        "--channel",
        metavar="URL",
        help="channel with the Pascal packages, used in fix commands "
        f"(default: where the installed ones came from, else {DEFAULT_CHANNEL})",
    )
    parser.add_argument("--json", action="store_true", help="a JSON list of checks on stdout")
    parser.set_defaults(func=run_doctor)

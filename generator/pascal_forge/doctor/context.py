"""What doctor looks at and reports: the finding values and the context (prefix, probes, expected stack) the checks read."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pascal_forge.doctor.prefix import DistInfo, Prefix, read_prefix, resolve_prefix
from pascal_forge.doctor.probes import Smi, probe_nvidia_smi
from pascal_forge.errors import UnknownVersionError
from pascal_forge.recipes.render import BUILD_TOKEN
from pascal_forge.stack.model import Stack
from pascal_forge.stack.spec import load_spec

#: Where fixes install from when neither --channel nor an installed Pascal package names a channel:
#: the folder `pascal-forge build` writes.
DEFAULT_CHANNEL = "./channel"


#: The Pascal packages vLLM needs, in install order, with their Python distribution names.
PASCAL_PACKAGES = {"triton": "triton", "pytorch": "torch", "vllm-pascal": "vllm"}

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
        dist = PASCAL_PACKAGES[name]
        shadows = [d for d in self.prefix.dist_infos(dist) if self.pip_owned(d)]
        install = self.conda_install(self.spec(name))
        return f"{self.pip_uninstall(dist)} && {install}" if shadows else install

    def missing(self) -> list[str]:
        """The Pascal packages without a conda record here."""
        return [name for name in PASCAL_PACKAGES if self.prefix.record(name) is None]

    def install_missing(self) -> str:
        """One command for every missing Pascal package (the same for each, so the report lists it once):
        pip's copies of their distributions go first, conda-forge's stock vllm is removed (it owns the
        same import package as vllm-pascal)."""
        names = self.missing()
        shadows = sorted(
            {d.name for n in names for d in self.prefix.dist_infos(PASCAL_PACKAGES[n]) if self.pip_owned(d)}
        )
        # --force-reinstall only where pip or a damaged record left files conda does not know about.
        force = bool(shadows or self.prefix.bad_records)
        steps = [self.pip_uninstall(*shadows)] if shadows else []
        if "vllm-pascal" in names and self.prefix.record("vllm") is not None:
            steps.append(
                shlex.join(["conda", "remove", "-p", str(self.prefix.root), "-y", "--force", "vllm"])
            )
        steps.append(self.conda_install(*(self.spec(n) for n in names), force=force))
        return " && ".join(steps)

    def pip_owned(self, dist: DistInfo) -> bool:
        return dist.owner is None or bool(self.prefix.rewritten(dist))

    def where(self, path: Path) -> str:
        return self.prefix.rel(path)


def pascal_spec(stack: Stack, name: str) -> str:
    """The match spec of our build of ``name``, as the recipes write it: ``name ==version *pascal*``
    (conda, mamba and rattler/pixi's strict parser all read this form; ``name==version=build`` is
    refused by the strict one)."""
    version = {"triton": stack.triton, "pytorch": stack.torch, "vllm-pascal": stack.vllm}[name]
    return f"{name} =={version} *{BUILD_TOKEN}*"


def make_context(
    prefix_dir: Path | None, channel: str | None, environ: Mapping[str, str] | None = None
) -> Context:
    root = resolve_prefix(prefix_dir, lambda path: create_command(path, channel or DEFAULT_CHANNEL))
    prefix = read_prefix(root)
    stack = _stack_for(prefix)
    origin = "--channel"
    if channel is None:
        channel, origin = _installed_channel(prefix)
    return Context(
        prefix, stack, channel, origin, probe_nvidia_smi(), dict(os.environ if environ is None else environ)
    )


def create_command(path: Path, channel: str, stack: Stack | None = None) -> str:
    """`conda create` of an environment at ``path`` with the Pascal packages of ``stack``."""
    stack = stack or load_spec().stack()
    argv = ["conda", "create", "-p", str(path), "-c", channel, "-c", "conda-forge", "-y"]
    return shlex.join([*argv, *(pascal_spec(stack, name) for name in PASCAL_PACKAGES)])


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


def requirement(stack: Stack, recipe: str, name: str) -> str:
    """The version range a recipe's run requirements give ``name`` (e.g. '>=12.0,<13')."""
    for dep in stack.requirements[recipe].run:
        dep_name, _, rest = dep.spec.partition(" ")
        if dep_name == name and rest:
            return rest.strip()
    msg = f"recipe {recipe} has no versioned run requirement on {name}"
    raise ValueError(msg)


def major_minor(version: str) -> tuple[int, int]:
    parts = [int(p) if p.isdigit() else 0 for p in [*version.split("."), "0"][:2]]
    return parts[0], parts[1]

"""The rattler-build engine (py-rattler-build): render recipes, and build them into the channel.

Rendering evaluates the recipe exactly as `rattler-build build` would (selectors, variant keys,
the build-string hash) without solving environments, so it runs offline. Building goes recipe
by recipe in dependency order (triton -> pytorch overlay -> vllm-pascal), skips a variant whose
definition hash is already recorded for a package in the channel, and adds each new package
with one atomic swap (channel.add_packages), so an interrupted build leaves a valid channel.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pascal_forge.build.channel import (
    add_packages,
    channel_lock,
    channel_url,
    ensure_channel,
    read_build_record,
    read_packages,
)
from pascal_forge.build.engine import (
    TARGET_PLATFORM,
    EngineVariant,
    discover_recipes,
    engine_render,
    render_raw,
)
from pascal_forge.errors import BuildError

# --------------------------------------------------------------------------------------------
# Building a recipes tree into the local channel, in dependency order, incrementally.

#: What each backend is called; the engine is the library, the others are CLIs on PATH.
BACKENDS = ("engine", "rattler-build", "conda-build")


@dataclass(frozen=True)
class BuildTarget:
    """One variant of one recipe, and the hash of everything that defines its package."""

    recipe: str  # folder name under the recipes tree
    recipe_dir: Path
    index: int  # position among the recipe's rendered variants
    variant: EngineVariant
    subdir: str
    definition: str

    @property
    def file_name(self) -> str:
        return f"{self.variant.name}-{self.variant.version}-{self.variant.build_string}.conda"

    @property
    def label(self) -> str:
        keys = ("python", "cuda_compiler_version")
        picked = ", ".join(f"{k}={self.variant.variant[k]}" for k in keys if k in self.variant.variant)
        return f"{self.variant.name} {self.variant.version} {self.variant.build_string}" + (
            f" ({picked})" if picked else ""
        )


@dataclass(frozen=True)
class BuildOutcome:
    target: BuildTarget
    status: str  # "built" or "up to date"
    file_name: str
    size: int
    sha256: str
    seconds: float


@dataclass(frozen=True)
class BuildOptions:
    channel_dir: Path
    channels: tuple[str, ...] = ("conda-forge",)
    only: tuple[str, ...] = ()
    variants: tuple[tuple[str, str], ...] = ()  # (key, value) filters, e.g. ("python", "3.12")
    backend: str = "engine"
    test: str = "native"  # the engine's test strategy: run each recipe's package test, or "skip"


def definition_hash(recipe_dir: Path, variant: dict[str, str]) -> str:
    """sha256 over the recipe folder's files (recipe, patches, scripts: the source pins live in the
    recipe), the variant and the engine version: equal hashes mean an equal package definition."""
    from rattler_build import rattler_build_version

    digest = hashlib.sha256()
    digest.update(
        json.dumps({"engine": rattler_build_version(), "variant": variant}, sort_keys=True).encode()
    )
    for path in sorted(p for p in recipe_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(recipe_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _dep_names(recipe: dict[str, Any]) -> set[str]:
    names = set()
    for section in ("build", "host", "run"):
        for dep in recipe.get("requirements", {}).get(section, []):
            if isinstance(dep, str):
                names.add(dep.split()[0])
    return names


def plan_targets(recipes_dir: Path, options: BuildOptions) -> tuple[BuildTarget, ...]:
    """Every selected variant of every recipe, ordered so each comes after what it depends on."""
    variant_file = recipes_dir / "variants.yaml"
    by_recipe: dict[str, list[BuildTarget]] = {}
    for recipe_dir in discover_recipes(recipes_dir):
        rendered = engine_render(recipe_dir / "recipe.yaml", variant_file) if variant_file.is_file() else []
        targets = []
        for i, v in enumerate(rendered):
            if any(not v.variant.get(k, "").startswith(val) for k, val in options.variants):
                continue
            subdir = "noarch" if v.recipe.get("build", {}).get("noarch") else TARGET_PLATFORM
            targets.append(
                BuildTarget(recipe_dir.name, recipe_dir, i, v, subdir, definition_hash(recipe_dir, v.variant))
            )
        by_recipe[recipe_dir.name] = targets
    unknown = sorted(set(options.only) - set(by_recipe))
    if unknown:
        raise BuildError(
            f"--only {', '.join(unknown)}: no such recipe under {recipes_dir}",
            f"use one of: {', '.join(sorted(by_recipe))}",
        )
    return tuple(
        t
        for name in _dependency_order(by_recipe)
        if not options.only or name in options.only
        for t in by_recipe[name]
    )


def _dependency_order(by_recipe: dict[str, list[BuildTarget]]) -> list[str]:
    produces = {t.variant.name: name for name, ts in by_recipe.items() for t in ts}
    needs = {
        name: {
            produces[d]
            for t in ts
            for d in _dep_names(t.variant.recipe)
            if d in produces and produces[d] != name
        }
        for name, ts in by_recipe.items()
    }
    order: list[str] = []
    while len(order) < len(needs):
        ready = sorted(n for n, deps in needs.items() if n not in order and deps <= set(order))
        if not ready:
            cycle = sorted(set(needs) - set(order))
            raise BuildError(
                f"recipes depend on each other in a cycle: {', '.join(cycle)}", "fix their requirements"
            )
        order.extend(ready)
    return order


def build_channel(
    recipes_dir: Path, options: BuildOptions, log: Callable[[str], None]
) -> tuple[BuildOutcome, ...]:
    """Build what is out of date into the channel; the channel changes only by atomic swaps."""
    if options.backend not in BACKENDS:
        raise BuildError(f"unknown backend {options.backend!r}", f"use one of: {', '.join(BACKENDS)}")
    if options.backend != "engine" and shutil.which(options.backend) is None:
        raise BuildError(
            f"--backend {options.backend}: `{options.backend}` is not on PATH",
            "install it (conda install -c conda-forge rattler-build / conda-build) or use --backend engine",
        )
    channel = options.channel_dir.resolve()
    targets = plan_targets(recipes_dir, options)
    outcomes: list[BuildOutcome] = []
    with channel_lock(channel):
        ensure_channel(channel)
        scratch = channel.parent / f".{channel.name}.build"
        for n, target in enumerate(targets, 1):
            start = time.perf_counter()
            done = _up_to_date(channel, target)
            if done is not None:
                outcomes.append(_outcome(target, "up to date", done, start))
                log(f"[{n}/{len(targets)}] {target.label}: up to date")
                continue
            log(f"[{n}/{len(targets)}] building {target.label} with {options.backend} ...")
            built = _run_backend(target, options, channel, scratch)
            add_packages(channel, target.subdir, {built: target.definition})
            built.unlink()
            outcomes.append(_outcome(target, "built", channel / target.subdir / built.name, start))
            log(f"[{n}/{len(targets)}] built {built.name} in {time.perf_counter() - start:.1f}s")
    return tuple(outcomes)


def _up_to_date(channel: Path, target: BuildTarget) -> Path | None:
    record = read_build_record(channel, target.subdir)
    for file_name, digest in record.items():
        path = channel / target.subdir / file_name
        if digest == target.definition and path.is_file():
            return path
    return None


def _outcome(target: BuildTarget, status: str, path: Path, start: float) -> BuildOutcome:
    # Size and sha256 as the index lists them (verified against the file by ensure_channel and
    # written by add_packages): no second read of packages that can be gigabytes.
    (pkg,) = [
        p for p in read_packages(path.parent.parent) if (p.subdir, p.file_name) == (target.subdir, path.name)
    ]
    return BuildOutcome(target, status, path.name, pkg.size, pkg.sha256, time.perf_counter() - start)


def _run_backend(target: BuildTarget, options: BuildOptions, channel: Path, scratch: Path) -> Path:
    channels = [channel_url(channel), *(channel_url(c) for c in options.channels)]
    out = scratch / "output"
    if options.backend == "engine":
        return _run_engine(target, options, channels, out)
    return _run_cli(target, options, channels, out)


def _run_engine(target: BuildTarget, options: BuildOptions, channels: list[str], out: Path) -> Path:
    from rattler_build.tool_config import ToolConfiguration

    rendered = render_raw(target.recipe_dir / "recipe.yaml", target.recipe_dir.parent / "variants.yaml")[
        target.index
    ]
    tool = ToolConfiguration(test_strategy="native" if options.test == "native" else "skip")
    try:
        result = rendered.run_build(tool_config=tool, output_dir=out, channels=channels, no_build_id=True)
    except Exception as exc:  # the engine's own error types: report them uniformly
        raise BuildError(
            f"{target.recipe}: building {target.label} failed: {exc} (channels: {', '.join(channels)})",
            "read the engine's log above; a dependency that cannot be resolved must be in one of those "
            "channels (pass -c); the channel was not changed",
        ) from exc
    built = [Path(p) for p in result.packages if Path(p).name == target.file_name]
    if not built:
        raise BuildError(
            f"{target.recipe}: the engine produced {[Path(p).name for p in result.packages]}, not {target.file_name}",
            "this is a bug; report it with the recipe",
        )
    return built[0]


def _run_cli(target: BuildTarget, options: BuildOptions, channels: list[str], out: Path) -> Path:
    exe = shutil.which(options.backend) or options.backend
    chan_args = [arg for c in channels for arg in ("-c", c)]
    recipes = target.recipe_dir.parent
    python = target.variant.variant.get("python", "").removesuffix(".*")
    if options.backend == "rattler-build":
        cmd = [
            exe,
            "build",
            "--recipe",
            str(target.recipe_dir),
            "--output-dir",
            str(out),
            "--variant-config",
            str(recipes / "variants.yaml"),
            "--test",
            options.test,
            *chan_args,
        ]
        # One variant per call, like the engine path: this target's Python (`--variant` overrides).
        if python:
            cmd += ["--variant", f"python={python}"]
    else:
        cmd = [
            exe,
            "build",
            str(target.recipe_dir),
            "--output-folder",
            str(out),
            "-m",
            str(recipes / "conda_build_config.yaml"),
            "--no-anaconda-upload",
            *chan_args,
        ]
        cmd += [] if options.test == "native" else ["--no-test"]
        if python:
            cmd += ["--python", python]
    before = set(out.glob(f"{target.subdir}/*.conda"))
    res = subprocess.run(cmd, check=False)
    if res.returncode != 0:
        raise BuildError(
            f"{target.recipe}: `{' '.join(cmd[:3])} ...` exited {res.returncode}",
            "read its log above; the channel was not changed",
        )
    new = sorted(
        p for p in out.glob(f"{target.subdir}/*.conda") if p not in before or p.name == target.file_name
    )
    if len(new) != 1:
        raise BuildError(
            f"{target.recipe}: expected one new package from {options.backend}, found {[p.name for p in new]}",
            "build one variant at a time with --variant python=3.X",
        )
    return new[0]


# --------------------------------------------------------------------------------------------
# CLI

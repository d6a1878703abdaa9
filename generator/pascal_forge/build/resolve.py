"""resolve-check: prove with a real solver (py-rattler) that stock triton/pytorch cannot come back.

``vllm-pascal`` is solved against the local channel plus the upstream channels, in strict,
flexible and disabled channel priority and with the local channel first and last, once per
Python the channel serves. A solution fails the check when it holds a ``triton`` or ``pytorch``
without the Pascal build token, or when triton/pytorch/vllm-pascal come from anywhere but the
local channel. An unsatisfiable setup is reported with its fix; it is only a failure when the
local channel comes first (then nothing can install at all).

``--planned`` builds the local channel from the package records the recipes will produce
(rendered by the engine, no compiled content), so a maintainer can check before a long build.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pascal_forge.build.channel import ChannelPackage, channel_url, index_channel, read_packages
from pascal_forge.build.engine import TARGET_PLATFORM, discover_recipes, engine_render
from pascal_forge.build.stacks import render_stacks, select_stacks, solve_roots
from pascal_forge.console import log
from pascal_forge.errors import StockResolvableError, UnsatisfiableError
from pascal_forge.recipes.render import BUILD_TOKEN
from pascal_forge.stack.spec import load_spec

if TYPE_CHECKING:
    from rattler import RepoDataRecord

#: Packages that must come from the local channel with the Pascal token in their build string.
GUARDED = ("triton", "pytorch")
LOCAL_ONLY = ("triton", "pytorch", "vllm-pascal")
PRIORITIES = ("strict", "flexible", "disabled")
#: The machine the solve pretends to be: a Linux box with a CUDA 12.6 driver.
DEFAULT_VIRTUAL = ("__cuda=12.6=0", "__glibc=2.36=0", "__linux=6.1=0", "__unix=0=0", "__archspec=1=x86_64")
#: Fixed timestamp for planned records, so planned channels are reproducible.
PLANNED_TIMESTAMP = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class SolveCase:
    root: str  # the spec installed: vllm-pascal, or one Pascal package on its own
    priority: str
    local_first: bool
    python: str

    @property
    def label(self) -> str:
        order = "local first" if self.local_first else "upstream first"
        return f"{self.root}: python {self.python}, {self.priority}, {order}"


@dataclass(frozen=True)
class Picked:
    name: str
    version: str
    build: str
    channel: str


@dataclass(frozen=True)
class SolveResult:
    case: SolveCase
    status: str  # "ok" | "stock" | "elsewhere" | "unsatisfiable"
    detail: str
    picked: tuple[Picked, ...]

    @property
    def failed(self) -> bool:
        return self.status in {"stock", "elsewhere", "loose-pin"} or (
            self.status == "unsatisfiable" and self.case.local_first
        )


# --------------------------------------------------------------------------------------------
# Planned records


@dataclass(frozen=True)
class PlannedRecord:
    """The repodata record a recipe variant will produce (from the engine's render)."""

    name: str
    version: str
    build: str
    build_number: int
    depends: tuple[str, ...]
    constrains: tuple[str, ...]
    noarch: bool

    @property
    def subdir(self) -> str:
        return "noarch" if self.noarch else TARGET_PLATFORM


def planned_records(recipes_dir: Path) -> list[PlannedRecord]:
    """name/version/build/depends/constrains of every package the recipes will produce.

    Run requirements come from the engine's render. A bare ``python`` becomes the variant's
    ``python >=X.Y,<X.Y+1.0a0`` plus ``python_abi X.Y.* *_cpXY``: what conda-forge's python
    run-exports add at build time (the render does not solve host environments).
    """
    records = []
    for recipe_dir in discover_recipes(recipes_dir):
        for v in engine_render(recipe_dir / "recipe.yaml", recipes_dir / "variants.yaml"):
            reqs = v.recipe.get("requirements", {})
            py = v.variant.get("python", "").rstrip(".*")
            depends: list[str] = []
            for dep in reqs.get("run", []):
                if not isinstance(dep, str):
                    continue
                if dep == "python" and py:
                    major, minor = (int(x) for x in py.split(".")[:2])
                    depends += [
                        f"python >={py},<{major}.{minor + 1}.0a0",
                        f"python_abi {py}.* *_cp{major}{minor}",
                    ]
                else:
                    depends.append(dep)
            records.append(
                PlannedRecord(
                    name=v.name,
                    version=v.version,
                    build=v.build_string,
                    build_number=int(v.recipe.get("build", {}).get("number", 0)),
                    depends=tuple(dict.fromkeys(depends)),
                    constrains=tuple(d for d in reqs.get("run_constraints", []) if isinstance(d, str)),
                    noarch=bool(v.recipe.get("build", {}).get("noarch")),
                )
            )
    return records


def planned_channel(recipes_dir: Path, channel: Path, names: tuple[str, ...] = ()) -> Path:
    """An indexed channel of metadata-only packages with the records the recipes will produce."""
    from rattler_build import assemble_package

    for sub in ("linux-64", "noarch"):
        (channel / sub).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pf-planned-") as tmp:
        files = Path(tmp) / "files"
        (files / "share" / "pascal-forge").mkdir(parents=True)
        for rec in planned_records(recipes_dir):
            if names and rec.name not in names:
                continue
            note = files / "share" / "pascal-forge" / f"planned-{rec.name}.txt"
            note.write_text("metadata-only stand-in: the package this recipe will build\n", "utf-8")
            out = assemble_package(
                name=rec.name,
                version=rec.version,
                target_platform=rec.subdir,
                build_string=rec.build,
                output_dir=Path(tmp) / "out",
                files_dir=files,
                depends=list(rec.depends),
                constrains=list(rec.constrains),
                build_number=rec.build_number,
                noarch="generic" if rec.noarch else None,
                timestamp=PLANNED_TIMESTAMP,
                detect_prefix=False,
            )
            dest = channel / rec.subdir / Path(out.path).name
            shutil.copyfile(out.path, dest)
            dest.chmod(0o644)
            note.unlink()
    index_channel(channel)
    return channel


# --------------------------------------------------------------------------------------------
# Solving


def solve(
    channels: list[str],
    specs: list[str],
    priority: str,
    virtual: tuple[str, ...] = DEFAULT_VIRTUAL,
    cache_dir: Path | None = None,
) -> list[RepoDataRecord]:
    """Solve ``specs`` for linux-64 with py-rattler; raises UnsatisfiableError when impossible."""
    import rattler  # heavy import: only when solving
    from rattler.exceptions import SolverError

    virtual_packages = []
    for text in virtual:
        name, version, build = text.split("=")
        virtual_packages.append(
            rattler.GenericVirtualPackage(
                rattler.PackageName(name), rattler.Version(version), rattler.BuildString(build)
            )
        )
    gateway = rattler.Gateway(cache_dir=cache_dir) if cache_dir else None
    try:
        return list(
            asyncio.run(
                rattler.solve(
                    [rattler.Channel(c) for c in channels],
                    specs,
                    gateway=gateway,
                    platforms=["linux-64", "noarch"],
                    virtual_packages=virtual_packages,
                    channel_priority=getattr(rattler.ChannelPriority, priority.capitalize()),
                    timestamp_policy="allow-missing",
                )
            )
        )
    except SolverError as exc:
        raise UnsatisfiableError(
            f"cannot solve {' '.join(specs)} from {', '.join(channels)} ({priority} priority):\n{exc}",
            "list the local Pascal channel first (-c ./channel -c conda-forge)",
        ) from exc


def check_solution(case: SolveCase, records: list[RepoDataRecord], local_url: str) -> SolveResult:
    picked = tuple(
        Picked(str(r.name.normalized), str(r.version), str(r.build), str(r.channel or r.url)) for r in records
    )
    for p in picked:
        if p.name in GUARDED and BUILD_TOKEN not in p.build:
            return SolveResult(
                case, "stock", f"{p.name} {p.version} {p.build} from {p.channel} (no '{BUILD_TOKEN}')", picked
            )
    local = local_url.rstrip("/")
    root_name = case.root.split()[0]
    if not any(p.name == root_name for p in picked):
        return SolveResult(case, "elsewhere", f"{root_name} is not in the solution", picked)
    for name in LOCAL_ONLY:
        hits = [p for p in picked if p.name == name]
        for p in hits:
            if not p.channel.rstrip("/").startswith(local):
                return SolveResult(
                    case, "elsewhere", f"{p.name} {p.build} came from {p.channel}, not {local}", picked
                )
    return SolveResult(
        case, "ok", ", ".join(f"{p.name} {p.build}" for p in picked if p.name in LOCAL_ONLY), picked
    )


def resolve_check(
    local: Path, upstream: tuple[str, ...], virtual: tuple[str, ...] = DEFAULT_VIRTUAL
) -> tuple[SolveResult, ...]:
    """Solve vllm-pascal in every priority x order x Python the local channel serves."""
    local_url = channel_url(local)
    packages = read_packages(local)
    roots = solve_roots(
        packages, tuple(f"{n} * *{BUILD_TOKEN}*" for n in GUARDED if n in {p.name for p in packages})
    )
    if not roots:
        raise UnsatisfiableError(f"{local} holds no vllm-pascal package", "build it first, or use --planned")
    upstream_urls = [channel_url(c) for c in upstream]
    results = [pin_check(p) for p in packages]
    with tempfile.TemporaryDirectory(prefix="pf-solve-") as cache:
        for root, root_pythons in roots:
            for python, priority, local_first in itertools.product(root_pythons, PRIORITIES, (True, False)):
                case = SolveCase(root, priority, local_first, python)
                results.append(_solve_case(case, local_url, upstream_urls, virtual, Path(cache)))
    return tuple(r for r in results if r is not None)


def _solve_case(
    case: SolveCase, local_url: str, upstream_urls: list[str], virtual: tuple[str, ...], cache: Path
) -> SolveResult:
    order = [local_url, *upstream_urls] if case.local_first else [*upstream_urls, local_url]
    try:
        records = solve(order, [case.root, f"python {case.python}.*"], case.priority, virtual, cache)
    except UnsatisfiableError as exc:
        return SolveResult(case, "unsatisfiable", exc.message.splitlines()[0], ())
    return check_solution(case, records, local_url)


def pin_check(pkg: ChannelPackage) -> SolveResult | None:
    """A local package that names triton/pytorch must require the Pascal build, whatever the solve
    finds today: the next upstream release could otherwise satisfy a loose pin."""
    for dep in pkg.depends:
        name, *rest = dep.split()
        if name in GUARDED and BUILD_TOKEN not in "".join(rest[1:]):
            case = SolveCase(f"{pkg.name} {pkg.build}", "static", True, "any")
            detail = f"{pkg.name} {pkg.version} {pkg.build} depends on `{dep}`, which stock {name} satisfies"
            return SolveResult(case, "loose-pin", detail, ())
    return None


def report(results: tuple[SolveResult, ...]) -> str:
    lines = []
    for r in results:
        mark = "FAIL" if r.failed else "ok  "
        text = {
            "ok": "Pascal builds only",
            "stock": "STOCK BUILD",
            "elsewhere": "WRONG SOURCE",
            "unsatisfiable": "unsatisfiable (fails loudly, nothing swapped)",
            "loose-pin": "LOOSE PIN",
        }[r.status]
        lines.append(f"{mark} {r.case.label:<48} {text}: {r.detail}")
        if r.status == "unsatisfiable":
            lines.append("       fix: list the local channel first: -c ./channel -c conda-forge")
        elif r.status == "loose-pin":
            lines.append("       fix: pin the Pascal build in that recipe, e.g. `triton ==3.2.0 *pascal*`")
    return "\n".join(lines)


def raise_on_failure(results: tuple[SolveResult, ...]) -> None:
    failed = [r for r in results if r.failed]
    if not failed:
        return
    first = failed[0]
    if first.status == "unsatisfiable":
        raise UnsatisfiableError(
            f"vllm-pascal cannot be installed even with the local channel first ({first.case.label}): {first.detail}",
            "a dependency is missing from the upstream channels, or the local channel lacks a package",
        )
    names = sorted(
        {p.name for r in failed for p in r.picked if p.name in GUARDED and BUILD_TOKEN not in p.build}
    )
    raise StockResolvableError(
        f"{len(failed)} solve(s) put a non-Pascal package in the environment: "
        f"{', '.join(names) or first.detail} (first: {first.case.label}: {first.detail})",
        "require the Pascal build in the dependant's recipe: `triton ==X.Y.Z *pascal*`, `pytorch ==X.Y.Z *pascal*`",
    )


# --------------------------------------------------------------------------------------------
# CLI


def run(args: argparse.Namespace) -> int:
    upstream = tuple(args.channels or ["conda-forge"])
    with tempfile.TemporaryDirectory(prefix="pf-resolve-") as tmp:
        if args.planned:
            trees = [args.recipes] if args.recipes else []
            if not trees:
                spec = load_spec(args.spec)
                trees = render_stacks(
                    spec, select_stacks(spec, args.stack, args.all_stacks), Path(tmp) / "recipes"
                )
            for tree in trees:  # several stacks: one channel, each stack's records in it
                local = planned_channel(tree, Path(tmp) / "planned")
            log(
                f"planned channel from {args.recipes or ', '.join(t.name for t in trees)}: "
                f"{len(read_packages(local))} package records"
            )
        else:
            local = args.channel_dir
        results = resolve_check(local, upstream)
    print(report(results))
    raise_on_failure(results)
    print(f"resolve-check passed: {len(results)} solves, no stock triton or pytorch can be installed")
    return 0


def configure_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "resolve-check",
        help="prove with py-rattler that stock triton/pytorch cannot replace the Pascal builds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  pascal-forge resolve-check --channel-dir channel -c conda-forge\n"
            "  pascal-forge resolve-check --planned -c https://my.mirror/conda-forge   # before building\n"
            "  pascal-forge resolve-check --planned --stack vllm-0.8.5 --stack vllm-0.26.0"
        ),
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--channel-dir", type=Path, default=Path("channel"), metavar="DIR", help="default: ./channel"
    )
    where.add_argument("--planned", action="store_true", help="use the records the recipes will produce")
    parser.add_argument(
        "-c",
        "--channel",
        dest="channels",
        action="append",
        metavar="UPSTREAM",
        help="upstream channel name, URL or folder (repeatable; default: conda-forge)",
    )
    parser.add_argument(
        "--recipes", type=Path, metavar="DIR", help="with --planned: a generated recipes tree"
    )
    parser.add_argument(
        "--spec", type=Path, metavar="FILE", help="with --planned: TOML spec over the built-in one"
    )
    parser.add_argument(
        "--stack",
        action="append",
        metavar="NAME",
        help="with --planned: stack to render (repeatable, one channel; default: the spec's)",
    )
    parser.add_argument("--all-stacks", action="store_true", help="with --planned: every non-draft stack")
    parser.set_defaults(func=run)

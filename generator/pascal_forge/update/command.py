"""Refresh pins and derived data from upstream: `pascal-forge update` and `derive-requirements`.

`update --vllm VERSION` plans (and with --write adds) a stack for a new vLLM release: see
newstack.py for the steps, upstream.py for the PyPI and conda-forge clients.

vllm-pascal's run dependencies are not typed by hand: they come from vLLM's own requirement
files (``requirements/common.txt`` + ``requirements/cuda.txt``), evaluated for linux-64 and each
Python of the stack, with names mapped to conda-forge through grayskull's maintained table
(``grayskull/strategy/config.yaml``; names it does not list keep their PyPI name).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pascal_forge.console import log
from pascal_forge.errors import PinUnresolvedError, SpecError, UpdateBlockedError
from pascal_forge.options import RECIPES_ROOT
from pascal_forge.stack.patches import Outcome, PatchResult
from pascal_forge.update.requirements import (
    derived_block,
    replace_block,
)

if TYPE_CHECKING:
    from pascal_forge.stack.model import Spec
    from pascal_forge.update.plan import UpdatePlan
    from pascal_forge.update.write import Written
    from pascal_forge.verify.check import RecipeCheck


# --------------------------------------------------------------------------------------------
# `pascal-forge derive-requirements`: rewrite the derived block of the built-in spec.


def run_derive(args: Any) -> int:
    from pascal_forge.stack.sources import default_cache_dir, obtain
    from pascal_forge.stack.spec import builtin_spec_path, load_spec

    stack = load_spec().stack(args.stack)
    vllm = stack.patched_source("vllm-pascal")
    tree = obtain(vllm, args.cache_dir or default_cache_dir()).tree
    series = load_spec().patches_for("vllm", stack.vllm)
    block = derived_block(stack.vllm, stack.torch, stack.triton, stack.python, tree, series)
    if not args.write:
        print(block)
        return 0
    path = builtin_spec_path()
    new = replace_block(path.read_text("utf-8"), block, str(path), stack.name)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(new, "utf-8")
    tmp.replace(path)
    print(f"updated {path}")
    return 0


def configure_parser(sub: Any) -> None:
    from pascal_forge.update.survey_cli import configure_parser as configure_survey

    _configure_update(sub)
    configure_survey(sub)
    parser = sub.add_parser(
        "derive-requirements",
        help="derive vllm-pascal's run requirements from vLLM's requirement files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  pascal-forge derive-requirements            # print the derived TOML block\n"
            "  pascal-forge derive-requirements --write    # rewrite it in the built-in spec"
        ),
    )
    parser.add_argument("--stack", metavar="NAME", help="stack (default: the built-in default)")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR", help="download cache")
    parser.add_argument("--write", action="store_true", help="rewrite the block in the built-in spec file")
    parser.set_defaults(func=run_derive)


# --------------------------------------------------------------------------------------------
# `pascal-forge update`


def run_update(args: argparse.Namespace) -> int:
    from pascal_forge.stack.sources import default_cache_dir
    from pascal_forge.stack.spec import load_spec
    from pascal_forge.update.plan import UpdateOptions
    from pascal_forge.update.planner import plan_update
    from pascal_forge.update.write import write_update
    from pascal_forge.verify.check import parse_source_dirs

    spec_path: Path | None = args.spec
    if args.write and spec_path is None:
        raise SpecError(
            "--write needs --spec FILE: the new stack is added to that file (created if missing); "
            "the built-in spec is package data",
            "e.g. --spec pascal-forge.toml; maintainers of pascal-forge itself: "
            "--spec generator/pascal_forge/stack/data/default-spec.toml",
        )
    spec = load_spec(None if spec_path is not None and args.write and not spec_path.exists() else spec_path)
    opts = UpdateOptions(
        vllm=args.vllm,
        cache=args.cache_dir or default_cache_dir(),
        index_url=args.index_url,
        conda_channel=args.conda_channel,
        timeout=args.timeout,
        conda_timeout=min(args.timeout, 20.0),
        retries=args.retries,
        base=args.base,
        local=parse_source_dirs(args.source_dir),
        revs=_parse_revs(args.rev),
    )
    plan = plan_update(spec, opts, log if not args.json else lambda _msg: None)
    draft = "; ".join(f"{b.what}: {b.detail}" for b in plan.blockers)
    written = None
    if args.write and (plan.ready or args.allow_failing):
        assert spec_path is not None
        _write_carried(plan, spec)
        spec = load_spec(spec_path if spec_path.exists() else None)
        written = write_update(plan, spec_path, args.out or RECIPES_ROOT / plan.stack.name, draft)
    print(plan_json(plan, written) if args.json else format_plan(plan, spec.origin, written, args))
    if plan.blockers and not args.allow_failing:
        pins = [b for b in plan.blockers if b.pin]
        first = (pins or list(plan.blockers))[0]
        error = PinUnresolvedError if pins else UpdateBlockedError
        raise error(
            f"stack {plan.stack.name} is not ready ({len(plan.blockers)} issue(s); first: "
            f"{first.what}: {first.detail}); nothing was written",
            first.hint + "; or pass --allow-failing to write it as a draft",
        )
    return 0


def _write_carried(plan: UpdatePlan, spec: Spec) -> None:
    from pascal_forge.update.carried import write_carried

    for rc in plan.carried:
        if rc.carries and not rc.unreachable:
            for path in write_carried(rc, spec.patch_library, plan.base.name):
                log(f"wrote {path}")


def _parse_revs(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, rev = value.partition("=")
        if not sep or not name or not rev:
            raise SpecError(f"--rev {value!r} is not NAME=COMMIT", "e.g. --rev triton=<40-hex commit>")
        out[name] = rev.strip().lower()
    return out


_STATUS = {
    Outcome.CLEAN: "applies",
    Outcome.ALREADY: "obsolete: already upstream",
    Outcome.NOT_CHECKED: "not checked (see its source below)",
}


def _status(r: PatchResult) -> str:
    return _STATUS.get(r.outcome, r.summary)


def _patch_rows(checks: tuple[RecipeCheck, ...]) -> list[str]:
    rows = [("recipe", "patch", "status")]
    rejected: dict[int, tuple[str, ...]] = {}
    for chk in checks:
        for r in chk.results:
            if r.rejected:
                rejected[len(rows)] = r.rejected
            rows.append((chk.recipe, r.patch.id, _status(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = []
    for i, row in enumerate(rows):
        lines.append(f"  {row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}")
        for hunk in rejected.get(i, ()):
            lines.append("      rejected hunk:")
            lines.extend(f"      | {h}" for h in hunk.splitlines())
    lines.extend(f"  source of {c.recipe}: {c.source} ({c.verified})" for c in checks)
    return lines


def _carry_rows(plan: UpdatePlan) -> list[str]:
    lines = []
    for rc in plan.carried:
        if rc.unreachable:
            lines.append(f"  {rc.recipe}: not checked: {rc.unreachable}")
            continue
        for c in rc.carries:
            lines.append(
                f"  {rc.recipe}  {c.patch.id}  {c.step.value}" + (f" ({c.detail})" if c.detail else "")
            )
            lines.extend(f"      evidence: {e}" for e in c.evidence)
            lines.extend(f"      | {h}" for h in c.hunk.splitlines())
        lines.append(f"  source of {rc.recipe}: {rc.source}; base: {rc.upstream} {rc.base_version} pristine")
    return lines


def format_plan(plan: UpdatePlan, origin: str, written: Written | None, args: argparse.Namespace) -> str:
    stack, base = plan.stack, plan.base
    out = [
        f"pascal-forge update: vLLM {stack.vllm} -> stack {stack.name} "
        f"(vllm {stack.vllm}, torch {stack.torch}, triton {stack.triton}, CUDA {stack.cuda}; "
        f"base {base.name} of {origin})",
        "",
        f'pins ("*" = differs from {base.name})',
    ]
    width = max(len(p.what) for p in plan.pins)
    for pin in plan.pins:
        out.append(f"  {'*' if pin.changed else ' '} {pin.what:<{width}}  {pin.value}")
        out.append(f"    {'':<{width}}  {pin.origin}")
    reqs = ", ".join(plan.changed_requirements) or "none"
    out += ["", f"requirements that differ from {base.name} (written in full): {reqs}"]
    out += ["", "patches (library patches whose versions cover the new release; in order, no fuzz)"]
    out += _patch_rows(plan.checks) if plan.checks else ["  (none)"]
    if plan.trials:
        out += ["", f"trial: {base.name}'s patches on the new sources (their versions do not cover it)"]
        out += _patch_rows(plan.trials)
    if plan.carried:
        out += ["", f"carried forward: {base.name}'s patches whose versions do not cover the new release"]
        out += _carry_rows(plan)
    if plan.notes:
        out += ["", "notes"]
        out += [f"  - {n}" for n in plan.notes]
    if plan.blockers:
        out += ["", f"blocked ({len(plan.blockers)})"]
        for i, b in enumerate(plan.blockers, 1):
            out += [f"  {i}. {b.what}: {b.detail}", f"     next: {b.hint}"]
    out.append("")
    if written is not None:
        kind = "draft stack" if plan.blockers else "stack"
        out.append(f"wrote {kind} {stack.name} to {written.spec}")
        if written.recipes is not None:
            out.append(
                f"wrote {written.files} files to {written.recipes} (render with the engine or build them)"
            )
        else:
            out.append(
                "no recipes rendered: a draft never renders (resolve the issues above, run update again)"
            )
    elif not plan.blockers:
        target = args.spec or "FILE"
        out.append(f"ready: `pascal-forge update --vllm {stack.vllm} --spec {target} --write` adds the stack")
    elif args.allow_failing:
        out.append("not ready; --write --allow-failing would write it as a draft")
    return "\n".join(out)


def plan_json(plan: UpdatePlan, written: Written | None) -> str:
    from pascal_forge.verify.check import as_data

    data = {
        "stack": plan.stack.name,
        "base": plan.base.name,
        "versions": {"vllm": plan.stack.vllm, "torch": plan.stack.torch, "triton": plan.stack.triton},
        "ready": plan.ready,
        "pins": [asdict(p) for p in plan.pins],
        "sources": [asdict(s) for s in plan.stack.sources],
        "changed_requirements": list(plan.changed_requirements),
        "patches": as_data(list(plan.checks)),
        "trials": as_data(list(plan.trials)),
        "carried": [
            {
                "recipe": rc.recipe,
                "version": rc.version,
                "base_version": rc.base_version,
                "source": rc.source,
                "unreachable": rc.unreachable,
                "patches": [
                    {"id": c.patch.id, "step": c.step.value, "detail": c.detail, "evidence": list(c.evidence)}
                    | {"hunk": c.hunk, "targets": list(c.targets)}
                    for c in rc.carries
                ],
            }
            for rc in plan.carried
        ],
        "notes": list(plan.notes),
        "blockers": [asdict(b) for b in plan.blockers],
        "written": None
        if written is None
        else {"spec": str(written.spec), "recipes": str(written.recipes or ""), "files": written.files},
    }
    return json.dumps(data, indent=2, sort_keys=True)


def _configure_update(sub: Any) -> None:
    from pascal_forge.update.upstream import DEFAULT_CONDA_CHANNEL, DEFAULT_INDEX

    parser = sub.add_parser(
        "update",
        help="plan (and with --write add) a stack for a new vLLM release: pins, patches, recipes",
        description=(
            "Discover a vLLM release and everything it pins: the sdist and its sha256 (PyPI's Simple\n"
            "API, PEP 691), torch (vLLM's requirements/cuda.txt), triton (the torch wheel's PEP 658\n"
            "metadata), the triton and LLVM commits, vLLM's CMake sub-projects and conda-forge's\n"
            "pytorch artifacts. Carry every library patch whose versions cover the new release\n"
            "forward, apply it to the new sources (the engine of `check`) and report per patch:\n"
            "applies / applies with offset / fails (with the rejected hunk) / obsolete.\n\n"
            "Nothing is written without --write. With it the stack is added to --spec FILE and its\n"
            "recipes rendered, only if nothing blocks; --allow-failing writes a draft stack instead\n"
            "(drafts never render). Exit 22: a pin needs your input; 23: patches or sources block."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  pascal-forge update --vllm 0.8.5.post1                        # print the plan\n"
            "  pascal-forge update --vllm 0.8.5.post1 --spec my.toml --write # add it, recipes/vllm-0.8.5.post1/\n"
            "  pascal-forge update --vllm 0.9.2 --source-dir triton=~/src/triton --json\n"
            "  pascal-forge update --vllm 0.9.2 --spec my.toml --write --allow-failing   # a draft"
        ),
    )
    parser.add_argument(
        "--vllm", required=True, metavar="VERSION", help="exact vLLM release, e.g. 0.8.5.post1"
    )
    parser.add_argument(
        "--spec",
        type=Path,
        metavar="FILE",
        help="spec merged over the built-in one; --write adds the stack to it",
    )
    parser.add_argument("--base", metavar="NAME", help="stack to start from (default: newest not newer)")
    parser.add_argument("--index-url", default=DEFAULT_INDEX, metavar="URL", help=f"default: {DEFAULT_INDEX}")
    parser.add_argument(
        "--conda-channel",
        default=DEFAULT_CONDA_CHANNEL,
        metavar="URL",
        help=f"default: {DEFAULT_CONDA_CHANNEL}",
    )
    parser.add_argument(
        "--source-dir",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a local copy of source NAME (e.g. a triton clone: its cmake/llvm-hash.txt and patch check)",
    )
    parser.add_argument(
        "--rev",
        action="append",
        default=[],
        metavar="NAME=COMMIT",
        help="pin git source NAME (triton, llvm-project, cutlass, ...) where it cannot be derived here",
    )
    parser.add_argument("--cache-dir", type=Path, metavar="DIR", help="download cache")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="per request (default: 30)")
    parser.add_argument("--retries", type=int, default=3, metavar="N", help="per request (default: 3)")
    parser.add_argument(
        "--write", action="store_true", help="add the stack to --spec FILE and render recipes"
    )
    parser.add_argument("--out", type=Path, metavar="DIR", help="recipes folder (default: recipes/<stack>)")
    parser.add_argument(
        "--allow-failing", action="store_true", help="exit 0 when blocked; with --write, write a draft stack"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable plan on stdout")
    parser.set_defaults(func=run_update)

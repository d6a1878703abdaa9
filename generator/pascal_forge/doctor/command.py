"""`pascal-forge doctor`: run the checks on a prefix, print a table or JSON, exit non-zero on problems."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from pascal_forge.doctor.checks import diagnose
from pascal_forge.doctor.context import (
    DEFAULT_CHANNEL,
    Context,
    Finding,
    Status,
    make_context,
)
from pascal_forge.errors import EnvironmentBrokenError, PrefixError

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
    try:
        ctx = make_context(args.prefix, args.channel)
    except PrefixError as exc:
        if args.json:  # a machine reader gets the same list shape, with the one check that ran
            print(as_json([Finding("prefix", Status.PROBLEM, exc.message, exc.hint)]))
        raise
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
            "  pascal-forge doctor --json > doctor.json    # exit 40 if any check finds a problem\n"
            "\n"
            "exit codes: 0 no problem found; 40 a check found a problem (a missing Pascal package\n"
            "included); 41 no conda environment to inspect (none active, a missing, empty or\n"
            "non-conda folder)"
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

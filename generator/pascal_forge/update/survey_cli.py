"""The `survey` sub-command: arguments, progress, docs/releases.md (rendered) and --json."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pascal_forge.console import log
from pascal_forge.update.survey import ReleaseRow

SHORT = {
    "applied": "applied",
    "3-way": "3-way",
    "relocated": "relocated",
    "intent rule": "rule",
    "obsolete": "obsolete",
    "needs a human": "**HUMAN**",
}


def markdown(rows: list[ReleaseRow], low: str, high: str) -> str:
    ids = list(dict.fromkeys(p.id for r in rows for p in r.patches))
    carried = sum(1 for r in rows for p in r.patches if p.step not in ("obsolete", "needs a human"))
    needed = sum(1 for r in rows for p in r.patches if p.step != "obsolete")
    human = sum(1 for r in rows for p in r.patches if p.step == "needs a human")
    out = [
        "# vLLM releases for Pascal (sm_60 / sm_61)",
        "",
        f"Written by `pascal-forge survey --from {low} --to {high}` from each release's PyPI sdist",
        "(sha256-checked) and the torch wheel's PEP 658 metadata. Patch columns: the step at which the",
        "base stack's patch carried onto the release's real files (`update`'s ladder: applied, 3-way,",
        "relocated, rule, obsolete, HUMAN = needs a human). Triton patches: not checked (needs a triton",
        "clone, `--source-dir triton=DIR`); torch patches: not checked here (`pascal-forge update --vllm X`",
        "carries them). Engine/attention come from which code paths the sdist has, not from a GPU run.",
        "",
        f"{len(rows)} releases; still-needed (release, patch) pairs carried automatically: {carried}/{needed}"
        + (f" ({100 * carried / needed:.1f}%)" if needed else "")
        + f"; needing a human: {human}.",
        "",
        "| vLLM | torch | triton | base | CUDA_SUPPORTED_ARCHS branches | external CMake projects | "
        + " | ".join(f"`{i}`" for i in ids)
        + " | engine / attention | verdict |",
        "|" + "---|" * (8 + len(ids)),
    ]
    seen: set[str] = set()
    for r in rows:
        steps = {p.id: SHORT.get(p.step, p.step) for p in r.patches}
        branches = "<br>".join(f"{b.condition}: {b.archs}" for b in r.branches) or "none"
        ext = (
            ", ".join(e if e in seen else f"**{e}** (new)" for e in r.external)
            if seen
            else ", ".join(r.external)
        )
        seen.update(r.external)
        cells = [
            r.vllm,
            r.torch,
            r.triton,
            r.base,
            branches,
            ext or "none",
            *(steps.get(i, "n/a") for i in ids),
            f"{r.engine} / {r.attention}",
            r.verdict,
        ]
        out.append("| " + " | ".join(cells) + " |")
    hard = [r for r in rows if r.human]
    if hard:
        out += ["", "## Human steps", ""]
        for r in hard:
            out.append(f"- **{r.vllm}**: " + "; ".join(r.human))
    out.append("")
    return "\n".join(out)


def run_survey(args: argparse.Namespace) -> int:
    from pascal_forge.stack.sources import default_cache_dir
    from pascal_forge.stack.spec import load_spec
    from pascal_forge.update.survey_command import Surveyor

    start = time.monotonic()
    surveyor = Surveyor(
        load_spec(args.spec), args.cache_dir or default_cache_dir(), args.index_url, args.base
    )
    versions = surveyor.releases(args.low, args.high)
    log(f"survey: {len(versions)} vLLM release(s) from {args.low} to {args.high}")
    rows = []
    for i, version in enumerate(versions, 1):
        t = time.monotonic()
        row, cached = surveyor.row(version)
        rows.append(row)
        log(
            f"[{i}/{len(versions)}] vllm {version}: {row.verdict} ({'cached' if cached else f'{time.monotonic() - t:.1f} s'})"
        )
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2, sort_keys=True))
    if not args.no_doc:
        out: Path = args.out
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(markdown(rows, args.low, args.high), "utf-8")
        tmp.replace(out)
        log(f"wrote {out}")
    log(f"survey took {time.monotonic() - start:.1f} s")
    return 0


def configure_parser(sub: Any) -> None:
    from pascal_forge.update.survey_command import DOC
    from pascal_forge.update.upstream import DEFAULT_INDEX

    parser = sub.add_parser(
        "survey",
        help="survey every vLLM release for Pascal (pins, arch branches, patch carry, verdict)",
        description=__import__("pascal_forge.update.survey_command", fromlist=["x"]).__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  pascal-forge survey --from 0.8.5 --to 0.34.0          # writes docs/releases.md\n"
            "  pascal-forge survey --from 0.9.0 --to 0.9.2 --json --no-doc"
        ),
    )
    parser.add_argument(
        "--from", dest="low", default="0.8.5", metavar="VERSION", help="first release (default 0.8.5)"
    )
    parser.add_argument(
        "--to", dest="high", default="9999", metavar="VERSION", help="last release (default: newest)"
    )
    parser.add_argument("--spec", type=Path, metavar="FILE", help="spec merged over the built-in one")
    parser.add_argument(
        "--base", metavar="NAME", help="stack whose patches are carried (default: newest not newer)"
    )
    parser.add_argument("--index-url", default=DEFAULT_INDEX, metavar="URL", help=f"default: {DEFAULT_INDEX}")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR", help="download and row cache")
    parser.add_argument(
        "--source-dir",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="triton=DIR: a triton clone (not used yet: triton rows say 'not checked')",
    )
    parser.add_argument("--out", type=Path, default=DOC, metavar="FILE", help=f"markdown (default: {DOC})")
    parser.add_argument("--no-doc", action="store_true", help="do not write the markdown file")
    parser.add_argument("--json", action="store_true", help="rows as JSON on stdout")
    parser.set_defaults(func=run_survey)

"""`pascal-forge check`: prove every patch against the exact upstream source it is pinned to.

For each recipe: obtain its patched source (download + sha256, a git commit exported from a local
repository, or a directory/archive given with --source-dir), apply the series in order without
fuzz, and report one row per patch. Nothing is skipped silently: a source out of reach makes its
patches "not checked: <why>" and the exit code non-zero unless --allow-unreachable is given.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

from pascal_forge.console import log
from pascal_forge.errors import PatchFailedError, SourceError, SpecError
from pascal_forge.options import selected_stack, spec_option
from pascal_forge.stack.model import RECIPES, PatchEntry, Source, Spec, Stack, recipe_kind
from pascal_forge.stack.patches import Outcome, PatchResult, apply_series
from pascal_forge.stack.sources import Obtained, default_cache_dir, obtain
from pascal_forge.stack.spec import load_spec


@dataclass(frozen=True)
class RecipeCheck:
    recipe: str
    source: str  # which source the series was proven on
    verified: str  # how that source's pin was verified, or why none could be used
    results: tuple[PatchResult, ...]


def check_recipe(
    spec: Spec,
    stack: Stack,
    recipe: str,
    cache: Path,
    local: dict[str, Path],
    quiet: bool = False,
    series: tuple[PatchEntry, ...] | None = None,
    keep_going: bool = False,
) -> RecipeCheck:
    """Prove the series of ``recipe`` (the spec's for the stack's version, unless ``series`` is
    given) on the first of its check sources that can be obtained."""
    kind = recipe_kind(recipe)
    if series is None:
        series = spec.patches_for(kind.upstream, stack.version_of(kind.upstream))
    candidates = stack.check_sources_for(kind.recipe)
    members = tuple(dict.fromkeys(t for p in series for t in p.targets))
    reasons: list[str] = []
    obtained: Obtained | None = None
    for src in _dedupe_pythons(candidates):
        try:
            if not quiet:
                log(f"[{kind.recipe}] obtaining {src.name} …")
            obtained = obtain(
                src,
                cache,
                local.get(src.name),
                members if src.url.endswith(".whl") or src.file_name.endswith(".whl") else (),
                progress=None if quiet else log,
            )
            break
        except SourceError as exc:
            if type(exc) is not SourceError:  # hash mismatches and the like are failures, not "unreachable"
                raise
            reasons.append(f"{src.name}: {exc.message}")
    if obtained is None:
        why = "; ".join(reasons) or "no source is marked patched"
        results = tuple(PatchResult(p, Outcome.NOT_CHECKED, why, ()) for p in series)
        return RecipeCheck(kind.recipe, "-", why, results)
    verified = obtained.verified
    if obtained.source.check_only:
        verified += " (check-only copy: " + obtained.source.pinned_by + ")"
    return RecipeCheck(
        kind.recipe, obtained.source.name, verified, tuple(apply_series(obtained.tree, series, keep_going))
    )


def _dedupe_pythons(sources: tuple[Source, ...]) -> tuple[Source, ...]:
    """Per-Python artifacts carry the same patched files; proving one of them is enough here."""
    seen: set[tuple[str, bool]] = set()
    out = []
    for src in sources:
        key = (src.name, src.check_only)
        if key not in seen:
            seen.add(key)
            out.append(src)
    return tuple(out)


def format_table(checks: list[RecipeCheck]) -> str:
    rows = [("recipe", "patch", "target(s)", "result")]
    reasons: list[tuple[PatchEntry, str]] = []
    for chk in checks:
        for r in chk.results:
            rows.append((chk.recipe, r.patch.id, ", ".join(r.patch.targets), r.summary))
            reasons.append((r.patch, chk.recipe))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row[:3])) + "  " + row[3])
        if i == 0:
            lines.append("-" * (sum(widths) + 6 + len("result")))
        else:
            patch = reasons[i - 1][0]
            lines.extend(
                textwrap.wrap(patch.reason, 100, initial_indent="    why: ", subsequent_indent="         ")
            )
    lines.append("")
    lines.extend(f"source of {chk.recipe}: {chk.source} ({chk.verified})" for chk in checks)
    return "\n".join(lines)


def as_json(checks: list[RecipeCheck]) -> str:
    return json.dumps(as_data(checks), indent=2, sort_keys=True)


def as_data(checks: list[RecipeCheck]) -> list[dict[str, object]]:
    return [
        {
            "recipe": chk.recipe,
            "source": chk.source,
            "verified": chk.verified,
            "patches": [
                {
                    "id": r.patch.id,
                    "order": r.patch.order,
                    "file": r.patch.path.name,
                    "targets": list(r.patch.targets),
                    "result": r.outcome.value,
                    "detail": r.detail,
                    "rejected": list(r.rejected),
                    "ok": r.ok,
                    "reason": r.patch.reason,
                    "references": list(r.patch.references),
                }
                for r in chk.results
            ],
        }
        for chk in checks
    ]


def parse_source_dirs(values: list[str]) -> dict[str, Path]:
    out = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise SpecError(f"--source-dir {value!r} is not NAME=DIR", "e.g. --source-dir triton=/src/triton")
        out[name] = Path(path).expanduser()
    return out


def run_check(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    stack = spec.stack(selected_stack(spec, args))
    recipes = [recipe_kind(args.package).recipe] if args.package else [k.recipe for k in RECIPES]
    local = parse_source_dirs(args.source_dir)
    known = {s.name for s in stack.sources}
    unknown = sorted(set(local) - known)
    if unknown:
        raise SpecError(
            f"--source-dir names unknown source(s) {unknown}", f"sources of this stack: {sorted(known)}"
        )
    cache = args.cache_dir or default_cache_dir()
    checks = [check_recipe(spec, stack, r, cache, local, quiet=args.json) for r in recipes]
    print(as_json(checks) if args.json else format_table(checks))
    failed = [(c.recipe, r) for c in checks for r in c.results if r.outcome == Outcome.FAILED]
    unchecked = [(c.recipe, r) for c in checks for r in c.results if r.outcome == Outcome.NOT_CHECKED]
    if failed:
        recipe, first = failed[0]
        raise PatchFailedError(
            f"{len(failed)} patch(es) do not apply; first: {first.patch.file} ({recipe}) {first.summary}",
            "refresh the patch against the pinned source (see docs/patches.md), or fix the pin",
        )
    if unchecked and not args.allow_unreachable:
        raise SourceError(
            f"{len(unchecked)} patch(es) not checked: their sources could not be obtained",
            "pass --source-dir NAME=DIR for them, or --allow-unreachable to accept an incomplete check",
        )
    return 0


def configure_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "check",
        help="apply every patch to its pinned upstream source and report per patch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  pascal-forge check --package vllm-pascal\n"
            "  pascal-forge check --package triton-pascal --source-dir triton=~/src/triton\n"
            "  pascal-forge check --allow-unreachable --json > check.json"
        ),
    )
    spec_option(parser)
    parser.add_argument(
        "--package", metavar="NAME", help="one recipe (vllm-pascal, pytorch-pascal, triton-pascal)"
    )
    parser.add_argument(
        "--source-dir",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="use a local directory, archive or git repository for source NAME (repeatable)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, metavar="DIR", help=f"download cache (default: {default_cache_dir()})"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    parser.add_argument(
        "--allow-unreachable", action="store_true", help="exit 0 even if some sources could not be obtained"
    )
    parser.set_defaults(func=run_check)

"""Patch carry-forward: each recipe's series tried against the new sources, judged, watched."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from pascal_forge.stack.model import RECIPES, PatchEntry, Stack, recipe_kind
from pascal_forge.stack.patches import Outcome
from pascal_forge.update.carried import CARRIED_PROOF, RecipeCarry, carry_recipe
from pascal_forge.update.ladder import Carry, Step
from pascal_forge.update.plan import (
    Planner,
)
from pascal_forge.verify.check import RecipeCheck, check_recipe


@dataclass(frozen=True)
class Watch:
    """A known upstream change that a stack entering ``versions`` must answer (DESIGN.md)."""

    upstream: str
    versions: str
    file: str  # a patch of the series must target it ("" = review only, reported as a note)
    what: str


WATCHES: tuple[Watch, ...] = (
    Watch(
        "torch",
        ">=2.8",
        "torch/_dynamo/device_interface.py",
        "torch >= 2.8 adds a third Inductor capability gate (is_triton_capable in "
        "torch/_dynamo/device_interface.py) next to torch/utils/_triton.py and the scheduler's",
    ),
    Watch(
        "vllm",
        ">=0.10.2",
        "",
        "vLLM >= 0.10.2 runs the V1 engine on cc < 8 (V0, with its XFORMERS attention, is gone): the "
        "Python-side patches were made for V0 paths and need review against V1's attention backends",
    ),
)


def _watch(
    p: Planner, base: Stack, upstream: str, version: str, series: tuple[PatchEntry | Carry, ...]
) -> None:
    for w in WATCHES:
        if w.upstream != upstream or Version(version) not in SpecifierSet(w.versions):
            continue
        if w.file and not any(
            w.file in patch.targets for patch in series if not isinstance(patch, Carry) or patch.carried
        ):
            p.block(
                f"{upstream} {version}",
                f"{w.what}; no patch covering {version} targets {w.file}",
                f"add a patch for {w.file} to the library (versions covering {version})",
            )
        elif not w.file and Version(base.version_of(upstream)) not in SpecifierSet(w.versions):
            p.notes.append(w.what)


def carry_patches(
    p: Planner, base: Stack, stack: Stack
) -> tuple[tuple[RecipeCheck, ...], tuple[RecipeCheck, ...], tuple[RecipeCarry, ...]]:
    """Check the library's series for the new release; carry the base's uncovered patches (ladder.py)."""
    checks, carried = [], []
    for kind in RECIPES:
        version = stack.version_of(kind.upstream)
        series = p.spec.patches_for(kind.upstream, version)
        old = p.spec.patches_for(kind.upstream, base.version_of(kind.upstream))
        # Entries an earlier `update --write` carried are carried again (their block is replaced
        # as a whole, so a rerun writes the same bytes); only hand-made entries count as covering.
        covered = {e.id for e in series if not e.proof.startswith(CARRIED_PROOF)}
        to_carry = (
            tuple(e for e in old if e.id not in covered) if version != base.version_of(kind.upstream) else ()
        )
        p.log(
            f"[{kind.recipe}] {kind.upstream} {version}: {len(series)} library patch(es) cover it, "
            f"{len(to_carry)} of {base.name}'s to carry forward …"
        )
        if series:
            chk = check_recipe(p.spec, stack, kind.recipe, p.opts.cache, p.opts.local, True, series, True)
            checks.append(chk)
            _judge(p, base, stack, kind.recipe, series, chk)
        rc = None
        if to_carry:
            rc = carry_recipe(
                kind.recipe,
                kind.upstream,
                to_carry,
                base,
                stack,
                p.spec.patch_library,
                p.opts.cache,
                p.opts.local,
            )
            carried.append(rc)
            _judge_carry(p, rc)
        targets: list[PatchEntry | Carry] = [*series, *(rc.carries if rc else ())]
        _watch(p, base, kind.upstream, version, tuple(targets))
        if not series and not to_carry:
            p.block(
                f"{kind.recipe} patches",
                f"no patch in {p.spec.patch_library / kind.upstream / 'series.toml'} covers {kind.upstream} "
                f"{version}; a recipe without them would ship stock {kind.upstream}",
                "add the patches to the library (versions covering the release)",
            )
    return tuple(checks), (), tuple(carried)


def _judge_carry(p: Planner, rc: RecipeCarry) -> None:
    if rc.unreachable:
        p.block(
            f"{rc.recipe} patches",
            f"not checked: {rc.unreachable}",
            "pass --source-dir NAME=DIR so the new source can be checked",
        )
        return
    for c in rc.carries:
        p.log(f"  {c.patch.id}: {c.step.value}{(' (' + c.detail + ')') if c.detail else ''}")
        if c.step == Step.HUMAN:
            p.block(
                f"patch {c.patch.id}",
                f"{rc.recipe}: needs a human: {c.detail}\n{c.hunk}",
                f"port {c.patch.path} to {rc.upstream} {rc.version} by hand (the hunk above, both sides), "
                f"or declare its intent in series.toml ([[intent]])",
            )
        elif c.step == Step.OBSOLETE:
            p.notes.append(
                f"{rc.recipe}: {c.patch.id} obsolete on {rc.version}: {c.detail}; " + "; ".join(c.evidence)
            )
    pending = [c.patch.id for c in rc.carries if c.carried]
    if pending:
        p.notes.append(
            f"{rc.recipe}: {len(pending)} patch(es) carried to {rc.upstream} {rc.version}; `update --write` adds them "
            f"to the library (patchlib/{rc.upstream}/v{rc.version}/, series.toml)"
        )


def _judge(
    p: Planner, base: Stack, stack: Stack, recipe: str, series: tuple[PatchEntry, ...], chk: RecipeCheck
) -> None:
    for r in chk.results:
        if r.outcome == Outcome.FAILED:
            p.block(
                f"patch {r.patch.id}",
                f"{recipe}: {r.summary}",
                f"refresh {r.patch.path} against the new source",
            )
        elif r.outcome == Outcome.ALREADY:
            p.block(
                f"patch {r.patch.id}",
                f"{recipe}: obsolete, the change is already upstream",
                f"narrow its `versions` ({r.patch.versions}) in series.toml to exclude this release",
            )
    unchecked = [r for r in chk.results if r.outcome == Outcome.NOT_CHECKED]
    if not unchecked:
        return
    same_source = stack.check_sources_for(recipe) == base.check_sources_for(recipe)
    upstream = recipe_kind(recipe).upstream
    same_series = series == p.spec.patches_for(upstream, base.version_of(upstream))
    if same_source and same_series:
        p.notes.append(
            f"{recipe}: patches not checked here ({chk.verified}); source pins and patch series are the same "
            f"as {base.name}'s, so its proof carries over (`pascal-forge check --stack {base.name}`)"
        )
        return
    names = sorted({s.name for s in stack.check_sources_for(recipe)})
    p.block(
        f"{recipe} patches",
        f"not checked: {chk.verified}",
        "pass --source-dir " + " or ".join(f"{n}=DIR" for n in names) + " so the new source can be checked",
    )

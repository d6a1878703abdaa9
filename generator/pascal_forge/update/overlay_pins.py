"""The pytorch overlay's conda-forge artifacts and the recipes' requirements for the new stack."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from packaging.version import Version

from pascal_forge.stack.model import Dependency, PatchEntry, RecipeRequirements, Source, Stack
from pascal_forge.update.plan import (
    Planner,
)
from pascal_forge.update.requirements import derived_run
from pascal_forge.update.upstream import (
    CondaArtifact,
    CondaUnreachableError,
    conda_artifacts,
)


def overlay_sources(
    p: Planner, base: Stack, torch: str, triton: str
) -> tuple[list[Source], RecipeRequirements | None]:
    """The upstream conda-forge pytorch artifacts (one per Python), and their own run requirements."""
    old = [s for s in base.sources_for("pytorch-pascal") if s.patched]
    name = old[0].name if old else "pytorch-conda-forge"
    prefer = "_mkl_" if any("_mkl_" in (s.file_name or s.url) for s in old) else ""
    channel = p.opts.conda_channel
    p.log(f"looking up pytorch {torch} (CUDA {base.cuda}) in {channel} …")
    try:
        found = conda_artifacts(
            channel,
            "pytorch",
            torch,
            f"cuda{base.cuda.replace('.', '')}*",
            base.python,
            p.opts.cache,
            p.opts.conda_timeout,
            prefer,
        )
    except CondaUnreachableError as exc:
        return _overlay_from_spec(p, base, torch, f"conda-forge not reachable ({exc})")
    missing = [py for py in base.python if py not in found]
    if missing:
        why = f"{channel} has no pytorch {torch} CUDA {base.cuda} build for Python {', '.join(missing)}"
        return _overlay_from_spec(p, base, torch, why)
    sources = []
    for py in base.python:
        art = found[py]
        src = Source(
            recipe="pytorch-pascal",
            name=name,
            python=py,
            url=art.url,
            sha256=art.sha256,
            file_name=art.file_name,
            patched=True,
            pinned_by=f"{channel} linux-64 repodata (py-rattler Gateway): {art.file_name}",
        )
        before = next(((s.url, s.sha256) for s in old if s.python == py), None)
        changed = before != (src.url, src.sha256)
        p.pin(f"pytorch overlay py{py}", art.file_name, f"{channel} repodata, sha256 {art.sha256}", changed)
        sources.append(src)
    reqs = _overlay_requirements(base, list(found.values()), triton) if found else None
    return sources, reqs


def _overlay_from_spec(
    p: Planner, base: Stack, torch: str, why: str
) -> tuple[list[Source], RecipeRequirements | None]:
    """Overlay artifacts pinned by a stack of the spec with the same torch and CUDA (``why``: why not
    from the channel)."""
    origin = p.spec.origin
    p.notes.append(f"{why}: taking overlay artifacts from {origin}")
    donors = [s for s in (base, *p.spec.stacks) if s.torch == torch and s.cuda == base.cuda and not s.draft]
    for donor in donors:
        arts = [s for s in donor.sources_for("pytorch-pascal") if s.patched]
        if {s.python for s in arts} >= set(base.python):
            arts = [s for s in arts if s.python in base.python]
            for s in arts:
                p.pin(
                    f"pytorch overlay py{s.python}",
                    s.file_name or s.url,
                    f"stack {donor.name} of {origin} (not from the channel, see notes)",
                    False,
                )
            return arts, donor.requirements.get("pytorch-pascal")
    p.block(
        "pytorch overlay artifacts",
        f"{why}, and no stack of {origin} pins conda-forge's pytorch {torch} (CUDA {base.cuda}) for "
        f"Python {', '.join(base.python)}",
        f'run where conda-forge is reachable, or add a stack with torch = "{torch}" and its pytorch-pascal '
        "sources (url + sha256 per Python, cited) to a --spec file and run again; or narrow python",
        pin=True,
    )
    return [], None


def _overlay_requirements(base: Stack, arts: list[CondaArtifact], triton: str) -> RecipeRequirements:
    """The artifacts' own depends, triton swapped for the Pascal build; per-Python where they differ."""
    per = {a.python: set(a.depends) for a in arts}
    common = set.intersection(*per.values())
    old = base.requirements.get("pytorch-pascal", RecipeRequirements())
    run = [Dependency(f"triton =={triton} *pascal*", note=f"replaces upstream triton {triton}.*")]
    run += [Dependency(d) for d in sorted(common) if not d.startswith("triton ")]
    for py in sorted(per, key=Version):
        run += [Dependency(d, py) for d in sorted(per[py] - common) if not d.startswith("triton ")]
    constrains = sorted(set.intersection(*(set(a.constrains) for a in arts)))
    return RecipeRequirements(
        build=old.build,
        host=old.host,
        run=tuple(run),
        run_constraints=tuple(Dependency(c) for c in constrains),
    )


_PASCAL_PIN = re.compile(r"^(pytorch|triton) ==\S+ \*pascal\*$")


def _repin(deps: tuple[Dependency, ...], torch: str, triton: str) -> tuple[Dependency, ...]:
    """Point `pytorch/triton ==X *pascal*` requirements at the new versions."""
    out = []
    for dep in deps:
        m = _PASCAL_PIN.match(dep.spec)
        version = (torch if m.group(1) == "pytorch" else triton) if m else ""
        out.append(replace(dep, spec=f"{m.group(1)} =={version} *pascal*") if m else dep)
    return tuple(out)


def stack_requirements(
    base: Stack,
    torch: str,
    triton: str,
    tree: Path,
    overlay: RecipeRequirements | None,
    series: tuple[PatchEntry, ...] = (),
) -> dict[str, RecipeRequirements]:
    """The new stack's requirements: the base's repinned, the overlay's, and vllm-pascal's run
    derived from ``tree`` with the library's requirements patches for that version (``series``)."""
    out = {}
    for recipe, reqs in base.requirements.items():
        out[recipe] = RecipeRequirements(
            build=_repin(reqs.build, torch, triton),
            host=_repin(reqs.host, torch, triton),
            run=_repin(reqs.run, torch, triton),
            run_constraints=_repin(reqs.run_constraints, torch, triton),
        )
    if overlay is not None:
        out["pytorch-pascal"] = RecipeRequirements(
            build=overlay.build,
            host=overlay.host,
            run=_repin(overlay.run, torch, triton),
            run_constraints=overlay.run_constraints,
        )
    run, _ = derived_run(torch, triton, base.python, tree, series)
    vllm = out.get("vllm-pascal", RecipeRequirements())
    out["vllm-pascal"] = replace(vllm, run=run)
    return out

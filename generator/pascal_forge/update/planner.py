"""Plan a stack for a new vLLM release: discover and pin every input, then carry the patches forward.

The pipeline (each step a function below, each result a frozen value):

1. the vLLM sdist and its sha256 from the Simple API (PEP 691), downloaded and verified;
2. torch's pin from that sdist's ``requirements/cuda.txt``; triton's pin from the torch wheel's
   PEP 658 metadata (``Requires-Dist: triton==…``);
3. the triton commit and its LLVM commit: carried from the base stack when triton is unchanged,
   else from ``--rev`` or a local triton repository (``cmake/llvm-hash.txt`` at that commit);
4. vLLM's CMake sub-projects (cutlass, FlashMLA, vllm-flash-attn) from the sdist's CMake files;
5. the conda-forge pytorch artifacts for the overlay, from the channel's repodata (py-rattler),
   or from the spec when the channel cannot be reached;
6. every library patch whose ``versions`` cover the new release, applied to the new sources with
   the engine of `pascal-forge check`.

Whatever cannot be derived or does not apply becomes a ``Blocker``: the plan still reports all of it.
"""

from __future__ import annotations

from packaging.version import Version

from pascal_forge.console import Log
from pascal_forge.stack.model import RECIPES, Source, Spec, Stack
from pascal_forge.update.carry import carry_patches
from pascal_forge.update.fetches import (
    vllm_subprojects,
)
from pascal_forge.update.overlay_pins import (
    overlay_sources,
    stack_requirements,
)
from pascal_forge.update.pins import (
    torch_check_copy,
    torch_pin,
    triton_pin,
    triton_sources,
    vllm_sdist,
)
from pascal_forge.update.plan import (
    Planner,
    UpdateOptions,
    UpdatePlan,
    choose_base,
    stack_name,
)

# --------------------------------------------------------------------------------------------
# The plan


def plan_update(spec: Spec, opts: UpdateOptions, log: Log) -> UpdatePlan:
    version = str(Version(opts.vllm))
    base = choose_base(spec, version, opts.base)
    p = Planner(spec, opts, log)
    name = stack_name(version)
    log(f"base stack: {base.name} (vllm {base.vllm}, torch {base.torch}, triton {base.triton})")

    vllm_src, tree = vllm_sdist(p, base, version)
    torch = torch_pin(p, base, version, tree)
    triton, torch_wheel = triton_pin(p, base, torch)
    sources: dict[str, list[Source]] = {k.recipe: [] for k in RECIPES}
    sources["triton-pascal"] = triton_sources(p, base, triton)
    sources["vllm-pascal"] = [vllm_src, *vllm_subprojects(p, base, version, tree)]
    overlay, overlay_reqs = overlay_sources(p, base, torch, triton)
    sources["pytorch-pascal"] = [*overlay, *torch_check_copy(p, base, torch, torch_wheel)]

    requirements = stack_requirements(
        base, torch, triton, tree, overlay_reqs, spec.patches_for("vllm", version)
    )
    changed = tuple(r for r in sorted(requirements) if requirements[r] != base.requirements.get(r))
    stack = Stack(
        name=name,
        vllm=version,
        torch=torch,
        triton=triton,
        cuda=base.cuda,
        python=base.python,
        archs=base.archs,
        build_number=0 if version != base.vllm else base.build_number,
        sources=tuple(s for k in RECIPES for s in sources[k.recipe]),
        requirements=requirements,
    )
    checks, trials, carried = carry_patches(p, base, stack)
    return UpdatePlan(
        stack, base, tuple(p.pins), tuple(p.notes), checks, trials, tuple(p.blockers), changed, carried
    )

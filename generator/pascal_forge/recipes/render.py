"""Render recipes from the spec: recipe.yaml (rattler-build v1), meta.yaml + build.sh (conda-build).

Templates live in ``templates/`` and are the only place recipe text is written; nothing goes
through a YAML dumper (it would drop selectors and comments and reorder keys). Inputs are sorted
or ordered by the spec, so the same spec renders byte-identical trees on every machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import jinja2
from packaging.version import Version

from pascal_forge.errors import DraftStackError, PatchLibraryError, RenderError
from pascal_forge.recipes.tree import RenderedFile
from pascal_forge.stack.model import (
    RECIPES,
    Dependency,
    PatchEntry,
    RecipeKind,
    RecipeRequirements,
    Source,
    Spec,
    Stack,
)

#: Token in every build string we produce; dependants match on ``*pascal*`` so the solver can
#: never substitute stock triton/pytorch (same name and version, different build string).
BUILD_TOKEN = "pascal"  # noqa: S105 - not a secret
#: The overlay's repackaging code; the pytorch recipe ships it as repack.py.
OVERLAY_MODULE = Path(__file__).parents[1] / "build" / "overlay.py"  # shipped as repack.py


@dataclass(frozen=True)
class RecipePlan:
    """Everything one recipe folder is rendered from."""

    kind: RecipeKind
    stack: Stack
    version: str
    sources: tuple[Source, ...]
    patches: tuple[PatchEntry, ...]
    requirements: RecipeRequirements

    @property
    def patch_dir_files(self) -> tuple[str, ...]:
        return tuple(f"patches/{p.path.name}" for p in self.patches)

    @property
    def source_patches(self) -> tuple[str, ...]:
        """Patches the engine applies to the patched source (empty: build.sh applies them)."""
        return () if self.kind.recipe == "pytorch-pascal" else self.patch_dir_files


@dataclass(frozen=True)
class RecipeInfo:
    """About/test data of a recipe that is not a pin (pins live in the spec)."""

    homepage: str
    license: str
    summary: str
    description: tuple[str, ...]
    test_requires: tuple[str, ...]


RECIPE_INFO: dict[str, RecipeInfo] = {
    "triton-pascal": RecipeInfo(
        homepage="https://github.com/triton-lang/triton",
        license="MIT",
        summary="Triton with fp16 tl.dot and cache-policy fixes for NVIDIA Pascal (sm_60/sm_61)",
        description=(
            "Triton built from the commit PyTorch pins, with the patches below. The build string",
            "carries the 'pascal' token; pytorch and vllm-pascal from this channel require it.",
            "Patches:",
        ),
        test_requires=(),
    ),
    "pytorch-pascal": RecipeInfo(
        homepage="https://pytorch.org",
        license="BSD-3-Clause",
        summary="conda-forge's PyTorch with the Inductor/Triton capability gates opened for Pascal",
        description=(
            "A repackaged conda-forge pytorch artifact (pinned by sha256). Its CUDA libraries already",
            "carry sm_60/sm_61 kernels; only the Python gates below change, and its triton dependency",
            "is the Pascal build. Patches:",
        ),
        test_requires=(),
    ),
    "vllm-pascal": RecipeInfo(
        homepage="https://github.com/vllm-project/vllm",
        license="Apache-2.0",
        summary="vLLM built for NVIDIA Pascal GPUs (P100, P40, P4, GTX 10xx)",
        description=(
            "vLLM compiled for sm_60/sm_61 only, against the Pascal builds of pytorch and triton.",
            "On Pascal, vLLM runs the V0 engine with XFORMERS attention; dtype=auto picks fp16 there,",
            "since bf16 needs cc 8.0. Patches:",
        ),
        test_requires=("cuda-cuobjdump",),
    ),
}

#: CMake variables that point vLLM's FetchContent sub-projects at pinned sources.
VLLM_SOURCE_ENV: dict[str, str] = {
    "cutlass": "VLLM_CUTLASS_SRC_DIR",
    "flashmla": "FLASH_MLA_SRC_DIR",
    "vllm-flash-attn": "VLLM_FLASH_ATTN_SRC_DIR",
    # vLLM >= 0.20 (cmake/external_projects/*.cmake read them from the environment)
    "deepgemm": "DEEPGEMM_SRC_DIR",
    "qutlass": "QUTLASS_SRC_DIR",
    "fmha-sm100": "FMHA_SM100_SRC_DIR",
    "tml-fa4": "TML_FA4_SRC_DIR",
    "triton-kernels": "TRITON_KERNELS_SRC_DIR",
}

#: Where inside a source's tree its variable must point (triton_kernels.cmake wants the package dir).
VLLM_SOURCE_SUBDIR: dict[str, str] = {
    "triton-kernels": "/python/triton_kernels/triton_kernels",
}


def recipe_info(recipe: str, stack: Stack) -> RecipeInfo:
    """RECIPE_INFO, with the sentences that depend on the upstream versions adjusted."""
    info = RECIPE_INFO[recipe]
    if recipe == "triton-pascal" and Version(stack.triton) >= Version("3.4"):
        # 3.4 lowers fp16 tl.dot for sm_6x itself (triton PR #7158); only the cache-policy fix is ours.
        return replace(
            info,
            summary="Triton with the cache-policy fix for NVIDIA Pascal (sm_60/sm_61)",
            description=(
                "Triton built from the pinned commit of its release branch (see the spec), with the",
                "patch below. The build string carries the 'pascal' token; pytorch and vllm-pascal",
                "from this channel require it. Patches:",
            ),
        )
    if recipe == "pytorch-pascal" and Version(stack.torch) >= Version("2.8"):
        # conda-forge dropped 6.1 from TORCH_CUDA_ARCH_LIST for CUDA 12.8/12.9 (pytorch-cpu-feedstock
        # 7b937ea1); sm_60 SASS runs on sm_61 (same major version).
        return replace(
            info,
            description=(
                "A repackaged conda-forge pytorch artifact (pinned by sha256). Its CUDA libraries already",
                "carry sm_60 kernels, which sm_61 GPUs run too; only the Python gates below change, and",
                "its triton dependency is the Pascal build. Patches:",
            ),
        )
    if recipe == "vllm-pascal" and Version(stack.vllm) >= Version("0.11"):
        # 0.11 removed the V0 engine; V1 picks FlexAttention below cc 8.0 (vllm/platforms/cuda.py).
        return replace(
            info,
            description=(
                info.description[0],
                "On Pascal, vLLM runs the V1 engine: FlexAttention by default below cc 8.0, TRITON_ATTN",
                "or XFORMERS through VLLM_ATTENTION_BACKEND; dtype=auto picks fp16, since bf16 needs",
                "cc 8.0. Patches:",
            ),
        )
    return info


def version_facts(stack: Stack) -> dict[str, object]:
    """Upstream layout facts the build scripts and package tests depend on."""
    return {
        "torch_pascal_kernels": (
            "sm_60/sm_61 kernels"
            if Version(stack.torch) < Version("2.8")
            else "sm_60 kernels, which sm_61 runs"
        ),
        # triton moved setup.py from python/ to the repository root in 3.4.
        "triton_setup_subdir": "/python" if Version(stack.triton) < Version("3.4") else "",
        # torch 2.8 added a third gate, CudaInterface.is_triton_capable (torch/_dynamo/device_interface.py).
        "torch_is_triton_capable_gate": Version(stack.torch) >= Version("2.8"),
        # triton < 3.4 aborts on an fp16 tl.dot for sm_6x without our promotion patch.
        "triton_stock_fp16_dot_fails": Version(stack.triton) < Version("3.4"),
        # ASTSource(constants=...) became ASTSource(constexprs=...) in triton 3.3.
        "triton_astsource_constants_kw": "constants"
        if Version(stack.triton) < Version("3.3")
        else "constexprs",
        # TTGIR module attributes: "triton_gpu.num-warps" became "ttg.num-warps" in triton 3.3.
        "triton_ttgir_prefix": "triton_gpu" if Version(stack.triton) < Version("3.3") else "ttg",
    }


def plan_recipes(spec: Spec, stack_name: str | None = None) -> tuple[RecipePlan, ...]:
    stack = spec.stack(stack_name)
    if stack.draft:
        # A draft's pins or patches are known to be incomplete: its recipes would fail hours into a build.
        raise DraftStackError(
            f"stack {stack.name} in {spec.origin} is a draft: {stack.draft}",
            f"fix what it names and run `pascal-forge update --vllm {stack.vllm} --write` again "
            "(`pascal-forge check --stack NAME` shows the patch status)",
        )
    plans = []
    for kind in RECIPES:
        version = stack.version_of(kind.upstream)
        patches = spec.patches_for(kind.upstream, version)
        if not patches:
            # Refuse to render a "Pascal" recipe that would ship stock upstream code.
            raise PatchLibraryError(
                f"no patches in {spec.patch_library / kind.upstream / 'series.toml'} apply to "
                f"{kind.upstream} {version} (recipe {kind.recipe})",
                "add patches for this version to the library, or pick a stack it supports",
            )
        reqs = stack.requirements.get(kind.recipe, RecipeRequirements())
        plans.append(RecipePlan(kind, stack, version, stack.sources_for(kind.recipe), patches, reqs))
    return tuple(plans)


# --------------------------------------------------------------------------------------------
# Jinja environment and filters


def _yaml_str(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def toml_str(value: str) -> str:
    """A TOML basic string (JSON string escapes are valid TOML)."""
    return json.dumps(value, ensure_ascii=False)


def toml_dep(dep: Dependency) -> str:
    """A requirement as the spec writes it: a plain string, or an inline table with python/note."""
    if not dep.python and not dep.note:
        return toml_str(dep.spec)
    parts = [f"spec = {toml_str(dep.spec)}"]
    if dep.python:
        parts.append(f"python = {toml_str(dep.python)}")
    if dep.note:
        parts.append(f"note = {toml_str(dep.note)}")
    return "{ " + ", ".join(parts) + " }"


def _v1_dep(dep: str) -> str:
    """`compiler:cuda` style markers become engine calls; plain specs stay as they are."""
    if ":" in dep and dep.split(":", 1)[0] in {"compiler", "stdlib"}:
        func, arg = dep.split(":", 1)
        return f"${{{{ {func}('{arg}') }}}}"
    return dep


def _v0_dep(dep: str) -> str:
    if ":" in dep and dep.split(":", 1)[0] in {"compiler", "stdlib"}:
        func, arg = dep.split(":", 1)
        return f"{{{{ {func}('{arg}') }}}}"
    return dep


def _py_nodot(py: str) -> str:
    return py.replace(".", "")


def environment(*, html: bool = False) -> jinja2.Environment:
    """The one jinja environment for every template (``html``: escape, for index.html)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pascal_forge.recipes", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=html,  # YAML, TOML, Nix and shell are not HTML
    )
    env.filters["yaml_str"] = _yaml_str
    env.filters["v1_dep"] = _v1_dep
    env.filters["v0_dep"] = _v0_dep
    env.filters["py_nodot"] = _py_nodot
    env.filters["toml_str"] = toml_str
    env.filters["toml_dep"] = toml_dep
    env.globals["source_lines"] = source_lines
    return env


# --------------------------------------------------------------------------------------------
# Rendering


def _build_string_parts(plan: RecipePlan) -> tuple[str, str, int]:
    """(text before ``py<XY>``, trailing number, build number) of the recipe's build strings.

    The overlay keeps upstream's shape (``cuda126_mkl_py312_..._300``): conda-forge's libtorch
    constrains ``pytorch ==2.6.0 cuda126_mkl_*_300``, so any other shape is not installable
    next to the libtorch it depends on. Its build number counts on from upstream's.
    """
    if plan.kind.recipe != "pytorch-pascal":
        return f"cuda{plan.stack.cuda_short}", str(plan.stack.build_number), plan.stack.build_number
    shapes = set()
    for src in plan.sources:
        if src.check_only or not src.file_name:
            continue
        build = src.file_name.removesuffix(".conda").removesuffix(".tar.bz2").split("-")[-1]
        head, sep, rest = build.partition(f"py{src.python.replace('.', '')}_")
        number = rest.rsplit("_", 1)[-1]
        if not sep or not number.isdigit():
            raise RenderError(
                f"cannot read the build string of {src.file_name} (recipe pytorch-pascal)",
                "pin a conda-forge artifact named <name>-<version>-<...>py<XY>_h<hash>_<number>.conda",
            )
        shapes.add((head, number))
    if len(shapes) != 1:
        raise RenderError(
            f"the pytorch-pascal artifacts disagree on their build string shape: {sorted(shapes)}",
            "pin artifacts of the same upstream build (same prefix and build number) for every Python",
        )
    ((head, number),) = shapes
    return head.rstrip("_") + "_", number, int(number) + plan.stack.build_number


def _context(plan: RecipePlan, spec_origin: str) -> dict[str, object]:
    stack = plan.stack
    bs_head, bs_number, build_number = _build_string_parts(plan)
    return {
        "bs_head": bs_head,
        "bs_number": bs_number,
        "build_number": build_number,
        "plan": plan,
        "kind": plan.kind,
        "stack": stack,
        "version": plan.version,
        "sources": plan.sources,
        "patches": plan.patches,
        "reqs": plan.requirements,
        "token": BUILD_TOKEN,
        "origin": spec_origin,
        "archs_space": " ".join(stack.archs),
        "archs_semicolon": ";".join(stack.archs),
        "pythons": stack.python,
        "info": recipe_info(plan.kind.recipe, stack),
        "src_env": VLLM_SOURCE_ENV,
        "src_subdir": VLLM_SOURCE_SUBDIR,
        **version_facts(stack),
    }


def render_tree(spec: Spec, stack_name: str | None = None) -> tuple[RenderedFile, ...]:
    """All files of a recipes/ tree for one stack, in a stable order."""
    env = environment()
    plans = plan_recipes(spec, stack_name)
    stack = plans[0].stack
    origin = "built-in spec" if spec.origin == "built-in spec" else Path(spec.origin).name
    files: list[RenderedFile] = []

    def emit(path: str, template: str, ctx: dict[str, object]) -> None:
        try:
            text = env.get_template(template).render(**ctx)
        except jinja2.TemplateError as exc:
            raise RenderError(
                f"template {template} failed for {path}: {exc}", "this is a bug; report it"
            ) from exc
        files.append(RenderedFile(path, text.encode("utf-8")))

    shared = {"stack": stack, "origin": origin, "pythons": stack.python, "token": BUILD_TOKEN}
    emit("variants.yaml", "variants.yaml.j2", shared)
    emit("conda_build_config.yaml", "conda_build_config.yaml.j2", shared)
    for plan in plans:
        ctx = _context(plan, origin)
        base = plan.kind.recipe
        emit(f"{base}/recipe.yaml", "recipe.yaml.j2", {**ctx, "run_constraints_key": "run_constraints"})
        emit(f"{base}/meta.yaml", "meta.yaml.j2", {**ctx, "run_constraints_key": "run_constrained"})
        emit(f"{base}/build.sh", f"build-{base}.sh.j2", ctx)
        emit(f"{base}/pascal_check.py", f"check-{base}.py.j2", ctx)
        if base == "pytorch-pascal":
            # The transformation the tests exercise, shipped byte for byte (not a template).
            files.append(RenderedFile(f"{base}/repack.py", OVERLAY_MODULE.read_bytes()))
        for patch in plan.patches:
            files.append(RenderedFile(f"{base}/patches/{patch.path.name}", patch.path.read_bytes()))
    return tuple(sorted(files, key=lambda f: f.path))


def source_lines(src: Source, plan: RecipePlan, *, v0: bool = False) -> list[str]:
    """The YAML lines of one source entry (keys differ slightly between the formats)."""
    lines = [f"git_url: {src.git}", f"git_rev: {src.rev}"] if v0 and src.is_git else []
    if not v0 and src.is_git:
        lines = [f"git: {src.git}", f"rev: {src.rev}"]
    if not src.is_git:
        lines = [f"url: {src.url}", f"sha256: {src.sha256}"]
        if src.file_name:
            lines.append(f"{'fn' if v0 else 'file_name'}: {src.file_name}")
    if src.target:
        lines.append(f"{'folder' if v0 else 'target_directory'}: {src.target}")
    if src.patched and plan.source_patches:
        lines.append("patches:")
        lines.extend(f"  - {p}" for p in plan.source_patches)
    return lines


# --------------------------------------------------------------------------------------------
# Writing: build the whole tree beside the target, then swap, so a failure never leaves a
# half-written recipes/ behind.

"""The third stack, vLLM 0.26.0 -> PyTorch 2.11.0 -> Triton 3.6.0 (CUDA 12.9): pins, patch series,
patches proven on the real pinned sources, and vLLM 0.26.0's external CMake projects skipped for a
Pascal-only arch list."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pascal_forge.cli import main
from pascal_forge.recipes.render import VLLM_SOURCE_ENV
from pascal_forge.stack.spec import load_spec
from pascal_forge.update.fetches import cmake_fetches

STACK = "vllm-0.26.0"
OVERLAY = [
    "pytorch-2.11.0-cuda129_mkl_py311_h6b7d41d_300.conda",
    "pytorch-2.11.0-cuda129_mkl_py314_hfa65069_300.conda",
]


def test_third_stack_is_pinned_and_the_default_stays() -> None:
    spec = load_spec()
    assert spec.default_stack == "vllm-0.8.5"
    stack = spec.stack(STACK)
    assert (stack.vllm, stack.torch, stack.triton, stack.cuda) == ("0.26.0", "2.11.0", "3.6.0", "12.9")
    assert stack.python == ("3.11", "3.14")  # the public records of the conda-forge artifact
    assert not stack.draft
    for src in stack.sources:
        assert (src.url and len(src.sha256) == 64) or (src.git and len(src.rev) == 40), src
        assert src.pinned_by
    overlay = [s for s in stack.sources_for("pytorch-pascal") if s.patched]
    assert [s.file_name for s in overlay] == OVERLAY
    assert [s.python for s in overlay] == ["3.11", "3.14"]
    # every git sub-project of vllm-pascal is handed to vLLM's CMake through its variable
    subs = [s for s in stack.sources_for("vllm-pascal") if s.is_git]
    assert {s.name for s in subs} == {
        "cutlass",
        "flashmla",
        "vllm-flash-attn",
        "deepgemm",
        "fmha-sm100",
        "qutlass",
        "tml-fa4",
        "triton-kernels",
    }
    assert all(s.name in VLLM_SOURCE_ENV and s.target for s in subs)
    run = {d.spec for d in stack.requirements["pytorch-pascal"].run}
    assert {"triton ==3.6.0 *pascal*", "libtorch ==2.11.0 cuda129_mkl_hda1b8b5_300"} <= run
    assert not [d for d in run if d.startswith("triton ==3.6.0") and "pascal" not in d]


def test_each_upstream_of_the_third_stack_has_its_own_series() -> None:
    spec = load_spec()
    stack = spec.stack(STACK)
    ids = {
        up: [p.id for p in spec.patches_for(up, stack.version_of(up))] for up in ("vllm", "torch", "triton")
    }
    assert ids == {
        "vllm": [
            "cmake-pascal-archs",
            "moe-wna16-half-atomicadd",
            "flash-attn-skip-kernels-without-sm80",
            "unified-attention-pascal-tiles",
            "requirements-leave-out-sm80-only-packages",
            "sampler-without-flashinfer",
        ],
        "torch": ["inductor-gate-utils-triton", "inductor-gate-scheduler", "inductor-gate-is-triton-capable"],
        "triton": ["no-l1-eviction-hints-before-sm70"],
    }
    files = [p.file for up in ("vllm", "torch", "triton") for p in spec.patches_for(up, stack.version_of(up))]
    assert all(f.split("/")[0] in {"v0.26.0", "v2.11.0", "v3.6.0"} for f in files), files


def test_fetches_include_the_populate_form(tmp_path: Path) -> None:
    """vLLM >= 0.20 fetches DeepGEMM/QuTLASS with FetchContent_Populate(name GIT_REPOSITORY ...) and
    the repository in a variable; a one-argument Populate(name) is not a second fetch."""
    ext = tmp_path / "cmake" / "external_projects"
    ext.mkdir(parents=True)
    (ext / "deepgemm.cmake").write_text(
        'set(_REPO "https://github.com/deepseek-ai/DeepGEMM.git")\n'
        'set(_TAG "a6b593d2826719dcf4892609af7b84ee23aaf32a")\n'
        'FetchContent_Populate(\n  deepgemm\n  SOURCE_DIR "${_src}"\n'
        '  GIT_REPOSITORY "${_REPO}"\n  GIT_TAG "${_TAG}"\n)\n'
    )
    (ext / "tml_fa4.cmake").write_text(
        "FetchContent_Declare(\n  tml_fa4\n  GIT_REPOSITORY https://github.com/vllm-project/tml-fa4.git\n"
        "  GIT_TAG b206834606ed5b5f21f8eed6b0683f528ea9cf7d\n)\nFetchContent_Populate(tml_fa4)\n"
    )
    got = {(f.name, f.repo, f.tag) for f in cmake_fetches(tmp_path)}
    assert got == {
        (
            "deepgemm",
            "https://github.com/deepseek-ai/DeepGEMM.git",
            "a6b593d2826719dcf4892609af7b84ee23aaf32a",
        ),
        (
            "tml_fa4",
            "https://github.com/vllm-project/tml-fa4.git",
            "b206834606ed5b5f21f8eed6b0683f528ea9cf7d",
        ),
    }


@pytest.mark.integration
@pytest.mark.parametrize("package", ["vllm-pascal", "pytorch-pascal"])
def test_check_passes_for_the_third_stack(package: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--vllm", "0.26.0", "--package", package, "--json"]) == 0
    (recipe,) = json.loads(capsys.readouterr().out)
    assert recipe["patches"]
    assert all(p["ok"] and p["result"] == "applies cleanly" for p in recipe["patches"])


def _vllm_trees(tmp_path: Path) -> tuple[Path, Path]:
    """(pristine, patched) copies of the pinned vLLM 0.26.0 sdist."""
    from pascal_forge.stack.patches import apply_series
    from pascal_forge.stack.sources import default_cache_dir, obtain

    spec = load_spec()
    stack = spec.stack(STACK)
    src = obtain(stack.patched_source("vllm-pascal"), default_cache_dir()).tree
    pristine, patched = tmp_path / "pristine", tmp_path / "patched"
    shutil.copytree(src, pristine, symlinks=True)
    shutil.copytree(src, patched, symlinks=True)
    results = apply_series(patched, spec.patches_for("vllm", stack.vllm))
    assert all(r.ok for r in results), [r.summary for r in results]
    return pristine, patched


@pytest.mark.integration
def test_patched_cmake_keeps_pascal_in_both_cuda12_branches(tmp_path: Path) -> None:
    from pascal_forge.verify import cmake_archs

    pristine, patched = _vllm_trees(tmp_path)

    def select(tree: Path, nvcc: str) -> cmake_archs.Selection:
        text = (tree / "CMakeLists.txt").read_text()
        return cmake_archs.select_sources(
            text, tree, ("6.0", "6.1"), cmake_archs.initial_variables(tree, nvcc, "2.11.0")
        )

    for nvcc in ("12.9.86", "12.4.131"):  # the >= 12.8 branch and the older one
        sel = select(patched, nvcc)
        assert sel.cuda_archs == ("6.0", "6.1"), nvcc
        cuda = {u.source for u in sel.cuda_units()}
        assert len(cuda) == 38, nvcc
        assert "csrc/libtorch_stable/moe/moe_wna16.cu" in cuda
        assert {u.target for u in sel.cuda_units()} == {"_C_stable_libtorch", "_moe_C_stable_libtorch"}
        assert not select(pristine, nvcc).cuda_units()
    # CUDA 13 cannot target sm_6x: that branch is left alone and keeps neither arch
    assert select(patched, "13.0.88").cuda_archs == ()
    assert not select(patched, "13.0.88").cuda_units()


def _cmake() -> str:
    for candidate in (Path(sys.executable).parent / "cmake", shutil.which("cmake")):
        if candidate and Path(candidate).is_file():
            out = subprocess.run([str(candidate), "--version"], capture_output=True, text=True, check=True)
            major, minor = (int(x) for x in out.stdout.split()[2].split(".")[:2])
            if (major, minor) >= (3, 26):
                return str(candidate)
    pytest.skip("needs cmake >= 3.26 (vLLM 0.26.0's minimum); pip install 'pascal-forge[test]' brings it")


EXTERNALS = ("triton_kernels", "deepgemm", "fmha_sm100", "flashmla", "qutlass", "tml_fa4", "vllm_flash_attn")


def _standins(root: Path) -> dict[str, Path]:
    """Stand-in source trees (GitHub is out of reach in CI) with the files vLLM 0.26.0's
    cmake/external_projects/*.cmake read or install; the fork's CMakeLists.txt announces itself."""
    files = {
        "triton-kernels/python/triton_kernels/triton_kernels/matmul_ogs.py": "",
        "deepgemm/csrc/python_api.cpp": "",
        "qutlass/CMakeLists.txt": "",
        "flashmla/flash_mla/flash_mla_interface.py": "flash_mla_cuda = torch.ops._flashmla_C\n",
        **{
            f"fmha-sm100/python/fmha_sm100/{n}.py": ""
            for n in ("__init__", "api", "bench_utils", "jit", "sparse", "sparse_fmha_adapter")
        },
        "fmha-sm100/python/fmha_sm100/csrc/k.cu": "",
        "fmha-sm100/python/fmha_sm100/cute/k.py": "",
        "fmha-sm100/python/fmha_sm100/cutlass/include/c.h": "",
        "fmha-sm100/python/fmha_sm100/cutlass/tools/util/include/u.h": "",
        "tml-fa4/flash_attn/cute/interface.py": "from flash_attn.cute import x\n",
        "vllm-flash-attn/CMakeLists.txt": (
            "cmake_minimum_required(VERSION 3.26)\nproject(vllm_flash_attn LANGUAGES NONE)\n"
            'message(STATUS "stand-in fork: CMakeLists.txt added")\n'
            "add_custom_target(_vllm_fa2_C)\nadd_custom_target(_vllm_fa3_C)\n"
        ),
        "vllm-flash-attn/vllm_flash_attn/__init__.py": "",
        "vllm-flash-attn/vllm_flash_attn/layers/rotary.py": "",
        "vllm-flash-attn/flash_attn/cute/interface.py": "from flash_attn.cute import y\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return {
        "TRITON_KERNELS_SRC_DIR": root / "triton-kernels/python/triton_kernels/triton_kernels",
        **{
            VLLM_SOURCE_ENV[n]: root / n for n in ("deepgemm", "qutlass", "flashmla", "fmha-sm100", "tml-fa4")
        },
        "VLLM_FLASH_ATTN_SRC_DIR": root / "vllm-flash-attn",
    }


def _configure(cmake: str, tree: Path, work: Path, archs: str) -> tuple[str, list[str]]:
    """A project that includes vLLM 0.26.0's external projects in CMakeLists.txt's order for
    CUDA_ARCHS=archs (nvcc 12.9), builds the targets setup.py asks for and installs their
    components; returns the configure log and the installed files."""
    env = {"PATH": "/usr/bin:/bin", **{k: str(v) for k, v in _standins(work / "src").items()}}
    proj = work / "proj"
    proj.mkdir(parents=True, exist_ok=True)
    includes = "".join(f'include("{tree}/cmake/external_projects/{e}.cmake")\n' for e in EXTERNALS)
    (proj / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.26)\nproject(probe LANGUAGES NONE)\ninclude(FetchContent)\n"
        f'include("{tree}/cmake/utils.cmake")\nset(VLLM_GPU_LANG "CUDA")\n'
        'set(CMAKE_CUDA_COMPILER_VERSION "12.9.86")\nset(CUDA_ARCHS "${PROBE_ARCHS}")\n' + includes
    )
    build, prefix = work / "build", work / "prefix"
    conf = subprocess.run(
        [
            cmake,
            "-S",
            str(proj),
            "-B",
            str(build),
            f"-DPROBE_ARCHS={archs}",
            "-DFETCHCONTENT_FULLY_DISCONNECTED=ON",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert conf.returncode == 0, conf.stdout + conf.stderr
    targets = [
        "_vllm_fa2_C",
        "_vllm_fa3_C",
        "_flashmla_C",
        "_flashmla_extension_C",
        "_qutlass_C",
        "_deep_gemm_C",
    ]
    run = subprocess.run(
        [cmake, "--build", str(build), "--target", *targets],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for component in (
        "_vllm_fa2_C",
        "_vllm_fa4_cutedsl_C",
        "_flashmla_C",
        "_deep_gemm_C",
        "_qutlass_C",
        "fmha_sm100",
        "tml_fa4",
        "triton_kernels",
    ):
        inst = subprocess.run(
            [cmake, "--install", str(build), "--prefix", str(prefix), "--component", component],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert inst.returncode == 0, component + inst.stdout + inst.stderr
    return conf.stdout, sorted(p.relative_to(prefix).as_posix() for p in prefix.rglob("*") if p.is_file())


@pytest.mark.integration
def test_external_projects_skip_their_kernels_for_pascal_only_archs(tmp_path: Path) -> None:
    cmake = _cmake()
    pristine, patched = _vllm_trees(tmp_path)

    log, files = _configure(cmake, patched, tmp_path / "patched-pascal", "6.0;6.1")
    assert "DeepGEMM will not compile: unsupported CUDA architecture 6.0;6.1" in log
    assert "FlashMLA will not compile: unsupported CUDA architecture 6.0;6.1" in log
    assert "[QUTLASS] Skipping build: no supported arch" in log
    assert "skipping the vllm-flash-attn kernels" in log
    assert "stand-in fork: CMakeLists.txt added" not in log
    # the Python files vLLM imports are installed all the same
    for want in (
        "vllm/vllm_flash_attn/layers/rotary.py",
        "vllm/third_party/flashmla/flash_mla_interface.py",
        "vllm/third_party/fmha_sm100/api.py",
        "vllm/third_party/tml_fa4/interface.py",
        "vllm/third_party/triton_kernels/matmul_ogs.py",
    ):
        assert want in files, (want, files)
    assert not [f for f in files if f.endswith(".so")]
    # FA4's CuteDSL files: with VLLM_FLASH_ATTN_SRC_DIR set (as the recipe does) upstream links them
    cute = tmp_path / "patched-pascal" / "prefix" / "vllm" / "vllm_flash_attn" / "cute"
    assert (cute / "interface.py").read_text() == "from flash_attn.cute import y\n"

    log, _ = _configure(cmake, patched, tmp_path / "patched-ampere", "6.0;6.1;8.6")
    assert "stand-in fork: CMakeLists.txt added" in log  # unchanged where FA2 has an arch

    log, _ = _configure(cmake, pristine, tmp_path / "pristine-pascal", "6.0;6.1")
    assert "stand-in fork: CMakeLists.txt added" in log  # what the patch avoids


#: What patch requirements-leave-out-sm80-only-packages drops: PyPI name -> the import name vLLM uses.
LEFT_OUT = {
    "PyNvVideoCodec": "PyNvVideoCodec",
    "apache-tvm-ffi": "tvm_ffi",
    "fastsafetensors": "fastsafetensors",
    "flashinfer-cubin": "flashinfer_cubin",
    "flashinfer-python": "flashinfer",
    "humming-kernels": "humming",
    "nvidia-cudnn-frontend": "cudnn",
    "nvidia-cutlass-dsl": "cutlass",
    "quack-kernels": "quack",
    "tilelang": "tilelang",
    "tokenspeed-mla": "tokenspeed_mla",
}

#: The only modules of vLLM 0.26.0 that import a left-out package at import time: its own sm_80+
#: kernels (CuTe DSL, FlashInfer backends) and two models' NVIDIA op packages.
KERNEL_MODULES = {
    "vllm.cute_utils",
    "vllm.cute_utils._tcgen05",
    "vllm.cute_utils.cvt",
    "vllm.distributed.device_communicators.mnnvl_compat",
    "vllm.model_executor.kernels.attention.dsa.dcp_indexer_cutedsl",
    "vllm.model_executor.kernels.linear.cute_dsl._ll_bf16_dotprod",
    "vllm.model_executor.kernels.linear.cute_dsl._ll_bf16_splitk",
    "vllm.model_executor.layers.fused_moe.router.bf16x3_router_gemm_cutedsl",
    "vllm.model_executor.layers.mamba.ops.gdn_chunk_cutedsl",
    "vllm.model_executor.layers.mamba.ops.gdn_chunk_cutedsl.kernel_h",
    "vllm.model_executor.layers.mamba.ops.gdn_chunk_cutedsl.kernel_kkt_inv_uw",
    "vllm.model_executor.layers.mamba.ops.gdn_chunk_cutedsl.kernel_o",
    "vllm.models.deepseek_v4.nvidia.ops.dequant_gather_k_cutedsl",
    "vllm.models.deepseek_v4.nvidia.ops.fused_indexer_q_cutedsl",
    "vllm.models.deepseek_v4.nvidia.ops.sparse_attn_compress_cutedsl",
    "vllm.models.minimax_m3.nvidia.indexer_msa",
    "vllm.models.minimax_m3.nvidia.ops",
    "vllm.models.minimax_m3.nvidia.ops.index_decode_score",
    "vllm.v1.attention.backends.flashinfer",
    "vllm.v1.attention.backends.mla.flashinfer_mla",
}

#: What a Pascal user's engine imports: entry points, engine core, GPU worker and runner, the attention
#: backend cc 6.x gets, the sampler, the model registry and common model families.
PASCAL_PATH = (
    "vllm",
    "vllm.entrypoints.llm",
    "vllm.entrypoints.openai.api_server",
    "vllm.v1.engine.core",
    "vllm.v1.worker.gpu_worker",
    "vllm.v1.worker.gpu_model_runner",
    "vllm.v1.attention.backends.triton_attn",
    "vllm.v1.sample.sampler",
    "vllm.v1.sample.ops.topk_topp_sampler",
    "vllm.model_executor.models.registry",
    "vllm.model_executor.models.llama",
    "vllm.model_executor.models.qwen3",
    "vllm.model_executor.models.qwen3_moe",
    "vllm.model_executor.models.gemma3",
    "vllm.model_executor.models.mistral",
    "vllm.model_executor.models.qwen2_5_vl",
    "vllm.model_executor.layers.fused_moe",
    "vllm.model_executor.model_loader",
    "vllm.multimodal.video",
)


@pytest.mark.integration
def test_left_out_requirements_are_imported_only_by_their_own_kernels(tmp_path: Path) -> None:
    from packaging.requirements import Requirement

    from pascal_forge.update.requirements import read_requirement_files
    from pascal_forge.verify.lazy_imports import build_graph, importers, reaches

    pristine, patched = _vllm_trees(tmp_path)

    def names(tree: Path) -> set[str]:
        return {Requirement(x).name for x in read_requirement_files(tree, ("cuda.txt",))}

    assert names(pristine) - names(patched) == set(LEFT_OUT)  # exactly what the patch says it drops
    graph = build_graph(patched, "vllm")
    assert len(graph.modules) > 2000
    failing = importers(graph, LEFT_OUT.values())
    assert set(failing) == KERNEL_MODULES, sorted(set(failing) ^ KERNEL_MODULES)
    for module in PASCAL_PATH:
        assert reaches(graph, module, LEFT_OUT.values()) is None, reaches(graph, module, LEFT_OUT.values())
    # the derived run requirements (the spec's block) name none of them
    run = {d.spec.split()[0] for d in load_spec().stack(STACK).requirements["vllm-pascal"].run}
    assert not run & {n.lower() for n in LEFT_OUT}
    assert {"pytorch", "triton", "numba", "xgrammar", "nvtx"} <= run


def _sampler_supported(tree: Path, capability: tuple[int, int], flashinfer: bool, env_set: bool) -> Any:
    """Run vLLM's own flashinfer_sampler_supported(), cut out of ``tree``, against stand-ins: a CUDA
    platform of ``capability``, envs with VLLM_USE_FLASHINFER_SAMPLER on (explicitly when
    ``env_set``), and a FlashInfer backend module that exists only when ``flashinfer``."""
    import ast
    import types

    path = tree / "vllm" / "v1" / "sample" / "ops" / "topk_topp_sampler.py"
    module = ast.parse(path.read_text())
    (func,) = [
        n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "flashinfer_sampler_supported"
    ]
    code = compile(ast.Module(body=[func], type_ignores=[]), str(path), "exec")

    class Capability(tuple):  # type: ignore[type-arg]
        __slots__ = ()

        def as_version_str(self) -> str:
            return f"{self[0]}.{self[1]}"

    platform = types.SimpleNamespace(
        is_cuda=lambda: True, get_device_capability=lambda: Capability(capability)
    )

    def is_set(_name: str) -> bool:
        return env_set

    def log(*_args: object, **_kwargs: object) -> None:
        return None

    envs = types.SimpleNamespace(VLLM_USE_FLASHINFER_SAMPLER=True, is_set=is_set)
    logger = types.SimpleNamespace(info_once=log, warning_once=log)
    saved = {k: v for k, v in sys.modules.items() if k.startswith("vllm")}
    for name in ("vllm", "vllm.v1", "vllm.v1.attention", "vllm.v1.attention.backends"):
        sys.modules[name] = types.ModuleType(name)
    backend = "vllm.v1.attention.backends.flashinfer"
    if flashinfer:
        mod = types.ModuleType(backend)
        mod.FlashInferBackend = types.SimpleNamespace(  # type: ignore[attr-defined]
            supports_compute_capability=lambda cap: (8, 0) <= tuple(cap) < (12, 2)
        )
        sys.modules[backend] = mod
    else:
        sys.modules[backend] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        scope: dict[str, Any] = {"current_platform": platform, "envs": envs, "logger": logger}
        exec(code, scope)  # noqa: S102 - vLLM's own function, cut out of the sdist
        return scope["flashinfer_sampler_supported"]()
    finally:
        for name in [k for k in sys.modules if k.startswith("vllm")]:
            del sys.modules[name]
        sys.modules.update(saved)


@pytest.mark.integration
def test_sampler_falls_back_without_flashinfer(tmp_path: Path) -> None:
    pristine, patched = _vllm_trees(tmp_path)
    pascal = (6, 1)
    with pytest.raises(ImportError):  # upstream assumes requirements/cuda.txt installed FlashInfer
        _sampler_supported(pristine, pascal, flashinfer=False, env_set=False)
    assert _sampler_supported(patched, pascal, flashinfer=False, env_set=False) is False
    with pytest.raises(RuntimeError, match="FlashInfer is not installed"):
        _sampler_supported(patched, pascal, flashinfer=False, env_set=True)
    # with FlashInfer present nothing changes: Pascal is refused, Ampere+ uses it
    for tree in (pristine, patched):
        assert _sampler_supported(tree, pascal, flashinfer=True, env_set=False) is False
        assert _sampler_supported(tree, (8, 6), flashinfer=True, env_set=False) is True

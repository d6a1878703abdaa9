"""The second stack, vLLM 0.11.0 -> PyTorch 2.8.0 -> Triton 3.4.0 (CUDA 12.9): pins, patch library,
patches proven on the real pinned sources, and what the rebased patches do."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pascal_forge.cli import main
from pascal_forge.errors import PatchLibraryError
from pascal_forge.stack.library import load_patch_library
from pascal_forge.stack.model import Source, Spec
from pascal_forge.stack.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
STACK = "vllm-0.11.0"


def stack2_spec() -> Spec:
    return load_spec()


def test_second_stack_is_pinned_and_the_default_stays() -> None:
    spec = stack2_spec()
    assert spec.default_stack == "vllm-0.8.5"
    stack = spec.stack(STACK)
    assert (stack.vllm, stack.torch, stack.triton, stack.cuda) == ("0.11.0", "2.8.0", "3.4.0", "12.9")
    assert stack.python == ("3.13",)  # the only public record of the conda-forge artifact
    assert spec.stack_for("vllm", "0.11.0") is stack
    for src in stack.sources:
        assert (src.url and len(src.sha256) == 64) or (src.git and len(src.rev) == 40), src
        assert src.pinned_by
    overlay = [s for s in stack.sources_for("pytorch-pascal") if s.patched]
    assert [s.file_name for s in overlay] == ["pytorch-2.8.0-cuda129_mkl_py313_h7947483_302.conda"]


def test_each_upstream_of_the_second_stack_has_its_own_series() -> None:
    spec = stack2_spec()
    ids = {
        up: [p.id for p in spec.patches_for(up, spec.stack(STACK).version_of(up))]
        for up in ("vllm", "torch", "triton")
    }
    assert ids == {
        "vllm": [
            "cmake-pascal-archs",
            "moe-wna16-half-atomicadd",
            "gguf-sm60-dp4a",
            "flash-attn-skip-kernels-without-sm80",
        ],
        "torch": ["inductor-gate-utils-triton", "inductor-gate-scheduler", "inductor-gate-is-triton-capable"],
        "triton": ["no-l1-eviction-hints-before-sm70"],
    }
    # The default stack's series is untouched by the new entries.
    default = spec.stack()
    assert len(spec.patches_for("vllm", default.vllm)) == 6
    assert [p.id for p in spec.patches_for("triton", default.triton)] == [
        "dot-fp16-promotion-extf",
        "no-l1-eviction-hints-before-sm70",
    ]


def _library(tmp_path: Path, entries: str) -> Path:
    lib = tmp_path / "lib"
    (lib / "vllm").mkdir(parents=True)
    (lib / "vllm" / "a.patch").write_text("--- a/f\n+++ b/f\n")
    (lib / "vllm" / "series.toml").write_text(entries)
    return lib


ENTRY = """
[[patch]]
id = "same-id"
file = "a.patch"
versions = "{versions}"
targets = ["f"]
reason = "why"
proof = "how"
"""


def test_an_id_may_repeat_for_another_version_range(tmp_path: Path) -> None:
    lib = _library(tmp_path, ENTRY.format(versions="==0.8.5") + ENTRY.format(versions="==0.11.0"))
    entries = load_patch_library(lib, ("vllm",))
    assert [(p.id, p.versions) for p in entries] == [("same-id", "==0.8.5"), ("same-id", "==0.11.0")]


def test_an_id_twice_for_the_same_range_is_refused(tmp_path: Path) -> None:
    lib = _library(tmp_path, ENTRY.format(versions="==0.8.5") * 2)
    with pytest.raises(PatchLibraryError, match=r"duplicate patch id 'same-id' for versions '==0\.8\.5'"):
        load_patch_library(lib, ("vllm",))


def test_overlapping_ranges_of_one_id_are_refused_for_the_stack_they_hit(tmp_path: Path) -> None:
    """Two entries of one id that both select a stack's version would apply one fix twice."""
    lib = tmp_path / "lib"
    shutil.copytree(ROOT / "generator" / "pascal_forge" / "stack" / "patchlib", lib)
    series = lib / "vllm" / "series.toml"
    text = series.read_text()
    text = text.replace('versions = "==0.11.0"', 'versions = ">=0.11.0"', 1)  # cmake-pascal-archs
    text = text.replace('versions = ">=0.8.5,<0.8.6"', 'versions = ">=0.8.5"', 1)
    series.write_text(text)
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text('patch_library = "lib"\n')
    with pytest.raises(PatchLibraryError, match=r"vllm 0\.11\.0 \(stack vllm-0\.11\.0\).*cmake-pascal-archs"):
        load_spec(spec_file)


# ---- on the real pinned sources --------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("package", ["vllm-pascal", "pytorch-pascal"])
def test_check_passes_for_the_second_stack(package: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--vllm", "0.11.0", "--package", package, "--json"]) == 0
    (recipe,) = json.loads(capsys.readouterr().out)
    assert recipe["patches"]
    assert all(p["ok"] and p["result"] == "applies cleanly" for p in recipe["patches"])
    assert "verified" in recipe["verified"]
    if package == "pytorch-pascal":
        assert "torch-2.8.0-cp313-cp313-manylinux_2_28_x86_64.whl" in recipe["verified"]


def _vllm_trees(tmp_path: Path) -> tuple[Path, Path]:
    """(pristine, patched) copies of the pinned vLLM 0.11.0 sdist."""
    from pascal_forge.stack.patches import apply_series
    from pascal_forge.stack.sources import default_cache_dir, obtain

    spec = stack2_spec()
    stack = spec.stack(STACK)
    src = obtain(stack.patched_source("vllm-pascal"), default_cache_dir()).tree
    pristine, patched = tmp_path / "pristine", tmp_path / "patched"
    shutil.copytree(src, pristine, symlinks=True)
    shutil.copytree(src, patched, symlinks=True)
    results = apply_series(patched, spec.patches_for("vllm", stack.vllm))
    assert all(r.ok for r in results), [r.summary for r in results]
    return pristine, patched


@pytest.mark.integration
def test_patched_cmake_keeps_pascal_and_selects_the_patched_sources(tmp_path: Path) -> None:
    from pascal_forge.verify import cmake_archs

    pristine, patched = _vllm_trees(tmp_path)
    sel = cmake_archs.select_sources((patched / "CMakeLists.txt").read_text(), patched, ("6.0", "6.1"))
    assert sel.cuda_archs == ("6.0", "6.1")
    cuda = sorted(u.source for u in sel.units if u.source.endswith(".cu"))
    assert len(cuda) == 34
    assert "csrc/moe/moe_wna16.cu" in cuda
    assert "csrc/quantization/gguf/gguf_kernel.cu" in cuda
    before = cmake_archs.select_sources((pristine / "CMakeLists.txt").read_text(), pristine, ("6.0", "6.1"))
    assert before.cuda_archs == ()
    assert not [u for u in before.units if u.source.endswith(".cu")]
    # The two shared patch files land on byte-identical upstream files (0.8.5's proofs carry over).
    assert (pristine / "csrc/moe/moe_wna16.cu").read_bytes() == (
        _default_vllm_tree() / "csrc/moe/moe_wna16.cu"
    ).read_bytes()
    assert (pristine / "csrc/quantization/gguf/vecdotq.cuh").read_bytes() == (
        _default_vllm_tree() / "csrc/quantization/gguf/vecdotq.cuh"
    ).read_bytes()


def _default_vllm_tree() -> Path:
    from pascal_forge.stack.sources import default_cache_dir, obtain

    return obtain(load_spec().stack().patched_source("vllm-pascal"), default_cache_dir()).tree


FORK_CMAKELISTS = """cmake_minimum_required(VERSION 3.26)
project(vllm_flash_attn LANGUAGES NONE)
message(STATUS "stand-in fork: CMakeLists.txt added")
add_custom_target(_vllm_fa2_C)
add_custom_target(_vllm_fa3_C)
"""


def _cmake() -> str:
    for candidate in (Path(sys.executable).parent / "cmake", shutil.which("cmake")):
        if candidate and Path(candidate).is_file():
            out = subprocess.run([str(candidate), "--version"], capture_output=True, text=True, check=True)
            major, minor = (int(x) for x in out.stdout.split()[2].split(".")[:2])
            if (major, minor) >= (3, 26):
                return str(candidate)
    pytest.skip("needs cmake >= 3.26 (vLLM 0.11.0's minimum); pip install 'pascal-forge[test]' brings it")


def _configure_flash_attn(cmake: str, tree: Path, work: Path, archs: str) -> tuple[str, list[str]]:
    """Configure a project that includes vLLM's vllm_flash_attn.cmake like vLLM's CMakeLists does,
    build the two targets setup.py asks for, install component _vllm_fa2_C; return the configure
    log and the installed files. The fork is a stand-in (GitHub is out of reach): a CMakeLists.txt
    that announces itself and two Python files."""
    fork = work / "fork"
    (fork / "vllm_flash_attn" / "layers").mkdir(parents=True, exist_ok=True)
    (fork / "vllm_flash_attn" / "__init__.py").write_text("")
    (fork / "vllm_flash_attn" / "layers" / "rotary.py").write_text("")
    (fork / "CMakeLists.txt").write_text(FORK_CMAKELISTS)
    proj = work / "proj"
    proj.mkdir(exist_ok=True)
    (proj / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.26)\n"
        "project(probe LANGUAGES NONE)\n"
        "include(FetchContent)\n"
        f'include("{tree}/cmake/utils.cmake")\n'
        'set(VLLM_GPU_LANG "CUDA")\n'
        'set(CUDA_ARCHS "${PROBE_ARCHS}")\n'
        f'include("{tree}/cmake/external_projects/vllm_flash_attn.cmake")\n'
    )
    tag = archs.replace(";", "_")  # a ';' in a path breaks CMake lists
    build, prefix = work / f"build-{tag}", work / f"prefix-{tag}"
    env = {"PATH": "/usr/bin:/bin", "VLLM_FLASH_ATTN_SRC_DIR": str(fork)}
    conf = subprocess.run(
        [cmake, "-S", str(proj), "-B", str(build), f"-DPROBE_ARCHS={archs}"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert conf.returncode == 0, conf.stdout + conf.stderr
    for cmd in (
        [cmake, "--build", str(build), "--target", "_vllm_fa2_C", "_vllm_fa3_C"],
        [cmake, "--install", str(build), "--prefix", str(prefix), "--component", "_vllm_fa2_C"],
    ):
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
    files = sorted(p.relative_to(prefix).as_posix() for p in prefix.rglob("*") if p.is_file())
    return conf.stdout, files


@pytest.mark.integration
def test_flash_attn_kernels_are_skipped_for_pascal_only_archs(tmp_path: Path) -> None:
    cmake = _cmake()
    pristine, patched = _vllm_trees(tmp_path)
    want = ["vllm/vllm_flash_attn/__init__.py", "vllm/vllm_flash_attn/layers/rotary.py"]

    log, files = _configure_flash_attn(cmake, patched, tmp_path / "patched-pascal", "6.0;6.1")
    assert "skipping the vllm-flash-attn kernels" in log
    assert "stand-in fork: CMakeLists.txt added" not in log
    assert files == want

    log, files = _configure_flash_attn(cmake, patched, tmp_path / "patched-ampere", "6.0;6.1;8.6")
    assert "stand-in fork: CMakeLists.txt added" in log
    assert files == want

    log, _ = _configure_flash_attn(cmake, pristine, tmp_path / "pristine-pascal", "6.0;6.1")
    assert "stand-in fork: CMakeLists.txt added" in log  # what the patch avoids


# ---- triton 3.4.0: the generated package test catches stock triton --------------------------

# The PyPI triton 3.4.0 wheel for this interpreter (compile-only use: it bundles ptxas 12.8).
TRITON_340_CP311 = Source(
    recipe="triton-pascal",
    name="triton-3.4.0-wheel",
    pinned_by="PyPI Simple API (PEP 691 JSON)",
    url="https://files.pythonhosted.org/packages/7d/39/43325b3b651d50187e591eefa22e236b2981afcebaefd4f2fc0ea99df191/triton-3.4.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
    sha256="7b70f5e6a41e52e48cfc087436c8a28c17ff98db369447bcaff3b887a3ab4467",
)

# Emulates the patched C++ lowering: PTX below sm_70 without the two L1 eviction modifiers (the
# patch leaves them out in the ld/st lowering; the rest of the PTX is unchanged, see notes).
EMULATE_PATCH = """
import runpy, sys
from triton.backends.nvidia import compiler as nvc
orig = nvc.CUDABackend.make_ptx
def make_ptx(self, src, metadata, opt, capability):
    ptx = orig(self, src, metadata, opt, capability)
    if capability < 70:
        ptx = ptx.replace(".L1::evict_last", "").replace(".L1::evict_first", "")
    return ptx
nvc.CUDABackend.make_ptx = make_ptx
runpy.run_path(sys.argv[1], run_name="__main__")
"""


@pytest.mark.integration
def test_triton_package_test_fails_stock_and_passes_patched_lowering(tmp_path: Path) -> None:
    if sys.version_info[:2] != (3, 11):
        pytest.skip("pins the cp311 triton 3.4.0 wheel; this interpreter is not 3.11")
    from pascal_forge.stack.sources import default_cache_dir, download

    wheel = download(TRITON_340_CP311, default_cache_dir())
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    for tool in (site / "triton" / "backends" / "nvidia" / "bin").iterdir():
        tool.chmod(0o755)
    check = ROOT / "recipes" / "vllm-0.11.0" / "triton-pascal" / "pascal_check.py"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "TRITON_CACHE_DIR": str(tmp_path / "cache")}
    stock = subprocess.run(
        [sys.executable, str(check)], capture_output=True, text=True, env=env, cwd=tmp_path, check=False
    )
    assert stock.returncode != 0
    assert "Modifier '.evict_last' on 'ld' requires .target sm_70 or higher" in stock.stderr
    (tmp_path / "emulate.py").write_text(EMULATE_PATCH)
    patched = subprocess.run(
        [sys.executable, str(tmp_path / "emulate.py"), str(check)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert patched.returncode == 0, patched.stderr[-3000:]
    assert "sm_60: fp16 tl.dot compiled" in patched.stdout
    assert "sm_61: fp16 tl.dot compiled" in patched.stdout
    # conda-forge's GPU-less check: TTGIR through triton.compile to PTX and a cubin
    assert "sm_60: TTGIR compiled to PTX and a" in patched.stdout
    assert "sm_61: TTGIR compiled to PTX and a" in patched.stdout


# ---- the generated pytorch package test against a real torch (opt-in: ~3 GB of wheels) --------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("stack_name", "tree", "env"),
    [
        ("vllm-0.8.5", "recipes/vllm-0.8.5", "PASCAL_FORGE_TORCH_2_6_0_PYTHON"),
        (STACK, "recipes/vllm-0.11.0", "PASCAL_FORGE_TORCH_2_8_0_PYTHON"),
    ],
)
def test_pytorch_package_test_on_a_real_torch(stack_name: str, tree: str, env: str, tmp_path: Path) -> None:
    """pascal_check.py of the overlay fails on the stock torch files and passes once the series is applied.

    Needs a Python where the PyPI torch of the stack is installed (`pip install torch==X`, about 3 GB with
    its nvidia-* wheels; no GPU needed), named by the environment variable; skipped otherwise."""
    import os

    python = os.environ.get(env)
    if not python:
        pytest.skip(f"set {env} to a Python with the stack's PyPI torch installed (about 3 GB)")
    spec = load_spec()
    stack = spec.stack(stack_name)
    site = Path(
        subprocess.run(
            [python, "-c", "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    subprocess.run(["cp", "-al", str(site / "torch"), str(overlay / "torch")], check=True)
    for patch in spec.patches_for("torch", stack.torch):
        for target in patch.targets:  # break the hard links of the files the series rewrites
            path = overlay / target
            data = path.read_bytes()
            path.unlink()
            path.write_bytes(data)
    check = ROOT / tree / "pytorch-pascal" / "pascal_check.py"

    def run(pythonpath: Path | None) -> subprocess.CompletedProcess[str]:
        env_vars = {"PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore"}
        if pythonpath is not None:
            env_vars["PYTHONPATH"] = str(pythonpath)
        return subprocess.run(
            [python, str(check)], capture_output=True, text=True, env=env_vars, cwd=tmp_path, check=False
        )

    stock = run(None)
    assert stock.returncode != 0
    assert "has_triton() rejects cc 6.x" in stock.stderr
    for patch in spec.patches_for("torch", stack.torch):
        subprocess.run(["patch", "-p1", "-F0", "-s", "-i", str(patch.path)], cwd=overlay, check=True)
    patched = run(overlay)
    assert patched.returncode == 0, patched.stderr[-3000:]
    assert "Inductor gates accept cc 6.0/6.1/7.0 and still reject 5.2" in patched.stdout


@pytest.mark.integration
def test_second_stack_run_requirements_match_its_sdist() -> None:
    """vllm-pascal's derived run block of the second stack equals a fresh derivation from its sdist,
    and rewriting it in place leaves the spec (and the default stack's block) unchanged."""
    from pascal_forge.stack.sources import default_cache_dir, obtain
    from pascal_forge.stack.spec import builtin_spec_path
    from pascal_forge.update.requirements import derived_block, replace_block

    stack = load_spec().stack(STACK)
    tree = obtain(stack.patched_source("vllm-pascal"), default_cache_dir()).tree
    block = derived_block(stack.vllm, stack.torch, stack.triton, stack.python, tree)
    text = builtin_spec_path().read_text("utf-8")
    assert block in text, "stale: run `pascal-forge derive-requirements --stack vllm-0.11.0 --write`"
    assert replace_block(text, block, "spec", STACK) == text
    run = {d.spec for d in stack.requirements["vllm-pascal"].run}
    assert {"pytorch ==2.8.0 *pascal*", "triton ==3.4.0 *pascal*", "xformers ==0.0.32.post1"} <= run

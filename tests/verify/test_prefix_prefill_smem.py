"""Shared memory of vLLM 0.8.5's prefix-prefill Triton kernels on Pascal, after our patch series.

What this proves
----------------
Patch ``prefix-prefill-pascal-tiles`` makes ``context_attention_fwd`` pick its tiles with
``_tile_sizes()``. Here every ``_fwd_kernel`` / ``_fwd_kernel_alibi`` variant that it picks on
Pascal (head sizes 64, 80, 96, 112, 128, 256; fp16 for cc 6.1 and 6.0, float32 for cc 6.1) is
compiled by Triton 3.2.0 for ``GPUTarget("cuda", 61 or 60, 32)`` and its compiled
``metadata.shared`` must be <= 49152 bytes (48 KB, the per-block limit of sm_60/sm_61). For
cc >= 7.0 (8.0 among them) the chosen tiles must be upstream's (128x64 for the main launch,
BASE_BLOCK = 128 from 8.0 on for ALiBi, halved for float32). Negative checks: upstream's 128x64
tile for head size 128 needs 65536 bytes on Pascal, so choosing it fails this test; and for a
sample of variants the next larger tile is compiled too and overflows, so the chosen one is the
largest that fits. KV cache block size 16 (vLLM's default); the one case no tile fixes, float32
with head size 256 and block size 32 (51200 bytes at BLOCK_M=16), is documented in the patch.

What is real
------------
* The PyPI sdist vllm-0.8.5.tar.gz (sha256-checked), the whole vLLM series applied in
  series.toml order with ``patch -p1 -F0`` (no fuzz).
* The kernels: ``_fwd_kernel`` and ``_fwd_kernel_alibi`` are cut out of the patched
  prefix_prefill.py with ``ast`` (with their ``@triton.jit``), unmodified, and compiled with the
  launch arguments context_attention_fwd passes (strides of a real fp16 KV cache, x = 8,
  KV block size 16, num_unroll_cache=4, num_warps 4 / 8, num_stages=1). Arguments equal to 1
  and pointers are specialised the way Triton's JIT does it (AttrsDescriptor from the values).
* The tile choice: ``_tile_sizes`` is cut out of the same file and executed unmodified.
* Triton 3.2.0 from PyPI, compile-only (no GPU, no CUDA driver needed: the target is given).

What is emulated, exactly
-------------------------
Stock Triton 3.2.0 cannot compile an fp16 ``tl.dot`` for cc < 7.0: AccelerateMatmul's
``promoteOperand`` converts the fp16 dot operands to the fp32 accumulator type with a
``tt.fp_to_fp`` op whose LLVM lowering aborts ("Unsupported conversion from f16 to f16 ...
Unsupported rounding mode for conversion", see test_stock_triton_aborts_on_fp16_dot). Our Pascal
Triton build changes ``promoteOperand`` to emit a plain float extension (``arith.extf``) instead.
The emulation reproduces that at the same point of the pipeline: the TTGIR stage of the CUDA
backend is replaced, for cc < 70 only, by Triton 3.2.0's own ``make_ttgir`` pass list for
cc < 80, split after ``add_accelerate_matmul``; between the halves every
``tt.fp_to_fp`` (f16 -> f32) in the module text is rewritten to ``arith.extf`` and the module is
re-parsed. Nothing else changes, and test_emulation_matches_stock_when_nothing_is_promoted
checks that the split pipeline gives the stock result when there is nothing to promote (fp32).
The numbers match the field report for the upstream tile: 65536 bytes for head size 128
(vllm PR #11584: "Required: 65536, Hardware limit: 49152" on a P40).

Where the sdist comes from
--------------------------
The ``trees`` fixture takes the spec's pinned PyPI sdist through pascal_forge.stack.sources (downloaded
into the cache, sha256-verified) and applies the whole vLLM series with pascal_forge.stack.patches, as
`pascal-forge check` does.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from pascal_forge.stack.patches import apply_series
from pascal_forge.stack.sources import default_cache_dir, obtain
from pascal_forge.stack.spec import load_spec

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KERNEL_FILE = "vllm/attention/ops/prefix_prefill.py"

SMEM_LIMIT = 49152  # shared memory per block on sm_60 / sm_61
HEAD_SIZES = (64, 80, 96, 112, 128, 256)
UPSTREAM_MAIN_TILE = (128, 64)  # BLOCK_M=128 / BLOCK_N=64 hard-coded in the _fwd_kernel launch


def _base_block(cc: tuple[int, int]) -> int:
    """Upstream's BASE_BLOCK (prefix_prefill.py line 13): 128 from cc 8.0 on, else 64."""
    return 128 if cc >= (8, 0) else 64


# --------------------------------------------------------------------------------------------
# sources: the same stages `pascal-forge check` uses (pinned sdist, verified, series applied)


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The pristine sdist and a copy with the whole vLLM series applied in order, without fuzz."""
    spec = load_spec()
    stack = spec.stack()
    vllm = stack.patched_source("vllm-pascal")
    obtained = obtain(vllm, default_cache_dir())
    pristine = tmp_path_factory.mktemp("pristine") / "vllm-0.8.5"
    patched = tmp_path_factory.mktemp("patched") / "vllm-0.8.5"
    shutil.copytree(obtained.tree, pristine)
    shutil.copytree(obtained.tree, patched)
    for result in apply_series(patched, spec.patches_for("vllm", stack.vllm)):
        assert result.ok, f"{result.patch.file}: {result.summary}"
    return {"pristine": pristine, "patched": patched}


# --------------------------------------------------------------------------------------------
# code cut out of prefix_prefill.py


def _functions(path: Path, names: tuple[str, ...]) -> list[ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    assert sorted(n.name for n in found) == sorted(names), f"{path}: expected {names}"
    return found


def load_tile_sizes(tree: Path) -> Callable[..., tuple[int, int]]:
    """The patched ``_tile_sizes`` function, executed unmodified."""
    import triton

    (fn,) = _functions(tree / KERNEL_FILE, ("_tile_sizes",))
    namespace: dict[str, Any] = {"triton": triton, "Optional": Optional}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(tree / KERNEL_FILE), "exec"), namespace)  # noqa: S102
    tile_sizes: Callable[..., tuple[int, int]] = namespace["_tile_sizes"]
    return tile_sizes


def load_kernels(tree: Path, out_dir: Path) -> Any:
    """A module holding the two @triton.jit kernels of the patched file, source unchanged.

    Triton reads a kernel's source with ``inspect``, so the module is written to a real file.
    """
    kernels = _functions(tree / KERNEL_FILE, ("_fwd_kernel", "_fwd_kernel_alibi"))
    header = "import triton\nimport triton.language as tl\n\n\n"
    path = out_dir / "prefix_prefill_kernels.py"
    path.write_text(header + "\n\n\n".join(ast.unparse(k) for k in kernels) + "\n")
    spec = importlib.util.spec_from_file_location("prefix_prefill_kernels", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------
# compile-only Triton with the Pascal dot promotion


@contextlib.contextmanager
def pascal_dot_promotion(scratch: Path) -> Iterator[None]:
    """Emulate the Pascal Triton build's promoteOperand (fp16 -> fp32 by arith.extf) for cc < 70.

    See the module docstring. The pass list is Triton 3.2.0's CUDABackend.make_ttgir for
    capability < 80, split after add_accelerate_matmul.
    """
    from triton._C.libtriton import ir, nvidia, passes
    from triton.backends import backends

    cuda_backend = backends["nvidia"].compiler
    original = cuda_backend.add_stages

    def make_ttgir(mod: Any, metadata: dict[str, Any], opt: Any, capability: int) -> Any:
        cluster_info = nvidia.ClusterInfo()
        pm = ir.pass_manager(mod.context)
        pm.enable_debug()
        passes.ttir.add_convert_to_ttgpuir(pm, f"cuda:{capability}", opt.num_warps, 32, opt.num_ctas)
        passes.ttgpuir.add_coalesce(pm)
        nvidia.passes.ttnvgpuir.add_plan_cta(pm, cluster_info)
        passes.ttgpuir.add_remove_layout_conversions(pm)
        passes.ttgpuir.add_optimize_thread_locality(pm)
        passes.ttgpuir.add_accelerate_matmul(pm)
        pm.run(mod)

        lines = str(mod).split("\n")
        promoted = 0
        for i, line in enumerate(lines):
            if "tt.fp_to_fp" in line:
                lhs, rhs = line.split(" -> ")
                assert "xf16" in lhs, line
                assert "xf32" in rhs, line
                assert "rounding" not in line, line
                lines[i] = lhs.replace("tt.fp_to_fp", "arith.extf") + " to " + rhs
                promoted += 1
        metadata["pascal_promoted_operands"] = promoted
        context = mod.context
        ttgir = scratch / "promoted.ttgir"
        ttgir.write_text("\n".join(lines))
        mod = ir.parse_mlir_module(str(ttgir), context)
        mod.context = context
        ttgir.unlink()

        pm = ir.pass_manager(mod.context)
        pm.enable_debug()
        passes.ttgpuir.add_remove_layout_conversions(pm)
        passes.ttgpuir.add_optimize_dot_operands(pm, False)
        passes.common.add_cse(pm)
        passes.ttgpuir.add_prefetch(pm)
        passes.ttgpuir.add_optimize_dot_operands(pm, False)
        passes.ttgpuir.add_remove_layout_conversions(pm)
        passes.ttgpuir.add_reduce_data_duplication(pm)
        passes.ttgpuir.add_reorder_instructions(pm)
        passes.common.add_cse(pm)
        passes.common.add_symbol_dce(pm)
        passes.common.add_canonicalizer(pm)
        pm.run(mod)
        metadata["cluster_dims"] = (
            cluster_info.clusterDimX,
            cluster_info.clusterDimY,
            cluster_info.clusterDimZ,
        )
        return mod

    def add_stages(self: Any, stages: dict[str, Any], options: Any) -> None:
        original(self, stages, options)
        if self.capability < 70:
            stages["ttgir"] = lambda src, metadata: make_ttgir(src, metadata, options, self.capability)

    cuda_backend.add_stages = add_stages
    try:
        yield
    finally:
        cuda_backend.add_stages = original


class _Ptr:
    """A tensor argument as Triton's JIT sees it: a pointer type and a 16-byte aligned address."""

    def __init__(self, ty: str) -> None:
        self.ty = ty

    @staticmethod
    def data_ptr() -> int:
        return 0


def fwd_args(
    head: int, block_m: int, block_n: int, *, dtype: str = "fp16", kv_block: int = 16
) -> dict[str, Any]:
    """_fwd_kernel's arguments as context_attention_fwd passes them (32 query and KV heads)."""
    x = 16 // (2 if dtype == "fp16" else 4)  # k_cache is [blocks, kv_heads, head/x, block, x]
    heads = 32
    t = "*" + dtype
    return {
        "Q": _Ptr(t), "K": _Ptr(t), "V": _Ptr(t), "K_cache": _Ptr(t), "V_cache": _Ptr(t),
        "B_Loc": _Ptr("*i32"), "sm_scale": 1.0 / head**0.5, "k_scale": _Ptr("*fp32"),
        "v_scale": _Ptr("*fp32"), "B_Start_Loc": _Ptr("*i32"), "B_Seqlen": _Ptr("*i32"), "x": x,
        "Out": _Ptr(t), "stride_b_loc_b": 256, "stride_b_loc_s": 1,
        "stride_qbs": heads * head, "stride_qh": head, "stride_qd": 1,
        "stride_kbs": heads * head, "stride_kh": head, "stride_kd": 1,
        "stride_vbs": heads * head, "stride_vh": head, "stride_vd": 1,
        "stride_obs": heads * head, "stride_oh": head, "stride_od": 1,
        "stride_k_cache_bs": heads * head * kv_block, "stride_k_cache_h": head * kv_block,
        "stride_k_cache_d": kv_block * x, "stride_k_cache_bl": x, "stride_k_cache_x": 1,
        "stride_v_cache_bs": heads * head * kv_block, "stride_v_cache_h": head * kv_block,
        "stride_v_cache_d": kv_block, "stride_v_cache_bl": 1,
        "num_queries_per_kv": 1, "IN_PRECISION": None,
        "BLOCK_M": block_m, "BLOCK_DMODEL": head, "BLOCK_DMODEL_PADDED": 1 << (head - 1).bit_length(),
        "BLOCK_SIZE": kv_block, "BLOCK_N": block_n, "SLIDING_WINDOW": 0,
        "num_unroll_cache": 4, "num_unroll_request": 1, "SKIP_DECODE": False,
        "MAX_Q_LEN": 0, "MAX_CTX_LEN": 0,
    }  # fmt: skip


def alibi_args(head: int, block: int, *, dtype: str = "fp16", kv_block: int = 16) -> dict[str, Any]:
    """_fwd_kernel_alibi's arguments (BLOCK_M == BLOCK_N == BLOCK, as upstream launches it)."""
    args = fwd_args(head, block, block, dtype=dtype, kv_block=kv_block)
    for name in (
        "BLOCK_SIZE",
        "SLIDING_WINDOW",
        "num_unroll_cache",
        "num_unroll_request",
        "MAX_Q_LEN",
        "MAX_CTX_LEN",
    ):
        del args[name]
    args |= {"Alibi_slopes": _Ptr("*fp32"), "block_size": kv_block}
    return args


def _ast_source(kernel: Any, args: dict[str, Any], target: Any) -> Any:
    """The kernel specialised the way Triton's JIT does it for these argument values."""
    from triton.compiler import ASTSource, make_backend

    values = [args[p.name] for p in kernel.params]
    attrs = make_backend(target).get_attrs_descriptor(kernel.params, values)
    equal_to_1 = attrs.get_constants()
    constants = {
        p.name: v for p, v in zip(kernel.params, values, strict=True)
        if p.is_constexpr or p.num in equal_to_1 or v is None
    }  # fmt: skip
    signature = {
        p.name: v.ty if isinstance(v, _Ptr) else "fp32" if isinstance(v, float) else "i32"
        for p, v in zip(kernel.params, values, strict=True)
        if not p.is_constexpr
    }
    return ASTSource(kernel, signature, constants, attrs)


def compile_shared(
    kernel: Any, args: dict[str, Any], cc: int, num_warps: int, scratch: Path, *, promote: bool = True
) -> tuple[int, int]:
    """Compile for cc without a GPU; return (metadata.shared, dot operands promoted)."""
    import triton
    from triton.backends.compiler import GPUTarget

    target = GPUTarget("cuda", cc, 32)
    options = {"num_warps": num_warps, "num_stages": 1}
    with pascal_dot_promotion(scratch) if promote else contextlib.nullcontext():
        compiled = triton.compile(_ast_source(kernel, args, target), target=target, options=options)
    return compiled.metadata.shared, getattr(compiled.metadata, "pascal_promoted_operands", 0)


@pytest.fixture(scope="module")
def compiler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Triton 3.2.0 with a private cache; every variant is compiled, never taken from a cache."""
    triton = pytest.importorskip("triton")
    if triton.__version__ != "3.2.0":
        pytest.skip(f"the emulated pass list is Triton 3.2.0's; found triton {triton.__version__}")
    scratch = tmp_path_factory.mktemp("triton")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_CACHE_DIR", str(scratch / "cache"))
        mp.setenv("TRITON_ALWAYS_COMPILE", "1")
        yield scratch


@pytest.fixture(scope="module")
def kernels(trees: dict[str, Path], compiler: Path) -> Any:
    return load_kernels(trees["patched"], compiler)


# --------------------------------------------------------------------------------------------
# the launch paths


def _launches(tree: Path) -> dict[str, dict[str, ast.expr]]:
    """BLOCK_M / BLOCK_N keyword values of every ``_fwd_kernel*[grid](...)`` launch."""
    module = ast.parse((tree / KERNEL_FILE).read_text())
    launches = {}
    for node in ast.walk(module):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Subscript)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id.startswith("_fwd_kernel")
        ):
            keywords = {k.arg: k.value for k in node.keywords if k.arg in ("BLOCK_M", "BLOCK_N")}
            launches[node.func.value.id] = keywords
    return launches


def test_every_launch_takes_its_tile_from_the_selection(trees: dict[str, Path]) -> None:
    """No launch keeps a literal tile: both go through variables set from _tile_sizes()."""
    pristine = _launches(trees["pristine"])
    assert ast.unparse(pristine["_fwd_kernel"]["BLOCK_M"]) == "128"  # what the check would catch
    patched = _launches(trees["patched"])
    assert set(patched) == {"_fwd_kernel", "_fwd_kernel_alibi"}
    source = (trees["patched"] / KERNEL_FILE).read_text()
    for kernel, keywords in patched.items():
        assert set(keywords) == {"BLOCK_M", "BLOCK_N"}, kernel
        for value in keywords.values():
            assert isinstance(value, ast.Name), f"{kernel}: literal tile {ast.unparse(value)}"
    assert "BLOCK_M, BLOCK_N = _tile_sizes(128, 64, Lk, q_dtype_is_f32, capability," in source
    assert "BLOCK, _ = _tile_sizes(BLOCK, BLOCK, Lk, q_dtype_is_f32, capability," in source
    base_block = "BASE_BLOCK = 128 if current_platform.has_device_capability(80) else 64"
    assert base_block in source
    assert base_block in (trees["pristine"] / KERNEL_FILE).read_text()


@pytest.mark.parametrize("cc", [(7, 0), (7, 5), (8, 0), (8, 6), (9, 0)])
def test_volta_and_newer_keep_upstream_tiles(trees: dict[str, Path], cc: tuple[int, int]) -> None:
    tile_sizes = load_tile_sizes(trees["patched"])
    base = _base_block(cc)
    for head in HEAD_SIZES:
        for f32 in (False, True):
            assert tile_sizes(*UPSTREAM_MAIN_TILE, head, f32, cc, SMEM_LIMIT) == UPSTREAM_MAIN_TILE
            # and the shared-memory limit plays no part there
            assert tile_sizes(*UPSTREAM_MAIN_TILE, head, f32, cc, None) == UPSTREAM_MAIN_TILE
        assert tile_sizes(base, base, head, False, cc, SMEM_LIMIT) == (base, base)  # ALiBi, fp16
        assert tile_sizes(base // 2, base // 2, head, True, cc, SMEM_LIMIT) == (base // 2, base // 2)  # fp32
    if cc == (8, 0):
        assert base == 128


def _pascal_variants() -> list[tuple[str, int, int, str]]:
    fp16 = [(path, head, cc, "fp16") for cc in (61, 60) for head in HEAD_SIZES for path in ("main", "alibi")]
    # float32 matters on sm_61 (P40, GTX 10xx), whose fp16 arithmetic is slow
    fp32 = [(path, head, 61, "fp32") for head in HEAD_SIZES for path in ("main", "alibi")]
    return fp16 + fp32


def _chosen(tree: Path, path: str, head: int, cc: int, dtype: str) -> tuple[int, int]:
    """The tile context_attention_fwd launches on a device of compute capability cc."""
    tile_sizes = load_tile_sizes(tree)
    capability = divmod(cc, 10)
    f32 = dtype == "fp32"
    if path == "main":
        return tile_sizes(*UPSTREAM_MAIN_TILE, head, f32, capability, SMEM_LIMIT)
    base = _base_block(capability) // (2 if f32 else 1)  # upstream: BASE_BLOCK // 2 for float32
    return tile_sizes(base, base, head, f32, capability, SMEM_LIMIT)


def _shared(
    kernels: Any, scratch: Path, path: str, head: int, tile: tuple[int, int], cc: int, dtype: str
) -> int:
    if path == "main":
        args, kernel, warps = fwd_args(head, *tile, dtype=dtype), kernels._fwd_kernel, 4
    else:
        args, kernel, warps = alibi_args(head, tile[0], dtype=dtype), kernels._fwd_kernel_alibi, 8
    shared, promoted = compile_shared(kernel, args, cc, warps, scratch)
    assert (promoted > 0) == (dtype == "fp16")  # fp16 dots really went through the Pascal promotion
    print(
        f"\nsmem cc={cc} {path:5} {dtype} head={head:3} BLOCK_M={tile[0]:3} BLOCK_N={tile[1]:3}: {shared} bytes"
    )
    return shared


@pytest.mark.parametrize(("path", "head", "cc", "dtype"), _pascal_variants())
def test_pascal_tiles_fit_shared_memory(
    trees: dict[str, Path], kernels: Any, compiler: Path, path: str, head: int, cc: int, dtype: str
) -> None:
    tile = _chosen(trees["patched"], path, head, cc, dtype)
    if path == "alibi":
        assert tile[0] == tile[1]
    assert _shared(kernels, compiler, path, head, tile, cc, dtype) <= SMEM_LIMIT


@pytest.mark.parametrize(
    ("path", "head", "dtype", "chosen", "larger"),
    [
        ("main", 256, "fp16", (32, 32), (64, 64)),
        ("main", 64, "fp32", (64, 64), (128, 64)),
        ("main", 128, "fp32", (32, 32), (64, 64)),
        ("alibi", 256, "fp16", (32, 32), (64, 64)),
    ],
)
def test_pascal_tile_is_the_largest_that_fits(
    trees: dict[str, Path],
    kernels: Any,
    compiler: Path,
    path: str,
    head: int,
    dtype: str,
    chosen: tuple[int, int],
    larger: tuple[int, int],
) -> None:
    """The next larger tile (BLOCK_M doubled) really overflows 48 KB, measured, on sm_61.

    (main/128/fp16 is test_upstream_tile_overflows_on_pascal: its next larger tile is upstream's.)
    """
    assert _chosen(trees["patched"], path, head, 61, dtype) == chosen
    assert _shared(kernels, compiler, path, head, larger, 61, dtype) > SMEM_LIMIT


def test_upstream_tile_overflows_on_pascal(kernels: Any, compiler: Path) -> None:
    """Negative control: upstream's 128x64 for head size 128 does not fit 48 KB on sm_61."""
    shared = _shared(kernels, compiler, "main", 128, UPSTREAM_MAIN_TILE, 61, "fp16")
    assert shared > SMEM_LIMIT
    assert shared == 65536  # vllm PR #11584's P40 report: "Required: 65536, Hardware limit: 49152"


def test_emulation_matches_stock_when_nothing_is_promoted(kernels: Any, compiler: Path) -> None:
    """With fp32 inputs there is nothing to promote: the split pipeline must equal stock Triton."""
    args = fwd_args(64, 32, 32, dtype="fp32")
    emulated, promoted = compile_shared(kernels._fwd_kernel, args, 61, 4, compiler)
    stock, _ = compile_shared(kernels._fwd_kernel, args, 61, 4, compiler, promote=False)
    print(f"\nsmem cc=61 main  head= 64 BLOCK_M= 32 BLOCK_N= 32 fp32: stock {stock}, emulated {emulated}")
    assert promoted == 0
    assert stock == emulated


STOCK_FP16_DOT = textwrap.dedent(
    """
    import triton, triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    @triton.jit
    def dot16(A, B, C):
        i = tl.arange(0, 16)
        a = tl.load(A + i[:, None] * 16 + i[None, :])
        b = tl.load(B + i[:, None] * 16 + i[None, :])
        tl.store(C + i[:, None] * 16 + i[None, :], tl.dot(a, b))

    src = ASTSource(dot16, {"A": "*fp16", "B": "*fp16", "C": "*fp32"})
    triton.compile(src, target=GPUTarget("cuda", 61, 32))
    print("compiled")
    """
)


def test_stock_triton_aborts_on_fp16_dot(compiler: Path) -> None:
    """Why the promotion is emulated: stock Triton 3.2.0 aborts on an fp16 tl.dot for sm_61."""
    script = compiler / "stock_fp16_dot.py"  # Triton reads kernel source from a file
    script.write_text(STOCK_FP16_DOT)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode != 0
    assert "compiled" not in result.stdout
    assert "Unsupported conversion from f16 to f16" in result.stdout + result.stderr

"""Compile-only: the other Triton kernels of a vLLM 0.26.0 decode step on Pascal, for cc 6.0/6.1 with
stock triton 3.6.0 at the launch constants their wrappers pick; prints shared memory and registers.
reshape_and_cache_kernel_flash (TRITON_ATTN's KV-cache write), reduce_segments (the 3d decode's
second kernel) and _topk_topp_kernel (top-k/top-p for batches >= 8).
usage: python decode_kernels_smem.py OUT.json VLLM_DIR   (any Python with triton 3.6.0; no GPU, no torch)"""
import importlib.util, itertools, json, sys, types
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
OUT, V = sys.argv[1], sys.argv[2]
torch = types.ModuleType("torch")  # import-time stand-in: the kernels themselves use no torch
torch.finfo = lambda dt: types.SimpleNamespace(min=-448.0, max=448.0)
for _n in ("float8_e4m3fn", "int8", "uint8", "float16", "bfloat16", "float32", "int32", "int64"):
    setattr(torch, _n, _n)
torch.Tensor = object; torch.dtype = object; torch.device = object
sys.modules["torch"] = torch
def mod(name, **kw):
    m = types.ModuleType(name); m.__dict__.update(kw); sys.modules[name] = m; return m
for n in ("vllm", "vllm.v1", "vllm.v1.attention", "vllm.v1.attention.ops", "vllm.v1.sample", "vllm.v1.sample.ops",
          "vllm.model_executor", "vllm.model_executor.layers", "vllm.model_executor.layers.quantization",
          "vllm.model_executor.layers.quantization.utils", "vllm.utils"):
    mod(n)
mod("vllm.envs", VLLM_BATCH_INVARIANT=False)
mod("vllm.logger", init_logger=lambda n: types.SimpleNamespace(info=print, warning=print, debug=print))
mod("vllm.platforms", current_platform=types.SimpleNamespace(fp8_dtype=lambda: "fp8"))
mod("vllm.triton_utils", tl=tl, triton=triton)
mod("vllm.v1.kv_cache_interface", KVQuantMode=type("KVQuantMode", (), {"NONE": 0, "FP8_PER_TENSOR": 1}))
mod("vllm.model_executor.layers.quantization.utils.quant_utils", FP8_DTYPE="fp8", get_fp8_min_max=lambda: (-448.0, 448.0))
mod("vllm.utils.torch_utils", is_quantized_kv_cache=lambda d: False)
mod("vllm.utils.math_utils", next_power_of_2=triton.next_power_of_2)
mod("vllm.utils.platform_utils", num_compute_units=lambda i=0: 56)
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(spec)
    sys.modules[name] = m; spec.loader.exec_module(m); return m
load("vllm.v1.attention.ops.triton_attention_helpers", f"{V}/v1/attention/ops/triton_attention_helpers.py")
ua = load("vllm.v1.attention.ops.triton_unified_attention", f"{V}/v1/attention/ops/triton_unified_attention.py")
rc = load("vllm.v1.attention.ops.triton_reshape_and_cache_flash", f"{V}/v1/attention/ops/triton_reshape_and_cache_flash.py")
tk = load("vllm.v1.sample.ops.topk_topp_triton", f"{V}/v1/sample/ops/topk_topp_triton.py")

def build(fn, types_, consts, cc, **opts):
    sig = {n: ("constexpr" if n in consts else types_.get(n, "i64")) for n in fn.arg_names}
    src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs={n: consts[n] for n in consts})
    k = triton.compile(src, target=GPUTarget("cuda", cc, 32), options=opts)
    return dict(shared=k.metadata.shared, mma="mma" in k.asm["ptx"], cubin=len(k.asm["cubin"]) > 0)

rows = []
def row(**kw):
    try:
        kw.update(build(*kw.pop("args"), **kw.pop("opts", {})))
        kw["fits"] = kw["shared"] <= 49152
    except Exception as e:
        kw.pop("args", None); kw["error"] = str(e).splitlines()[-1][:200]
    rows.append(kw); print(json.dumps(kw), flush=True)

for cc, dt, head in itertools.product((60, 61), ("fp16", "fp32"), (64, 128, 256)):
    kvh, block = 8, 16
    n = kvh * head
    tile = min(512, triton.next_power_of_2(n))  # the wrapper's tile below cc 9.0
    ptrs = {"key_ptr": f"*{dt}", "value_ptr": f"*{dt}", "key_cache_ptr": f"*{dt}", "value_cache_ptr": f"*{dt}",
            "slot_mapping_ptr": "*i64", "k_scale": "*fp32", "v_scale": "*fp32"}
    consts = dict(num_heads=kvh, head_size=head, block_size=block, x=16 // (2 if dt == "fp16" else 4),
                  USE_HEAD_MAJOR_LAYOUT=False, FP8_KV_CACHE=False, TILE_SIZE=tile)
    row(kernel="reshape_and_cache_kernel_flash", cc=cc, dtype=dt, head=head, tile=tile,
        args=(rc.reshape_and_cache_kernel_flash, ptrs, consts, cc), opts=dict(num_warps=16, num_stages=10))
    for qpk in (1, 8):
        hp = triton.next_power_of_2(head)
        ptrs = {"output_ptr": f"*{dt}", "segm_output_ptr": "*fp32", "segm_max_ptr": "*fp32", "segm_expsum_ptr": "*fp32",
                "seq_lens_ptr": "*i32", "num_seqs": "i32", "out_scale_inv": "fp32", "query_start_len_ptr": "*i32"}
        consts = dict(num_query_heads=8 * qpk, TILE_SIZE=ua._get_tile_size(head, 0, 2 if dt == "fp16" else 4, is_prefill=False),
                      HEAD_SIZE=head, HEAD_SIZE_PADDED=hp, BLOCK_Q=16 // qpk, NUM_SEGMENTS_PER_SEQ=16, USE_FP8=False,
                      FP8_MIN=-448.0, FP8_MAX=448.0)
        row(kernel="reduce_segments", cc=cc, dtype=dt, head=head, qpk=qpk, args=(ua.reduce_segments, ptrs, consts, cc))
for cc, vocab, (k_on, p_on) in itertools.product((60, 61), (32000, 151936), ((True, False), (False, True), (True, True))):
    ptrs = {"LOGITS": "*fp32", "LOGITS_STRIDE_0": "i64", "BUFFER": "*fp32", "PERCENTILE_TO_STD_TABLE": "*fp32",
            "NORMAL_CDF_TO_SIGMA_TABLE": "*fp32", "K": "*i32", "P": "*fp32", "BATCH_SIZE": "i32"}
    consts = dict(VOCAB_SIZE=vocab, MASK_VALUE=float("-inf"), BLOCK_SIZE=8192, BLOCK_SIZE_TRUNC=4096,
                  TOPK_ENABLED=k_on, TOPP_ENABLED=p_on)
    row(kernel="_topk_topp_kernel", cc=cc, vocab=vocab, top_k=k_on, top_p=p_on, args=(tk._topk_topp_kernel, ptrs, consts, cc))
json.dump(rows, open(OUT, "w"), indent=1)
print(json.dumps({"rows": len(rows), "fit": sum(r.get("fits", False) for r in rows), "errors": sum("error" in r for r in rows)}))

"""Compile-only: vLLM 0.26.0 kernel_unified_attention (TRITON_ATTN, the backend cc 6.x gets) for cc 6.0/6.1
with stock triton 3.6.0, launch constants as unified_attention() picks them; prints shared memory."""
import sys, types, importlib.util, itertools, json
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
V = sys.argv[2] if len(sys.argv) > 2 else "/tmp/w26/b/vllm"  # <patched vLLM 0.26.0 tree>/vllm
# usage: python unified_attention_smem.py OUT.json VLLM_DIR   (any Python with triton 3.6.0; no GPU)
# import-time stand-ins for what the kernels' modules import (no torch/vllm here; the kernels use none of it)
torch = types.ModuleType("torch")
torch.finfo = lambda dt: types.SimpleNamespace(min=-448.0, max=448.0)
sys.modules["torch"] = torch
def mod(name, **kw):
    m = types.ModuleType(name); m.__dict__.update(kw); sys.modules[name] = m; return m
mod("vllm"); mod("vllm.envs", VLLM_BATCH_INVARIANT=False)
mod("vllm.logger", init_logger=lambda n: types.SimpleNamespace(info=print, warning=print, debug=print))
mod("vllm.platforms", current_platform=types.SimpleNamespace(fp8_dtype=lambda: "fp8"))
mod("vllm.triton_utils", tl=tl, triton=triton)
mod("vllm.v1"); mod("vllm.v1.attention"); mod("vllm.v1.attention.ops")
mod("vllm.v1.kv_cache_interface", KVQuantMode=type("KVQuantMode", (), {"NONE": 0, "FP8_PER_TENSOR": 1}))
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(spec)
    sys.modules[name] = m; spec.loader.exec_module(m); return m
load("vllm.v1.attention.ops.triton_attention_helpers", f"{V}/v1/attention/ops/triton_attention_helpers.py")
ua = load("vllm.v1.attention.ops.triton_unified_attention", f"{V}/v1/attention/ops/triton_unified_attention.py")
fn = ua.kernel_unified_attention
names = fn.arg_names
def compile_one(cc, dt, head, qpk, block, is3d):
    BLOCK_M = 16 if qpk <= 16 else triton.next_power_of_2(qpk)
    esize = 2 if dt == "fp16" else 4
    TILE = ua._get_tile_size(head, 0, esize, is_prefill=not is3d)
    HP = triton.next_power_of_2(head)
    const = dict(num_query_heads=8 * qpk, num_queries_per_kv=qpk, BLOCK_SIZE=block, TILE_SIZE=TILE, HEAD_SIZE=head,
                 HEAD_SIZE_PADDED=HP, USE_ALIBI_SLOPES=False, USE_ALIBI_SQRT=False, USE_QQ_BIAS=False, USE_SOFTCAP=False,
                 USE_SINKS=False, SLIDING_WINDOW=0, USE_CAUSAL=True, USE_PER_SEQ_CAUSAL=False, USE_MM_PREFIX=False,
                 MAX_MM_RANGES=0, R_SWA_WINDOW=0, USE_R_SWA=False, stride_k_cache_3=1, stride_v_cache_3=1,
                 BLOCK_Q=BLOCK_M // qpk, BLOCK_M=BLOCK_M, NUM_SEGMENTS_PER_SEQ=16 if is3d else 1, USE_FP8=False,
                 IS_3D=is3d, KV_QUANT_MODE=0, FP8_MIN=-448.0, FP8_MAX=448.0, CHUNK_LOOKBACK=-1, CHUNK_SIZE=-1,
                 USE_TD=False, USE_TD_QO=False, Q_IS_FP8=False, MM_PREFIX_CLAMP_SW=False)
    sig, ce = {}, {}
    ptr = {"output_ptr": f"*{dt}", "query_ptr": f"*{dt}", "key_cache_ptr": f"*{dt}", "value_cache_ptr": f"*{dt}",
           "block_tables_ptr": "*i32", "seq_lens_ptr": "*i32", "query_start_len_ptr": "*i32"}
    if is3d:
        ptr.update(segm_output_ptr="*fp32", segm_max_ptr="*fp32", segm_expsum_ptr="*fp32")
    for n in names:
        if n in const:
            sig[n] = "constexpr"; ce[n] = const[n]
        elif n in ptr:
            sig[n] = ptr[n]
        elif n in ("scale", "softcap"):
            sig[n] = "fp32"
        elif n.endswith("_scale") and not n.endswith("cache_ptr"):
            sig[n] = "*fp32"
        elif n.startswith("stride") or n.endswith("_stride") or n.endswith("stride_0") or n.endswith("stride_1") or n == "block_table_stride":
            if n.startswith(("stride_ks", "stride_vs")):
                sig[n] = "constexpr"; ce[n] = None
            else:
                sig[n] = "i64"
        elif n == "num_seqs":
            sig[n] = "i32"
        else:  # optional pointers not used in this configuration
            sig[n] = "constexpr"; ce[n] = None
    src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=ce)
    r = triton.compile(src, target=GPUTarget("cuda", cc, 32))
    return r.metadata.shared, TILE, BLOCK_M
rows = []
for cc, dt, head, is3d in itertools.product((60, 61), ("fp16", "fp32"), (64, 128, 256), (False, True)):
    for qpk, block in ((1, 16), (8, 32)):
        try:
            sh, tile, bm = compile_one(cc, dt, head, qpk, block, is3d)
            rows.append(dict(cc=cc, dtype=dt, head=head, kernel="3d" if is3d else "2d", qpk=qpk, block=block, tile=tile, block_m=bm, shared=sh, fits=sh <= 49152))
        except Exception as e:
            rows.append(dict(cc=cc, dtype=dt, head=head, kernel="3d" if is3d else "2d", qpk=qpk, block=block, error=str(e).splitlines()[-1][:200]))
        print(json.dumps(rows[-1]), flush=True)
json.dump(rows, open(sys.argv[1] if len(sys.argv) > 1 else "/tmp/w26/ua/rows.json", "w"), indent=1)

"""Run vLLM 0.26.0's real TRITON_ATTN path (unified_attention() -> kernel_unified_attention 2d/3d and
reduce_segments) as Pascal code on whatever NVIDIA GPU is present, and compare with a torch reference.

Every Triton kernel is compiled for target cc 6.0 (Pascal lowering: no MMA, FMA dot) and its compute_60
PTX is loaded through the driver JIT instead of the sm_60 cubin, so the __CUDA_ARCH__ == 600 code path
runs. Pascal's 48 KB per-block shared memory limit is enforced by hand (the GPU present has more).
vllm/ modules the file imports are stood in for: current_platform reports cc 6.0 (so the
unified-attention-pascal-tiles patch is live), envs/logger/KVQuantMode as upstream defines them.

Usage (any Python with torch + triton 3.6 and a GPU): python unified_attention_on_gpu.py OUT.json VLLM_DIR
where VLLM_DIR is the vllm/ package directory of the *patched* 0.26.0 sdist.
"""

import enum
import importlib.util
import itertools
import json
import sys
import types

import torch
import triton
import triton.compiler.compiler as tcc
import triton.language as tl
from triton.backends.compiler import GPUTarget

OUT, VLLM = sys.argv[1], sys.argv[2]
PASCAL = GPUTarget("cuda", 60, 32)
PASCAL_SMEM = 49152
loaded = []  # (kernel name, shared bytes, mma in ptx) for every kernel that ran

# 1. every JIT compile targets cc 6.0, and what loads is the compute_60 PTX
driver = triton.runtime.driver.active
driver.get_current_target = lambda: PASCAL
_init = tcc.CompiledKernel.__init__


def _pascal_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    assert self.metadata.target.arch == 60, self.metadata.target
    ptx = self.asm["ptx"]
    assert ".target sm_60" in ptx
    if self.metadata.shared > PASCAL_SMEM:
        raise triton.runtime.errors.OutOfResources(self.metadata.shared, PASCAL_SMEM, "shared memory (Pascal)")
    self.kernel = ptx.encode() + b"\0"
    loaded.append((self.name, self.metadata.shared, "mma" in ptx))


tcc.CompiledKernel.__init__ = _pascal_init


# 2. stand-ins for the vllm modules triton_unified_attention.py imports
def mod(name, **kw):
    m = types.ModuleType(name)
    m.__dict__.update(kw)
    sys.modules[name] = m
    return m


class KVQuantMode(enum.IntEnum):  # vllm/v1/kv_cache_interface.py (0.26.0)
    NONE = 0
    FP8_PER_TENSOR = 1
    INT8_PER_TOKEN_HEAD = 2
    FP8_PER_TOKEN_HEAD = 3
    INT4_PER_TOKEN_HEAD = 4
    NVFP4 = 5


platform = types.SimpleNamespace(
    fp8_dtype=lambda: torch.float8_e4m3fn,
    is_device_capability_family=lambda family: False,
    has_device_capability=lambda cap: (cap if isinstance(cap, int) else cap[0] * 10 + cap[1]) <= 60,
    is_cuda=lambda: True,
    is_rocm=lambda: False,
    is_xpu=lambda: False,
)
mod("vllm")
mod("vllm.envs", VLLM_BATCH_INVARIANT=False)
mod("vllm.logger", init_logger=lambda n: types.SimpleNamespace(info=print, warning=print, debug=print))
mod("vllm.platforms", current_platform=platform)
mod("vllm.triton_utils", tl=tl, triton=triton)
for name in ("vllm.v1", "vllm.v1.attention", "vllm.v1.attention.ops"):
    mod(name)
mod("vllm.v1.kv_cache_interface", KVQuantMode=KVQuantMode)
for name in ("vllm.model_executor", "vllm.model_executor.layers", "vllm.model_executor.layers.quantization",
             "vllm.model_executor.layers.quantization.utils", "vllm.utils", "vllm.v1.sample", "vllm.v1.sample.ops"):
    mod(name)
mod("vllm.model_executor.layers.quantization.utils.quant_utils", FP8_DTYPE=torch.float8_e4m3fn,
    get_fp8_min_max=lambda: (-448.0, 448.0))
mod("vllm.utils.torch_utils", is_quantized_kv_cache=lambda d: d.startswith(("fp8", "int8", "int4", "nvfp4")))
mod("vllm.utils.math_utils", next_power_of_2=triton.next_power_of_2)
mod("vllm.utils.platform_utils", num_compute_units=lambda i=0: 56)  # a P100's SM count


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    sys.modules[name] = m
    spec.loader.exec_module(m)
    return m


load("vllm.v1.attention.ops.triton_attention_helpers", f"{VLLM}/v1/attention/ops/triton_attention_helpers.py")
ua = load("vllm.v1.attention.ops.triton_unified_attention", f"{VLLM}/v1/attention/ops/triton_unified_attention.py")
rc = load("vllm.v1.attention.ops.triton_reshape_and_cache_flash",
          f"{VLLM}/v1/attention/ops/triton_reshape_and_cache_flash.py")
tk = load("vllm.v1.sample.ops.topk_topp_triton", f"{VLLM}/v1/sample/ops/topk_topp_triton.py")


# 3. a paged KV cache as TRITON_ATTN lays it out, and the reference
def case(dtype, head, qpk, block, q_lens, k_lens, use_3d, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    kvh, num_seqs = 2, len(q_lens)
    hq = kvh * qpk
    blocks_per_seq = [(n + block - 1) // block for n in k_lens]
    num_blocks = sum(blocks_per_seq) + 3
    k_cache = torch.randn(num_blocks, block, kvh, head, device="cuda", dtype=dtype, generator=g)
    v_cache = torch.randn(num_blocks, block, kvh, head, device="cuda", dtype=dtype, generator=g)
    perm = torch.randperm(num_blocks, device="cuda", generator=g).to(torch.int32)
    table = torch.zeros(num_seqs, max(blocks_per_seq), dtype=torch.int32, device="cuda")
    at = 0
    for i, nb in enumerate(blocks_per_seq):
        table[i, :nb] = perm[at : at + nb]
        at += nb
    q = torch.randn(sum(q_lens), hq, head, device="cuda", dtype=dtype, generator=g)
    out = torch.full_like(q, float("nan"))
    cu = torch.tensor([0, *itertools.accumulate(q_lens)], dtype=torch.int32, device="cuda")
    seqused = torch.tensor(k_lens, dtype=torch.int32, device="cuda")
    scale = head**-0.5
    extra = {}
    if use_3d:
        segs, hp = 16, triton.next_power_of_2(head)
        extra = dict(
            seq_threshold_3D=num_seqs,
            num_par_softmax_segments=segs,
            softmax_segm_output=torch.empty(num_seqs, hq, segs, hp, dtype=torch.float32, device="cuda"),
            softmax_segm_max=torch.empty(num_seqs, hq, segs, dtype=torch.float32, device="cuda"),
            softmax_segm_expsum=torch.empty(num_seqs, hq, segs, dtype=torch.float32, device="cuda"),
        )
    before = len(loaded)
    ua.unified_attention(
        q=q, k=k_cache, v=v_cache, out=out, cu_seqlens_q=cu, max_seqlen_q=max(q_lens), seqused_k=seqused,
        max_seqlen_k=max(k_lens), softmax_scale=scale, causal=True, window_size=(-1, -1), block_table=table,
        softcap=0.0, q_descale=None, k_descale=None, v_descale=None, **extra,
    )
    torch.cuda.synchronize()
    ref = torch.empty_like(q, dtype=torch.float32)
    for i in range(num_seqs):
        nk, nq = k_lens[i], q_lens[i]
        slots = torch.arange(nk, device="cuda")
        blk = table[i, slots // block].long()
        K = k_cache[blk, slots % block].float()  # [nk, kvh, head]
        V = v_cache[blk, slots % block].float()
        Q = q[cu[i] : cu[i] + nq].float()  # [nq, hq, head]
        K = K.repeat_interleave(qpk, dim=1)
        V = V.repeat_interleave(qpk, dim=1)
        s = torch.einsum("qhd,khd->hqk", Q, K) * scale
        pos = torch.arange(nk - nq, nk, device="cuda")[:, None]
        s = s.masked_fill(slots[None, :] > pos, float("-inf"))
        ref[cu[i] : cu[i] + nq] = torch.einsum("hqk,khd->qhd", torch.softmax(s, dim=-1), V)
    err = (out.float() - ref).abs().max().item()
    tol = 2e-2 if dtype == torch.float16 else 1e-3
    ran = loaded[before:]
    return dict(
        dtype=str(dtype).split(".")[-1], head=head, qpk=qpk, block=block, q_lens=q_lens, k_lens=k_lens,
        path="3d" if use_3d else "2d", kernels=[(n, s, m) for n, s, m in ran] or "cached",
        max_abs_err=err, ok=bool(err <= tol and not torch.isnan(out).any()),
    )


rows = []
seed = 0
for dtype, head, qpk in itertools.product((torch.float16, torch.float32), (64, 128, 256), (1, 4)):
    for block, q_lens, k_lens, use_3d in (
        (16, [5, 17, 1], [5, 40, 33], False),  # prefill + chunked prefill + one decode token
        (32, [1, 1, 1], [31, 77, 130], True),  # decode, split over 16 softmax segments
    ):
        seed += 1
        try:
            rows.append(case(dtype, head, qpk, block, q_lens, k_lens, use_3d, seed))
        except Exception as e:  # a kernel that does not fit or does not run is a result too
            rows.append(dict(dtype=str(dtype), head=head, qpk=qpk, block=block, path="3d" if use_3d else "2d",
                             error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}", ok=False))
        print(json.dumps(rows[-1]), flush=True)
# 4. the other Triton kernels of a Pascal decode step: writing K/V into the paged cache, top-k/top-p
for dtype, head in itertools.product((torch.float16, torch.float32), (64, 128, 256)):
    before = len(loaded)
    try:
        g = torch.Generator(device="cuda").manual_seed(head)
        ntok, kvh, nblk, block = 37, 2, 16, 16
        key = torch.randn(ntok, kvh, head, device="cuda", dtype=dtype, generator=g)
        val = torch.randn(ntok, kvh, head, device="cuda", dtype=dtype, generator=g)
        kc = torch.zeros(nblk, block, kvh, head, device="cuda", dtype=dtype)
        vc = torch.zeros_like(kc)
        slots = torch.randperm(nblk * block, device="cuda", generator=g)[:ntok]
        one = torch.ones(1, device="cuda", dtype=torch.float32)
        rc.triton_reshape_and_cache_flash(key, val, kc, vc, slots, "auto", one, one)
        torch.cuda.synchronize()
        ok = bool(torch.equal(kc.view(-1, kvh, head)[slots], key) and torch.equal(vc.view(-1, kvh, head)[slots], val))
        ok = ok and int((kc.view(-1, kvh, head).abs().sum((1, 2)) != 0).sum()) == ntok
        rows.append(dict(kernel="reshape_and_cache_flash", dtype=str(dtype).split(".")[-1], head=head, ok=ok,
                         kernels=[(n, s, m) for n, s, m in loaded[before:]] or "cached"))
    except Exception as e:
        rows.append(dict(kernel="reshape_and_cache_flash", dtype=str(dtype), head=head, ok=False,
                         error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"))
    print(json.dumps(rows[-1]), flush=True)


def topk_topp_reference(logits, k, p):  # vLLM 0.26.0's apply_top_k_top_p_pytorch, restated
    logits_sort, idx = logits.sort(dim=-1, descending=False)
    if k is not None:
        kth = logits_sort.gather(1, (logits_sort.size(1) - k.long()).unsqueeze(1))
        logits_sort.masked_fill_(logits_sort < kth, float("-inf"))
    if p is not None:
        cum = logits_sort.softmax(dim=-1, dtype=torch.float32).cumsum(dim=-1)
        mask = cum <= 1 - p.unsqueeze(1)
        mask[:, -1] = False
        logits_sort.masked_fill_(mask, float("-inf"))
    return logits.clone().scatter_(-1, idx, logits_sort)


for batch, vocab, use_k, use_p in ((8, 32000, True, False), (8, 32000, False, True), (16, 151936, True, True)):
    before = len(loaded)
    try:
        g = torch.Generator(device="cuda").manual_seed(vocab + batch)
        logits = torch.randn(batch, vocab, device="cuda", dtype=torch.float32, generator=g) * 3
        k = torch.randint(1, 200, (batch,), device="cuda", dtype=torch.int32, generator=g) if use_k else None
        p = torch.rand(batch, device="cuda", generator=g) * 0.5 + 0.45 if use_p else None
        ref = topk_topp_reference(logits.clone(), k, p)
        got = tk.apply_top_k_top_p_triton(logits.clone(), k, p)
        torch.cuda.synchronize()
        kept_ref, kept_got = torch.isfinite(ref), torch.isfinite(got)
        mismatch = int((kept_ref != kept_got).sum())
        values_equal = bool(torch.equal(got[kept_got], logits[kept_got]))
        rows.append(dict(kernel="top_k_top_p", batch=batch, vocab=vocab, top_k=use_k, top_p=use_p,
                         kept=int(kept_ref.sum()), mismatched_positions=mismatch, ok=mismatch == 0 and values_equal,
                         kernels=[(n, s, m) for n, s, m in loaded[before:]] or "cached"))
    except Exception as e:
        rows.append(dict(kernel="top_k_top_p", batch=batch, vocab=vocab, ok=False,
                         error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"))
    print(json.dumps(rows[-1]), flush=True)

summary = dict(
    device=torch.cuda.get_device_name(), capability=torch.cuda.get_device_capability(), torch=torch.__version__,
    triton=triton.__version__, cases=len(rows), ok=sum(r["ok"] for r in rows),
    kernels=sorted({(n, s, m) for n, s, m in loaded}), rows=rows,
)
json.dump(summary, open(OUT, "w"), indent=1, default=str)
print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, default=str))

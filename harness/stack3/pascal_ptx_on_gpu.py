"""Run Triton code compiled for target cc 6.0 (the Pascal lowering: FMA dot with fp16 operands promoted
to fp32) on whatever NVIDIA GPU is present, by loading its compute_60 PTX through the driver JIT instead
of the sm_60 cubin, and compare with torch. Usage: python pascal_ptx_on_gpu.py OUT.json"""
import json, sys
import torch, triton, triton.language as tl
from triton.backends.compiler import GPUTarget


@triton.jit
def dot_kernel(a, b, c, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
    om = tl.arange(0, M); on = tl.arange(0, N); ok = tl.arange(0, K)
    A = tl.load(a + om[:, None] * K + ok[None, :])
    B = tl.load(b + ok[:, None] * N + on[None, :])
    tl.store(c + om[:, None] * N + on[None, :], tl.dot(A, B))


@triton.jit
def attn_row_kernel(q, k, v, o, T: tl.constexpr, D: tl.constexpr, M: tl.constexpr):
    # one block of M query rows against T keys: softmax(QK^T) V, fp16 in, fp32 accumulate (as TRITON_ATTN)
    om = tl.arange(0, M); ot = tl.arange(0, T); od = tl.arange(0, D)
    Q = tl.load(q + om[:, None] * D + od[None, :])
    Kt = tl.load(k + ot[None, :] * D + od[:, None])
    S = tl.dot(Q, Kt)
    P = tl.exp(S - tl.max(S, axis=1)[:, None])
    P = P / tl.sum(P, axis=1)[:, None]
    V = tl.load(v + ot[:, None] * D + od[None, :])
    tl.store(o + om[:, None] * D + od[None, :], tl.dot(P.to(tl.float16), V))


def run_as_pascal_ptx(fn, sig, consts, grid, args):
    src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=consts)
    ck = triton.compile(src, target=GPUTarget("cuda", 60, 32))
    ptx = ck.asm["ptx"]
    assert ".target sm_60" in ptx
    # the driver JIT-compiles compute_60 PTX for the present GPU (PTX is forward compatible)
    ck.kernel = ptx.encode() + b"\0"
    ck[grid](*args)
    torch.cuda.synchronize()
    return ck.metadata.shared, "mma" in ptx, ptx.count("fma.rn.f32")


out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__, "cases": []}
torch.manual_seed(0)
for M, N, K in ((16, 16, 16), (32, 64, 32), (64, 64, 64)):
    a = torch.randn(M, K, device="cuda", dtype=torch.float16); b = torch.randn(K, N, device="cuda", dtype=torch.float16)
    c = torch.empty(M, N, device="cuda", dtype=torch.float32)
    sh, mma, fmas = run_as_pascal_ptx(dot_kernel, {"a": "*fp16", "b": "*fp16", "c": "*fp32", "M": "constexpr", "N": "constexpr", "K": "constexpr"},
                                      {"M": M, "N": N, "K": K}, (1,), (a, b, c, M, N, K))
    ref = a.float() @ b.float()
    out["cases"].append({"kernel": "dot", "shape": [M, N, K], "shared": sh, "mma_in_ptx": mma, "fma_f32": fmas,
                         "max_abs_err": float((c - ref).abs().max())})
for T, D in ((32, 64), (32, 128), (16, 256)):
    q = torch.randn(16, D, device="cuda", dtype=torch.float16) / D ** 0.5
    k = torch.randn(T, D, device="cuda", dtype=torch.float16); v = torch.randn(T, D, device="cuda", dtype=torch.float16)
    o = torch.empty(16, D, device="cuda", dtype=torch.float32)
    sh, mma, fmas = run_as_pascal_ptx(attn_row_kernel, {"q": "*fp16", "k": "*fp16", "v": "*fp16", "o": "*fp32", "T": "constexpr", "D": "constexpr", "M": "constexpr"},
                                      {"T": T, "D": D, "M": 16}, (1,), (q, k, v, o, T, D, 16))
    p = torch.softmax(q.float() @ k.float().T, dim=-1)
    ref = p.half().float() @ v.float()
    out["cases"].append({"kernel": "attention-block", "T": T, "head": D, "shared": sh, "mma_in_ptx": mma, "fma_f32": fmas,
                         "max_abs_err": float((o - ref).abs().max())})
print(json.dumps(out, indent=1))
json.dump(out, open(sys.argv[1], "w"), indent=1)

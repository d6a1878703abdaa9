"""Run the GGUF vec-dot check on a GPU (pascal-forge harness; needs numpy and cupy there).

usage: python3 run.py PTX_DIR   (PTX_DIR holds emu600.ptx and hw610.ptx from build.sh)
Compares, bit for bit, the outputs of the compute_60 build (patch 0004's software dp4a) and the
compute_61 build (the hardware dp4a instruction) over 1M threads of random and edge-case inputs,
and the raw dp4a against a NumPy reference. Exits 1 on any mismatch.
"""

import sys

import cupy as cp
import numpy as np

ptx_dir = sys.argv[1] if len(sys.argv) > 1 else "."
dev = cp.cuda.runtime.getDeviceProperties(0)
print(f"device: {dev['name'].decode()} (cc {dev['major']}.{dev['minor']}), PTX JIT-compiled by the driver")
n = 1 << 20
rng = np.random.default_rng(0)
V = rng.integers(-2**31, 2**31, size=16 * n, dtype=np.int64).astype(np.int32)
U = rng.integers(-2**31, 2**31, size=32 * n, dtype=np.int64).astype(np.int32)
# edge bytes: 0x80 (-128), 0x7f (127), 0xff (-1) everywhere for the first 4096 threads
edge = np.frombuffer(np.array([0x80, 0x7f, 0xff, 0x00, 0x01, 0x80, 0x80, 0x7f], np.uint8).repeat(1).tobytes() * 2, np.int32)
V[: 16 * 4096] = np.resize(edge, 16 * 4096); U[: 32 * 4096] = np.resize(edge[::-1], 32 * 4096)
S = rng.integers(0, 256, size=16 * n, dtype=np.uint8)
F = rng.uniform(-1, 1, size=8 * n).astype(np.float32)
H = rng.uniform(-1, 1, size=8 * n).astype(np.float16)
args = [cp.asarray(a) for a in (V, U, S, F, H)]
outs = {}
for name in ("hw610", "emu600"):
    k = cp.RawModule(path=f"{ptx_dir}/{name}.ptx").get_function("run")
    out = cp.zeros(8 * n, cp.float32)
    k(((n + 255) // 256,), (256,), (*args, out, np.int32(n)))
    cp.cuda.Device().synchronize()
    outs[name] = cp.asnumpy(out).reshape(n, 8)
a, b = outs["hw610"], outs["emu600"]
bad = 0
names = ["dp4a", "q4_0", "q4_1", "q5_0", "q8_0", "q2_K", "q6_K", "q5_1"]
for j, nm in enumerate(names):
    same = np.array_equal(a[:, j].view(np.uint32), b[:, j].view(np.uint32))
    bad += not same
    print(f"{nm:5} bitwise-equal={same} mismatches={(a[:, j].view(np.uint32) != b[:, j].view(np.uint32)).sum()} sample hw={a[5, j]!r} emu={b[5, j]!r}")
# reference for the raw dp4a in numpy
v8 = np.ascontiguousarray(V.reshape(n, 16)[:, 0]).view(np.int8).reshape(n, 4).astype(np.int64)
u8 = np.ascontiguousarray(U.reshape(n, 32)[:, 0]).view(np.int8).reshape(n, 4).astype(np.int64)
ref = (v8 * u8).sum(1) + V.reshape(n, 16)[:, 1].astype(np.int64)
ref = (ref + 2**31) % 2**32 - 2**31  # dp4a accumulates in 32-bit integers (wraps)
ok_ref = np.array_equal(a[:, 0].astype(np.float64), ref.astype(np.float32).astype(np.float64))
print("dp4a (hardware) == numpy reference:", ok_ref)
print(f"threads: {n}; verdict: {'PASS' if not bad and ok_ref else 'FAIL'}")
sys.exit(0 if not bad and ok_ref else 1)

// GGUF vec-dot check (pascal-forge harness): the same functions of the patched vecdotq.cuh built twice,
// compute_60 (software dp4a of patch 0004) and compute_61 (hardware dp4a); run.py compares outputs.
#include <cuda_fp16.h>
#include <cstdint>
namespace c10 { struct BFloat16 { __host__ __device__ BFloat16(float) {} }; }
#include "ggml-common.h"
#include "vecdotq.cuh"
// Each thread: 16 ints of v, 32 ints of u, 16 scale bytes, 8 floats, 4 half2 -> 8 outputs.
extern "C" __global__ void run(const int* V, const int* U, const uint8_t* S, const float* F,
                               const half2* H, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int* v = V + 16 * i; const int* u = U + 32 * i; const uint8_t* s = S + 16 * i;
  const float* f = F + 8 * i; const half2* h = H + 4 * i; float* o = out + 8 * i;
  o[0] = (float)__dp4a(v[0], u[0], v[1]);
  o[1] = vec_dot_q4_0_q8_1_impl<VDR_Q4_0_Q8_1_MMVQ>(v, u, f[0], h[0]);
  o[2] = vec_dot_q4_1_q8_1_impl<VDR_Q4_1_Q8_1_MMVQ>(v, u, h[0], h[1]);
  o[3] = vec_dot_q5_0_q8_1_impl<VDR_Q5_0_Q8_1_MMVQ>(v, v + 4, u, f[0], h[1]);
  o[4] = vec_dot_q8_0_q8_1_impl<VDR_Q8_0_Q8_1_MMVQ>(v, u, f[0], f[1]);
  o[5] = vec_dot_q2_K_q8_1_impl_mmvq(v[0], u, s, h[2], f + 2);
  o[6] = vec_dot_q6_K_q8_1_impl_mmvq(v[0], v[1], u, (const int8_t*)s, f[0], f + 2);
  o[7] = vec_dot_q5_1_q8_1_impl<VDR_Q5_1_Q8_1_MMVQ>(v, v + 4, u, h[2], h[3]);
}

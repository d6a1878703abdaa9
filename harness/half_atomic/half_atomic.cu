// GPU correctness + speed harness for the Pascal half-atomicAdd fallback.
//
// Built ONLY as compute_60 PTX (no SASS), so a newer GPU (the lent H100) must
// JIT it and runs the __CUDA_ARCH__ == 600 code path: exactly the code nvcc
// would build for sm_60. build.sh takes pascal_half_atomic.cuh and the
// moe_wna16 kernel out of the shipped patch / patched sources, so what runs
// here is the shipped code, not a copy.
//
// Checks (every repetition, not only once):
//  * contention: many threads add into the low and high halves of the same
//    32-bit words; values are multiples of 1/8 whose partial sums stay within
//    +-256 in any order, so fp16 arithmetic is exact and the result must equal
//    the reference computed in integers;
//  * neighbour semantics (-0.0, NaN, Inf, subnormal neighbours; subnormal adds);
//  * the real moe_wna16_gemm_kernel<half, 4, 1> with the shipped fallback,
//    K split over blockIdx.z so partial sums meet in the atomics, against an
//    integer reference;
//  * that the PTX path really ran: ptxVersion == 60 and __CUDA_ARCH__ == 600
//    written by the device.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "gen/pascal_half_atomic.cuh"  // from the patched tree (= the shipped patch)

#define CK(x)                                                                 \
  do {                                                                        \
    cudaError_t e_ = (x);                                                     \
    if (e_ != cudaSuccess) {                                                  \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", #x, __FILE__,      \
                   __LINE__, cudaGetErrorString(e_));                         \
      std::exit(2);                                                           \
    }                                                                         \
  } while (0)

// ---- the two candidate fallbacks ------------------------------------------
// shipped: vllm::pascal::atomic_add_half (native half2 atomicAdd of (val, +0)).
// alternative: the blog's compare-and-swap loop on the aligned 32-bit word
// (seed write-up), kept verbatim apart from the function name.
__device__ __forceinline__ void cas_atomic_add_half(__half* address, __half val) {
  unsigned int* address_as_ui =
      (unsigned int*)((char*)address - ((size_t)address & 2));
  unsigned int old = *address_as_ui;
  unsigned int assumed;
  do {
    assumed = old;
    __half_raw hsum;
    hsum.x = (size_t)address & 2 ? (old >> 16) : (old & 0xffff);
    half tmpres = __hadd(hsum, val);
    hsum = __half_raw(tmpres);
    old = (size_t)address & 2 ? (old & 0xffff) | (hsum.x << 16)
                              : (old & 0xffff0000) | hsum.x;
    old = atomicCAS(address_as_ui, assumed, old);
  } while (assumed != old);
}

__device__ __forceinline__ void cas_atomic_add(__half* a, __half v) { cas_atomic_add_half(a, v); }

// The patched kernel twice: as shipped, and with its atomic swapped for the CAS loop.
#include "gen/moe_wna16_kernels.cuh"  // namespaces shipped_k, cas_k

__global__ void arch_probe(int* out) {
#ifdef __CUDA_ARCH__
  *out = __CUDA_ARCH__;
#endif
}

// Thread i adds vals[i % nvals] into out[i % nhalves]; consecutive threads hit
// the two halves of one word (and the same warp hits few words).
template <int kImpl>
__global__ void contend(__half* out, int nhalves, const __half* vals, int nvals, int nadds) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= nadds) return;
  __half v = vals[i % nvals];
  if (kImpl == 0) {
    vllm::pascal::atomic_add(out + (i % nhalves), v);
  } else {
    cas_atomic_add_half(out + (i % nhalves), v);
  }
}

static uint16_t h2bits(__half h) { uint16_t b; std::memcpy(&b, &h, 2); return b; }
static __half bits2h(uint16_t b) { __half h; std::memcpy(&h, &b, 2); return h; }

static int g_fail = 0;
#define EXPECT(cond, ...)                       \
  do {                                          \
    if (!(cond)) {                              \
      ++g_fail;                                 \
      std::printf("  FAIL: " __VA_ARGS__);      \
      std::printf("\n");                        \
    }                                           \
  } while (0)

struct Stats { float min_ms, med_ms; int reps; };
static Stats summarize(std::vector<float> t) {
  std::sort(t.begin(), t.end());
  return {t.front(), t[t.size() / 2], (int)t.size()};
}

// One contention scenario for one implementation: warm-up, then timed repeats,
// each one checked bit-exactly against the integer reference.
template <int kImpl>
static Stats run_contention(const char* name, int nhalves, int nadds, int warmup, int reps) {
  const int nvals = 7;
  // eighths, mixed signs: per 7 adds +4/8 and -5/8 in total, so with <= 2048 adds per slot the
  // positive and the negative parts each stay within 256 (checked below for every slot)
  const int eighths[nvals] = {1, -2, 1, -1, 2, -1, -1};
  std::vector<__half> hv(nvals);
  for (int j = 0; j < nvals; ++j) hv[j] = __float2half(eighths[j] / 8.0f);
  // Reference in integer eighths; also bound |partial sums| in ANY order by
  // the sums of positive and of negative addends per slot (<= 256 * 8 = 2048
  // eighths keeps every partial sum exactly representable in fp16).
  std::vector<long> ref(nhalves, 0), pos(nhalves, 0), neg(nhalves, 0);
  for (int i = 0; i < nadds; ++i) {
    int s = i % nhalves, e = eighths[i % nvals];
    ref[s] += e;
    (e > 0 ? pos[s] : neg[s]) += e;
  }
  for (int s = 0; s < nhalves; ++s)
    if (pos[s] > 2048 || -neg[s] > 2048) { std::printf("  bad scenario: not exact\n"); std::exit(3); }

  __half *d_out, *d_vals;
  CK(cudaMalloc(&d_out, nhalves * sizeof(__half)));
  CK(cudaMalloc(&d_vals, nvals * sizeof(__half)));
  CK(cudaMemcpy(d_vals, hv.data(), nvals * sizeof(__half), cudaMemcpyHostToDevice));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<__half> got(nhalves);
  std::vector<float> times;
  int bad_reps = 0;
  const int block = 256, grid = (nadds + block - 1) / block;
  for (int r = 0; r < warmup + reps; ++r) {
    CK(cudaMemset(d_out, 0, nhalves * sizeof(__half)));
    CK(cudaEventRecord(a));
    contend<kImpl><<<grid, block>>>(d_out, nhalves, d_vals, nvals, nadds);
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    CK(cudaGetLastError());
    float ms;
    CK(cudaEventElapsedTime(&ms, a, b));
    CK(cudaMemcpy(got.data(), d_out, nhalves * sizeof(__half), cudaMemcpyDeviceToHost));
    int mism = 0;
    for (int s = 0; s < nhalves; ++s)
      if (h2bits(got[s]) != h2bits(__float2half(ref[s] / 8.0f))) ++mism;
    if (mism) ++bad_reps;
    if (r >= warmup) times.push_back(ms);
  }
  Stats st = summarize(times);
  std::printf("  %-6s %-28s adds=%-8d halves=%-5d exact=%s (%d/%d runs exact)  min %.4f ms  median %.4f ms\n",
              kImpl == 0 ? "half2" : "cas", name, nadds, nhalves, bad_reps ? "NO" : "yes",
              warmup + reps - bad_reps, warmup + reps, st.min_ms, st.med_ms);
  EXPECT(bad_reps == 0, "%s %s: %d runs differ from the exact reference", kImpl == 0 ? "half2" : "cas", name, bad_reps);
  CK(cudaFree(d_out));
  CK(cudaFree(d_vals));
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return st;
}

// Neighbour semantics: add `val` to one half of a word, look at both halves.
template <int kImpl>
__global__ void one_add(__half* word2, int which, __half val) {
  if (kImpl == 0) vllm::pascal::atomic_add(word2 + which, val);
  else cas_atomic_add_half(word2 + which, val);
}

template <int kImpl>
static void neighbour_case(const char* what, uint16_t target, uint16_t neigh, uint16_t addend,
                           uint16_t want_target, uint16_t want_neigh_half2, uint16_t want_neigh_cas) {
  for (int which = 0; which < 2; ++which) {
    __half host[2];
    host[which] = bits2h(target);
    host[1 - which] = bits2h(neigh);
    __half* d;
    CK(cudaMalloc(&d, 4));
    CK(cudaMemcpy(d, host, 4, cudaMemcpyHostToDevice));
    one_add<kImpl><<<1, 1>>>(d, which, bits2h(addend));
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(host, d, 4, cudaMemcpyDeviceToHost));
    CK(cudaFree(d));
    uint16_t t = h2bits(host[which]), n = h2bits(host[1 - which]);
    uint16_t wn = kImpl == 0 ? want_neigh_half2 : want_neigh_cas;
    bool nan_ok = ((wn & 0x7c00) == 0x7c00 && (wn & 0x3ff)) && ((n & 0x7c00) == 0x7c00 && (n & 0x3ff));
    std::printf("  %-6s %-34s %s half: target 0x%04x (want 0x%04x)  neighbour 0x%04x -> 0x%04x (want 0x%04x%s)\n",
                kImpl == 0 ? "half2" : "cas", what, which ? "high" : "low ", t, want_target, neigh, n, wn,
                nan_ok ? ", any NaN" : "");
    EXPECT(t == want_target, "%s target", what);
    EXPECT(n == wn || nan_ok, "%s neighbour", what);
  }
}

// ---- the real moe_wna16 kernel (patched source, extracted by build.sh) ----
template <int kImpl>
static Stats run_moe(int warmup, int reps) {
  // Shapes: E experts, M tokens, top_k slots, N outputs, K inputs, 4-bit, no zp.
  const int E = 8, M = 64, TOPK = 2, N = 256, K = 512, GROUP = 128;
  const int BM = 16, BN = 128, BK = 128;  // GROUPS = BK / GROUP = 1; grid.z = K / BK = 4
  std::vector<__half> input(M * K);
  std::vector<long> rowsum(M, 0);
  for (int t = 0; t < M; ++t)
    for (int k = 0; k < K; ++k) {
      int v = ((t * 31 + k * 17) % 3) - 1;  // -1, 0, 1
      input[t * K + k] = __float2half((float)v);
      rowsum[t] += v;
    }
  // Weight (e, n) is the same 4-bit code for every k, so the kernel's k
  // permutations cannot matter: out[slot, n] = w(e, n) * rowsum[token].
  auto w = [](int e, int n) { return ((e * 5 + n * 3) % 7) - 3; };  // -3..3, zero point 8
  std::vector<uint32_t> qweight((size_t)E * N * (K / 8));
  for (int e = 0; e < E; ++e)
    for (int n = 0; n < N; ++n) {
      uint32_t nib = (uint32_t)(w(e, n) + 8), word = 0;
      for (int j = 0; j < 8; ++j) word |= nib << (4 * j);
      for (int kk = 0; kk < K / 8; ++kk) qweight[((size_t)e * N + n) * (K / 8) + kk] = word;
    }
  std::vector<__half> scales((size_t)E * N * (K / GROUP), __float2half(1.0f));
  // Routing like moe_align_block_size: per expert, its slots, padded to BM
  // with the sentinel M * TOPK.
  auto expert_of = [](int t, int j) { return (t * 3 + j * 5) % 8; };
  std::vector<int32_t> sorted, expert_ids;
  for (int e = 0; e < E; ++e) {
    std::vector<int32_t> slots;
    for (int t = 0; t < M; ++t)
      for (int j = 0; j < TOPK; ++j)
        if (expert_of(t, j) == e) slots.push_back(t * TOPK + j);
    while (slots.size() % BM) slots.push_back(M * TOPK);
    for (size_t b = 0; b < slots.size() / BM; ++b) expert_ids.push_back(e);
    sorted.insert(sorted.end(), slots.begin(), slots.end());
  }
  int32_t ntpp = (int32_t)sorted.size();
  std::vector<long> ref((size_t)M * TOPK * N);
  for (int t = 0; t < M; ++t)
    for (int j = 0; j < TOPK; ++j)
      for (int n = 0; n < N; ++n) ref[((size_t)t * TOPK + j) * N + n] = (long)w(expert_of(t, j), n) * rowsum[t];
  for (long r : ref) if (r > 2048 || r < -2048) { std::printf("  bad moe scenario\n"); std::exit(3); }

  __half *d_in, *d_out, *d_sc;
  uint32_t* d_qw;
  int32_t *d_sorted, *d_eids, *d_ntpp;
  CK(cudaMalloc(&d_in, input.size() * 2));
  CK(cudaMalloc(&d_out, ref.size() * 2));
  CK(cudaMalloc(&d_sc, scales.size() * 2));
  CK(cudaMalloc(&d_qw, qweight.size() * 4));
  CK(cudaMalloc(&d_sorted, sorted.size() * 4));
  CK(cudaMalloc(&d_eids, expert_ids.size() * 4));
  CK(cudaMalloc(&d_ntpp, 4));
  CK(cudaMemcpy(d_in, input.data(), input.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d_sc, scales.data(), scales.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d_qw, qweight.data(), qweight.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d_sorted, sorted.data(), sorted.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d_eids, expert_ids.data(), expert_ids.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d_ntpp, &ntpp, 4, cudaMemcpyHostToDevice));
  auto kernel = kImpl == 0 ? shipped_k::moe_wna16_gemm_kernel<half, 4, 1> : cas_k::moe_wna16_gemm_kernel<half, 4, 1>;
  dim3 grid((unsigned)expert_ids.size(), (N + BN - 1) / BN, (K + BK - 1) / BK), block(BN);
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<__half> got(ref.size());
  std::vector<float> times;
  int bad_reps = 0;
  for (int r = 0; r < warmup + reps; ++r) {
    CK(cudaMemset(d_out, 0, ref.size() * 2));  // the op zeroes output first, as here
    CK(cudaEventRecord(a));
    kernel<<<grid, block, BM * BK * 2>>>(d_in, d_out, d_qw, d_sc, nullptr, nullptr, d_sorted, d_eids, d_ntpp,
                                         E, GROUP, TOPK, M, N, K, BM, BN, BK, false, false);
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    CK(cudaGetLastError());
    float ms;
    CK(cudaEventElapsedTime(&ms, a, b));
    CK(cudaMemcpy(got.data(), d_out, ref.size() * 2, cudaMemcpyDeviceToHost));
    int mism = 0;
    for (size_t i = 0; i < ref.size(); ++i)
      if (h2bits(got[i]) != h2bits(__float2half((float)ref[i]))) ++mism;
    if (mism) ++bad_reps;
    if (r >= warmup) times.push_back(ms);
  }
  Stats st = summarize(times);
  std::printf("  %-6s moe_wna16_gemm_kernel<half,4,1> E=%d M=%d top_k=%d N=%d K=%d (grid %ux%ux%u) exact=%s (%d/%d runs)  min %.4f ms  median %.4f ms\n",
              kImpl == 0 ? "half2" : "cas", E, M, TOPK, N, K, grid.x, grid.y, grid.z, bad_reps ? "NO" : "yes",
              warmup + reps - bad_reps, warmup + reps, st.min_ms, st.med_ms);
  EXPECT(bad_reps == 0, "moe kernel (%s): %d runs differ", kImpl == 0 ? "half2" : "cas", bad_reps);
  cudaFree(d_in); cudaFree(d_out); cudaFree(d_sc); cudaFree(d_qw); cudaFree(d_sorted); cudaFree(d_eids); cudaFree(d_ntpp);
  return st;
}

template <typename F>
static void print_attrs(const char* name, F f) {
  cudaFuncAttributes at;
  CK(cudaFuncGetAttributes(&at, f));
  std::printf("  %-40s ptxVersion=%d binaryVersion=%d regs=%d\n", name, at.ptxVersion, at.binaryVersion, at.numRegs);
  EXPECT(at.ptxVersion == 60, "%s: ptxVersion %d, want 60 (compute_60 PTX)", name, at.ptxVersion);
}

int main(int argc, char** argv) {
  int warmup = 3, reps = 20;
  if (argc > 1) reps = std::atoi(argv[1]);
  cudaDeviceProp p;
  CK(cudaGetDeviceProperties(&p, 0));
  int drv = 0, rt = 0;
  CK(cudaDriverGetVersion(&drv));
  CK(cudaRuntimeGetVersion(&rt));
  std::printf("device: %s (cc %d.%d, %d SMs), driver API %d, runtime %d\n", p.name, p.major, p.minor,
              p.multiProcessorCount, drv, rt);

  std::printf("[1] which code ran (PTX JIT of compute_60)\n");
  int* d_arch;
  int arch = -1;
  CK(cudaMalloc(&d_arch, 4));
  CK(cudaMemset(d_arch, 0xff, 4));
  arch_probe<<<1, 1>>>(d_arch);
  CK(cudaDeviceSynchronize());
  CK(cudaMemcpy(&arch, d_arch, 4, cudaMemcpyDeviceToHost));
  std::printf("  __CUDA_ARCH__ seen by the device code: %d\n", arch);
  EXPECT(arch == 600, "__CUDA_ARCH__ %d, want 600", arch);
  print_attrs("arch_probe", arch_probe);
  print_attrs("contend<half2 (shipped)>", contend<0>);
  print_attrs("contend<cas>", contend<1>);
  print_attrs("shipped_k::moe_wna16_gemm_kernel<half,4,1>", shipped_k::moe_wna16_gemm_kernel<half, 4, 1>);
  print_attrs("cas_k::moe_wna16_gemm_kernel<half,4,1>", cas_k::moe_wna16_gemm_kernel<half, 4, 1>);

  std::printf("[2] contention, exact reference (%d warm-up + %d timed runs each, every run checked)\n", warmup, reps);
  struct Sc { const char* name; int halves, adds; };
  const Sc scs[] = {
      {"2 halves of one word", 2, 2048},
      {"256 halves (128 words)", 256, 524288},
      {"65536 halves, 32 adds each", 65536, 2097152},
  };
  for (const Sc& s : scs) {
    Stats h = run_contention<0>(s.name, s.halves, s.adds, warmup, reps);
    Stats c = run_contention<1>(s.name, s.halves, s.adds, warmup, reps);
    std::printf("  -> cas/half2 median ratio: %.1fx\n", c.med_ms / h.med_ms);
  }

  std::printf("[3] neighbour semantics (one add, both halves)\n");
  // target 1.0 (0x3c00) + 0.5 (0x3800) = 1.5 (0x3e00)
  neighbour_case<0>("-0.0 neighbour", 0x3c00, 0x8000, 0x3800, 0x3e00, 0x0000, 0x8000);
  neighbour_case<1>("-0.0 neighbour", 0x3c00, 0x8000, 0x3800, 0x3e00, 0x0000, 0x8000);
  neighbour_case<0>("+inf neighbour", 0x3c00, 0x7c00, 0x3800, 0x3e00, 0x7c00, 0x7c00);
  neighbour_case<1>("+inf neighbour", 0x3c00, 0x7c00, 0x3800, 0x3e00, 0x7c00, 0x7c00);
  neighbour_case<0>("NaN neighbour", 0x3c00, 0x7e01, 0x3800, 0x3e00, 0x7e01, 0x7e01);
  neighbour_case<1>("NaN neighbour", 0x3c00, 0x7e01, 0x3800, 0x3e00, 0x7e01, 0x7e01);
  neighbour_case<0>("subnormal neighbour", 0x3c00, 0x0001, 0x3800, 0x3e00, 0x0001, 0x0001);
  neighbour_case<1>("subnormal neighbour", 0x3c00, 0x0001, 0x3800, 0x3e00, 0x0001, 0x0001);
  // subnormal + subnormal must not flush to zero: 0x0001 + 0x0001 = 0x0002
  neighbour_case<0>("subnormal add (no flush)", 0x0001, 0x1234, 0x0001, 0x0002, 0x1234, 0x1234);
  neighbour_case<1>("subnormal add (no flush)", 0x0001, 0x1234, 0x0001, 0x0002, 0x1234, 0x1234);
  // rounding: 2048 + 1 = 2048 (ties-to-even), 2048 + 3 = 2052
  neighbour_case<0>("round-to-nearest-even", 0x6800, 0x3c00, 0x3c00, 0x6800, 0x3c00, 0x3c00);
  neighbour_case<1>("round-to-nearest-even", 0x6800, 0x3c00, 0x3c00, 0x6800, 0x3c00, 0x3c00);
  neighbour_case<0>("round 2048+3", 0x6800, 0x3c00, 0x4200, 0x6802, 0x3c00, 0x3c00);
  neighbour_case<1>("round 2048+3", 0x6800, 0x3c00, 0x4200, 0x6802, 0x3c00, 0x3c00);

  std::printf("[4] real moe_wna16_gemm_kernel from the patched csrc/moe/moe_wna16.cu\n");
  Stats mh = run_moe<0>(warmup, reps);
  Stats mc = run_moe<1>(warmup, reps);
  std::printf("  -> cas/half2 median ratio: %.1fx\n", mc.med_ms / mh.med_ms);

  std::printf("RESULT: %s (%d failed checks)\n", g_fail ? "FAIL" : "PASS", g_fail);
  return g_fail ? 1 : 0;
}

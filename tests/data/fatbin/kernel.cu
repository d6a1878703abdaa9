// Fixture source for tests/test_fatbin.py: one trivial kernel per translation unit.
// UNIT names the kernel so that two units can be linked into one shared object.
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
__global__ void CAT(pf_scale_, UNIT)(float *x, float a) { x[threadIdx.x] *= a; }
extern "C" void CAT(pf_launch_, UNIT)(float *x, float a) { CAT(pf_scale_, UNIT)<<<1, 32>>>(x, a); }

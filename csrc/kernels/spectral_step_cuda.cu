// CUDA backend of the DDRM spectral step: one thread per coordinate (grid-stride, int64 indices), step scalars read
// from device memory so a captured graph replays with new values.
#include <cuda_runtime.h>

#include "spectral_step.h"

namespace ddrm {

__global__ void spectral_step_kernel(SpectralStepArgs a) {
  const float sqa = a.coef[0], sq1m = a.coef[1], sn = a.coef[2], sqan = a.coef[3];
  const int64_t total = a.batch * a.n;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = idx / a.n, j = idx - b * a.n;
    const bool in_range = j < a.m;
    float s = 0.f, sy = 0.f, u = 0.f;
    if (in_range) {
      s = a.s[b * a.s_bstride + j];
      sy = a.sigma_y[b * a.sy_bstride + j * a.sy_jstride];
      u = a.uty[b * a.m + j];
    }
    const float zz = a.z ? a.z[idx] : philox_normal(static_cast<uint64_t>(a.seeds[b]), a.offset, (uint64_t)j);
    float x0v;
    a.out[idx] = sqan * ddrm_spectral_element(a.xbar[idx], a.epsbar[idx], zz, in_range, s, sy, u, sqa, sq1m, sn,
                                              a.eta, a.eta_b, a.eta_c, a.legacy_zero_singulars, &x0v);
    if (a.x0bar) a.x0bar[idx] = x0v;
  }
}

int spectral_step_cuda(const SpectralStepArgs& a, void* stream) {
  const int64_t total = a.batch * a.n;
  if (total == 0) return 0;
  const int threads = 256;
  int64_t blocks = (total + threads - 1) / threads;
  if (blocks > 65535LL * 32) blocks = 65535LL * 32;  // grid-stride covers the rest
  spectral_step_kernel<<<(unsigned)blocks, threads, 0, static_cast<cudaStream_t>(stream)>>>(a);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace ddrm

// CUDA backend of the grouped DDRM step: one thread per group, grid-stride, int64 indices; the step scalars are
// read from device memory so a captured CUDA graph replays with new values.
#include <cuda_runtime.h>

#include "group_step.h"

namespace ddrm {

template <typename TX, typename TE>
__global__ void group_step_kernel(GroupStepArgs a, int64_t groups) {
  const float sqa = a.coef[0], sq1m = a.coef[1], sn = a.coef[2], sqan = a.coef[3];
  for (int64_t g = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; g < groups; g += (int64_t)gridDim.x * blockDim.x)
    group_update<TX, TE>(a, g, sqa, sq1m, sn, sqan);
}

template <typename TX, typename TE>
static int launch(const GroupStepArgs& a, cudaStream_t stream) {
  const int64_t groups = a.B * (a.C / a.cg) * (a.H / a.rh) * (a.W / a.rw);
  if (groups == 0) return 0;
  const int threads = 256;
  int64_t blocks = (groups + threads - 1) / threads;
  if (blocks > 65535LL * 32) blocks = 65535LL * 32;
  group_step_kernel<TX, TE><<<(unsigned)blocks, threads, 0, stream>>>(a, groups);
  return static_cast<int>(cudaGetLastError());
}

template <typename TX>
static int launch_eps(const GroupStepArgs& a, cudaStream_t s) {
  switch (a.eps_dtype) {
    case DType::kFloat32: return launch<TX, float>(a, s);
    case DType::kFloat16: return launch<TX, Half>(a, s);
    case DType::kBFloat16: return launch<TX, BFloat16>(a, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int group_step_cuda(const GroupStepArgs& a, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (a.x_dtype) {
    case DType::kFloat32: return launch_eps<float>(a, s);
    case DType::kFloat16: return launch_eps<Half>(a, s);
    case DType::kBFloat16: return launch_eps<BFloat16>(a, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace ddrm

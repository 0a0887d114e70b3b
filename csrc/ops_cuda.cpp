// CUDA dispatch of the ops: checks as on the CPU, then the torch-free launcher on the current stream.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include "op_bindings.h"

namespace ddrm {

// CUDA as a device of op_bindings.h: the launcher on the current stream of the inputs' device.
struct Cuda {
  using Guard = c10::cuda::CUDAGuard;
  static void check(const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor for the CUDA kernel");
  }
  static void run(const SpectralStepArgs& a) {
    const int err = spectral_step_cuda(a, c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == 0, "spectral_step CUDA launch failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
  }
  static void run(const GroupStepArgs& a) {
    const int err = group_step_cuda(a, c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == 0, "group_step CUDA launch failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
  }
};

}  // namespace ddrm

TORCH_LIBRARY_IMPL(ddrm_fast, CUDA, m) {
  m.impl("spectral_step", &ddrm::spectral_step_op<ddrm::Cuda>);
  m.impl("group_step", &ddrm::group_step_op<ddrm::Cuda>);
}

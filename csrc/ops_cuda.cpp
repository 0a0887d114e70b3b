// CUDA dispatch of the ops: checks as on the CPU, then the torch-free launcher on the current stream.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include "group_step_args.h"
#include "spectral_step_args.h"

namespace ddrm {

std::tuple<at::Tensor, at::Tensor> spectral_step_cuda_op(const at::Tensor& xbar, const at::Tensor& epsbar,
                                                         const c10::optional<at::Tensor>& z, const at::Tensor& uty,
                                                         const at::Tensor& s, const at::Tensor& sigma_y,
                                                         const at::Tensor& coef, double eta, double eta_b,
                                                         double eta_c, bool legacy_zero_singulars,
                                                         const c10::optional<at::Tensor>& seeds, int64_t offset) {
  TORCH_CHECK(xbar.is_cuda(), "xbar must be a CUDA tensor for the CUDA kernel");
  const c10::cuda::CUDAGuard guard(xbar.device());
  SpectralStepArgs a{};
  auto result = prepare_spectral_step(a, xbar, epsbar, z, uty, s, sigma_y, coef, eta, eta_b, eta_c,
                                      legacy_zero_singulars, seeds, offset);
  const int err = spectral_step_cuda(a, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "spectral_step CUDA launch failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
  return result;
}

std::tuple<at::Tensor, at::Tensor> group_step_cuda_op(
    const at::Tensor& x, const at::Tensor& eps, const at::Tensor& y, const at::Tensor& weights,
    const c10::optional<at::Tensor>& observed, const at::Tensor& sigma_y, const at::Tensor& coef,
    const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& seeds, int64_t offset,
    at::IntArrayRef group_shape, double eta, double eta_b, bool want_x0) {
  TORCH_CHECK(x.is_cuda(), "x must be a CUDA tensor for the CUDA kernel");
  const c10::cuda::CUDAGuard guard(x.device());
  GroupStepArgs a{};
  auto result = prepare_group_step(a, x, eps, y, weights, observed, sigma_y, coef, z, seeds, offset, group_shape, eta,
                                   eta_b, want_x0);
  const int err = group_step_cuda(a, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "group_step CUDA launch failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
  return result;
}

}  // namespace ddrm

TORCH_LIBRARY_IMPL(ddrm_fast, CUDA, m) {
  m.impl("spectral_step", &ddrm::spectral_step_cuda_op);
  m.impl("group_step", &ddrm::group_step_cuda_op);
}

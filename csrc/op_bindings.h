// One definition of each op's binding for every device: check the device, prepare the arguments (every check names
// the argument it rejects), run the device's launcher. A device is a policy struct with a `Guard` (constructed from
// the inputs' device), `check(tensor, name)` and `run(args)` for each op's argument struct.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "group_step_args.h"
#include "spectral_step_args.h"

namespace ddrm {

template <typename Device>
std::tuple<at::Tensor, at::Tensor> spectral_step_op(const at::Tensor& xbar, const at::Tensor& epsbar,
                                                    const c10::optional<at::Tensor>& z, const at::Tensor& uty,
                                                    const at::Tensor& s, const at::Tensor& sigma_y,
                                                    const at::Tensor& coef, double eta, double eta_b,
                                                    c10::optional<double> eta_c, bool legacy_zero_singulars,
                                                    const c10::optional<at::Tensor>& seeds, int64_t offset) {
  Device::check(xbar, "xbar");
  const typename Device::Guard guard(xbar.device());
  SpectralStepArgs a{};
  auto result = prepare_spectral_step(a, xbar, epsbar, z, uty, s, sigma_y, coef, eta, eta_b, eta_c.value_or(eta),
                                      legacy_zero_singulars, seeds, offset);
  Device::run(a);
  return result;
}

template <typename Device>
std::tuple<at::Tensor, at::Tensor> group_step_op(const at::Tensor& x, const at::Tensor& eps, const at::Tensor& y,
                                                 const at::Tensor& weights, const c10::optional<at::Tensor>& observed,
                                                 const at::Tensor& sigma_y, const at::Tensor& coef,
                                                 const c10::optional<at::Tensor>& z,
                                                 const c10::optional<at::Tensor>& seeds, int64_t offset,
                                                 at::IntArrayRef group_shape, double eta, double eta_b,
                                                 bool want_x0, bool clip_x0) {
  Device::check(x, "x");
  const typename Device::Guard guard(x.device());
  GroupStepArgs a{};
  auto result = prepare_group_step(a, x, eps, y, weights, observed, sigma_y, coef, z, seeds, offset, group_shape, eta,
                                   eta_b, want_x0, clip_x0);
  Device::run(a);
  return result;
}

}  // namespace ddrm

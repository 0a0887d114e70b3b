// Tensor -> SpectralStepArgs for the bindings: every check names the argument it rejects.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "philox_args.h"
#include "kernels/spectral_step.h"

namespace ddrm {

inline void check_rows(const at::Tensor& t, const char* name, int64_t batch, int64_t n, const at::Device& dev) {
  TORCH_CHECK(t.dim() == 2, name, " must be 2-D (B, N), got ", t.sizes());
  TORCH_CHECK(t.size(0) == batch && t.size(1) == n, name, " must have shape (", batch, ", ", n, "), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, " must be float32, got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.device() == dev, name, " must be on ", dev, ", got ", t.device());
}

// Validates the inputs, allocates (out, x0bar) and fills `a`.
inline std::tuple<at::Tensor, at::Tensor> prepare_spectral_step(
    SpectralStepArgs& a, const at::Tensor& xbar, const at::Tensor& epsbar, const c10::optional<at::Tensor>& z,
    const at::Tensor& uty, const at::Tensor& s, const at::Tensor& sigma_y, const at::Tensor& coef, double eta,
    double eta_b, double eta_c, bool legacy, const c10::optional<at::Tensor>& seeds, int64_t offset) {
  TORCH_CHECK(xbar.dim() == 2, "xbar must be 2-D (B, N), got ", xbar.sizes());
  const int64_t batch = xbar.size(0), n = xbar.size(1);
  const at::Device dev = xbar.device();
  check_rows(xbar, "xbar", batch, n, dev);
  check_rows(epsbar, "epsbar", batch, n, dev);
  if (z.has_value()) {
    check_rows(*z, "z", batch, n, dev);
  } else {
    check_seeds(seeds, batch, dev);
  }
  TORCH_CHECK(offset >= 0, "offset must be >= 0, got ", offset);
  TORCH_CHECK(uty.dim() == 2 && uty.size(0) == batch && uty.size(1) <= n, "uty must be (B, m) with B=", batch,
              " and m <= N=", n, ", got ", uty.sizes());
  const int64_t m = uty.size(1);
  check_rows(uty, "uty", batch, m, dev);
  TORCH_CHECK(s.dim() == 2 && (s.size(0) == 1 || s.size(0) == batch) && s.size(1) == m,
              "s must be (1|B, m) with B=", batch, ", m=", m, ", got ", s.sizes());
  check_rows(s, "s", s.size(0), m, dev);
  TORCH_CHECK(sigma_y.dim() == 2 && (sigma_y.size(0) == 1 || sigma_y.size(0) == batch) &&
                  (sigma_y.size(1) == 1 || sigma_y.size(1) == m),
              "sigma_y must be (1|B, 1|m) with B=", batch, ", m=", m, ", got ", sigma_y.sizes());
  check_rows(sigma_y, "sigma_y", sigma_y.size(0), sigma_y.size(1), dev);
  TORCH_CHECK(coef.dim() == 1 && coef.size(0) == 4 && coef.scalar_type() == at::kFloat && coef.is_contiguous(),
              "coef must be a contiguous float32 tensor of 4 values, got ", coef.sizes(), " ", coef.scalar_type());
  TORCH_CHECK(coef.device() == dev, "coef must be on ", dev, ", got ", coef.device());
  TORCH_CHECK(eta >= 0 && eta <= 1 && eta_c >= 0 && eta_c <= 1 && eta_b >= 0 && eta_b <= 1,
              "eta, eta_b and eta_c must lie in [0, 1], got ", eta, ", ", eta_b, ", ", eta_c);

  at::Tensor out = at::empty_like(xbar);
  at::Tensor x0 = at::empty_like(xbar);
  a.xbar = xbar.data_ptr<float>();
  a.epsbar = epsbar.data_ptr<float>();
  a.z = z.has_value() ? z->data_ptr<float>() : nullptr;
  a.seeds = z.has_value() ? nullptr : seeds->data_ptr<int64_t>();
  a.offset = static_cast<uint64_t>(offset);
  a.uty = uty.data_ptr<float>();
  a.s = s.data_ptr<float>();
  a.sigma_y = sigma_y.data_ptr<float>();
  a.coef = coef.data_ptr<float>();
  a.out = out.data_ptr<float>();
  a.x0bar = x0.data_ptr<float>();
  a.batch = batch;
  a.n = n;
  a.m = m;
  a.s_bstride = s.size(0) == 1 ? 0 : m;
  a.sy_bstride = sigma_y.size(0) == 1 ? 0 : sigma_y.size(1);
  a.sy_jstride = sigma_y.size(1) == 1 ? 0 : 1;
  a.eta = static_cast<float>(eta);
  a.eta_b = static_cast<float>(eta_b);
  a.eta_c = static_cast<float>(eta_c);
  a.legacy_zero_singulars = legacy;
  return {out, x0};
}

}  // namespace ddrm

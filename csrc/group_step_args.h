// Tensor -> GroupStepArgs for the bindings: every check names the argument it rejects.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "philox_args.h"
#include "kernels/group_step.h"

namespace ddrm {

inline DType image_dtype(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kFloat32;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default: TORCH_CHECK(false, name, " must be float32, float16 or bfloat16, got ", t.scalar_type());
  }
  return DType::kFloat32;
}

inline Strides4 strides4(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

inline void check_small(const at::Tensor& t, const char* name, int64_t batch, int64_t cols, const at::Device& dev) {
  TORCH_CHECK(t.dim() == 2 && (t.size(0) == 1 || t.size(0) == batch) && (t.size(1) == 1 || t.size(1) == cols),
              name, " must be (1|B, 1|G) with B=", batch, ", G=", cols, ", got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous(), name, " must be contiguous float32");
  TORCH_CHECK(t.device() == dev, name, " must be on ", dev, ", got ", t.device());
}

inline std::tuple<at::Tensor, at::Tensor> prepare_group_step(
    GroupStepArgs& a, const at::Tensor& x, const at::Tensor& eps, const at::Tensor& y, const at::Tensor& weights,
    const c10::optional<at::Tensor>& observed, const at::Tensor& sigma_y, const at::Tensor& coef,
    const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& seeds, int64_t offset,
    at::IntArrayRef group_shape, double eta, double eta_b, bool want_x0, bool clip_x0) {
  TORCH_CHECK(x.dim() == 4, "x must be (B, C, H, W), got ", x.sizes());
  const at::Device dev = x.device();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(group_shape.size() == 3, "group_shape must have 3 values (cg, rh, rw), got ", group_shape.size());
  const int64_t cg = group_shape[0], rh = group_shape[1], rw = group_shape[2];
  TORCH_CHECK(cg > 0 && rh > 0 && rw > 0 && C % cg == 0 && H % rh == 0 && W % rw == 0, "group_shape (", cg, ", ",
              rh, ", ", rw, ") must be positive and divide the image shape (", C, ", ", H, ", ", W, ")");
  const int64_t G = (C / cg) * (H / rh) * (W / rw);
  TORCH_CHECK(eps.dim() == 4 && eps.sizes() == x.sizes(), "eps must have the shape of x ", x.sizes(), ", got ",
              eps.sizes());
  TORCH_CHECK(eps.device() == dev, "eps must be on ", dev, ", got ", eps.device());
  TORCH_CHECK(y.size(0) == B && y.numel() == B * G && y.is_contiguous() && y.scalar_type() == at::kFloat,
              "y must be contiguous float32 with ", G, " measurements per sample (B=", B, "), got ", y.sizes(), " ",
              y.scalar_type());
  TORCH_CHECK(y.device() == dev, "y must be on ", dev, ", got ", y.device());
  TORCH_CHECK(weights.dim() == 1 && weights.numel() == cg * rh * rw && weights.scalar_type() == at::kFloat &&
                  weights.is_contiguous() && weights.device() == dev,
              "weights must be a contiguous float32 vector of ", cg * rh * rw, " values on ", dev, ", got ",
              weights.sizes(), " ", weights.scalar_type(), " on ", weights.device());
  if (observed.has_value()) {
    TORCH_CHECK(observed->dim() == 2 && (observed->size(0) == 1 || observed->size(0) == B) && observed->size(1) == G,
                "observed must be (1|B, G) with G=", G, ", got ", observed->sizes());
    TORCH_CHECK(observed->scalar_type() == at::kFloat && observed->is_contiguous() && observed->device() == dev,
                "observed must be contiguous float32 on ", dev);
  }
  check_small(sigma_y, "sigma_y", B, G, dev);
  TORCH_CHECK(coef.dim() == 1 && coef.size(0) == 4 && coef.scalar_type() == at::kFloat && coef.is_contiguous() &&
                  coef.device() == dev,
              "coef must be a contiguous float32 tensor of 4 values on ", dev);
  if (z.has_value()) {
    TORCH_CHECK(z->sizes() == x.sizes() && z->scalar_type() == at::kFloat && z->device() == dev,
                "z must be float32 with the shape of x ", x.sizes(), " on ", dev, ", got ", z->sizes(), " ",
                z->scalar_type());
  } else {
    check_seeds(seeds, B, dev);
  }
  TORCH_CHECK(offset >= 0, "offset must be >= 0, got ", offset);
  TORCH_CHECK(eta >= 0 && eta <= 1 && eta_b >= 0 && eta_b <= 1, "eta and eta_b must lie in [0, 1], got ", eta, ", ",
              eta_b);

  at::Tensor out = at::empty_like(x, x.options().dtype(at::kFloat));
  at::Tensor x0 = want_x0 ? at::empty_like(x, x.options().dtype(at::kFloat)) : at::empty({0}, x.options().dtype(at::kFloat));
  a.x = x.data_ptr(); a.xs = strides4(x); a.x_dtype = image_dtype(x, "x");
  a.eps = eps.data_ptr(); a.es = strides4(eps); a.eps_dtype = image_dtype(eps, "eps");
  a.z = z.has_value() ? z->data_ptr<float>() : nullptr;
  a.zs = z.has_value() ? strides4(*z) : Strides4{0, 0, 0, 0};
  a.seeds = z.has_value() ? nullptr : seeds->data_ptr<int64_t>();
  a.offset = static_cast<uint64_t>(offset);
  a.y = y.data_ptr<float>();
  a.weights = weights.data_ptr<float>();
  a.observed = observed.has_value() ? observed->data_ptr<float>() : nullptr;
  a.obs_bstride = observed.has_value() && observed->size(0) == B && B > 1 ? G : 0;
  a.sigma_y = sigma_y.data_ptr<float>();
  a.sy_bstride = sigma_y.size(0) == 1 ? 0 : sigma_y.size(1);
  a.sy_jstride = sigma_y.size(1) == 1 ? 0 : 1;
  a.coef = coef.data_ptr<float>();
  a.out = out.data_ptr<float>(); a.os = strides4(out);
  a.x0 = want_x0 ? x0.data_ptr<float>() : nullptr;
  a.x0s = want_x0 ? strides4(x0) : Strides4{0, 0, 0, 0};
  a.B = B; a.C = C; a.H = H; a.W = W;
  a.cg = static_cast<int>(cg); a.rh = static_cast<int>(rh); a.rw = static_cast<int>(rw);
  a.eta = static_cast<float>(eta); a.eta_b = static_cast<float>(eta_b);
  a.clip_x0 = clip_x0;
  return {out, x0};
}

}  // namespace ddrm

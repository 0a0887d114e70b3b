// The one-pass DDRM step for rank-one-per-group operators (docs/ddrm.md, "Rank one per group"), torch-free.
// Per group g (cg channels x rh x rw pixels, weights k, v = k/|k|, s = |k| observed_g):
//   x0 = (x - sqrt(1-abar) eps) / sqrt(abar),  w = x0 + sqrt(1-eta^2) sigma' eps + eta sigma' z   (case 3)
//   new_1 = three-case update of the measured coordinate from v.x0, v.eps, v.z, y_g, s, sigma_y
//   x_{t'} = sqrt(abar') (w + v (new_1 - v.w))
// One thread (CPU: one loop iteration) per group; pass 1 forms the three dot products, pass 2 writes, re-reading the
// group (from cache) instead of holding up to n values in registers.
#pragma once

#include "common.h"
#include "ddrm_update.h"
#include "philox.h"

namespace ddrm {

struct GroupStepArgs {
  const void* x; Strides4 xs; DType x_dtype;      // (B, C, H, W) x_t
  const void* eps; Strides4 es; DType eps_dtype;  // (B, C, H, W) eps (may be a channel slice of a 2C output)
  const float* z; Strides4 zs;                    // (B, C, H, W) noise, or nullptr: Philox from seeds/offset
  const int64_t* seeds; uint64_t offset;          // per-sample Philox keys (B,) and the step's counter offset
  const float* y;                                 // (B, G) measurements, natural order
  const float* weights;                           // k, n = cg*rh*rw values (channel, row, col)
  const float* observed; int64_t obs_bstride;     // (1|B, G) or nullptr (all observed)
  const float* sigma_y; int64_t sy_bstride, sy_jstride;
  const float* coef;                              // sqrt(abar_t), sqrt(1-abar_t), sigma', sqrt(abar')
  float* out; Strides4 os;                        // (B, C, H, W) float32 x_{t'}
  float* x0; Strides4 x0s;                        // (B, C, H, W) float32 x0, or nullptr
  int64_t B, C, H, W;
  int cg, rh, rw;
  float eta, eta_b;
  bool clip_x0;                                   // clamp x0 to [-1, 1], eps made consistent with it
};

// v clamped to [-1, 1] (NaN stays NaN, as torch.clamp): comparisons, which vectorise where fminf/fmaxf do not
DDRM_HD float clamp_unit(float v) { return v > 1.0f ? 1.0f : (v < -1.0f ? -1.0f : v); }

// x0 from x_t and eps (eps in, the eps the step uses out): with clip_x0, x0 clamped to [-1, 1] and
// eps' = (x_t - sqrt(abar) x0) / sqrt(1 - abar), so the step is the one for the clamped prediction (DDPM's
// clip_denoised; docs/ddrm.md, "Clipping x0").
DDRM_HD float predict_x0(float xv, float& ev, float sqa, float sq1m, bool clip_x0) {
  float x0v = (xv - sq1m * ev) / sqa;
  if (clip_x0) {
    x0v = clamp_unit(x0v);
    ev = (xv - sqa * x0v) / sq1m;
  }
  return x0v;
}

// The measured coordinate of a group, from its dot products with v (x0, eps, z) and its singular value s, sigma_y and
// measurement y: its three-case update minus its case 3 (w's own component w1). Every backend adds v times this to
// w, in every group layout. An unobserved group (s = 0) is case 3 in every direction: delta 0.
DDRM_HD float measured_delta(float d_x0, float d_eps, float d_z, float s, float sy, float y, float sn, float c3,
                             float c3z, float eta, float eta_b) {
  const float w1 = d_x0 + c3 * d_eps + c3z * d_z;
  return ddrm_update(d_x0, d_eps, d_z, true, s, sy, y, sn, eta, eta_b, eta, false) - w1;
}

// measured_delta of group g of sample b, its s, sigma_y and y read from the arguments.
DDRM_HD float measured_delta(const GroupStepArgs& a, int64_t b, int64_t g, int64_t G, float d_x0, float d_eps,
                             float d_z, float k_norm, float sn, float c3, float c3z) {
  const float s = a.observed ? k_norm * a.observed[b * a.obs_bstride + g] : k_norm;
  return measured_delta(d_x0, d_eps, d_z, s, a.sigma_y[b * a.sy_bstride + g * a.sy_jstride], a.y[b * G + g], sn, c3,
                        c3z, a.eta, a.eta_b);
}

// Element t (channel, row, col order) of group (b, cy, i, j): its position and eps, x0 and noise there.
template <typename TX, typename TE>
DDRM_HD void group_element(const GroupStepArgs& a, int64_t b, int64_t cy, int64_t i, int64_t j, int t,
                           uint64_t seed, float sqa, float sq1m, int64_t& c, int64_t& h, int64_t& w, float& ev,
                           float& x0v, float& zv) {
  c = cy * a.cg + t / (a.rh * a.rw);
  h = i * a.rh + (t / a.rw) % a.rh;
  w = j * a.rw + t % a.rw;
  ev = to_float(static_cast<const TE*>(a.eps)[a.es.at(b, c, h, w)]);
  x0v = predict_x0(to_float(static_cast<const TX*>(a.x)[a.xs.at(b, c, h, w)]), ev, sqa, sq1m, a.clip_x0);
  zv = a.z ? a.z[a.zs.at(b, c, h, w)] : philox_normal(seed, a.offset, (c * a.H + h) * a.W + w);
}

// The generic update of group gi (any group size): pass 1 forms the dot products with v, pass 2 writes, re-reading
// the group (from cache) instead of holding up to n values in registers.
template <typename TX, typename TE>
DDRM_HD void group_update(const GroupStepArgs& a, int64_t gi, float sqa, float sq1m, float sn, float sqan) {
  const int64_t gw = a.W / a.rw, gh = a.H / a.rh, gc = a.C / a.cg;
  const int64_t G = gc * gh * gw;
  const int64_t b = gi / G, g = gi - b * G;
  const int64_t cy = g / (gh * gw), i = (g / gw) % gh, j = g % gw;
  const int n = a.cg * a.rh * a.rw;
  // |k| from the weights themselves (n values, cached): no host read of a device tensor
  float k2 = 0.f;
  for (int t = 0; t < n; ++t) k2 += a.weights[t] * a.weights[t];
  const float k_norm = sqrtf(k2), inv_k = 1.0f / k_norm;
  const float c3 = sqrtf(1.0f - a.eta * a.eta) * sn, c3z = a.eta * sn;
  const uint64_t seed = a.z ? 0 : static_cast<uint64_t>(a.seeds[b]);
  int64_t c, h, w;
  float ev, x0v, zv, d_x0 = 0.f, d_eps = 0.f, d_z = 0.f;
  for (int t = 0; t < n; ++t) {
    group_element<TX, TE>(a, b, cy, i, j, t, seed, sqa, sq1m, c, h, w, ev, x0v, zv);
    const float v = a.weights[t] * inv_k;
    d_x0 += v * x0v;
    d_eps += v * ev;
    d_z += v * zv;
  }
  const float delta = measured_delta(a, b, g, G, d_x0, d_eps, d_z, k_norm, sn, c3, c3z);
  for (int t = 0; t < n; ++t) {  // x_{t'} = sqrt(abar') (w + v delta)
    group_element<TX, TE>(a, b, cy, i, j, t, seed, sqa, sq1m, c, h, w, ev, x0v, zv);
    a.out[a.os.at(b, c, h, w)] = sqan * (x0v + c3 * ev + c3z * zv + a.weights[t] * inv_k * delta);
    if (a.x0) a.x0[a.x0s.at(b, c, h, w)] = x0v;
  }
}

// CPU: rows [row_begin, row_end) of the B * (C/cg) * (H/rh) rows of groups (callers parallelise).
void group_step_cpu(const GroupStepArgs& a, int64_t row_begin, int64_t row_end);

// CUDA: all groups on `stream` (a cudaStream_t); returns the cudaError_t of the launch (0 = success).
int group_step_cuda(const GroupStepArgs& a, void* stream);

}  // namespace ddrm

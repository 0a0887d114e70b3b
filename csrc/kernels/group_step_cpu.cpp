// CPU backend of the grouped DDRM step, dispatched on the input element types. Callers split the work by rows of
// groups, [r0, r1) of B * (C/cg) * (H/rh) rows.
#include <algorithm>
#include <cmath>

#include "group_step.h"

namespace ddrm {

constexpr int kMaxCachedGroup = 64;

// One-element groups (denoising, inpainting) on rows contiguous along W: the step is elementwise. Each row goes in
// chunks: the measurement side (the mask, sigma_y, Philox noise), which may be broadcast or drawn, is first laid out
// in unit-stride buffers, so the main loop has no branch and no strided load and the compiler vectorises it.
template <typename TX, typename TE, bool kClip>
static void run_pixels(const GroupStepArgs& a, int64_t r0, int64_t r1) {
  constexpr int64_t kChunk = 256;
  float s_buf[kChunk], sy_buf[kChunk], z_buf[kChunk], x0_buf[kChunk];
  const float sqa = a.coef[0], sq1m = a.coef[1], sn = a.coef[2], sqan = a.coef[3];
  const float k_norm = std::fabs(a.weights[0]), v = a.weights[0] / k_norm;
  const float c3 = std::sqrt(1.0f - a.eta * a.eta) * sn, c3z = a.eta * sn;
  const float eta = a.eta, eta_b = a.eta_b;
  const int64_t W = a.W, G = a.C * a.H * a.W;
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t b = row / (a.C * a.H), c = (row / a.H) % a.C, h = row % a.H, g0 = (c * a.H + h) * W;
    const uint64_t seed = a.z ? 0 : static_cast<uint64_t>(a.seeds[b]);
    for (int64_t j0 = 0; j0 < W; j0 += kChunk) {
      const int64_t len = std::min(kChunk, W - j0), g = g0 + j0;
      for (int64_t j = 0; j < len; ++j) {
        s_buf[j] = a.observed ? k_norm * a.observed[b * a.obs_bstride + g + j] : k_norm;
        sy_buf[j] = a.sigma_y[b * a.sy_bstride + (g + j) * a.sy_jstride];
      }
      const float* zr = a.z ? a.z + a.zs.at(b, c, h, j0) : z_buf;
      if (!a.z)
        for (int64_t j = 0; j < len; ++j) z_buf[j] = philox_normal(seed, a.offset, static_cast<uint64_t>(g + j));
      const TX* __restrict x = static_cast<const TX*>(a.x) + a.xs.at(b, c, h, j0);
      const TE* __restrict e = static_cast<const TE*>(a.eps) + a.es.at(b, c, h, j0);
      const float* __restrict y = a.y + b * G + g;
      float* __restrict out = a.out + a.os.at(b, c, h, j0);
      for (int64_t j = 0; j < len; ++j) {
        float ev = to_float(e[j]);
        const float x0v = predict_x0(to_float(x[j]), ev, sqa, sq1m, kClip);  // kClip constant: no branch left
        const float delta = measured_delta(v * x0v, v * ev, v * zr[j], s_buf[j], sy_buf[j], y[j], sn, c3, c3z, eta,
                                           eta_b);
        out[j] = sqan * (x0v + c3 * ev + c3z * zr[j] + v * delta);
        x0_buf[j] = x0v;
      }
      if (a.x0)
        for (int64_t j = 0; j < len; ++j) a.x0[a.x0s.at(b, c, h, j0 + j)] = x0_buf[j];
    }
  }
}

// Rows of groups: (b, cy, i) for one row of GW groups; indices are advanced along the row instead of being divided
// out per group (the divisions cost more than the arithmetic).
template <typename TX, typename TE>
static void run(const GroupStepArgs& a, int64_t r0, int64_t r1) {
  const float sqa = a.coef[0], sq1m = a.coef[1], sn = a.coef[2], sqan = a.coef[3];
  const int n = a.cg * a.rh * a.rw;
  const int64_t gw = a.W / a.rw, gh = a.H / a.rh, G = (a.C / a.cg) * gh * gw, plane = a.H * a.W;
  if (n > kMaxCachedGroup) {  // large groups: the generic per-group update
    for (int64_t g = r0 * gw; g < r1 * gw; ++g) group_update<TX, TE>(a, g, sqa, sq1m, sn, sqan);
    return;
  }
  const bool unit_rows = a.xs.w == 1 && a.es.w == 1 && a.os.w == 1 && (!a.z || a.zs.w == 1) &&
                         (!a.x0 || a.x0s.w == 1);
  if (n == 1 && unit_rows) {
    return a.clip_x0 ? run_pixels<TX, TE, true>(a, r0, r1) : run_pixels<TX, TE, false>(a, r0, r1);
  }
  float k2 = 0.f;
  for (int t = 0; t < n; ++t) k2 += a.weights[t] * a.weights[t];
  const float k_norm = std::sqrt(k2), inv_k = 1.0f / k_norm;
  float v[kMaxCachedGroup], x0b[kMaxCachedGroup], eb[kMaxCachedGroup], zb[kMaxCachedGroup];
  int64_t ox[kMaxCachedGroup], oe[kMaxCachedGroup], oz[kMaxCachedGroup], oo[kMaxCachedGroup], el[kMaxCachedGroup];
  for (int t = 0; t < n; ++t) v[t] = a.weights[t] * inv_k;
  const float c3 = std::sqrt(1.0f - a.eta * a.eta) * sn, c3z = a.eta * sn;
  const TX* x = static_cast<const TX*>(a.x);
  const TE* e = static_cast<const TE*>(a.eps);
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t b = row / (G / gw), rg = row - b * (G / gw), cy = rg / gh, i = rg % gh;
    const uint64_t seed = a.z ? 0 : static_cast<uint64_t>(a.seeds[b]);
    int t = 0;
    for (int ca = 0; ca < a.cg; ++ca)  // offsets of the row's first group
      for (int p = 0; p < a.rh; ++p)
        for (int q = 0; q < a.rw; ++q, ++t) {
          const int64_t c = cy * a.cg + ca, h = i * a.rh + p;
          ox[t] = a.xs.at(b, c, h, q); oe[t] = a.es.at(b, c, h, q); oz[t] = a.zs.at(b, c, h, q);
          oo[t] = a.os.at(b, c, h, q); el[t] = c * plane + h * a.W + q;
        }
    for (int64_t j = 0; j < gw; ++j) {
      const int64_t dx = j * a.rw * a.xs.w, de = j * a.rw * a.es.w, dz = j * a.rw * a.zs.w, dout = j * a.rw * a.os.w;
      float d_x0 = 0.f, d_eps = 0.f, d_z = 0.f;
      for (t = 0; t < n; ++t) {
        eb[t] = to_float(e[oe[t] + de]);
        x0b[t] = predict_x0(to_float(x[ox[t] + dx]), eb[t], sqa, sq1m, a.clip_x0);
        zb[t] = a.z ? a.z[oz[t] + dz] : philox_normal(seed, a.offset, static_cast<uint64_t>(el[t] + j * a.rw));
        d_x0 += v[t] * x0b[t];
        d_eps += v[t] * eb[t];
        d_z += v[t] * zb[t];
      }
      const float delta = measured_delta(a, b, rg * gw + j, G, d_x0, d_eps, d_z, k_norm, sn, c3, c3z);
      for (t = 0; t < n; ++t) {
        a.out[oo[t] + dout] = sqan * (x0b[t] + c3 * eb[t] + c3z * zb[t] + v[t] * delta);
        if (a.x0) a.x0[oo[t] + dout] = x0b[t];  // x0 is allocated like out
      }
    }
  }
}

template <typename TX>
static void run_eps(const GroupStepArgs& a, int64_t g0, int64_t g1) {
  switch (a.eps_dtype) {
    case DType::kFloat32: return run<TX, float>(a, g0, g1);
    case DType::kFloat16: return run<TX, Half>(a, g0, g1);
    case DType::kBFloat16: return run<TX, BFloat16>(a, g0, g1);
  }
}

void group_step_cpu(const GroupStepArgs& a, int64_t g0, int64_t g1) {
  switch (a.x_dtype) {
    case DType::kFloat32: return run_eps<float>(a, g0, g1);
    case DType::kFloat16: return run_eps<Half>(a, g0, g1);
    case DType::kBFloat16: return run_eps<BFloat16>(a, g0, g1);
  }
}

}  // namespace ddrm

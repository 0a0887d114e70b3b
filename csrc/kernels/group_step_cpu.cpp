// CPU backend of the grouped DDRM step, dispatched on the input element types. Callers split the work by rows of
// groups, [r0, r1) of B * (C/cg) * (H/rh) rows.
#include <cmath>

#include "group_step.h"

namespace ddrm {

constexpr int kMaxCachedGroup = 64;

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

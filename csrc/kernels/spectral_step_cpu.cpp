// CPU backend of the DDRM spectral step: a flat inner loop per row (vectorisable: no calls, no aliasing).
#include <vector>

#include "spectral_step.h"

namespace ddrm {

void spectral_step_cpu(const SpectralStepArgs& a, int64_t row_begin, int64_t row_end) {
  const float sqa = a.coef[0], sq1m = a.coef[1], sn = a.coef[2], sqan = a.coef[3];
  std::vector<float> drawn(a.z ? 0 : a.n);  // one row of Philox noise, so the update loops stay call-free
  for (int64_t b = row_begin; b < row_end; ++b) {
    const float* __restrict__ xb = a.xbar + b * a.n;
    const float* __restrict__ eb = a.epsbar + b * a.n;
    if (!a.z) {
      const uint64_t seed = static_cast<uint64_t>(a.seeds[b]);
      for (int64_t j = 0; j < a.n; ++j) drawn[j] = philox_normal(seed, a.offset, static_cast<uint64_t>(j));
    }
    const float* __restrict__ zz = a.z ? a.z + b * a.n : drawn.data();
    const float* __restrict__ u = a.uty + b * a.m;
    const float* __restrict__ s = a.s + b * a.s_bstride;
    const float* __restrict__ sy = a.sigma_y + b * a.sy_bstride;
    float* __restrict__ out = a.out + b * a.n;
    float* __restrict__ x0 = a.x0bar ? a.x0bar + b * a.n : nullptr;
    for (int64_t j = 0; j < a.m; ++j) {
      float x0v;
      out[j] = sqan * ddrm_spectral_element(xb[j], eb[j], zz[j], true, s[j], sy[j * a.sy_jstride], u[j], sqa, sq1m,
                                            sn, a.eta, a.eta_b, a.eta_c, a.legacy_zero_singulars, &x0v);
      if (x0) x0[j] = x0v;
    }
    // past m every coordinate is unmeasured: case 3 only
    const float c3 = sqrtf(1.0f - a.eta_c * a.eta_c) * sn, c3z = a.eta_c * sn;
    for (int64_t j = a.m; j < a.n; ++j) {
      const float x0v = (xb[j] - sq1m * eb[j]) / sqa;
      out[j] = sqan * (x0v + c3 * eb[j] + c3z * zz[j]);
      if (x0) x0[j] = x0v;
    }
  }
}

}  // namespace ddrm

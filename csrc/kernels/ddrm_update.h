// The three-case DDRM update of one spectral coordinate (docs/ddrm.md, "The update"): the single definition of the math
// that the spectral step and the grouped step (for its measured coordinate) evaluate, on the CPU and on CUDA.
#pragma once

#include "common.h"

namespace ddrm {

// x0, eb, zz: x0bar, epsbar and the noise of the coordinate; s, sy, u: its singular value, noise std and U^T y
// (read only when `in_range`, i.e. the coordinate pairs with a measurement); sn = sigma'.
DDRM_HD float ddrm_update(float x0, float eb, float zz, bool in_range, float s, float sy, float u, float sn,
                          float eta, float eta_b, float eta_c, bool legacy) {
  // Every case is evaluated and one selected, with no branch: loops over elements vectorise, warps do not diverge.
  // case 3: unmeasured (or s sigma' == sigma_y): DDIM in this coordinate
  const float nw3 = x0 + sqrtf(1.0f - eta_c * eta_c) * sn * eb + eta_c * sn * zz;
  const bool measured = in_range && (legacy || s > 0.0f);
  const float s_safe = s != 0.0f ? s : 1.0f, sy_safe = sy > 0.0f ? sy : 1.0f;
  // case 1: noisier than y
  const float r = eta_b * sy / s_safe;
  const float d = sn * sn - r * r;  // (a comparison, not fmaxf, whose NaN rules keep loops from vectorising)
  const float nw1 = eta_b * (u / s_safe) + (1.0f - eta_b) * x0 + sqrtf(d > 0.0f ? d : 0.0f) * zz;
  // case 2: less noisy than y
  const float nw2 = x0 + sqrtf(1.0f - eta * eta) * sn * (u - s * x0) / sy_safe + eta * sn * zz;
  const float s_sn = s * sn;
  const float nw = s_sn > sy ? nw1 : (s_sn < sy ? nw2 : nw3);
  return measured ? nw : nw3;
}

}  // namespace ddrm

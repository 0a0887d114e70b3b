// The three-case DDRM update of one spectral coordinate (docs/ddrm.md, "The update"): the single definition of the math
// that the spectral step and the grouped step (for its measured coordinate) evaluate, on the CPU and on CUDA.
#pragma once

#include "common.h"

namespace ddrm {

// x0, eb, zz: x0bar, epsbar and the noise of the coordinate; s, sy, u: its singular value, noise std and U^T y
// (read only when `in_range`, i.e. the coordinate pairs with a measurement); sn = sigma'.
DDRM_HD float ddrm_update(float x0, float eb, float zz, bool in_range, float s, float sy, float u, float sn,
                          float eta, float eta_b, float eta_c, bool legacy) {
  // case 3: unmeasured (or s sigma' == sigma_y): DDIM in this coordinate
  float nw = x0 + sqrtf(1.0f - eta_c * eta_c) * sn * eb + eta_c * sn * zz;
  if (in_range && (legacy || s > 0.0f)) {
    const float s_sn = s * sn;
    if (s_sn > sy) {  // case 1: noisier than y
      const float r = eta_b * sy / s;
      nw = eta_b * (u / s) + (1.0f - eta_b) * x0 + sqrtf(fmaxf(sn * sn - r * r, 0.0f)) * zz;
    } else if (s_sn < sy) {  // case 2: less noisy than y
      nw = x0 + sqrtf(1.0f - eta * eta) * sn * (u - s * x0) / sy + eta * sn * zz;
    }
  }
  return nw;
}

}  // namespace ddrm

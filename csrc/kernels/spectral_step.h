// DDRM spectral step (docs/ddrm.md, "The update"), torch-free: the three-case update on V^T-space rows, fused with the
// x0 prediction. One definition of the math per backend: spectral_step_cpu.cpp and spectral_step_cuda.cu both
// evaluate ddrm_spectral_element() below, i.e. ddrm_update().
#pragma once

#include "common.h"
#include "ddrm_update.h"
#include "philox.h"

namespace ddrm {

// Plain pointers and sizes of one spectral step. Rows are batch samples; all float32, row-major.
struct SpectralStepArgs {
  const float* xbar;    // (B, N) V^T x_t
  const float* epsbar;  // (B, N) V^T eps
  const float* z;       // (B, N) the step's noise, or nullptr: Philox from seeds/offset, element = coordinate
  const int64_t* seeds; // (B,) per-sample Philox keys when z is nullptr
  uint64_t offset;      // the step's Philox counter offset
  const float* uty;     // (B, m) U^T y
  const float* s;       // singular values, row stride s_bstride (0: shared by the batch), length m
  const float* sigma_y; // noise std, element (b, j) at b * sy_bstride + j * sy_jstride
  const float* coef;    // 4 floats: sqrt(abar_t), sqrt(1 - abar_t), sigma', sqrt(abar'); read where the data is
  float* out;           // (B, N) sqrt(abar') * new
  float* x0bar;         // (B, N) x0 prediction, or nullptr
  int64_t batch, n, m;
  int64_t s_bstride, sy_bstride, sy_jstride;
  float eta, eta_b, eta_c;
  bool legacy_zero_singulars;  // the original DDRM: a zero singular value below m counts as measured
};

// x0 prediction and update of one coordinate.
DDRM_HD float ddrm_spectral_element(float xb, float eb, float zz, bool in_range, float s, float sy, float u,
                                    float sqa, float sq1m, float sn, float eta, float eta_b, float eta_c,
                                    bool legacy, float* x0_out) {
  const float x0 = (xb - sq1m * eb) / sqa;
  *x0_out = x0;
  return ddrm_update(x0, eb, zz, in_range, s, sy, u, sn, eta, eta_b, eta_c, legacy);
}

// CPU: rows [row_begin, row_end) of the step (callers parallelise over rows).
void spectral_step_cpu(const SpectralStepArgs& a, int64_t row_begin, int64_t row_end);

// CUDA: the whole step on `stream` (a cudaStream_t); returns the launch's cudaError_t as int (0 = success).
int spectral_step_cuda(const SpectralStepArgs& a, void* stream);

}  // namespace ddrm

// ctest for the CPU spectral step: every case of the update against the spec's formulas written out in double.
#include <cmath>
#include <cstdio>
#include <vector>

#include "spectral_step.h"

static int failures = 0;

static void expect_near(double got, double want, const char* what, int j) {
  if (!(std::fabs(got - want) <= 1e-5 * (1.0 + std::fabs(want)))) {
    std::printf("FAIL %s[%d]: got %.8f want %.8f\n", what, j, got, want);
    ++failures;
  }
}

int main() {
  // one row, N = 6, m = 4: coordinates 0..3 measured with s = {2, 0.5, 0, 1}, 4..5 unmeasured
  const int B = 2, N = 6, M = 4;
  const double sqa = 0.8, sq1m = 0.6, sn = 0.75, sqan = 0.8;
  const double eta = 0.85, eta_b = 0.7, eta_c = 0.5;
  std::vector<float> xbar(B * N), eps(B * N), z(B * N), uty(B * M);
  for (int i = 0; i < B * N; ++i) {
    xbar[i] = 0.3f * (i - 5);
    eps[i] = 0.1f * (7 - i);
    z[i] = 0.05f * i - 0.2f;
  }
  for (int i = 0; i < B * M; ++i) uty[i] = 0.2f * i - 0.4f;
  std::vector<float> s = {2.0f, 0.5f, 0.0f, 1.0f};
  std::vector<float> sigma_y = {0.4f, 0.9f};  // per sample: row 0 and row 1 see different cases
  std::vector<float> coef = {(float)sqa, (float)sq1m, (float)sn, (float)sqan};
  for (int legacy = 0; legacy < 2; ++legacy) {
    std::vector<float> out(B * N), x0(B * N);
    ddrm::SpectralStepArgs a{};
    a.xbar = xbar.data(); a.epsbar = eps.data(); a.z = z.data(); a.uty = uty.data(); a.s = s.data();
    a.sigma_y = sigma_y.data(); a.coef = coef.data(); a.out = out.data(); a.x0bar = x0.data();
    a.batch = B; a.n = N; a.m = M; a.s_bstride = 0; a.sy_bstride = 1; a.sy_jstride = 0;
    a.eta = (float)eta; a.eta_b = (float)eta_b; a.eta_c = (float)eta_c; a.legacy_zero_singulars = legacy;
    ddrm::spectral_step_cpu(a, 0, B);
    for (int b = 0; b < B; ++b) {
      for (int j = 0; j < N; ++j) {
        const int i = b * N + j;
        const double xx0 = (xbar[i] - sq1m * eps[i]) / sqa;
        double nw = xx0 + std::sqrt(1 - eta_c * eta_c) * sn * eps[i] + eta_c * sn * z[i];  // case 3
        if (j < M) {
          const double sj = s[j], sy = sigma_y[b], u = uty[b * M + j];
          const bool measured = legacy || sj > 0;
          if (measured && sj * sn > sy)
            nw = eta_b * u / sj + (1 - eta_b) * xx0 + std::sqrt(sn * sn - eta_b * eta_b * sy * sy / (sj * sj)) * z[i];
          else if (measured && sj * sn < sy)
            nw = xx0 + std::sqrt(1 - eta * eta) * sn * (u - sj * xx0) / sy + eta * sn * z[i];
        }
        expect_near(x0[i], xx0, "x0bar", i);
        expect_near(out[i], sqan * nw, legacy ? "out(legacy)" : "out", i);
      }
    }
  }
  // the two settings differ exactly on the zero singular value (coordinate 2) where sigma_y > 0
  std::printf(failures ? "%d failures\n" : "spectral_step: all cases pass\n", failures);
  return failures ? 1 : 0;
}

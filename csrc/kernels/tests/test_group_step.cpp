// ctest for the grouped step and its noise: Philox known-answer vectors (Random123), and a 2x2 block-SR step against
// the explicit-SVD form of docs/ddrm.md written out for one group (v = (1,1,1,1)/2, s = |k| = 1/2).
#include <cmath>
#include <cstdio>
#include <vector>

#include "group_step.h"

static int failures = 0;

static void expect(bool ok, const char* what) {
  if (!ok) { std::printf("FAIL %s\n", what); ++failures; }
}

int main() {
  uint32_t c[4] = {0, 0, 0, 0};
  ddrm::philox4x32_10(c, 0, 0);
  expect(c[0] == 0x6627e8d5u && c[1] == 0xe169c58du && c[2] == 0xbc57ac4cu && c[3] == 0x9b00dbd8u, "philox KAT 0");
  uint32_t d[4] = {~0u, ~0u, ~0u, ~0u};
  ddrm::philox4x32_10(d, ~0u, ~0u);
  expect(d[0] == 0x408f276du && d[1] == 0x41c83b0eu && d[2] == 0xa20bc7c6u && d[3] == 0x6d5451fdu, "philox KAT 1");

  // one 1x2x2 image, one group, weights 1/4 each (block mean)
  const float x[4] = {0.3f, -0.2f, 0.5f, 0.1f}, e[4] = {0.4f, 0.1f, -0.3f, 0.2f}, z[4] = {1.0f, -0.5f, 0.25f, 2.0f};
  const float k[4] = {0.25f, 0.25f, 0.25f, 0.25f}, coef[4] = {0.9f, 0.4359f, 0.6f, 0.95f};
  for (float sy : {0.05f, 0.9f}) {  // case 1 (s sigma' = 0.3 > 0.05) and case 2 (0.3 < 0.9)
    float y = 0.2f, out[4];
    const float sigma_y[1] = {sy};
    ddrm::GroupStepArgs a{};
    a.x = x; a.xs = {4, 4, 2, 1}; a.x_dtype = ddrm::DType::kFloat32;
    a.eps = e; a.es = {4, 4, 2, 1}; a.eps_dtype = ddrm::DType::kFloat32;
    a.z = z; a.zs = {4, 4, 2, 1}; a.y = &y; a.weights = k; a.sigma_y = sigma_y; a.coef = coef;
    a.out = out; a.os = {4, 4, 2, 1}; a.B = 1; a.C = 1; a.H = 2; a.W = 2; a.cg = 1; a.rh = 2; a.rw = 2;
    a.eta = 0.85f; a.eta_b = 0.7f;
    ddrm::group_step_cpu(a, 0, 1);
    // explicit form: coordinates along v and its complement, in double
    const double sqa = coef[0], sq1m = coef[1], sn = coef[2], sqan = coef[3], eta = 0.85, eta_b = 0.7, s = 0.5;
    double x0[4], w[4], x0b = 0, eb = 0, zb = 0, wb = 0;
    for (int i = 0; i < 4; ++i) {
      x0[i] = (x[i] - sq1m * e[i]) / sqa;
      w[i] = x0[i] + std::sqrt(1 - eta * eta) * sn * e[i] + eta * sn * z[i];
      x0b += 0.5 * x0[i]; eb += 0.5 * e[i]; zb += 0.5 * z[i]; wb += 0.5 * w[i];
    }
    const double n1 = s * sn > sy ? eta_b * y / s + (1 - eta_b) * x0b + std::sqrt(sn * sn - eta_b * eta_b * sy * sy / (s * s)) * zb
                                  : x0b + std::sqrt(1 - eta * eta) * sn * (y - s * x0b) / sy + eta * sn * zb;
    for (int i = 0; i < 4; ++i) {
      const double want = sqan * (w[i] - 0.5 * wb + 0.5 * n1);
      if (std::fabs(out[i] - want) > 1e-5) { std::printf("FAIL sy=%g out[%d] %f want %f\n", sy, i, out[i], want); ++failures; }
    }
  }
  std::printf(failures ? "%d failures\n" : "group_step: all cases pass\n", failures);
  return failures ? 1 : 0;
}

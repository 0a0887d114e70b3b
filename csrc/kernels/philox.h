// Philox4x32-10 (Salmon et al., SC'11) and the normal draw every backend shares: key = the sample's 64-bit seed,
// counter = (element, 0, offset low, offset high); Box-Muller on the first two words at 24 bits, so the uniforms
// are exact in float32 and CPU, CUDA, Triton and the PyTorch reference (ddrm_fast.reference.philox_normal) agree.
#pragma once

#include "common.h"

namespace ddrm {

DDRM_HD void philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    const uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
    c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
    if (r < 9) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
  }
}

DDRM_HD float philox_normal(uint64_t seed, uint64_t offset, uint64_t element) {
  uint32_t c[4] = {static_cast<uint32_t>(element), static_cast<uint32_t>(element >> 32),
                   static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32)};
  philox4x32_10(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const float u1 = static_cast<float>((c[0] >> 8) + 1u) * 5.9604645e-08f;  // (0, 1], 2**-24 steps
  const float u2 = static_cast<float>(c[1] >> 8) * 5.9604645e-08f;         // [0, 1)
  return sqrtf(-2.0f * logf(u1)) * cosf(6.2831855f * u2);
}

}  // namespace ddrm

// Shared by every kernel backend: host/device qualifiers, the input element types and their float32 loads.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define DDRM_HD __host__ __device__ __forceinline__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#else
#define DDRM_HD inline
#endif

namespace ddrm {

// Element types of x_t and eps (compute is always float32).
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

struct Half { uint16_t bits; };
struct BFloat16 { uint16_t bits; };

DDRM_HD float to_float(float v) { return v; }

DDRM_HD float to_float(BFloat16 v) {
  const uint32_t u = static_cast<uint32_t>(v.bits) << 16;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

DDRM_HD float to_float(Half v) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(v.bits));
#else
  // IEEE binary16 -> binary32, subnormals and inf/nan included
  const uint32_t sign = (v.bits & 0x8000u) << 16, exp = (v.bits >> 10) & 0x1f, man = v.bits & 0x3ffu;
  uint32_t u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    u = sign;
  } else {  // subnormal: normalise
    int e = -1;
    uint32_t m = man;
    do { m <<= 1; ++e; } while (!(m & 0x400u));
    u = sign | ((112 - e) << 23) | ((m & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// Strides (in elements) of a (B, C, H, W) view: any layout, contiguous, channels_last or a channel slice.
struct Strides4 {
  int64_t b, c, h, w;
  DDRM_HD int64_t at(int64_t bb, int64_t cc, int64_t hh, int64_t ww) const { return bb * b + cc * c + hh * h + ww * w; }
};

}  // namespace ddrm

// CUDA backend of the grouped DDRM step. Threads map to groups through a 3-D grid (group column, group row,
// sample x channel-group), so no thread divides 64-bit indices to find its group. Common group shapes are
// compile-time (denoise/inpaint 1x1x1, colorize 3x1x1, SR 1x2x2 and 1x4x4): the group's values and noise stay in
// registers, read and drawn once. Other shapes use the generic two-pass group_update. The step scalars are read
// from device memory so a captured CUDA graph replays with new values.
#include <cuda_runtime.h>

#include "group_step.h"

namespace ddrm {

template <typename TX, typename TE, int CG, int RH, int RW>
__global__ void group_step_fixed(GroupStepArgs a, int64_t gc, int64_t gh, int64_t gw) {
  constexpr int N = CG * RH * RW;
  const int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  const int64_t i = blockIdx.y * (int64_t)blockDim.y + threadIdx.y;
  if (j >= gw || i >= gh) return;
  const int b = (int)blockIdx.z / (int)gc, cy = (int)blockIdx.z - b * (int)gc;
  const int64_t G = gc * gh * gw, g = (cy * gh + i) * gw + j;
  // per-sample bases in 64 bits, offsets inside a sample in 32 bits (the launcher checked they fit)
  const TX* xs = static_cast<const TX*>(a.x) + b * a.xs.b;
  const TE* es = static_cast<const TE*>(a.eps) + b * a.es.b;
  const float* zs = a.z ? a.z + b * a.zs.b : nullptr;
  float* os = a.out + b * a.os.b;
  float* x0s = a.x0 ? a.x0 + b * a.x0s.b : nullptr;
  const float sqa = a.coef[0], sq1m = a.coef[1], sn = a.coef[2], sqan = a.coef[3];
  float v[N], x0b[N], eb[N], zb[N];
  float k2 = 0.f;
#pragma unroll
  for (int t = 0; t < N; ++t) {
    v[t] = a.weights[t];
    k2 += v[t] * v[t];
  }
  const float k_norm = sqrtf(k2), inv_k = 1.0f / k_norm;
  const float c3 = sqrtf(1.0f - a.eta * a.eta) * sn, c3z = a.eta * sn;
  const uint64_t seed = a.z ? 0 : static_cast<uint64_t>(a.seeds[b]);
  float d_x0 = 0.f, d_eps = 0.f, d_z = 0.f;
#pragma unroll
  for (int t = 0; t < N; ++t) {
    const int c = cy * CG + t / (RH * RW), h = (int)i * RH + (t / RW) % RH, w = (int)j * RW + t % RW;
    v[t] *= inv_k;
    eb[t] = to_float(es[c * (int)a.es.c + h * (int)a.es.h + w * (int)a.es.w]);
    x0b[t] = predict_x0(to_float(xs[c * (int)a.xs.c + h * (int)a.xs.h + w * (int)a.xs.w]), eb[t], sqa, sq1m, a.clip_x0);
    zb[t] = zs ? zs[c * (int)a.zs.c + h * (int)a.zs.h + w * (int)a.zs.w]
               : philox_normal(seed, a.offset, (uint64_t)((c * (int)a.H + h) * (int)a.W + w));
    d_x0 += v[t] * x0b[t];
    d_eps += v[t] * eb[t];
    d_z += v[t] * zb[t];
  }
  const float delta = measured_delta(a, b, g, G, d_x0, d_eps, d_z, k_norm, sn, c3, c3z);
#pragma unroll
  for (int t = 0; t < N; ++t) {
    const int c = cy * CG + t / (RH * RW), h = (int)i * RH + (t / RW) % RH, w = (int)j * RW + t % RW;
    os[c * (int)a.os.c + h * (int)a.os.h + w * (int)a.os.w] = sqan * (x0b[t] + c3 * eb[t] + c3z * zb[t] + v[t] * delta);
    if (x0s) x0s[c * (int)a.x0s.c + h * (int)a.x0s.h + w * (int)a.x0s.w] = x0b[t];
  }
}

template <typename TX, typename TE>
__global__ void group_step_generic(GroupStepArgs a, int64_t groups) {
  const float sqa = a.coef[0], sq1m = a.coef[1], sn = a.coef[2], sqan = a.coef[3];
  for (int64_t g = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; g < groups; g += (int64_t)gridDim.x * blockDim.x)
    group_update<TX, TE>(a, g, sqa, sq1m, sn, sqan);
}

// the largest offset inside one sample of a (C, H, W) view, to decide whether 32-bit offsets are safe
static int64_t span(const Strides4& s, int64_t C, int64_t H, int64_t W) {
  auto m = [](int64_t v) { return v < 0 ? -v : v; };
  return (C - 1) * m(s.c) + (H - 1) * m(s.h) + (W - 1) * m(s.w);
}

template <typename TX, typename TE, int CG, int RH, int RW>
static int launch_fixed(const GroupStepArgs& a, cudaStream_t stream) {
  const int64_t gc = a.C / CG, gh = a.H / RH, gw = a.W / RW;
  const int64_t lim = (1LL << 31) - 1;
  if (span(a.xs, a.C, a.H, a.W) > lim || span(a.es, a.C, a.H, a.W) > lim || span(a.zs, a.C, a.H, a.W) > lim ||
      span(a.os, a.C, a.H, a.W) > lim || span(a.x0s, a.C, a.H, a.W) > lim || a.C * a.H * a.W > lim)
    return -1;  // the generic kernel indexes in 64 bits
  const int bx = gw >= 128 ? 128 : (gw >= 64 ? 64 : 32), by = 256 / bx;
  if (a.B * gc > 65535 || (gh + by - 1) / by > 65535) return -1;  // grid limits: the generic kernel takes it
  const dim3 block(bx, by), grid((unsigned)((gw + bx - 1) / bx), (unsigned)((gh + by - 1) / by), (unsigned)(a.B * gc));
  group_step_fixed<TX, TE, CG, RH, RW><<<grid, block, 0, stream>>>(a, gc, gh, gw);
  return static_cast<int>(cudaGetLastError());
}

template <typename TX, typename TE>
static int launch(const GroupStepArgs& a, cudaStream_t stream) {
  const int64_t groups = a.B * (a.C / a.cg) * (a.H / a.rh) * (a.W / a.rw);
  if (groups == 0) return 0;
  int err = -1;
  if (a.cg == 1 && a.rh == 1 && a.rw == 1) err = launch_fixed<TX, TE, 1, 1, 1>(a, stream);
  else if (a.cg == 3 && a.rh == 1 && a.rw == 1) err = launch_fixed<TX, TE, 3, 1, 1>(a, stream);
  else if (a.cg == 1 && a.rh == 2 && a.rw == 2) err = launch_fixed<TX, TE, 1, 2, 2>(a, stream);
  else if (a.cg == 1 && a.rh == 4 && a.rw == 4) err = launch_fixed<TX, TE, 1, 4, 4>(a, stream);
  if (err >= 0) return err;
  const int threads = 256;
  int64_t blocks = (groups + threads - 1) / threads;
  if (blocks > 65535LL * 32) blocks = 65535LL * 32;  // grid-stride covers the rest
  group_step_generic<TX, TE><<<(unsigned)blocks, threads, 0, stream>>>(a, groups);
  return static_cast<int>(cudaGetLastError());
}

template <typename TX>
static int launch_eps(const GroupStepArgs& a, cudaStream_t s) {
  switch (a.eps_dtype) {
    case DType::kFloat32: return launch<TX, float>(a, s);
    case DType::kFloat16: return launch<TX, Half>(a, s);
    case DType::kBFloat16: return launch<TX, BFloat16>(a, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int group_step_cuda(const GroupStepArgs& a, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (a.x_dtype) {
    case DType::kFloat32: return launch_eps<float>(a, s);
    case DType::kFloat16: return launch_eps<Half>(a, s);
    case DType::kBFloat16: return launch_eps<BFloat16>(a, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace ddrm

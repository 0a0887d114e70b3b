// CPU backend of the grouped DDRM step: the shared per-group update, dispatched on the input element types.
#include "group_step.h"

namespace ddrm {

template <typename TX, typename TE>
static void run(const GroupStepArgs& a, int64_t g0, int64_t g1) {
  const float sqa = a.coef[0], sq1m = a.coef[1], sn = a.coef[2], sqan = a.coef[3];
  for (int64_t g = g0; g < g1; ++g) group_update<TX, TE>(a, g, sqa, sq1m, sn, sqan);
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

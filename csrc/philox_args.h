// The in-kernel Philox argument both ops take when no noise tensor is given: one int64 seed per sample.
#pragma once

#include <ATen/ATen.h>

namespace ddrm {

inline void check_seeds(const c10::optional<at::Tensor>& seeds, int64_t batch, const at::Device& dev) {
  TORCH_CHECK(seeds.has_value(), "seeds must be given when z is not (in-kernel Philox noise)");
  TORCH_CHECK(seeds->dim() == 1 && seeds->size(0) == batch && seeds->scalar_type() == at::kLong &&
                  seeds->is_contiguous() && seeds->device() == dev,
              "seeds must be a contiguous int64 (B,) tensor with B=", batch, " on ", dev, ", got ", seeds->sizes());
}

}  // namespace ddrm

// Residual add on the CPU. (GEMM's `accumulate` fuses the add into o_proj and
// down_proj; this is the unfused form.)
#ifndef KESTREL_KERNELS_CPU_RESIDUAL_H_
#define KESTREL_KERNELS_CPU_RESIDUAL_H_

#include <cstdint>

#include "absl/status/status.h"

namespace kestrel::kernels::cpu {

// out[r, i] = a[r, i] + b[r, i]. a, b, out: [rows, dim] with row strides;
// out may equal a or b.
absl::Status Add(const float* a, int64_t a_stride, const float* b, int64_t b_stride, float* out,
                 int64_t out_stride, int64_t rows, int64_t dim);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_RESIDUAL_H_

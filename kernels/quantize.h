// Weight quantization for the int8 GEMM (GemmParams::w_dtype == kI8):
// symmetric, one scale per output channel (row of an HF Linear weight).
// Used at model load (--quantization=int8) and by tests and benchmarks.
// Scheme and accuracy: docs/kernels.md#int8-weights.
#ifndef KESTREL_KERNELS_QUANTIZE_H_
#define KESTREL_KERNELS_QUANTIZE_H_

#include <cstdint>

#include "kernels/dtype.h"

namespace kestrel::kernels {

// For each row r of w [rows, cols] (row stride ld elements, dtype `type`):
// scales[r] = max_c |w[r, c]| / 127 (0 for an all-zero row) and
// out[r, c] = round-half-even(w[r, c] / scales[r]) in [-127, 127], so
// |w[r, c] - scales[r] * out[r, c]| <= scales[r] / 2 (up to F32 rounding).
// out: [rows, cols] contiguous. REQUIRES: IsWeightDType(type); finite
// weights (a NaN or infinite weight gives an unspecified row).
void QuantizeRowsI8(const void* w, DType type, int64_t rows, int64_t cols, int64_t ld,
                    int8_t* out, float* scales);

}  // namespace kestrel::kernels

#endif  // KESTREL_KERNELS_QUANTIZE_H_

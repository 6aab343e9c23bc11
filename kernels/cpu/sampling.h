// Row-wise reductions over vocabulary logits for the sampler: softmax,
// log-softmax, argmax. All in F32 with the max subtracted first.
#ifndef KESTREL_KERNELS_CPU_SAMPLING_H_
#define KESTREL_KERNELS_CPU_SAMPLING_H_

#include <cstdint>

#include "absl/status/status.h"

namespace kestrel::kernels::cpu {

// logits: [rows, vocab] row stride in_stride; out: [rows, vocab] row stride
// out_stride; out may equal logits. -inf logits (masked tokens) give
// probability 0; a row that is all -inf gives NaN-free zeros for Softmax and
// -inf for LogSoftmax. REQUIRES vocab >= 1.
absl::Status Softmax(const float* logits, int64_t in_stride, float* out, int64_t out_stride,
                     int64_t rows, int64_t vocab);
absl::Status LogSoftmax(const float* logits, int64_t in_stride, float* out, int64_t out_stride,
                        int64_t rows, int64_t vocab);

// ids[r] = index of the largest logit of row r; ties go to the lowest index;
// NaNs are skipped (an all-NaN row gives 0). ids: [rows].
absl::Status Argmax(const float* logits, int64_t in_stride, int64_t rows, int64_t vocab,
                    int32_t* ids);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_SAMPLING_H_

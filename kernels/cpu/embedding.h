// Token embedding lookup on the CPU: gathers rows of the embedding table
// (kept in its checkpoint dtype) into F32 activations.
#ifndef KESTREL_KERNELS_CPU_EMBEDDING_H_
#define KESTREL_KERNELS_CPU_EMBEDDING_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace kestrel::kernels::cpu {

// out[t, :] = float(table[ids[t], :]).
// table: [vocab_size, dim] in table_dtype, contiguous rows.
// ids: [num_tokens]; an id outside [0, vocab_size) is InvalidArgument naming
//   the token index and id (checked before anything is written).
// out: [num_tokens, dim], row stride out_stride.
absl::Status EmbeddingGather(const void* table, DType table_dtype, int64_t vocab_size,
                             int64_t dim, const int32_t* ids, int64_t num_tokens, float* out,
                             int64_t out_stride);

// dst[r, :] = src[rows[r], :] (see Ops::GatherRows). A negative row index is
// an InvalidArgument error naming it.
absl::Status GatherRows(const float* src, int64_t src_stride, const int32_t* rows,
                        int64_t num_rows, int64_t dim, float* dst, int64_t dst_stride);

}  // namespace kestrel::kernels::cpu

#endif  // KESTREL_KERNELS_CPU_EMBEDDING_H_

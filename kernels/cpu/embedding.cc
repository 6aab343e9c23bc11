// Embedding gather (see embedding.h).
#include "kernels/cpu/embedding.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace kestrel::kernels::cpu {

absl::Status EmbeddingGather(const void* table, DType table_dtype, int64_t vocab_size,
                             int64_t dim, const int32_t* ids, int64_t num_tokens, float* out,
                             int64_t out_stride) {
  if (vocab_size < 0 || dim < 0 || num_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("EmbeddingGather: negative size vocab_size=",
                                                   vocab_size, " dim=", dim,
                                                   " num_tokens=", num_tokens));
  }
  if (table_dtype != DType::kF32 && table_dtype != DType::kF16 && table_dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("EmbeddingGather: unsupported table_dtype ",
                                                   static_cast<int>(table_dtype)));
  }
  if (out_stride < dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("EmbeddingGather: out_stride=", out_stride, " < dim=", dim));
  }
  if (num_tokens == 0) return absl::OkStatus();
  if (table == nullptr || ids == nullptr || out == nullptr) {
    return absl::InvalidArgumentError("EmbeddingGather: null pointer");
  }
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("EmbeddingGather: ids[", t, "]=", ids[t],
                                                     " outside [0, ", vocab_size, ")"));
    }
  }
  const char* base = static_cast<const char*>(table);
  const int64_t row_bytes = dim * DTypeSize(table_dtype);
  for (int64_t t = 0; t < num_tokens; ++t) {
    ConvertToF32(base + static_cast<int64_t>(ids[t]) * row_bytes, table_dtype, dim,
                 out + t * out_stride);
  }
  return absl::OkStatus();
}

absl::Status GatherRows(const float* src, int64_t src_stride, const int32_t* rows,
                        int64_t num_rows, int64_t dim, float* dst, int64_t dst_stride) {
  if (num_rows < 0 || dim < 0 || src_stride < dim || dst_stride < dim) {
    return absl::InvalidArgumentError(absl::StrCat("gather rows: num_rows ", num_rows, ", dim ",
                                                   dim, ", strides ", src_stride, "/", dst_stride,
                                                   " are inconsistent"));
  }
  for (int64_t r = 0; r < num_rows; ++r) {
    if (rows[r] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("gather rows: rows[", r, "] = ", rows[r], " is negative"));
    }
    std::copy_n(src + rows[r] * src_stride, dim, dst + r * dst_stride);
  }
  return absl::OkStatus();
}

}  // namespace kestrel::kernels::cpu

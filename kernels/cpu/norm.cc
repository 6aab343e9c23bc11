// RMSNorm kernels (see norm.h).
#include "kernels/cpu/norm.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace kestrel::kernels::cpu {
namespace {

// Sum of squares in 8 interleaved F32 partial sums (vectorizable, and a
// fixed order so results do not depend on the row's neighbours).
inline void NormRow(const float* x, float* out, const float* w, int64_t dim, float eps) {
  float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= dim; i += 8) {
    for (int j = 0; j < 8; ++j) part[j] += x[i + j] * x[i + j];
  }
  for (; i < dim; ++i) part[i % 8] += x[i] * x[i];
  const float ss = ((part[0] + part[1]) + (part[2] + part[3])) +
                   ((part[4] + part[5]) + (part[6] + part[7]));
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
  for (int64_t j = 0; j < dim; ++j) out[j] = x[j] * inv * w[j];
}

}  // namespace

absl::Status RmsNorm(const float* x, int64_t x_stride, float* out, int64_t out_stride,
                     const float* weight, int64_t rows, int64_t dim, float eps) {
  if (rows < 0 || dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("RmsNorm: rows must be >= 0 and dim > 0, got rows=", rows, " dim=", dim));
  }
  if (x_stride < dim || out_stride < dim) {
    return absl::InvalidArgumentError(absl::StrCat("RmsNorm: strides must be >= dim=", dim,
                                                   ", got x_stride=", x_stride,
                                                   " out_stride=", out_stride));
  }
  if (!(eps >= 0.0f)) return absl::InvalidArgumentError(absl::StrCat("RmsNorm: eps=", eps));
  if (rows == 0) return absl::OkStatus();
  if (x == nullptr || out == nullptr || weight == nullptr) {
    return absl::InvalidArgumentError("RmsNorm: null pointer");
  }
  for (int64_t r = 0; r < rows; ++r) NormRow(x + r * x_stride, out + r * out_stride, weight, dim, eps);
  return absl::OkStatus();
}

absl::Status RmsNormPerHead(float* x, int64_t x_stride, int64_t num_tokens, int64_t num_heads,
                            int64_t head_dim, const float* weight, float eps) {
  if (num_tokens < 0 || num_heads < 0 || head_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RmsNormPerHead: bad sizes num_tokens=", num_tokens, " num_heads=", num_heads,
        " head_dim=", head_dim));
  }
  if (x_stride < num_heads * head_dim) {
    return absl::InvalidArgumentError(absl::StrCat("RmsNormPerHead: x_stride=", x_stride,
                                                   " < num_heads*head_dim=",
                                                   num_heads * head_dim));
  }
  if (!(eps >= 0.0f)) return absl::InvalidArgumentError(absl::StrCat("RmsNormPerHead: eps=", eps));
  if (num_tokens == 0 || num_heads == 0) return absl::OkStatus();
  if (x == nullptr || weight == nullptr) {
    return absl::InvalidArgumentError("RmsNormPerHead: null pointer");
  }
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t h = 0; h < num_heads; ++h) {
      float* row = x + t * x_stride + h * head_dim;
      NormRow(row, row, weight, head_dim, eps);
    }
  }
  return absl::OkStatus();
}

}  // namespace kestrel::kernels::cpu

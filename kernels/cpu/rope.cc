// Rotate-half RoPE (see rope.h).
#include "kernels/cpu/rope.h"

#include "absl/strings/str_cat.h"

namespace kestrel::kernels::cpu {
namespace {

inline void RotateHeads(float* base, int64_t num_heads, int64_t head_dim, const float* c,
                        const float* s) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < num_heads; ++h) {
    float* x0 = base + h * head_dim;
    float* x1 = x0 + half;
    for (int64_t i = 0; i < half; ++i) {
      const float a = x0[i];
      const float b = x1[i];
      x0[i] = a * c[i] - b * s[i];
      x1[i] = b * c[i] + a * s[i];
    }
  }
}

}  // namespace

absl::Status ApplyRope(float* q, int64_t q_stride, int64_t num_q_heads, float* k,
                       int64_t k_stride, int64_t num_kv_heads, const int32_t* positions,
                       int64_t num_tokens, int64_t head_dim, const float* cos_table,
                       const float* sin_table, int64_t max_positions) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ApplyRope: head_dim must be even and > 0, got ", head_dim));
  }
  if (num_tokens < 0 || num_q_heads < 0 || num_kv_heads < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ApplyRope: negative size num_tokens=", num_tokens, " num_q_heads=", num_q_heads,
        " num_kv_heads=", num_kv_heads));
  }
  if (q_stride < num_q_heads * head_dim || (num_kv_heads > 0 && k_stride < num_kv_heads * head_dim)) {
    return absl::InvalidArgumentError(absl::StrCat("ApplyRope: q_stride=", q_stride,
                                                   " or k_stride=", k_stride,
                                                   " smaller than heads*head_dim"));
  }
  if (num_tokens == 0) return absl::OkStatus();
  if (positions == nullptr || cos_table == nullptr || sin_table == nullptr ||
      (num_q_heads > 0 && q == nullptr) || (num_kv_heads > 0 && k == nullptr)) {
    return absl::InvalidArgumentError("ApplyRope: null pointer");
  }
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (positions[t] < 0 || positions[t] >= max_positions) {
      return absl::InvalidArgumentError(absl::StrCat("ApplyRope: positions[", t, "]=",
                                                     positions[t], " outside [0, ",
                                                     max_positions, ")"));
    }
  }
  const int64_t half = head_dim / 2;
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* c = cos_table + static_cast<int64_t>(positions[t]) * half;
    const float* s = sin_table + static_cast<int64_t>(positions[t]) * half;
    if (num_q_heads > 0) RotateHeads(q + t * q_stride, num_q_heads, head_dim, c, s);
    if (num_kv_heads > 0) RotateHeads(k + t * k_stride, num_kv_heads, head_dim, c, s);
  }
  return absl::OkStatus();
}

}  // namespace kestrel::kernels::cpu

// Softmax, log-softmax and argmax over vocabulary rows (see sampling.h).
#include "kernels/cpu/sampling.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace kestrel::kernels::cpu {
namespace {

absl::Status Check(const char* op, const void* in, int64_t in_stride, const void* out,
                   int64_t out_stride, int64_t rows, int64_t vocab) {
  if (rows < 0 || vocab <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": rows must be >= 0 and vocab >= 1, got rows=", rows, " vocab=", vocab));
  }
  if (in_stride < vocab || out_stride < vocab) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": strides must be >= vocab=", vocab,
                                                   ", got ", in_stride, " and ", out_stride));
  }
  if (rows > 0 && (in == nullptr || out == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": null pointer"));
  }
  return absl::OkStatus();
}

float RowMax(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

}  // namespace

absl::Status Softmax(const float* logits, int64_t in_stride, float* out, int64_t out_stride,
                     int64_t rows, int64_t vocab) {
  if (absl::Status s = Check("Softmax", logits, in_stride, out, out_stride, rows, vocab); !s.ok())
    return s;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * in_stride;
    float* o = out + r * out_stride;
    const float m = RowMax(x, vocab);
    if (m == -std::numeric_limits<float>::infinity()) {
      for (int64_t i = 0; i < vocab; ++i) o[i] = 0.0f;
      continue;
    }
    double sum = 0.0;
    for (int64_t i = 0; i < vocab; ++i) {
      o[i] = std::exp(x[i] - m);
      sum += o[i];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t i = 0; i < vocab; ++i) o[i] *= inv;
  }
  return absl::OkStatus();
}

absl::Status LogSoftmax(const float* logits, int64_t in_stride, float* out, int64_t out_stride,
                        int64_t rows, int64_t vocab) {
  if (absl::Status s = Check("LogSoftmax", logits, in_stride, out, out_stride, rows, vocab);
      !s.ok())
    return s;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * in_stride;
    float* o = out + r * out_stride;
    const float m = RowMax(x, vocab);
    if (m == -std::numeric_limits<float>::infinity()) {
      for (int64_t i = 0; i < vocab; ++i) o[i] = -std::numeric_limits<float>::infinity();
      continue;
    }
    double sum = 0.0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(x[i] - m));
    const float lse = m + static_cast<float>(std::log(sum));
    for (int64_t i = 0; i < vocab; ++i) o[i] = x[i] - lse;
  }
  return absl::OkStatus();
}

absl::Status Argmax(const float* logits, int64_t in_stride, int64_t rows, int64_t vocab,
                    int32_t* ids) {
  if (absl::Status s = Check("Argmax", logits, in_stride, ids, vocab, rows, vocab); !s.ok())
    return s;
  if (vocab > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("Argmax: vocab=", vocab, " too large"));
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * in_stride;
    int64_t best = -1;
    float best_v = 0.0f;
    for (int64_t i = 0; i < vocab; ++i) {
      if (std::isnan(x[i])) continue;
      if (best < 0 || x[i] > best_v) {
        best = i;
        best_v = x[i];
      }
    }
    ids[r] = static_cast<int32_t>(best < 0 ? 0 : best);
  }
  return absl::OkStatus();
}

}  // namespace kestrel::kernels::cpu

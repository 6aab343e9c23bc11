// Residual add (see residual.h).
#include "kernels/cpu/residual.h"

#include "absl/strings/str_cat.h"

namespace kestrel::kernels::cpu {

absl::Status Add(const float* a, int64_t a_stride, const float* b, int64_t b_stride, float* out,
                 int64_t out_stride, int64_t rows, int64_t dim) {
  if (rows < 0 || dim < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Add: rows=", rows, " dim=", dim, " must be >= 0"));
  }
  if (a_stride < dim || b_stride < dim || out_stride < dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("Add: strides must be >= dim=", dim, ", got a_stride=", a_stride,
                     " b_stride=", b_stride, " out_stride=", out_stride));
  }
  if (rows == 0 || dim == 0) return absl::OkStatus();
  if (a == nullptr || b == nullptr || out == nullptr) {
    return absl::InvalidArgumentError("Add: null pointer");
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* ar = a + r * a_stride;
    const float* br = b + r * b_stride;
    float* o = out + r * out_stride;
    for (int64_t i = 0; i < dim; ++i) o[i] = ar[i] + br[i];
  }
  return absl::OkStatus();
}

}  // namespace kestrel::kernels::cpu

// SiLU-and-multiply (see activation.h).
#include "kernels/cpu/activation.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/isa_dispatch.h"

namespace kestrel::kernels::cpu {

absl::Status SiluAndMul(const float* gate, int64_t gate_stride, const float* up,
                        int64_t up_stride, float* out, int64_t out_stride, int64_t rows,
                        int64_t dim, ThreadPool* pool, Isa isa) {
  if (rows < 0 || dim < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SiluAndMul: rows=", rows, " dim=", dim, " must be >= 0"));
  }
  if (gate_stride < dim || up_stride < dim || out_stride < dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SiluAndMul: strides must be >= dim=", dim, ", got gate_stride=", gate_stride,
        " up_stride=", up_stride, " out_stride=", out_stride));
  }
  if (rows == 0 || dim == 0) return absl::OkStatus();
  if (gate == nullptr || up == nullptr || out == nullptr) {
    return absl::InvalidArgumentError("SiluAndMul: null pointer");
  }
  const Isa resolved = ResolveIsa(isa);
  if (!IsaSupported(resolved)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SiluAndMul: isa ", std::string(IsaName(resolved)), " is not supported by this CPU"));
  }
  const auto silu_mul = GetIsaTable(resolved).silu_mul;
  // Split only when each thread gets a worthwhile amount (~64K elements).
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / dim);
  ParallelFor(pool, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      silu_mul(gate + r * gate_stride, up + r * up_stride, out + r * out_stride, dim);
    }
  });
  return absl::OkStatus();
}

}  // namespace kestrel::kernels::cpu

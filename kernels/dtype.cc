// Scalar dtype conversions shared by the loader and the kernels.
#include "kernels/dtype.h"

namespace kestrel::kernels {

void ConvertToF32(const void* src, DType type, int64_t n, float* dst) {
  switch (type) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = F16ToF32(s[i]);
      return;
    }
    case DType::kBF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToF32(s[i]);
      return;
    }
    default:  // a caller broke the REQUIRES: a bug, not bad input
      std::abort();
  }
}

}  // namespace kestrel::kernels

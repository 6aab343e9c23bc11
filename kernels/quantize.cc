// Per-channel symmetric int8 quantization of weights (see quantize.h).
#include "kernels/quantize.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace kestrel::kernels {
namespace {

// Round half to even without a libm call: adding and subtracting 1.5 * 2^23
// leaves the nearest integer for |v| < 2^22 under the default rounding mode.
inline float RoundHalfEven(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (v + kMagic) - kMagic;  // not folded: the build has no -ffast-math
}

}  // namespace

void QuantizeRowsI8(const void* w, DType type, int64_t rows, int64_t cols, int64_t ld,
                    int8_t* out, float* scales) {
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    const char* src = static_cast<const char*>(w) + r * ld * DTypeSize(type);
    ConvertToF32(src, type, cols, row.data());
    float amax = 0.0f;
    for (float v : row) amax = std::max(amax, std::fabs(v));
    const float scale = amax / 127.0f;
    scales[r] = scale;
    int8_t* o = out + r * cols;
    if (scale == 0.0f) {
      std::fill(o, o + cols, int8_t{0});
      continue;
    }
    for (int64_t c = 0; c < cols; ++c) {
      const float q = std::clamp(RoundHalfEven(row[c] / scale), -127.0f, 127.0f);
      o[c] = static_cast<int8_t>(q);
    }
  }
}

}  // namespace kestrel::kernels

// Per-channel int8 weight quantization: round trip within half a step,
// scales from the row maximum, all-zero rows, strides and every weight dtype.
#include "kernels/quantize.h"

#include <cmath>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

namespace kestrel::kernels {
namespace {

TEST_CASE("QuantizeRowsI8 round trip is within half a step", "[quantize]") {
  const int64_t rows = 19, cols = 131, ld = 140;
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> w(static_cast<size_t>(rows * ld));
  for (float& v : w) v = dist(rng);
  for (int64_t c = 0; c < cols; ++c) w[2 * ld + c] = 0.0f;  // an all-zero row
  w[5 * ld + 7] = -3.0f;                                     // an outlier sets the scale
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
    INFO(DTypeName(t));
    std::vector<uint16_t> h(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      h[i] = t == DType::kBF16 ? F32ToBf16(w[i]) : F32ToF16(w[i]);
    }
    const void* src = t == DType::kF32 ? static_cast<const void*>(w.data()) : h.data();
    std::vector<int8_t> q(static_cast<size_t>(rows * cols));
    std::vector<float> scales(static_cast<size_t>(rows));
    QuantizeRowsI8(src, t, rows, cols, ld, q.data(), scales.data());
    CHECK(scales[2] == 0.0f);
    CHECK(scales[5] == std::fabs(LoadAsF32(src, t, 5 * ld + 7)) / 127.0f);
    CHECK(q[5 * cols + 7] == -127);
    for (int64_t r = 0; r < rows; ++r) {
      float amax = 0.0f;
      for (int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(LoadAsF32(src, t, r * ld + c)));
      REQUIRE(scales[r] == amax / 127.0f);
      for (int64_t c = 0; c < cols; ++c) {
        const float v = LoadAsF32(src, t, r * ld + c);
        const int8_t qi = q[r * cols + c];
        INFO("row " << r << " col " << c);
        REQUIRE(qi >= -127);
        REQUIRE(qi <= 127);
        REQUIRE(std::fabs(v - scales[r] * qi) <= scales[r] * 0.5f * (1 + 1e-5f) + 1e-12f);
        if (scales[r] == 0.0f) REQUIRE(qi == 0);
      }
    }
  }
}

TEST_CASE("QuantizeRowsI8 rounds half to even", "[quantize]") {
  // max 127 -> scale 1: the values are their own quantized images.
  const std::vector<float> w = {127.0f, 2.5f, -2.5f, 3.5f, -0.5f, 1.49f};
  std::vector<int8_t> q(w.size());
  float scale = 0;
  QuantizeRowsI8(w.data(), DType::kF32, 1, static_cast<int64_t>(w.size()),
                 static_cast<int64_t>(w.size()), q.data(), &scale);
  CHECK(scale == 1.0f);
  CHECK(q == std::vector<int8_t>{127, 2, -2, 4, 0, 1});
}

}  // namespace
}  // namespace kestrel::kernels

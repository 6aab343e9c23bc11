// Tests for the scalar dtype conversions.
#include "kernels/dtype.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace kestrel::kernels {
namespace {

TEST_CASE("bf16 round trip and rounding", "[dtype]") {
  CHECK(Bf16ToF32(F32ToBf16(1.0f)) == 1.0f);
  CHECK(Bf16ToF32(F32ToBf16(-3.5f)) == -3.5f);
  CHECK(F32ToBf16(1.0f) == 0x3f80);
  // 1 + 2^-8 is halfway between two bf16 values: ties go to even (1.0).
  CHECK(Bf16ToF32(F32ToBf16(1.0f + std::ldexp(1.0f, -8))) == 1.0f);
  // Just above halfway rounds up.
  CHECK(Bf16ToF32(F32ToBf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20))) ==
        1.0f + std::ldexp(1.0f, -7));
  CHECK(std::isnan(Bf16ToF32(F32ToBf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isinf(Bf16ToF32(F32ToBf16(std::numeric_limits<float>::infinity()))));
}

TEST_CASE("f16 round trip", "[dtype]") {
  CHECK(F32ToF16(1.0f) == 0x3c00);
  CHECK(F16ToF32(0xc000) == -2.0f);
  CHECK(F16ToF32(F32ToF16(65504.0f)) == 65504.0f);
  CHECK(F16ToF32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
}

TEST_CASE("ConvertToF32 for every dtype", "[dtype]") {
  const std::vector<float> want = {0.5f, -1.25f, 3.0f};
  std::vector<uint16_t> bf, hf;
  for (float f : want) {
    bf.push_back(F32ToBf16(f));
    hf.push_back(F32ToF16(f));
  }
  std::vector<float> out(3);
  ConvertToF32(bf.data(), DType::kBF16, 3, out.data());
  CHECK(out == want);
  ConvertToF32(hf.data(), DType::kF16, 3, out.data());
  CHECK(out == want);
  ConvertToF32(want.data(), DType::kF32, 3, out.data());
  CHECK(out == want);
  CHECK(DTypeSize(DType::kBF16) == 2);
  CHECK(std::string(DTypeName(DType::kF16)) == "F16");
  CHECK(DTypeSize(DType::kI64) == 8);
  CHECK(DTypeSize(DType::kF8E4M3) == 1);
  // Every safetensors name round-trips; anything else is not a dtype.
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kF64, DType::kI64, DType::kI32,
                  DType::kI16, DType::kI8, DType::kU8, DType::kBool, DType::kF8E4M3,
                  DType::kF8E5M2}) {
    CHECK(ParseDTypeName(DTypeName(t)) == t);
    CHECK(IsWeightDType(t) == (t == DType::kF32 || t == DType::kF16 || t == DType::kBF16));
  }
  CHECK_FALSE(ParseDTypeName("F4").has_value());
}

}  // namespace
}  // namespace kestrel::kernels

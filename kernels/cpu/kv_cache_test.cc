// KV-cache writes: slots across block boundaries, padding (-1), strides,
// untouched neighbours, and bad slots.
#include "kernels/cpu/kv_cache.h"

#include <cmath>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/test_util.h"
#include "kernels/dtype.h"

namespace kestrel::kernels::cpu {
namespace {

TEST_CASE("WriteKvCache writes each token to its slot", "[kv_cache]") {
  const int64_t blocks = 4, bs = 16, heads = 3, d = 80, row = heads * d;
  const int64_t tokens = 5, stride = row + 7;
  std::vector<float> kc = testing::NaNVector(static_cast<size_t>(blocks * bs * row));
  std::vector<float> vc = kc;
  const std::vector<float> k = testing::RandomVector(static_cast<size_t>(tokens * stride), 1);
  const std::vector<float> v = testing::RandomVector(static_cast<size_t>(tokens * stride), 2);
  // Block 2 offset 15, block 3 offsets 0 and 1 (a block boundary), padding,
  // block 0 offset 0.
  const std::vector<int32_t> slots = {2 * 16 + 15, 3 * 16, 3 * 16 + 1, -1, 0};
  REQUIRE(WriteKvCache(k.data(), stride, v.data(), stride, slots.data(), tokens, heads, d,
                       kc.data(), vc.data(), blocks, bs)
              .ok());
  // Cache positions: K[b, g, i, o] and V[b, g, o, i] for slot b * bs + o.
  auto k_at = [&](int64_t slot, int64_t g, int64_t i) {
    return kc[static_cast<size_t>(((slot / bs * heads + g) * d + i) * bs + slot % bs)];
  };
  auto v_at = [&](int64_t slot, int64_t g, int64_t i) {
    return vc[static_cast<size_t>(((slot / bs * heads + g) * bs + slot % bs) * d + i)];
  };
  int64_t written = 0;
  for (int64_t s = 0; s < blocks * bs; ++s) {
    int64_t t = -1;
    for (int64_t i = 0; i < tokens; ++i)
      if (slots[i] == s) t = i;
    for (int64_t g = 0; g < heads; ++g) {
      for (int64_t i = 0; i < d; ++i) {
        if (t < 0) {
          REQUIRE(std::isnan(k_at(s, g, i)));
          REQUIRE(std::isnan(v_at(s, g, i)));
        } else {
          REQUIRE(k_at(s, g, i) == k[t * stride + g * d + i]);
          REQUIRE(v_at(s, g, i) == v[t * stride + g * d + i]);
          ++written;
        }
      }
    }
  }
  CHECK(written == 4 * row);
}

TEST_CASE("WriteKvCache into a BF16 cache rounds each value to nearest even", "[kv_cache]") {
  const int64_t blocks = 2, bs = 8, heads = 2, d = 5, row = heads * d;
  std::vector<uint16_t> kc(static_cast<size_t>(blocks * bs * row), 0x7fc0), vc = kc;
  const std::vector<float> k = testing::RandomVector(static_cast<size_t>(2 * row), 3);
  const std::vector<float> v = testing::RandomVector(static_cast<size_t>(2 * row), 4);
  const std::vector<int32_t> slots = {bs + 3, 0};
  REQUIRE(WriteKvCache(k.data(), row, v.data(), row, slots.data(), 2, heads, d, kc.data(),
                       vc.data(), blocks, bs, DType::kBF16)
              .ok());
  int64_t nan_left = 0;
  for (uint16_t x : kc) nan_left += x == 0x7fc0;
  CHECK(nan_left == blocks * bs * row - 2 * row);
  for (int64_t t = 0; t < 2; ++t) {
    const int64_t b = slots[t] / bs, o = slots[t] % bs;
    for (int64_t g = 0; g < heads; ++g) {
      for (int64_t i = 0; i < d; ++i) {
        const size_t kpos = static_cast<size_t>(((b * heads + g) * d + i) * bs + o);
        const size_t vpos = static_cast<size_t>(((b * heads + g) * bs + o) * d + i);
        CHECK(kc[kpos] == F32ToBf16(k[t * row + g * d + i]));
        CHECK(vc[vpos] == F32ToBf16(v[t * row + g * d + i]));
      }
    }
  }
  CHECK(WriteKvCache(k.data(), row, v.data(), row, slots.data(), 2, heads, d, kc.data(),
                     vc.data(), blocks, bs, DType::kF16)
            .message() == "WriteKvCache: cache dtype F16 is not supported (F32 or BF16)");
}

TEST_CASE("WriteKvCache rejects slots outside the pool", "[kv_cache]") {
  std::vector<float> kc(2 * 16 * 4, 0.0f), vc = kc, k(8, 1.0f);
  for (int32_t bad : {32, -2}) {
    const std::vector<int32_t> slots = {0, bad};
    CHECK(absl::IsInvalidArgument(WriteKvCache(k.data(), 4, k.data(), 4, slots.data(), 2, 1, 4,
                                               kc.data(), vc.data(), 2, 16)));
    CHECK(kc[0] == 0.0f);  // validated before writing
  }
  const std::vector<int32_t> ok = {31};
  CHECK(WriteKvCache(k.data(), 4, k.data(), 4, ok.data(), 1, 1, 4, kc.data(), vc.data(), 2, 16)
            .ok());
  CHECK(absl::IsInvalidArgument(
      WriteKvCache(k.data(), 3, k.data(), 4, ok.data(), 1, 1, 4, kc.data(), vc.data(), 2, 16)));
}

}  // namespace
}  // namespace kestrel::kernels::cpu

// KV-cache writes: slots across block boundaries, padding (-1), strides,
// untouched neighbours, and bad slots.
#include "kernels/cpu/kv_cache.h"

#include <cmath>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/test_util.h"

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

// RoPE against the reference for head dims 64/80/128, GQA head counts,
// strided q/k inside a fused qkv row, and position errors.
#include "kernels/cpu/rope.h"

#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/reference.h"
#include "kernels/cpu/test_util.h"
#include "kernels/rope_tables.h"

namespace kestrel::kernels::cpu {
namespace {

using testing::CompareClose;
using testing::RandomVector;

TEST_CASE("ApplyRope matches the reference on a fused qkv buffer", "[rope]") {
  const int64_t max_pos = 300;
  for (int64_t d : {64, 80, 128}) {
    for (RopeScaling scaling :
         {RopeScaling{}, RopeScaling{.type = RopeScaling::Type::kLinear, .factor = 2.0f},
          RopeScaling{.type = RopeScaling::Type::kLlama3, .factor = 8.0f,
                      .original_max_position_embeddings = 64}}) {
      const int64_t tokens = 7, hq = 5, hk = 1;
      std::vector<float> inv(static_cast<size_t>(d / 2));
      REQUIRE(ComputeRopeInvFreq(d, 10000.0f, scaling, inv.data()).ok());
      std::vector<float> cos_t(static_cast<size_t>(max_pos * d / 2)), sin_t(cos_t.size());
      REQUIRE(ComputeRopeTables(d, 10000.0f, scaling, max_pos, cos_t.data(), sin_t.data()).ok());

      const int64_t stride = (hq + 2 * hk) * d;  // [q | k | v] per token
      std::vector<float> qkv = RandomVector(static_cast<size_t>(tokens * stride), 7);
      const std::vector<int32_t> pos = {0, 1, 15, 16, 17, 250, 299};
      std::vector<float> q_ref, k_ref;
      for (int64_t t = 0; t < tokens; ++t) {
        q_ref.insert(q_ref.end(), qkv.begin() + t * stride, qkv.begin() + t * stride + hq * d);
        k_ref.insert(k_ref.end(), qkv.begin() + t * stride + hq * d,
                     qkv.begin() + t * stride + (hq + hk) * d);
      }
      const std::vector<float> before = qkv;
      REQUIRE(ApplyRope(qkv.data(), stride, hq, qkv.data() + hq * d, stride, hk, pos.data(),
                        tokens, d, cos_t.data(), sin_t.data(), max_pos)
                  .ok());
      reference::ApplyRope(q_ref.data(), hq, k_ref.data(), hk, pos.data(), tokens, d, inv.data());
      INFO("head_dim=" << d << " scaling=" << static_cast<int>(scaling.type));
      for (int64_t t = 0; t < tokens; ++t) {
        CHECK(CompareClose(qkv.data() + t * stride, q_ref.data() + t * hq * d,
                           static_cast<size_t>(hq * d), 2e-5f) == "");
        CHECK(CompareClose(qkv.data() + t * stride + hq * d, k_ref.data() + t * hk * d,
                           static_cast<size_t>(hk * d), 2e-5f) == "");
        // v is untouched.
        CHECK(CompareClose(qkv.data() + t * stride + (hq + hk) * d,
                           before.data() + t * stride + (hq + hk) * d,
                           static_cast<size_t>(hk * d), 0.0f) == "");
      }
      // Position 0 is the identity.
      CHECK(CompareClose(qkv.data(), before.data(), static_cast<size_t>(hq * d), 0.0f) == "");
    }
  }
}

TEST_CASE("ApplyRope rejects out-of-range positions before writing", "[rope]") {
  const int64_t d = 64, max_pos = 16;
  std::vector<float> cos_t(static_cast<size_t>(max_pos * d / 2)), sin_t(cos_t.size());
  REQUIRE(ComputeRopeTables(d, 10000.0f, {}, max_pos, cos_t.data(), sin_t.data()).ok());
  std::vector<float> q = RandomVector(static_cast<size_t>(2 * d), 1);
  const std::vector<float> q0 = q;
  const std::vector<int32_t> pos = {3, 16};
  CHECK(absl::IsInvalidArgument(ApplyRope(q.data(), d, 1, nullptr, 0, 0, pos.data(), 2, d,
                                          cos_t.data(), sin_t.data(), max_pos)));
  CHECK(q == q0);
  const std::vector<int32_t> neg = {-1};
  CHECK(absl::IsInvalidArgument(ApplyRope(q.data(), d, 1, nullptr, 0, 0, neg.data(), 1, d,
                                          cos_t.data(), sin_t.data(), max_pos)));
  CHECK(absl::IsInvalidArgument(ApplyRope(q.data(), d, 1, nullptr, 0, 0, pos.data(), 1, 63,
                                          cos_t.data(), sin_t.data(), max_pos)));
}

}  // namespace
}  // namespace kestrel::kernels::cpu

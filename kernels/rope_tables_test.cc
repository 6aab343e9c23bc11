// Tests for the RoPE frequency tables: default, linear and llama3 scaling
// (the rules of HF's _compute_llama3_parameters), and bad arguments.
#include "kernels/rope_tables.h"

#include <cmath>
#include <vector>

#include <catch2/catch.hpp>

namespace kestrel::kernels {
namespace {

TEST_CASE("Default inverse frequencies and tables", "[rope_tables]") {
  std::vector<float> inv(32);
  REQUIRE(ComputeRopeInvFreq(64, 10000.0f, {}, inv.data()).ok());
  CHECK(inv[0] == 1.0f);
  CHECK(inv[1] == Approx(std::pow(10000.0, -2.0 / 64)).epsilon(1e-6));
  CHECK(inv[31] == Approx(std::pow(10000.0, -62.0 / 64)).epsilon(1e-6));
  std::vector<float> c(5 * 32), s(5 * 32);
  REQUIRE(ComputeRopeTables(64, 10000.0f, {}, 5, c.data(), s.data()).ok());
  CHECK(c[0] == 1.0f);
  CHECK(s[0] == 0.0f);
  CHECK(c[3 * 32 + 1] == Approx(std::cos(3.0 * inv[1])).margin(1e-6));
  CHECK(s[4 * 32 + 7] == Approx(std::sin(4.0 * inv[7])).margin(1e-6));
}

TEST_CASE("Linear scaling divides every frequency", "[rope_tables]") {
  std::vector<float> base(40), scaled(40);
  REQUIRE(ComputeRopeInvFreq(80, 1e6f, {}, base.data()).ok());
  RopeScaling lin{.type = RopeScaling::Type::kLinear, .factor = 4.0f};
  REQUIRE(ComputeRopeInvFreq(80, 1e6f, lin, scaled.data()).ok());
  for (int i = 0; i < 40; ++i) CHECK(scaled[i] == Approx(base[i] / 4.0f).epsilon(1e-6));
}

TEST_CASE("Llama3 scaling: high frequencies kept, low divided, medium blended",
          "[rope_tables]") {
  // Llama 3.1 8B: theta 500000, head_dim 128, factor 8, low 1, high 4, 8192.
  RopeScaling l3{.type = RopeScaling::Type::kLlama3,
                 .factor = 8.0f,
                 .low_freq_factor = 1.0f,
                 .high_freq_factor = 4.0f,
                 .original_max_position_embeddings = 8192};
  std::vector<float> base(64), scaled(64);
  REQUIRE(ComputeRopeInvFreq(128, 500000.0f, {}, base.data()).ok());
  REQUIRE(ComputeRopeInvFreq(128, 500000.0f, l3, scaled.data()).ok());
  int kept = 0, divided = 0, blended = 0;
  for (int i = 0; i < 64; ++i) {
    const double wavelen = 2 * M_PI / base[i];
    if (wavelen < 8192.0 / 4.0) {
      CHECK(scaled[i] == base[i]);
      ++kept;
    } else if (wavelen > 8192.0) {
      CHECK(scaled[i] == Approx(base[i] / 8.0f).epsilon(1e-6));
      ++divided;
    } else {
      const double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
      const double want = (1 - smooth) * base[i] / 8.0 + smooth * base[i];
      CHECK(scaled[i] == Approx(want).epsilon(1e-5));
      ++blended;
    }
  }
  CHECK(kept > 0);
  CHECK(divided > 0);
  CHECK(blended > 0);
}

TEST_CASE("Bad RoPE arguments are errors", "[rope_tables]") {
  std::vector<float> inv(64);
  CHECK(absl::IsInvalidArgument(ComputeRopeInvFreq(63, 10000.0f, {}, inv.data())));
  CHECK(absl::IsInvalidArgument(ComputeRopeInvFreq(64, 0.0f, {}, inv.data())));
  RopeScaling bad{.type = RopeScaling::Type::kLlama3, .factor = 8.0f, .low_freq_factor = 4.0f,
                  .high_freq_factor = 1.0f};
  CHECK(absl::IsInvalidArgument(ComputeRopeInvFreq(64, 10000.0f, bad, inv.data())));
  RopeScaling zero{.type = RopeScaling::Type::kLinear, .factor = 0.0f};
  CHECK(absl::IsInvalidArgument(ComputeRopeInvFreq(64, 10000.0f, zero, inv.data())));
  CHECK(absl::IsInvalidArgument(ComputeRopeTables(64, 10000.0f, {}, 4, nullptr, nullptr)));
}

}  // namespace
}  // namespace kestrel::kernels

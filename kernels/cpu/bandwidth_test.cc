// The read-bandwidth probe: its SIMD sums are right on awkward lengths, it
// reads every byte it claims to, and bad options are errors.
#include "kernels/cpu/bandwidth.h"

#include <cmath>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/isa_dispatch.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cpu/thread_pool.h"

namespace kestrel::kernels::cpu {
namespace {

TEST_CASE("sum_f32 of every ISA matches a double sum on awkward lengths", "[bandwidth]") {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa)) continue;
    for (int64_t n : {0, 1, 7, 15, 16, 17, 19, 33, 63, 64, 65, 99, 1000, 4099}) {
      // One guard element past the end, which a correct kernel never reads.
      std::vector<float> x = testing::RandomVector(static_cast<size_t>(n) + 1, 7, -1, 1);
      x[static_cast<size_t>(n)] = 1e30f;
      double want = 0, magnitude = 0;
      for (int64_t i = 0; i < n; ++i) {
        want += x[static_cast<size_t>(i)];
        magnitude += std::fabs(x[static_cast<size_t>(i)]);
      }
      INFO("isa=" << IsaName(isa) << " n=" << n);
      const float got = GetIsaTable(isa).sum_f32(x.data(), n);
      CHECK(std::fabs(got - want) <= 1e-6 * magnitude + 1e-7);
    }
  }
}

TEST_CASE("MeasureReadBandwidth reads the whole buffer in every pass", "[bandwidth]") {
  auto pool = ThreadPool::Create({.num_threads = 2});
  REQUIRE(pool.ok());
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa)) continue;
    INFO("isa=" << IsaName(isa));
    auto r = MeasureReadBandwidth(pool->get(), {.bytes = 8 << 20, .slice_bytes = 1 << 20, .isa = isa},
                                  /*passes=*/3);
    REQUIRE(r.ok());
    CHECK(r->isa == isa);
    CHECK(r->samples == 3 * 8);
    CHECK(r->checksum == 3.0 * (8 << 20) / 4);
    CHECK(r->min_gbs > 0);
    CHECK(r->min_gbs <= r->median_gbs);
    CHECK(r->median_gbs <= r->max_gbs);
    CHECK(std::isfinite(r->max_gbs));
  }
  // Without a pool, and with a size that is not a multiple of the page.
  auto r = MeasureReadBandwidth(nullptr, {.bytes = (1 << 20) + 100}, /*passes=*/1);
  REQUIRE(r.ok());
  CHECK(r->samples == 1);
  CHECK(r->checksum == (1 << 20) / 4);
}

TEST_CASE("MeasureReadBandwidth rejects bad options", "[bandwidth]") {
  auto tiny = MeasureReadBandwidth(nullptr, {.bytes = 100}, 1);
  REQUIRE_FALSE(tiny.ok());
  CHECK(tiny.status().message() == "BandwidthProbe: bytes must be >= 4096, got 100");
  auto no_passes = MeasureReadBandwidth(nullptr, {.bytes = 4096}, 0);
  REQUIRE_FALSE(no_passes.ok());
  CHECK(no_passes.status().message() == "MeasureReadBandwidth: passes must be >= 1, got 0");
}

}  // namespace
}  // namespace kestrel::kernels::cpu

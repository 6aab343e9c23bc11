// SiLU-and-multiply against the reference, separate and fused gate/up.
#include "kernels/cpu/activation.h"

#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/reference.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cpu/thread_pool.h"

namespace kestrel::kernels::cpu {
namespace {

using testing::CompareClose;
using testing::RandomVector;

TEST_CASE("SiluAndMul on a fused [rows, 2*dim] gate|up buffer", "[activation]") {
  auto pool = ThreadPool::Create({.num_threads = 2});
  REQUIRE(pool.ok());
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
  if (!IsaSupported(isa)) continue;
  for (int64_t dim : {1, 7, 19, 99, 5632}) {
    const int64_t rows = dim == 5632 ? 33 : 3;
    const std::vector<float> gu = RandomVector(static_cast<size_t>(rows * 2 * dim), 1, -8, 8);
    std::vector<float> out(static_cast<size_t>(rows * dim)), want(out.size());
    REQUIRE(SiluAndMul(gu.data(), 2 * dim, gu.data() + dim, 2 * dim, out.data(), dim, rows, dim,
                       pool->get(), isa)
                .ok());
    for (int64_t r = 0; r < rows; ++r) {
      reference::SiluAndMul(gu.data() + r * 2 * dim, gu.data() + r * 2 * dim + dim,
                            want.data() + r * dim, dim);
    }
    INFO("dim=" << dim << " isa=" << IsaName(isa));
    CHECK(CompareClose(out.data(), want.data(), out.size(), 1e-6f, 1e-5f) == "");
  }
  }
}

TEST_CASE("SiluAndMul in place and extreme inputs", "[activation]") {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa)) continue;
    INFO("isa=" << IsaName(isa));
    std::vector<float> gate = {-100.0f, 0.0f, 100.0f, -1.0f, -1e30f, 1e30f, 3.0f};
    std::vector<float> up = {1.0f, 5.0f, 2.0f, 3.0f, 1.0f, 1.0f, 1.0f};
    REQUIRE(SiluAndMul(gate.data(), 7, up.data(), 7, gate.data(), 7, 1, 7, nullptr, isa).ok());
    CHECK(gate[0] == Approx(0.0f).margin(1e-30));
    CHECK(gate[1] == 0.0f);
    CHECK(gate[2] == Approx(200.0f));
    CHECK(gate[3] == Approx(-3.0f / (1.0f + std::exp(1.0f))));
    CHECK(gate[4] == Approx(0.0f).margin(1e-6));
    CHECK(gate[5] == Approx(1e30f));
    CHECK(gate[6] == Approx(3.0f / (1.0f + std::exp(-3.0f))));
  }
  std::vector<float> gate(4), up(4);
  CHECK(absl::IsInvalidArgument(SiluAndMul(gate.data(), 3, up.data(), 4, gate.data(), 4, 1, 4)));
  CHECK(absl::IsInvalidArgument(SiluAndMul(nullptr, 4, up.data(), 4, gate.data(), 4, 1, 4)));
}

}  // namespace
}  // namespace kestrel::kernels::cpu

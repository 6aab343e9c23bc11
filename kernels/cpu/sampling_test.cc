// Softmax, log-softmax and argmax over vocabulary rows.
#include "kernels/cpu/sampling.h"

#include <cmath>
#include <limits>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/reference.h"
#include "kernels/cpu/test_util.h"

namespace kestrel::kernels::cpu {
namespace {

using testing::CompareClose;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

TEST_CASE("Softmax and LogSoftmax match the reference", "[sampling]") {
  for (int64_t vocab : {1, 7, 99, 32000}) {
    const int64_t rows = 2, stride = vocab + 3;
    // Large logits: a naive exp would overflow.
    const std::vector<float> x =
        testing::RandomVector(static_cast<size_t>(rows * stride), 1, 50.0f, 120.0f);
    std::vector<float> p(static_cast<size_t>(rows * vocab)), lp(p.size()), want(p.size());
    REQUIRE(Softmax(x.data(), stride, p.data(), vocab, rows, vocab).ok());
    REQUIRE(LogSoftmax(x.data(), stride, lp.data(), vocab, rows, vocab).ok());
    for (int64_t r = 0; r < rows; ++r) {
      reference::Softmax(x.data() + r * stride, want.data() + r * vocab, vocab);
      INFO("vocab=" << vocab);
      CHECK(CompareClose(p.data() + r * vocab, want.data() + r * vocab,
                         static_cast<size_t>(vocab), 1e-7f, 1e-4f) == "");
      reference::LogSoftmax(x.data() + r * stride, want.data() + r * vocab, vocab);
      CHECK(CompareClose(lp.data() + r * vocab, want.data() + r * vocab,
                         static_cast<size_t>(vocab), 1e-4f, 1e-5f) == "");
    }
  }
}

TEST_CASE("Masked (-inf) logits", "[sampling]") {
  std::vector<float> x = {-kInf, 0.0f, -kInf, 0.0f};
  std::vector<float> p(4), lp(4);
  REQUIRE(Softmax(x.data(), 4, p.data(), 4, 1, 4).ok());
  CHECK(p == std::vector<float>{0.0f, 0.5f, 0.0f, 0.5f});
  REQUIRE(LogSoftmax(x.data(), 4, lp.data(), 4, 1, 4).ok());
  CHECK(lp[0] == -kInf);
  CHECK(lp[1] == Approx(std::log(0.5f)));
  std::vector<float> all = {-kInf, -kInf};
  REQUIRE(Softmax(all.data(), 2, p.data(), 2, 1, 2).ok());
  CHECK(p[0] == 0.0f);
  CHECK(p[1] == 0.0f);
  // In place.
  REQUIRE(Softmax(x.data(), 4, x.data(), 4, 1, 4).ok());
  CHECK(x[1] == 0.5f);
}

TEST_CASE("Argmax: first maximum wins, NaNs are skipped", "[sampling]") {
  const std::vector<float> x = {1.0f, 3.0f, 3.0f, 2.0f,  // row 0
                                kNaN, -5.0f, kNaN, -4.0f,  // row 1
                                kNaN, kNaN, kNaN, kNaN,    // row 2
                                -kInf, -kInf, -kInf, 7.0f};
  std::vector<int32_t> ids(4, -1);
  REQUIRE(Argmax(x.data(), 4, 4, 4, ids.data()).ok());
  CHECK(ids == std::vector<int32_t>{1, 3, 0, 3});
  CHECK(absl::IsInvalidArgument(Argmax(x.data(), 4, 1, 0, ids.data())));
  CHECK(absl::IsInvalidArgument(Argmax(x.data(), 3, 1, 4, ids.data())));
}

}  // namespace
}  // namespace kestrel::kernels::cpu

// RMSNorm against the reference: awkward dims, strides, in place, per head.
#include "kernels/cpu/norm.h"

#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/reference.h"
#include "kernels/cpu/test_util.h"

namespace kestrel::kernels::cpu {
namespace {

using testing::CompareClose;
using testing::RandomVector;

TEST_CASE("RmsNorm matches the reference", "[norm]") {
  for (int64_t dim : {1, 7, 19, 64, 99, 2048}) {
    for (int64_t rows : {1, 3}) {
      const int64_t stride = dim + 5;
      const std::vector<float> x = RandomVector(static_cast<size_t>(rows * stride), 1, -3, 3);
      const std::vector<float> w = RandomVector(static_cast<size_t>(dim), 2);
      std::vector<float> out(static_cast<size_t>(rows * dim)), want(out.size());
      REQUIRE(RmsNorm(x.data(), stride, out.data(), dim, w.data(), rows, dim, 1e-5f).ok());
      reference::RmsNorm(x.data(), stride, want.data(), dim, w.data(), rows, dim, 1e-5f);
      INFO("dim=" << dim << " rows=" << rows);
      CHECK(CompareClose(out.data(), want.data(), out.size(), 1e-5f, 1e-5f) == "");
      // In place gives the same numbers.
      std::vector<float> inplace = x;
      REQUIRE(RmsNorm(inplace.data(), stride, inplace.data(), stride, w.data(), rows, dim, 1e-5f)
                  .ok());
      for (int64_t r = 0; r < rows; ++r) {
        CHECK(CompareClose(inplace.data() + r * stride, out.data() + r * dim,
                           static_cast<size_t>(dim), 0.0f) == "");
      }
    }
  }
}

TEST_CASE("RmsNormPerHead normalises each head of a strided buffer", "[norm]") {
  // Qwen3 q_norm on q sitting inside a fused qkv row: token stride > heads*dim.
  for (int64_t head_dim : {64, 80, 128}) {
    const int64_t tokens = 7, heads = 3, stride = heads * head_dim + 2 * head_dim;
    std::vector<float> x = RandomVector(static_cast<size_t>(tokens * stride), 3, -2, 2);
    const std::vector<float> w = RandomVector(static_cast<size_t>(head_dim), 4);
    std::vector<float> want = x;
    for (int64_t t = 0; t < tokens; ++t) {
      reference::RmsNorm(x.data() + t * stride, head_dim, want.data() + t * stride, head_dim,
                         w.data(), heads, head_dim, 1e-6f);
    }
    REQUIRE(RmsNormPerHead(x.data(), stride, tokens, heads, head_dim, w.data(), 1e-6f).ok());
    INFO("head_dim=" << head_dim);
    CHECK(CompareClose(x.data(), want.data(), x.size(), 1e-5f, 1e-5f) == "");
  }
}

TEST_CASE("RmsNorm rejects bad arguments", "[norm]") {
  std::vector<float> x(8), w(4);
  CHECK(absl::IsInvalidArgument(RmsNorm(x.data(), 3, x.data(), 4, w.data(), 2, 4, 1e-5f)));
  CHECK(absl::IsInvalidArgument(RmsNorm(x.data(), 4, x.data(), 4, w.data(), 2, 0, 1e-5f)));
  CHECK(absl::IsInvalidArgument(RmsNorm(x.data(), 4, x.data(), 4, nullptr, 2, 4, 1e-5f)));
  CHECK(absl::IsInvalidArgument(RmsNorm(x.data(), 4, x.data(), 4, w.data(), 2, 4, -1.0f)));
  CHECK(absl::IsInvalidArgument(RmsNormPerHead(x.data(), 7, 1, 2, 4, w.data(), 1e-5f)));
  CHECK(RmsNorm(nullptr, 4, nullptr, 4, nullptr, 0, 4, 1e-5f).ok());
}

}  // namespace
}  // namespace kestrel::kernels::cpu

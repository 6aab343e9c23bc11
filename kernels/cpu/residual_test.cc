// Residual add with strides and in place.
#include "kernels/cpu/residual.h"

#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/test_util.h"

namespace kestrel::kernels::cpu {
namespace {

TEST_CASE("Add with strides and in place", "[residual]") {
  for (int64_t dim : {1, 7, 19, 99}) {
    const int64_t rows = 5, sa = dim + 1, sb = dim + 3;
    std::vector<float> a = testing::RandomVector(static_cast<size_t>(rows * sa), 1);
    const std::vector<float> b = testing::RandomVector(static_cast<size_t>(rows * sb), 2);
    std::vector<float> out(static_cast<size_t>(rows * dim));
    REQUIRE(Add(a.data(), sa, b.data(), sb, out.data(), dim, rows, dim).ok());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < dim; ++i) REQUIRE(out[r * dim + i] == a[r * sa + i] + b[r * sb + i]);
    const std::vector<float> a0 = a;
    REQUIRE(Add(a.data(), sa, b.data(), sb, a.data(), sa, rows, dim).ok());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < dim; ++i) REQUIRE(a[r * sa + i] == a0[r * sa + i] + b[r * sb + i]);
      // Row padding untouched.
      if (dim + 1 == sa) REQUIRE(a[r * sa + dim] == a0[r * sa + dim]);
    }
  }
  std::vector<float> x(4);
  CHECK(absl::IsInvalidArgument(Add(x.data(), 1, x.data(), 2, x.data(), 2, 2, 2)));
  CHECK(absl::IsInvalidArgument(Add(nullptr, 2, x.data(), 2, x.data(), 2, 2, 2)));
}

}  // namespace
}  // namespace kestrel::kernels::cpu

// The CUDA RMSNorm kernel, compiled by the host compiler against the CUDA
// emulation, against the CPU scalar reference on awkward sizes; row padding
// is never written; bad arguments are errors.
#include "kernels/cuda/rms_norm.h"

#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/reference.h"
#include "kernels/cpu/test_util.h"

namespace kestrel::cuda {
namespace {

TEST_CASE("CUDA RmsNorm matches the CPU reference", "[cuda][rms_norm]") {
  for (int hidden : {1, 7, 19, 31, 32, 33, 99, 255, 256, 257, 2048, 5632}) {
    for (int rows : {1, 3}) {
      INFO("hidden=" << hidden << " rows=" << rows);
      const int64_t in_stride = hidden + 3, out_stride = hidden + 5;
      const std::vector<float> in = kernels::testing::RandomVector(
          static_cast<size_t>(rows * in_stride), 1 + hidden, -3, 3);
      const std::vector<float> weight =
          kernels::testing::RandomVector(static_cast<size_t>(hidden), 2, 0.5f, 1.5f);
      std::vector<float> out(static_cast<size_t>(rows * out_stride), -99.0f), want = out;
      REQUIRE(RmsNorm(out.data(), out_stride, in.data(), in_stride, weight.data(), rows, hidden,
                      1e-5f, nullptr) == cudaSuccess);
      kernels::reference::RmsNorm(in.data(), in_stride, want.data(), out_stride,
                                       weight.data(), rows, hidden, 1e-5f);
      CHECK(kernels::testing::CompareClose(out.data(), want.data(), out.size(), 1e-6f,
                                                1e-5f) == "");
      for (int r = 0; r < rows; ++r) {
        for (int64_t e = hidden; e < out_stride; ++e) {
          REQUIRE(out[static_cast<size_t>(r * out_stride + e)] == -99.0f);
        }
      }
    }
  }
}

TEST_CASE("CUDA RmsNorm rejects bad sizes and strides", "[cuda][rms_norm]") {
  std::vector<float> buf(64, 1.0f);
  CHECK(RmsNorm(buf.data(), 8, buf.data(), 8, buf.data(), 0, 8, 1e-5f, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(RmsNorm(buf.data(), 8, buf.data(), 8, buf.data(), 1, 0, 1e-5f, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(RmsNorm(buf.data(), 7, buf.data(), 8, buf.data(), 1, 8, 1e-5f, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(RmsNorm(buf.data(), 8, buf.data(), 7, buf.data(), 1, 8, 1e-5f, nullptr) ==
        cudaErrorInvalidValue);
}

}  // namespace
}  // namespace kestrel::cuda

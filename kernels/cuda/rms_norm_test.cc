// The CUDA RMSNorm kernel against the CPU scalar reference on awkward sizes,
// through the CUDA runtime API only (cudaMalloc, cudaMemcpy), so the same
// test runs under the emulation and on a GPU (rms_norm_test_gpu). Row
// padding holds NaN on input and a sentinel on output: the kernel must
// neither read the one nor write the other. Bad arguments are errors.
#include "kernels/cuda/rms_norm.h"

#include <cmath>
#include <limits>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/reference.h"
#include "kernels/cpu/test_util.h"

namespace kestrel::cuda {
namespace {

// Device memory holding a copy of `host`; freed on destruction.
class DeviceFloats {
 public:
  explicit DeviceFloats(const std::vector<float>& host) : size_(host.size()) {
    REQUIRE(cudaMalloc(&data_, size_ * sizeof(float)) == cudaSuccess);
    REQUIRE(cudaMemcpy(data_, host.data(), size_ * sizeof(float), cudaMemcpyHostToDevice) ==
            cudaSuccess);
  }
  ~DeviceFloats() { CHECK(cudaFree(data_) == cudaSuccess); }
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;

  float* get() const { return data_; }
  std::vector<float> ToHost() const {
    std::vector<float> host(size_);
    REQUIRE(cudaMemcpy(host.data(), data_, size_ * sizeof(float), cudaMemcpyDeviceToHost) ==
            cudaSuccess);
    return host;
  }

 private:
  size_t size_;
  float* data_ = nullptr;
};

TEST_CASE("CUDA RmsNorm matches the CPU reference", "[cuda][rms_norm]") {
  constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
  constexpr float kSentinel = -99.0f;
  for (int hidden : {1, 7, 19, 31, 32, 33, 99, 255, 256, 257, 2048, 5632}) {
    for (int rows : {1, 3}) {
      INFO("hidden=" << hidden << " rows=" << rows);
      const int64_t in_stride = hidden + 3, out_stride = hidden + 5;
      std::vector<float> in = kernels::testing::RandomVector(
          static_cast<size_t>(rows * in_stride), 1 + hidden, -3, 3);
      for (int r = 0; r < rows; ++r) {
        for (int64_t e = hidden; e < in_stride; ++e) {
          in[static_cast<size_t>(r * in_stride + e)] = kNaN;
        }
      }
      const std::vector<float> weight =
          kernels::testing::RandomVector(static_cast<size_t>(hidden), 2, 0.5f, 1.5f);
      std::vector<float> want(static_cast<size_t>(rows * out_stride), kSentinel);
      kernels::reference::RmsNorm(in.data(), in_stride, want.data(), out_stride, weight.data(),
                                  rows, hidden, 1e-5f);

      const DeviceFloats d_in(in), d_weight(weight),
          d_out(std::vector<float>(want.size(), kSentinel));
      REQUIRE(RmsNorm(d_out.get(), out_stride, d_in.get(), in_stride, d_weight.get(), rows, hidden,
                      1e-5f, nullptr) == cudaSuccess);
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
      const std::vector<float> out = d_out.ToHost();
      CHECK(kernels::testing::CompareClose(out.data(), want.data(), out.size(), 1e-6f, 1e-5f) ==
            "");
      for (int r = 0; r < rows; ++r) {
        for (int64_t e = hidden; e < out_stride; ++e) {
          REQUIRE(out[static_cast<size_t>(r * out_stride + e)] == kSentinel);
        }
      }
    }
  }
}

TEST_CASE("CUDA RmsNorm rejects bad sizes and strides", "[cuda][rms_norm]") {
  const DeviceFloats buf(std::vector<float>(64, 1.0f));
  float* p = buf.get();
  CHECK(RmsNorm(p, 8, p, 8, p, 0, 8, 1e-5f, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNorm(p, 8, p, 8, p, 1, 0, 1e-5f, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNorm(p, 7, p, 8, p, 1, 8, 1e-5f, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNorm(p, 8, p, 7, p, 1, 8, 1e-5f, nullptr) == cudaErrorInvalidValue);
}

}  // namespace
}  // namespace kestrel::cuda

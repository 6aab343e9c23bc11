// The GEMV kernel against kernels::reference::Gemm (exact widening of the
// weights, x unrounded) for M = 1..8 on awkward shapes: K not a multiple of
// 8, K across the 1024-column staging chunks, unaligned weight rows (scalar
// loads), padded NaN-filled strides; exact widening of every F16/BF16 class
// of value; agreement with the cuBLAS path; the argument errors.
#include "kernels/cuda/gemv.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cuda/gemm.h"
#include "kernels/cuda/gemm_test_util.h"

namespace kestrel::cuda {
namespace {

using kernels::DType;
using testing::DeviceArray;
using testing::Problem;

// Device copy of p's weights, optionally `offset` elements into the buffer
// (so rows start unaligned).
class DeviceWeights {
 public:
  DeviceWeights(const Problem& p, int64_t offset = 0)
      : element_(p.w.dtype == DType::kF32 ? 4 : 2), offset_(offset), bytes_(Bytes(p, offset)) {
    std::vector<uint8_t> host(bytes_, 0xff);
    std::memcpy(host.data() + offset * element_, p.w.data(),
                (p.w.dtype == DType::kF32 ? p.w.f32.size() : p.w.bits.size()) * element_);
    buffer_ = std::make_unique<DeviceArray<uint8_t>>(host);
  }
  const void* get() const { return buffer_->get() + offset_ * element_; }

 private:
  static size_t Bytes(const Problem& p, int64_t offset) {
    const size_t n = p.w.dtype == DType::kF32 ? p.w.f32.size() : p.w.bits.size();
    return (n + static_cast<size_t>(offset)) * (p.w.dtype == DType::kF32 ? 4 : 2);
  }
  int64_t element_, offset_;
  size_t bytes_;
  std::unique_ptr<DeviceArray<uint8_t>> buffer_;
};

std::vector<float> RunGemv(const Problem& p, int64_t w_offset = 0) {
  const DeviceArray<float> x(p.x), b(p.b), y(p.y);
  const DeviceWeights w(p, w_offset);
  REQUIRE(Gemv(x.get(), p.ldx, w.get(), p.w.dtype, p.ldw, p.bias ? b.get() : nullptr, y.get(),
               p.ldy, p.m, p.n, p.k, p.accumulate, nullptr) == cudaSuccess);
  return y.Download();
}

constexpr float kTolerance = 1e-5f;

TEST_CASE("GEMV matches the CPU reference", "[cuda][gemv]") {
  struct Shape {
    int64_t n, k;
  };
  // K: < 8, not a multiple of 8, one chunk exactly, across chunks.
  const Shape shapes[] = {{1, 1}, {7, 33}, {33, 7}, {9, 257}, {3, 1024}, {2, 1030}};
  uint32_t seed = 1;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t m = 1; m <= kGemvMaxRows; ++m) {
      for (const Shape& s : shapes) {
        const bool bias = seed % 2 == 1, accumulate = seed / 2 % 2 == 1;
        ++seed;
        // Aligned rows (ldw a multiple of 8 elements): 16-byte loads.
        const int64_t aligned_pad = (8 - s.k % 8) % 8 + 8;
        for (int64_t w_pad : {aligned_pad, int64_t{1}}) {
          INFO(kernels::DTypeName(dtype) << " m=" << m << " n=" << s.n << " k=" << s.k
                                         << " ldw=k+" << w_pad << " bias=" << bias
                                         << " accumulate=" << accumulate);
          const Problem p(dtype, m, s.n, s.k, bias, accumulate, seed * 10, 3, w_pad);
          CHECK(testing::CompareY(p, RunGemv(p), p.Reference(false), kTolerance, kTolerance) ==
                "");
        }
      }
    }
  }
}

TEST_CASE("GEMV with a misaligned weight pointer takes scalar loads", "[cuda][gemv]") {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    INFO(kernels::DTypeName(dtype));
    const Problem p(dtype, 3, 17, 40, true, true, 77, 3, /*w_pad=*/8);
    CHECK(testing::CompareY(p, RunGemv(p, /*w_offset=*/1), p.Reference(false), kTolerance,
                            kTolerance) == "");
  }
}

TEST_CASE("GEMV with k == 0 writes the bias", "[cuda][gemv]") {
  for (bool bias : {false, true}) {
    for (bool accumulate : {false, true}) {
      INFO("bias=" << bias << " accumulate=" << accumulate);
      const Problem p(DType::kBF16, 3, 10, 0, bias, accumulate, 5);
      CHECK(testing::CompareY(p, RunGemv(p), p.Reference(false), 0.0f, 0.0f) == "");
    }
  }
}

// y[r, j] = W[j, r] when x row r is the unit vector e_r: the product shows
// the kernel's widening of each weight value, which must be exact (the
// other products are zeros, so only a negative zero's sign is lost).
TEST_CASE("GEMV widens F16 and BF16 weights exactly", "[cuda][gemv]") {
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    std::vector<uint16_t> values;
    // Zeros, subnormals, the normal range edges, then a sweep of finite
    // values of both signs (exponent all ones excluded: 0 * inf is NaN).
    for (uint16_t v : {0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x3c00, 0xbc00}) {
      values.push_back(v);
    }
    const uint16_t exponent_mask = dtype == DType::kF16 ? 0x7c00 : 0x7f80;
    for (uint32_t v = 3; v < 0x10000; v += 67) {
      if ((v & exponent_mask) != exponent_mask) values.push_back(static_cast<uint16_t>(v));
    }
    constexpr int64_t kM = 8, kK = 8;
    const int64_t n = static_cast<int64_t>(values.size() + kK - 1) / kK;
    values.resize(static_cast<size_t>(n * kK), 0);
    INFO(kernels::DTypeName(dtype) << " n=" << n);
    std::vector<float> x(kM * kK, 0.0f);
    for (int64_t r = 0; r < kM; ++r) x[r * kK + r] = 1.0f;
    const DeviceArray<float> dx(x), dy(std::vector<float>(static_cast<size_t>(kM * n), -1.0f));
    const DeviceArray<uint16_t> dw(values);
    REQUIRE(Gemv(dx.get(), kK, dw.get(), dtype, kK, nullptr, dy.get(), n, kM, n, kK, false,
                 nullptr) == cudaSuccess);
    const std::vector<float> y = dy.Download();
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t r = 0; r < kM; ++r) {
        const uint16_t bits = values[j * kK + r];
        const float want =
            dtype == DType::kF16 ? kernels::F16ToF32(bits) : kernels::Bf16ToF32(bits);
        const float got = y[r * n + j];
        INFO("bits=" << bits << " got=" << got << " want=" << want);
        REQUIRE(got == want);  // -0 comes back as +0: it is summed with 0 * w
      }
    }
  }
}

TEST_CASE("GEMV agrees with the cuBLAS path", "[cuda][gemv]") {
  CublasGemmOptions options;
  options.gemv_max_rows = 0;
  options.cublas_workspace_bytes = 0;
  std::unique_ptr<CublasGemm> cublas;
  REQUIRE(CublasGemm::Create(options, nullptr, &cublas).ok());
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t m : {1, 5, 8}) {
      INFO(kernels::DTypeName(dtype) << " m=" << m);
      const Problem p(dtype, m, 21, 200, true, m == 5, 300 + static_cast<uint32_t>(m));
      const std::vector<float> gemv = RunGemv(p);
      const DeviceArray<float> x(p.x), b(p.b), y(p.y);
      const DeviceWeights w(p);
      const size_t ws_bytes = GemmWorkspaceBytes(dtype, p.m, p.k);
      const DeviceArray<uint8_t> ws(std::vector<uint8_t>(ws_bytes + 1, 0));
      const GemmStatus s = cublas->Gemm(x.get(), p.ldx, w.get(), dtype, p.ldw, b.get(), y.get(),
                                        p.ldy, p.m, p.n, p.k, p.accumulate, ws.get(), ws_bytes);
      INFO(s.Message());
      REQUIRE(s.ok());
      // cuBLAS rounds x to the weight dtype: each product is off by at most
      // 2^-9 (bf16) or 2^-11 (f16) of |x w|, plus subnormal f16 steps.
      const float rel = dtype == DType::kBF16 ? 0x1p-9f : dtype == DType::kF16 ? 0x1p-11f : 0.0f;
      const std::vector<float> scale = p.AbsProducts();
      CHECK(testing::CompareY(p, gemv, y.Download(), 2 * kTolerance, kTolerance, &scale, rel) ==
            "");
    }
  }
}

TEST_CASE("GEMV rejects bad arguments", "[cuda][gemv]") {
  const DeviceArray<float> buf(std::vector<float>(1024, 0.0f));
  float* x = buf.get();
  float* w = x + 256;
  float* y = x + 512;
  const auto call = [&](const float* px, int64_t ldx, const void* pw, DType dtype, int64_t ldw,
                        float* py, int64_t ldy, int64_t m, int64_t n, int64_t k) {
    return Gemv(px, ldx, pw, dtype, ldw, nullptr, py, ldy, m, n, k, false, nullptr);
  };
  CHECK(call(x, 8, w, DType::kF32, 8, y, 8, kGemvMaxRows + 1, 8, 8) == cudaErrorInvalidValue);
  CHECK(call(x, 8, w, DType::kF32, 8, y, 8, -1, 8, 8) == cudaErrorInvalidValue);
  CHECK(call(x, 8, w, DType::kF32, 8, y, 8, 2, -1, 8) == cudaErrorInvalidValue);
  CHECK(call(x, 8, w, DType::kF32, 8, y, 8, 2, 8, -1) == cudaErrorInvalidValue);
  CHECK(call(x, 7, w, DType::kF32, 8, y, 8, 2, 8, 8) == cudaErrorInvalidValue);
  CHECK(call(x, 8, w, DType::kF32, 7, y, 8, 2, 8, 8) == cudaErrorInvalidValue);
  CHECK(call(x, 8, w, DType::kF32, 8, y, 7, 2, 8, 8) == cudaErrorInvalidValue);
  CHECK(call(x, 8, w, DType::kF64, 8, y, 8, 2, 8, 8) == cudaErrorInvalidValue);
  CHECK(call(x, 8, w, DType::kF32, 8, nullptr, 8, 2, 8, 8) == cudaErrorInvalidValue);
  CHECK(call(nullptr, 8, w, DType::kF32, 8, y, 8, 2, 8, 8) == cudaErrorInvalidValue);
  CHECK(call(x, 8, nullptr, DType::kF32, 8, y, 8, 2, 8, 8) == cudaErrorInvalidValue);
  // Empty products launch nothing, even with null pointers.
  CHECK(call(nullptr, 8, nullptr, DType::kF32, 8, nullptr, 8, 0, 8, 8) == cudaSuccess);
  CHECK(call(nullptr, 8, nullptr, DType::kF32, 8, nullptr, 8, 2, 0, 8) == cudaSuccess);
  CHECK(call(nullptr, 0, nullptr, DType::kF32, 0, y, 8, 2, 8, 0) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
}

}  // namespace
}  // namespace kestrel::cuda

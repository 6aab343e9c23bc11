// The CUDA RMSNorm kernels against the CPU ones (kernels/cpu/norm.h): row
// norms on awkward and vector-friendly lengths, padded rows (NaN padding
// never written), in place; the fused residual add; per-head norms for head
// dims 64/80/128 and odd ones; and the argument checks.
#include "kernels/cuda/norm.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/norm.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/elem_test_util.h"

namespace kestrel::cuda {
namespace {

using kernels::testing::NaNVector;
using kernels::testing::RandomVector;
using testing::CheckPaddingUntouched;
using testing::CompareBits;
using testing::CompareRowsClose;
using testing::DeviceArray;
using testing::RequireSuccess;

constexpr float kEps = 1e-5f;
constexpr float kAtol = 1e-5f, kRtol = 1e-5f;

// x with row stride `stride`: random in the rows' first `dim` elements,
// NaN in the padding.
std::vector<float> PaddedRows(int64_t rows, int64_t dim, int64_t stride, uint32_t seed) {
  const std::vector<float> r = RandomVector(static_cast<size_t>(rows * stride), seed, -3, 3);
  std::vector<float> x = NaNVector(r.size());
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < dim; ++j) x[i * stride + j] = r[i * stride + j];
  }
  return x;
}

TEST_CASE("CUDA RmsNorm matches the CPU kernel", "[cuda][norm]") {
  for (int64_t dim : {1, 7, 19, 31, 32, 33, 64, 80, 99, 128, 255, 256, 257, 1000, 2048, 5632}) {
    for (int64_t rows : {1, 3, 17}) {
      // Contiguous rows (float4 where dim allows) and odd padded strides.
      for (int64_t pad : {0, 3}) {
        INFO("dim=" << dim << " rows=" << rows << " pad=" << pad);
        const int64_t x_stride = dim + pad, out_stride = dim + 2 * pad;
        const std::vector<float> x = PaddedRows(rows, dim, x_stride, 1 + dim);
        const std::vector<float> w = RandomVector(static_cast<size_t>(dim), 2, 0.5f, 1.5f);
        const std::vector<float> before = NaNVector(static_cast<size_t>(rows * out_stride));
        std::vector<float> want = before;
        REQUIRE(kernels::cpu::RmsNorm(x.data(), x_stride, want.data(), out_stride, w.data(), rows,
                                      dim, kEps)
                    .ok());

        DeviceArray<float> d_x(x), d_w(w), d_out(before);
        RequireSuccess(RmsNorm(d_x.get(), x_stride, d_out.get(), out_stride, d_w.get(), rows, dim,
                               kEps, nullptr));
        const std::vector<float> got = d_out.Download();
        CHECK(CompareRowsClose(got, want, rows, dim, out_stride, kAtol, kRtol) == "");
        CHECK(CheckPaddingUntouched(got, before, rows, dim, out_stride) == "");
        CHECK(CompareBits(d_x.Download(), x) == "");  // the input is read only

        // In place, against the CPU kernel in place; the padding stays NaN.
        std::vector<float> want_in_place = x;
        REQUIRE(kernels::cpu::RmsNorm(want_in_place.data(), x_stride, want_in_place.data(),
                                      x_stride, w.data(), rows, dim, kEps)
                    .ok());
        RequireSuccess(
            RmsNorm(d_x.get(), x_stride, d_x.get(), x_stride, d_w.get(), rows, dim, kEps, nullptr));
        const std::vector<float> in_place = d_x.Download();
        CHECK(CompareRowsClose(in_place, want_in_place, rows, dim, x_stride, kAtol, kRtol) == "");
        CHECK(CheckPaddingUntouched(in_place, x, rows, dim, x_stride) == "");
      }
    }
  }
}

TEST_CASE("CUDA FusedAddRmsNorm adds the residual, then normalizes it", "[cuda][norm]") {
  for (int64_t dim : {1, 7, 64, 80, 128, 257, 2048}) {
    for (int64_t rows : {1, 3, 17}) {
      for (int64_t pad : {0, 5}) {
        for (bool in_place : {false, true}) {
          INFO("dim=" << dim << " rows=" << rows << " pad=" << pad << " in_place=" << in_place);
          const int64_t stride = dim + pad;
          const std::vector<float> x = PaddedRows(rows, dim, stride, 3 + dim);
          const std::vector<float> residual = PaddedRows(rows, dim, stride, 4 + dim);
          const std::vector<float> w = RandomVector(static_cast<size_t>(dim), 5, 0.5f, 1.5f);
          const std::vector<float> out_before = NaNVector(static_cast<size_t>(rows * stride));
          // CPU: residual += x (one F32 add per element, so exact), then RmsNorm.
          std::vector<float> want_residual = residual, want = out_before;
          for (int64_t r = 0; r < rows; ++r) {
            for (int64_t i = 0; i < dim; ++i) want_residual[r * stride + i] += x[r * stride + i];
          }
          REQUIRE(kernels::cpu::RmsNorm(want_residual.data(), stride, want.data(), stride, w.data(),
                                        rows, dim, kEps)
                      .ok());

          DeviceArray<float> d_x(x), d_res(residual), d_w(w), d_out(out_before);
          float* out = in_place ? d_x.get() : d_out.get();
          RequireSuccess(FusedAddRmsNorm(d_x.get(), stride, d_res.get(), stride, out, stride,
                                         d_w.get(), rows, dim, kEps, nullptr));
          CHECK(CompareBits(d_res.Download(), want_residual) == "");
          const std::vector<float> got = in_place ? d_x.Download() : d_out.Download();
          CHECK(CompareRowsClose(got, want, rows, dim, stride, kAtol, kRtol) == "");
          CHECK(CheckPaddingUntouched(got, in_place ? x : out_before, rows, dim, stride) == "");
        }
      }
    }
  }
}

TEST_CASE("CUDA RmsNormPerHead matches the CPU kernel", "[cuda][norm]") {
  for (int64_t head_dim : {64, 80, 128, 1, 33, 50}) {
    for (int64_t num_heads : {1, 4, 7}) {
      for (int64_t tokens : {1, 3, 17}) {
        // pad 0: heads back to back (float4 where head_dim allows); pad 3:
        // an odd token stride (element-wise).
        for (int64_t pad : {0, 3}) {
          INFO("head_dim=" << head_dim << " heads=" << num_heads << " tokens=" << tokens
                           << " pad=" << pad);
          const int64_t width = num_heads * head_dim, stride = width + pad;
          const std::vector<float> x = PaddedRows(tokens, width, stride, 6 + head_dim);
          const std::vector<float> w = RandomVector(static_cast<size_t>(head_dim), 7, 0.5f, 1.5f);
          std::vector<float> want = x;
          REQUIRE(kernels::cpu::RmsNormPerHead(want.data(), stride, tokens, num_heads, head_dim,
                                               w.data(), kEps)
                      .ok());
          DeviceArray<float> d_x(x), d_w(w);
          RequireSuccess(RmsNormPerHead(d_x.get(), stride, tokens, num_heads, head_dim, d_w.get(),
                                        kEps, nullptr));
          const std::vector<float> got = d_x.Download();
          CHECK(CompareRowsClose(got, want, tokens, width, stride, kAtol, kRtol) == "");
          CHECK(CheckPaddingUntouched(got, x, tokens, width, stride) == "");
        }
      }
    }
  }
}

TEST_CASE("CUDA norms reject bad arguments", "[cuda][norm]") {
  DeviceArray<float> a(64), b(64), w(64);
  float* x = a.get();
  float* r = b.get();
  const float* wt = w.get();
  CHECK(RmsNorm(x, 8, x, 8, wt, 2, 8, kEps, nullptr) == cudaSuccess);
  CHECK(RmsNorm(x, 8, x, 8, wt, -1, 8, kEps, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNorm(x, 8, x, 8, wt, 1, 0, kEps, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNorm(x, 7, x, 8, wt, 1, 8, kEps, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNorm(x, 8, x, 7, wt, 1, 8, kEps, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNorm(x, 8, x, 8, wt, 1, 8, -1.0f, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNorm(x, 8, x, 8, wt, 1, 8, NAN, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNorm(x, 8, x, 8, nullptr, 1, 8, kEps, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNorm(nullptr, 8, x, 8, wt, 1, 8, kEps, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNorm(nullptr, 8, nullptr, 8, nullptr, 0, 8, kEps, nullptr) == cudaSuccess);

  CHECK(FusedAddRmsNorm(x, 8, r, 8, x, 8, wt, 2, 8, kEps, nullptr) == cudaSuccess);
  CHECK(FusedAddRmsNorm(x, 8, r, 7, x, 8, wt, 1, 8, kEps, nullptr) == cudaErrorInvalidValue);
  CHECK(FusedAddRmsNorm(x, 8, nullptr, 8, x, 8, wt, 1, 8, kEps, nullptr) == cudaErrorInvalidValue);
  CHECK(FusedAddRmsNorm(x, 8, r, 8, x, 8, wt, 1, 8, -1.0f, nullptr) == cudaErrorInvalidValue);

  CHECK(RmsNormPerHead(x, 16, 2, 2, 8, wt, kEps, nullptr) == cudaSuccess);
  CHECK(RmsNormPerHead(x, 15, 2, 2, 8, wt, kEps, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNormPerHead(x, 16, -1, 2, 8, wt, kEps, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNormPerHead(x, 16, 2, -1, 8, wt, kEps, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNormPerHead(x, 16, 2, 2, 0, wt, kEps, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNormPerHead(x, 16, 2, 2, 8, wt, -1.0f, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNormPerHead(x, 16, 2, 2, 8, nullptr, kEps, nullptr) == cudaErrorInvalidValue);
  CHECK(RmsNormPerHead(nullptr, 16, 0, 2, 8, nullptr, kEps, nullptr) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
}

}  // namespace
}  // namespace kestrel::cuda

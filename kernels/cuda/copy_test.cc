// The CUDA row gather, block copy, casts and bias add against the CPU
// kernels (kernels/cpu/embedding.h, kv_cache.h) and kernels/dtype.h's
// conversions: padded rows (NaN padding never written), every copy width,
// special values for the casts, and bad ids (skipped and reported).
#include "kernels/cuda/copy.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/embedding.h"
#include "kernels/cpu/kv_cache.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/elem_test_util.h"
#include "kernels/dtype.h"

namespace kestrel::cuda {
namespace {

using kernels::testing::NaNVector;
using kernels::testing::RandomVector;
using testing::CheckPaddingUntouched;
using testing::CompareBits;
using testing::DeviceArray;
using testing::DeviceErrorSlot;
using testing::RequireSuccess;

// ---- GatherRows ----

TEST_CASE("CUDA GatherRows matches the CPU kernel", "[cuda][copy]") {
  for (int64_t dim : {1, 7, 64, 80, 128, 2048}) {
    for (int64_t num_rows : {1, 3, 17}) {
      for (int64_t pad : {0, 3}) {
        INFO("dim=" << dim << " rows=" << num_rows << " pad=" << pad);
        const int64_t src_rows = 20, src_stride = dim + 2 * pad, dst_stride = dim + pad;
        const std::vector<float> src =
            RandomVector(static_cast<size_t>(src_rows * src_stride), 1 + dim);
        std::vector<int32_t> rows;
        for (int64_t r = 0; r < num_rows; ++r) {
          rows.push_back(static_cast<int32_t>((r * 7 + 3) % src_rows));  // repeats for 17
        }
        const std::vector<float> before = NaNVector(static_cast<size_t>(num_rows * dst_stride));
        std::vector<float> want = before;
        REQUIRE(kernels::cpu::GatherRows(src.data(), src_stride, rows.data(), num_rows, dim,
                                         want.data(), dst_stride)
                    .ok());
        DeviceArray<float> d_src(src), d_dst(before);
        DeviceArray<int32_t> d_rows(rows);
        DeviceErrorSlot error;
        RequireSuccess(GatherRows(d_src.get(), src_stride, src_rows, d_rows.get(), num_rows, dim,
                                  d_dst.get(), dst_stride, error.get(), nullptr));
        CHECK(CompareBits(d_dst.Download(), want) == "");
        CHECK(error.Read().code == 0);
      }
    }
  }
}

TEST_CASE("CUDA GatherRows skips and reports rows outside the source", "[cuda][copy]") {
  const int64_t src_rows = 4, dim = 8, num_rows = 4;
  const std::vector<float> src = RandomVector(static_cast<size_t>(src_rows * dim), 2);
  const std::vector<int32_t> rows = {3, 4, -1, 0};
  const std::vector<float> before = NaNVector(static_cast<size_t>(num_rows * dim));
  DeviceArray<float> d_src(src), d_dst(before);
  DeviceArray<int32_t> d_rows(rows);
  DeviceErrorSlot error;
  RequireSuccess(GatherRows(d_src.get(), dim, src_rows, d_rows.get(), num_rows, dim, d_dst.get(),
                            dim, error.get(), nullptr));
  const std::vector<float> got = d_dst.Download();
  for (int64_t r = 0; r < num_rows; ++r) {
    for (int64_t i = 0; i < dim; ++i) {
      INFO("row " << r << " element " << i);
      const float g = got[static_cast<size_t>(r * dim + i)];
      if (r == 1 || r == 2) {
        CHECK(std::isnan(g));
      } else {
        CHECK(g == src[static_cast<size_t>(rows[r] * dim + i)]);
      }
    }
  }
  const DeviceError e = error.Read();
  CHECK(e.code == static_cast<int32_t>(DeviceErrorCode::kRowIndex));
  CHECK((e.index == 1 || e.index == 2));
  CHECK(e.value == rows[static_cast<size_t>(e.index)]);
  CHECK(e.limit == src_rows);
}

// ---- CopyBlocks ----

// A pool of num_arrays arrays of num_blocks blocks, array_stride bytes apart,
// copied on the device with `pairs` and on the CPU with `cpu_pairs`;
// requires identical pools and returns the device error.
DeviceError CopyBoth(int64_t num_arrays, int64_t block_bytes, int64_t num_blocks,
                     int64_t array_stride, const std::vector<int32_t>& pairs,
                     const std::vector<int32_t>& cpu_pairs) {
  std::vector<uint8_t> pool(static_cast<size_t>(num_arrays * array_stride));
  for (size_t i = 0; i < pool.size(); ++i) pool[i] = static_cast<uint8_t>(i * 131 + i / 7);
  std::vector<uint8_t> want = pool;
  REQUIRE(kernels::cpu::CopyBlocks(want.data(), num_arrays, array_stride, block_bytes, num_blocks,
                                   cpu_pairs.data(), static_cast<int64_t>(cpu_pairs.size() / 2))
              .ok());
  DeviceArray<uint8_t> d_pool(pool);
  DeviceArray<int32_t> d_pairs(pairs);
  DeviceErrorSlot error;
  RequireSuccess(CopyBlocks(d_pool.get(), num_arrays, array_stride, block_bytes, num_blocks,
                            d_pairs.get(), static_cast<int64_t>(pairs.size() / 2), error.get(),
                            nullptr));
  CHECK(CompareBits(d_pool.Download(), want) == "");
  return error.Read();
}

TEST_CASE("CUDA CopyBlocks matches the CPU kernel in every copy width", "[cuda][copy]") {
  // Disjoint sources and destinations, one pair copying onto itself.
  const std::vector<int32_t> pairs = {0, 5, 2, 6, 3, 3, 1, 7};
  const int64_t num_blocks = 8;
  // 16-byte units (a BF16 block of 16 tokens x 64 dims), 4-byte, 1-byte.
  for (int64_t block_bytes : {int64_t{2048}, int64_t{20}, int64_t{7}}) {
    for (int64_t num_arrays : {1, 3}) {
      for (int64_t extra : {0, 4, 16}) {
        INFO("block_bytes=" << block_bytes << " arrays=" << num_arrays << " extra=" << extra);
        CHECK(CopyBoth(num_arrays, block_bytes, num_blocks, num_blocks * block_bytes + extra, pairs,
                       pairs)
                  .code == 0);
      }
    }
  }
}

TEST_CASE("CUDA CopyBlocks skips and reports pairs naming blocks outside the pool",
          "[cuda][copy]") {
  const int64_t num_blocks = 4, block_bytes = 64;
  const std::vector<int32_t> pairs = {0, 1, 4, 2, 2, -1, 3, 2};
  const std::vector<int32_t> good = {0, 1, 3, 2};
  const DeviceError e = CopyBoth(2, block_bytes, num_blocks, num_blocks * block_bytes, pairs, good);
  CHECK(e.code == static_cast<int32_t>(DeviceErrorCode::kBlockId));
  CHECK((e.index == 1 || e.index == 2));
  CHECK(e.value == (e.index == 1 ? 4 : -1));
  CHECK(e.limit == num_blocks);
}

// ---- Casts ----

// Random values with the awkward ones mixed in: signed zeros, infinities,
// F16 overflow and subnormals, BF16 rounding ties.
std::vector<float> CastInputs(size_t n, uint32_t seed) {
  std::vector<float> v = RandomVector(n, seed, -100, 100);
  const float inf = std::numeric_limits<float>::infinity();
  const float special[] = {0.0f,  -0.0f, inf,   -inf,  65504.0f, 65520.0f,    1e6f,
                           -1e6f, 6e-8f, 3e-8f, 1e-5f, 1e-40f,   1.00390625f, 1.01171875f};
  for (size_t i = 0; i < n; i += 3) v[i] = special[(i / 3) % (sizeof(special) / sizeof(float))];
  return v;
}

TEST_CASE("CUDA casts round like kernels/dtype.h over padded rows", "[cuda][copy]") {
  for (int64_t dim : {1, 7, 64, 300}) {
    for (int64_t rows : {1, 3, 17}) {
      INFO("dim=" << dim << " rows=" << rows);
      const int64_t src_stride = dim + 3, dst_stride = dim + 5;
      const std::vector<float> src = CastInputs(static_cast<size_t>(rows * src_stride), 1 + dim);
      const std::vector<uint16_t> before(static_cast<size_t>(rows * dst_stride), 0x7e01);
      std::vector<uint16_t> want_bf16 = before, want_f16 = before;
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < dim; ++i) {
          want_bf16[r * dst_stride + i] = kernels::F32ToBf16(src[r * src_stride + i]);
          want_f16[r * dst_stride + i] = kernels::F32ToF16(src[r * src_stride + i]);
        }
      }
      DeviceArray<float> d_src(src);
      DeviceArray<uint16_t> d_bf16(before), d_f16(before);
      RequireSuccess(
          CastF32ToBf16(d_src.get(), src_stride, d_bf16.get(), dst_stride, rows, dim, nullptr));
      RequireSuccess(
          CastF32ToF16(d_src.get(), src_stride, d_f16.get(), dst_stride, rows, dim, nullptr));
      const std::vector<uint16_t> bf16 = d_bf16.Download();
      CHECK(CompareBits(bf16, want_bf16) == "");
      CHECK(CompareBits(d_f16.Download(), want_f16) == "");

      // And back: BF16 -> F32 is exact; the padding of dst stays NaN.
      const int64_t back_stride = dim + 1;
      const std::vector<float> back_before = NaNVector(static_cast<size_t>(rows * back_stride));
      std::vector<float> want_back = back_before;
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < dim; ++i) {
          want_back[r * back_stride + i] = kernels::Bf16ToF32(bf16[r * dst_stride + i]);
        }
      }
      DeviceArray<float> d_back(back_before);
      RequireSuccess(
          CastBf16ToF32(d_bf16.get(), dst_stride, d_back.get(), back_stride, rows, dim, nullptr));
      CHECK(CompareBits(d_back.Download(), want_back) == "");
    }
  }
}

// ---- AddBias ----

TEST_CASE("CUDA AddBias adds the bias to every row", "[cuda][copy]") {
  for (int64_t dim : {1, 7, 64, 80, 1000}) {
    for (int64_t rows : {1, 3, 17}) {
      for (int64_t pad : {0, 3}) {
        INFO("dim=" << dim << " rows=" << rows << " pad=" << pad);
        const int64_t stride = dim + pad;
        std::vector<float> y = RandomVector(static_cast<size_t>(rows * stride), 1 + dim);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t i = dim; i < stride; ++i) {
            y[r * stride + i] = std::numeric_limits<float>::quiet_NaN();
          }
        }
        const std::vector<float> bias = RandomVector(static_cast<size_t>(dim), 2);
        std::vector<float> want = y;
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t i = 0; i < dim; ++i) want[r * stride + i] += bias[i];
        }
        DeviceArray<float> d_y(y), d_bias(bias);
        RequireSuccess(AddBias(d_y.get(), stride, d_bias.get(), rows, dim, nullptr));
        const std::vector<float> got = d_y.Download();
        CHECK(CompareBits(got, want) == "");
        CHECK(CheckPaddingUntouched(got, y, rows, dim, stride) == "");
      }
    }
  }
}

TEST_CASE("CUDA copies and casts reject bad arguments", "[cuda][copy]") {
  DeviceArray<float> f(64), g(64);
  DeviceArray<uint16_t> h(64);
  DeviceArray<int32_t> idx(std::vector<int32_t>{0, 1});
  DeviceArray<uint8_t> pool(256);

  CHECK(GatherRows(f.get(), 8, 4, idx.get(), 2, 8, g.get(), 8, nullptr, nullptr) == cudaSuccess);
  CHECK(GatherRows(f.get(), 7, 4, idx.get(), 2, 8, g.get(), 8, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(GatherRows(f.get(), 8, 4, idx.get(), 2, 8, g.get(), 7, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(GatherRows(f.get(), 8, -1, idx.get(), 2, 8, g.get(), 8, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(GatherRows(f.get(), 8, 4, idx.get(), -1, 8, g.get(), 8, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(GatherRows(f.get(), 8, 4, nullptr, 2, 8, g.get(), 8, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(GatherRows(f.get(), 8, 4, idx.get(), 2, 8, nullptr, 8, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(GatherRows(nullptr, 8, 4, nullptr, 0, 8, nullptr, 8, nullptr, nullptr) == cudaSuccess);

  CHECK(CopyBlocks(pool.get(), 2, 128, 32, 4, idx.get(), 1, nullptr, nullptr) == cudaSuccess);
  CHECK(CopyBlocks(pool.get(), 2, 127, 32, 4, idx.get(), 1, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(CopyBlocks(pool.get(), -1, 128, 32, 4, idx.get(), 1, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(CopyBlocks(pool.get(), 2, 128, -1, 4, idx.get(), 1, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(CopyBlocks(pool.get(), 2, 128, 32, -1, idx.get(), 1, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(CopyBlocks(pool.get(), 2, 128, 32, 4, idx.get(), -1, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(CopyBlocks(pool.get(), 2, 128, 32, 4, nullptr, 1, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(CopyBlocks(nullptr, 2, 128, 32, 4, idx.get(), 1, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  CHECK(CopyBlocks(nullptr, 2, 128, 32, 4, nullptr, 0, nullptr, nullptr) == cudaSuccess);

  CHECK(CastF32ToBf16(f.get(), 8, h.get(), 8, 2, 8, nullptr) == cudaSuccess);
  CHECK(CastF32ToBf16(f.get(), 7, h.get(), 8, 2, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(CastF32ToBf16(f.get(), 8, h.get(), 7, 2, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(CastF32ToBf16(f.get(), 8, h.get(), 8, -1, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(CastF32ToBf16(nullptr, 8, h.get(), 8, 2, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(CastF32ToF16(f.get(), 8, nullptr, 8, 2, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(CastF32ToF16(f.get(), 8, h.get(), 8, 2, -1, nullptr) == cudaErrorInvalidValue);
  CHECK(CastBf16ToF32(h.get(), 8, f.get(), 7, 2, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(CastBf16ToF32(nullptr, 8, nullptr, 8, 0, 8, nullptr) == cudaSuccess);

  CHECK(AddBias(f.get(), 8, g.get(), 2, 8, nullptr) == cudaSuccess);
  CHECK(AddBias(f.get(), 7, g.get(), 2, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(AddBias(f.get(), 8, g.get(), -1, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(AddBias(f.get(), 8, nullptr, 2, 8, nullptr) == cudaErrorInvalidValue);
  CHECK(AddBias(nullptr, 8, nullptr, 0, 8, nullptr) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
}

}  // namespace
}  // namespace kestrel::cuda

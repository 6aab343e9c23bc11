// The CUDA embedding gather against the CPU kernel (kernels/cpu/embedding.h)
// for F32, F16 and BF16 tables: odd and vector-friendly row lengths, padded
// output rows (NaN, never written), a misaligned table (the element-wise
// path), and bad ids (skipped, reported through DeviceError).
#include "kernels/cuda/embedding.h"

#include <cmath>
#include <cstring>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/embedding.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/elem_test_util.h"
#include "kernels/dtype.h"

namespace kestrel::cuda {
namespace {

using kernels::DType;
using testing::CheckPaddingUntouched;
using testing::CompareBits;
using testing::DeviceArray;
using testing::DeviceErrorSlot;
using testing::RequireSuccess;

// A random [vocab, dim] table in `dtype`, as raw bytes.
std::vector<uint8_t> RandomTable(DType dtype, int64_t vocab, int64_t dim, uint32_t seed) {
  const std::vector<float> f =
      kernels::testing::RandomVector(static_cast<size_t>(vocab * dim), seed, -2, 2);
  std::vector<uint8_t> bytes(f.size() * static_cast<size_t>(kernels::DTypeSize(dtype)));
  if (dtype == DType::kF32) {
    std::memcpy(bytes.data(), f.data(), bytes.size());
  } else {
    const std::vector<uint16_t> h =
        dtype == DType::kBF16 ? kernels::testing::ToBf16(f) : kernels::testing::ToF16(f);
    std::memcpy(bytes.data(), h.data(), bytes.size());
  }
  return bytes;
}

std::vector<int32_t> RandomIds(int64_t n, int64_t vocab, uint32_t seed) {
  const std::vector<float> u = kernels::testing::RandomVector(static_cast<size_t>(n), seed, 0, 1);
  std::vector<int32_t> ids(u.size());
  for (size_t i = 0; i < u.size(); ++i) {
    ids[i] = static_cast<int32_t>(u[i] * static_cast<float>(vocab)) % static_cast<int32_t>(vocab);
  }
  return ids;
}

// Gathers on the device and on the CPU (ids given to the CPU must be good)
// and requires equal bits everywhere, padding included.
void CheckGather(DType dtype, int64_t vocab, int64_t dim, int64_t num_tokens, int64_t out_stride,
                 int64_t table_offset_bytes) {
  const std::vector<uint8_t> table = RandomTable(dtype, vocab + 1, dim, 7 + dim);
  const std::vector<int32_t> ids = RandomIds(num_tokens, vocab, 11 + num_tokens);
  const std::vector<float> before =
      kernels::testing::NaNVector(static_cast<size_t>(num_tokens * out_stride));
  std::vector<float> want = before;
  // The device table may start `table_offset_bytes` into the upload,
  // to make it misaligned; the CPU gets the same bytes.
  const uint8_t* host_table = table.data() + table_offset_bytes;
  REQUIRE(kernels::cpu::EmbeddingGather(host_table, dtype, vocab, dim, ids.data(), num_tokens,
                                        want.data(), out_stride)
              .ok());

  DeviceArray<uint8_t> d_table(table);
  DeviceArray<int32_t> d_ids(ids);
  DeviceArray<float> d_out(before);
  DeviceErrorSlot error;
  RequireSuccess(EmbeddingGather(d_table.get() + table_offset_bytes, dtype, vocab, dim, d_ids.get(),
                                 num_tokens, d_out.get(), out_stride, error.get(), nullptr));
  const std::vector<float> got = d_out.Download();
  CHECK(CompareBits(got, want) == "");
  CHECK(CheckPaddingUntouched(got, before, num_tokens, dim, out_stride) == "");
  CHECK(error.Read().code == 0);
}

TEST_CASE("CUDA EmbeddingGather matches the CPU kernel", "[cuda][embedding]") {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t dim : {1, 7, 64, 80, 128, 200, 4096}) {
      for (int64_t num_tokens : {1, 3, 17}) {
        // A contiguous output (the vector path where dim allows), and rows
        // padded to an odd stride (element-wise).
        for (int64_t out_stride : {dim, dim + 3}) {
          INFO(kernels::DTypeName(dtype)
               << " dim=" << dim << " tokens=" << num_tokens << " out_stride=" << out_stride);
          CheckGather(dtype, 50, dim, num_tokens, out_stride, 0);
        }
      }
    }
  }
}

TEST_CASE("CUDA EmbeddingGather reads a misaligned table element by element", "[cuda][embedding]") {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    INFO(kernels::DTypeName(dtype));
    // One element in: 4 or 2 bytes off a 16-byte boundary, with a row length
    // that would otherwise take the 16-byte path.
    CheckGather(dtype, 20, 64, 5, 64, kernels::DTypeSize(dtype));
  }
}

TEST_CASE("CUDA EmbeddingGather skips and reports ids outside the vocabulary",
          "[cuda][embedding]") {
  const int64_t vocab = 10, dim = 64, tokens = 6;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    INFO(kernels::DTypeName(dtype));
    const std::vector<uint8_t> table = RandomTable(dtype, vocab, dim, 3);
    const std::vector<int32_t> ids = {1, -1, 9, 10, 0, 2147483647};
    const std::vector<float> before =
        kernels::testing::NaNVector(static_cast<size_t>(tokens * dim));
    DeviceArray<uint8_t> d_table(table);
    DeviceArray<int32_t> d_ids(ids);
    DeviceArray<float> d_out(before);
    DeviceErrorSlot error;
    RequireSuccess(EmbeddingGather(d_table.get(), dtype, vocab, dim, d_ids.get(), tokens,
                                   d_out.get(), dim, error.get(), nullptr));
    const std::vector<float> got = d_out.Download();
    for (int64_t t = 0; t < tokens; ++t) {
      INFO("token " << t);
      const bool bad = ids[t] < 0 || ids[t] >= vocab;
      for (int64_t i = 0; i < dim; ++i) {
        const float g = got[static_cast<size_t>(t * dim + i)];
        if (bad) {
          REQUIRE(std::isnan(g));
        } else {
          REQUIRE(g == kernels::LoadAsF32(table.data(), dtype, ids[t] * dim + i));
        }
      }
    }
    // Which bad token is recorded first depends on the order blocks ran in.
    const DeviceError e = error.Read();
    CHECK(e.code == static_cast<int32_t>(DeviceErrorCode::kTokenId));
    CHECK(e.limit == vocab);
    CHECK((e.index == 1 || e.index == 3 || e.index == 5));
    CHECK(e.value == ids[static_cast<size_t>(e.index)]);

    // Without an error slot the bad token is still skipped.
    DeviceArray<float> d_out2(before);
    RequireSuccess(EmbeddingGather(d_table.get(), dtype, vocab, dim, d_ids.get() + 3, 1,
                                   d_out2.get(), dim, nullptr, nullptr));
    CHECK(CompareBits(d_out2.Download(), before) == "");
  }
}

TEST_CASE("CUDA EmbeddingGather rejects bad arguments", "[cuda][embedding]") {
  DeviceArray<float> table(64), out(64);
  DeviceArray<int32_t> ids(std::vector<int32_t>{0, 1});
  auto call = [&](DType dtype, int64_t vocab, int64_t dim, const int32_t* id, int64_t n, float* o,
                  int64_t stride) {
    return EmbeddingGather(table.get(), dtype, vocab, dim, id, n, o, stride, nullptr, nullptr);
  };
  CHECK(call(DType::kF32, 8, 8, ids.get(), 2, out.get(), 8) == cudaSuccess);
  CHECK(call(DType::kF32, -1, 8, ids.get(), 2, out.get(), 8) == cudaErrorInvalidValue);
  CHECK(call(DType::kF32, 8, -1, ids.get(), 2, out.get(), 8) == cudaErrorInvalidValue);
  CHECK(call(DType::kF32, 8, 8, ids.get(), -1, out.get(), 8) == cudaErrorInvalidValue);
  CHECK(call(DType::kF32, 8, 8, ids.get(), 2, out.get(), 7) == cudaErrorInvalidValue);
  CHECK(call(DType::kI32, 8, 8, ids.get(), 2, out.get(), 8) == cudaErrorInvalidValue);
  CHECK(call(DType::kF32, 8, 8, nullptr, 2, out.get(), 8) == cudaErrorInvalidValue);
  CHECK(call(DType::kF32, 8, 8, ids.get(), 2, nullptr, 8) == cudaErrorInvalidValue);
  CHECK(EmbeddingGather(nullptr, DType::kF32, 8, 8, ids.get(), 2, out.get(), 8, nullptr, nullptr) ==
        cudaErrorInvalidValue);
  // Nothing to gather: no pointer is needed.
  CHECK(EmbeddingGather(nullptr, DType::kF32, 8, 8, nullptr, 0, nullptr, 8, nullptr, nullptr) ==
        cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
}

}  // namespace
}  // namespace kestrel::cuda

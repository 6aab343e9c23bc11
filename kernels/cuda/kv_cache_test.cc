// The CUDA KV-cache write against the CPU kernel (kernels/cpu/kv_cache.h):
// F32 and BF16 caches, block sizes 16/32, 1/4/8 kv heads, head dims
// 64/80/128 and an odd one, 1/3/17 tokens with padding slots (-1), padded
// token strides; the cache starts as NaN and every byte must equal the CPU's
// (so nothing outside the written slots changes). Bad slots are skipped and
// reported.
#include "kernels/cuda/kv_cache.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/kv_cache.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/elem_test_util.h"
#include "kernels/dtype.h"

namespace kestrel::cuda {
namespace {

using kernels::DType;
using kernels::testing::RandomVector;
using testing::CompareBits;
using testing::DeviceArray;
using testing::DeviceErrorSlot;
using testing::RequireSuccess;

// A cache of `elems` elements of `dtype`, all NaN, as bytes.
std::vector<uint8_t> NaNCache(DType dtype, int64_t elems) {
  std::vector<uint8_t> bytes(static_cast<size_t>(elems * kernels::DTypeSize(dtype)));
  if (dtype == DType::kF32) {
    const std::vector<float> f = kernels::testing::NaNVector(static_cast<size_t>(elems));
    std::memcpy(bytes.data(), f.data(), bytes.size());
  } else {
    const std::vector<uint16_t> h(static_cast<size_t>(elems), 0x7fc1);
    std::memcpy(bytes.data(), h.data(), bytes.size());
  }
  return bytes;
}

// Distinct slots for `tokens` tokens spread over the pool (crossing block
// boundaries), every third one padding (-1).
std::vector<int32_t> Slots(int64_t tokens, int64_t num_slots, uint32_t seed) {
  std::vector<int32_t> slots;
  const std::vector<float> u = RandomVector(static_cast<size_t>(tokens), seed, 0, 1);
  const int64_t step = num_slots / tokens;
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t jitter = static_cast<int64_t>(u[t] * static_cast<float>(step)) % step;
    slots.push_back(t % 3 == 2 ? -1 : static_cast<int32_t>(t * step + jitter));
  }
  return slots;
}

struct Case {
  DType dtype;
  int64_t block_size, num_kv_heads, head_dim, tokens, pad;
};

// Writes with the CPU kernel (given `cpu_slots`) and the CUDA one (given
// `slots`) and requires identical caches; returns the device error.
DeviceError WriteBoth(const Case& c, const std::vector<int32_t>& slots,
                      const std::vector<int32_t>& cpu_slots, int64_t num_blocks) {
  const int64_t row = c.num_kv_heads * c.head_dim, stride = row + c.pad;
  const std::vector<float> k =
      RandomVector(static_cast<size_t>(c.tokens * stride), 1 + c.head_dim, -4, 4);
  const std::vector<float> v =
      RandomVector(static_cast<size_t>(c.tokens * stride), 2 + c.head_dim, -4, 4);
  const int64_t elems = num_blocks * c.block_size * row;
  const std::vector<uint8_t> before = NaNCache(c.dtype, elems);
  std::vector<uint8_t> want_k = before, want_v = before;
  REQUIRE(kernels::cpu::WriteKvCache(k.data(), stride, v.data(), stride, cpu_slots.data(), c.tokens,
                                     c.num_kv_heads, c.head_dim, want_k.data(), want_v.data(),
                                     num_blocks, c.block_size, c.dtype)
              .ok());

  DeviceArray<float> d_k(k), d_v(v);
  DeviceArray<int32_t> d_slots(slots);
  DeviceArray<uint8_t> d_kc(before), d_vc(before);
  DeviceErrorSlot error;
  RequireSuccess(WriteKvCache(d_k.get(), stride, d_v.get(), stride, d_slots.get(), c.tokens,
                              c.num_kv_heads, c.head_dim, d_kc.get(), d_vc.get(), num_blocks,
                              c.block_size, c.dtype, error.get(), nullptr));
  CHECK(CompareBits(d_kc.Download(), want_k) == "");
  CHECK(CompareBits(d_vc.Download(), want_v) == "");
  return error.Read();
}

TEST_CASE("CUDA WriteKvCache matches the CPU kernel byte for byte", "[cuda][kv_cache]") {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (int64_t block_size : {16, 32}) {
      for (int64_t num_kv_heads : {1, 4, 8}) {
        for (int64_t head_dim : {64, 80, 128, 7}) {
          for (int64_t tokens : {1, 3, 17}) {
            const Case c{dtype, block_size, num_kv_heads, head_dim, tokens, tokens == 3 ? 5 : 0};
            INFO(kernels::DTypeName(dtype)
                 << " block_size=" << block_size << " kv_heads=" << num_kv_heads
                 << " head_dim=" << head_dim << " tokens=" << tokens << " pad=" << c.pad);
            const int64_t num_blocks = 3;
            const std::vector<int32_t> slots = Slots(tokens, num_blocks * block_size, 5 + tokens);
            CHECK(WriteBoth(c, slots, slots, num_blocks).code == 0);
          }
        }
      }
    }
  }
}

TEST_CASE("CUDA WriteKvCache skips and reports slots outside the pool", "[cuda][kv_cache]") {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    INFO(kernels::DTypeName(dtype));
    const int64_t num_blocks = 2, block_size = 16, num_slots = num_blocks * block_size;
    const Case c{dtype, block_size, 2, 64, 6, 0};
    const std::vector<int32_t> slots = {0, -2, 31, 32, -1, 17};
    // The CPU rejects the whole batch; it gets the bad slots as padding.
    const std::vector<int32_t> cpu_slots = {0, -1, 31, -1, -1, 17};
    const DeviceError e = WriteBoth(c, slots, cpu_slots, num_blocks);
    CHECK(e.code == static_cast<int32_t>(DeviceErrorCode::kKvSlot));
    CHECK((e.index == 1 || e.index == 3));
    CHECK(e.value == slots[static_cast<size_t>(e.index)]);
    CHECK(e.limit == num_slots);
  }
}

TEST_CASE("CUDA WriteKvCache rejects bad arguments", "[cuda][kv_cache]") {
  DeviceArray<float> k(64), v(64), kc(256), vc(256);
  DeviceArray<int32_t> slots(std::vector<int32_t>{0, 1});
  auto call = [&](int64_t k_stride, int64_t v_stride, const int32_t* s, int64_t n, int64_t heads,
                  int64_t d, int64_t blocks, int64_t bs, DType dtype) {
    return WriteKvCache(k.get(), k_stride, v.get(), v_stride, s, n, heads, d, kc.get(), vc.get(),
                        blocks, bs, dtype, nullptr, nullptr);
  };
  CHECK(call(8, 8, slots.get(), 2, 2, 4, 2, 16, DType::kF32) == cudaSuccess);
  CHECK(call(8, 8, slots.get(), 2, 2, 4, 2, 16, DType::kBF16) == cudaSuccess);
  CHECK(call(8, 8, slots.get(), 2, 2, 4, 2, 16, DType::kF16) == cudaErrorInvalidValue);
  CHECK(call(7, 8, slots.get(), 2, 2, 4, 2, 16, DType::kF32) == cudaErrorInvalidValue);
  CHECK(call(8, 7, slots.get(), 2, 2, 4, 2, 16, DType::kF32) == cudaErrorInvalidValue);
  CHECK(call(8, 8, slots.get(), -1, 2, 4, 2, 16, DType::kF32) == cudaErrorInvalidValue);
  CHECK(call(8, 8, slots.get(), 2, 0, 4, 2, 16, DType::kF32) == cudaErrorInvalidValue);
  CHECK(call(8, 8, slots.get(), 2, 2, 0, 2, 16, DType::kF32) == cudaErrorInvalidValue);
  CHECK(call(8, 8, slots.get(), 2, 2, 4, -1, 16, DType::kF32) == cudaErrorInvalidValue);
  CHECK(call(8, 8, slots.get(), 2, 2, 4, 2, 0, DType::kF32) == cudaErrorInvalidValue);
  CHECK(call(8, 8, nullptr, 2, 2, 4, 2, 16, DType::kF32) == cudaErrorInvalidValue);
  CHECK(WriteKvCache(k.get(), 8, v.get(), 8, slots.get(), 2, 2, 4, nullptr, vc.get(), 2, 16,
                     DType::kF32, nullptr, nullptr) == cudaErrorInvalidValue);
  CHECK(WriteKvCache(nullptr, 8, nullptr, 8, nullptr, 0, 2, 4, nullptr, nullptr, 2, 16, DType::kF32,
                     nullptr, nullptr) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
}

}  // namespace
}  // namespace kestrel::cuda

// The CUDA rotate-half RoPE against the CPU kernel (kernels/cpu/rope.h) with
// tables from kernels/rope_tables.h: head dims 64/80/128 and small odd
// halves, GQA groups 1/4/8, padded token strides (NaN padding never
// written), q only, a llama3-scaled table, and positions outside the table
// (the token is left alone and reported).
#include "kernels/cuda/rope.h"

#include <cstdint>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/rope.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/elem_test_util.h"
#include "kernels/rope_tables.h"

namespace kestrel::cuda {
namespace {

using kernels::testing::NaNVector;
using kernels::testing::RandomVector;
using testing::CheckPaddingUntouched;
using testing::CompareBits;
using testing::CompareRowsClose;
using testing::DeviceArray;
using testing::DeviceErrorSlot;
using testing::RequireSuccess;

constexpr float kAtol = 1e-5f, kRtol = 1e-5f;

struct Tables {
  std::vector<float> cos, sin;
};

Tables MakeTables(int64_t head_dim, int64_t max_positions,
                  const kernels::RopeScaling& scaling = {}) {
  Tables t;
  t.cos.resize(static_cast<size_t>(max_positions * head_dim / 2));
  t.sin.resize(t.cos.size());
  REQUIRE(kernels::ComputeRopeTables(head_dim, 10000.0f, scaling, max_positions, t.cos.data(),
                                     t.sin.data())
              .ok());
  return t;
}

// [tokens, stride] with random heads and NaN padding.
std::vector<float> PaddedRows(int64_t rows, int64_t width, int64_t stride, uint32_t seed) {
  const std::vector<float> r = RandomVector(static_cast<size_t>(rows * stride), seed, -2, 2);
  std::vector<float> x = NaNVector(r.size());
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < width; ++j) x[i * stride + j] = r[i * stride + j];
  }
  return x;
}

std::vector<int32_t> RandomPositions(int64_t n, int64_t max_positions, uint32_t seed) {
  const std::vector<float> u = RandomVector(static_cast<size_t>(n), seed, 0, 1);
  std::vector<int32_t> p(u.size());
  for (size_t i = 0; i < u.size(); ++i) {
    p[i] = static_cast<int32_t>(u[i] * static_cast<float>(max_positions)) %
           static_cast<int32_t>(max_positions);
  }
  return p;
}

void CheckRope(int64_t head_dim, int64_t num_q_heads, int64_t num_kv_heads, int64_t tokens,
               int64_t pad, const Tables& tables, int64_t max_positions) {
  const int64_t q_width = num_q_heads * head_dim, k_width = num_kv_heads * head_dim;
  const int64_t q_stride = q_width + pad, k_stride = k_width + 2 * pad;
  const std::vector<float> q = PaddedRows(tokens, q_width, q_stride, 1 + head_dim);
  const std::vector<float> k = PaddedRows(tokens, k_width, k_stride, 2 + head_dim);
  const std::vector<int32_t> pos = RandomPositions(tokens, max_positions, 3 + tokens);
  std::vector<float> want_q = q, want_k = k;
  REQUIRE(kernels::cpu::ApplyRope(want_q.data(), q_stride, num_q_heads,
                                  num_kv_heads > 0 ? want_k.data() : nullptr, k_stride,
                                  num_kv_heads, pos.data(), tokens, head_dim, tables.cos.data(),
                                  tables.sin.data(), max_positions)
              .ok());

  DeviceArray<float> d_q(q), d_k(k), d_cos(tables.cos), d_sin(tables.sin);
  DeviceArray<int32_t> d_pos(pos);
  DeviceErrorSlot error;
  RequireSuccess(ApplyRope(d_q.get(), q_stride, num_q_heads, num_kv_heads > 0 ? d_k.get() : nullptr,
                           k_stride, num_kv_heads, d_pos.get(), tokens, head_dim, d_cos.get(),
                           d_sin.get(), max_positions, error.get(), nullptr));
  const std::vector<float> got_q = d_q.Download(), got_k = d_k.Download();
  CHECK(CompareRowsClose(got_q, want_q, tokens, q_width, q_stride, kAtol, kRtol) == "");
  CHECK(CheckPaddingUntouched(got_q, q, tokens, q_width, q_stride) == "");
  CHECK(CompareRowsClose(got_k, want_k, tokens, k_width, k_stride, kAtol, kRtol) == "");
  CHECK(CheckPaddingUntouched(got_k, k, tokens, k_width, k_stride) == "");
  CHECK(error.Read().code == 0);
}

TEST_CASE("CUDA ApplyRope matches the CPU kernel", "[cuda][rope]") {
  const int64_t max_positions = 100;
  for (int64_t head_dim : {64, 80, 128, 2, 6}) {
    const Tables tables = MakeTables(head_dim, max_positions);
    for (int64_t num_kv_heads : {1, 2}) {
      for (int64_t group : {1, 4, 8}) {
        for (int64_t tokens : {1, 3, 17}) {
          // pad 0: float4 where head_dim % 8 == 0; pad 3: element-wise.
          for (int64_t pad : {0, 3}) {
            INFO("head_dim=" << head_dim << " kv_heads=" << num_kv_heads << " group=" << group
                             << " tokens=" << tokens << " pad=" << pad);
            CheckRope(head_dim, num_kv_heads * group, num_kv_heads, tokens, pad, tables,
                      max_positions);
          }
        }
      }
    }
  }
}

TEST_CASE("CUDA ApplyRope rotates q alone when there are no kv heads", "[cuda][rope]") {
  const Tables tables = MakeTables(64, 40);
  CheckRope(64, 3, 0, 5, 0, tables, 40);
  CheckRope(64, 3, 0, 5, 1, tables, 40);
}

TEST_CASE("CUDA ApplyRope applies llama3-scaled tables as given", "[cuda][rope]") {
  kernels::RopeScaling scaling;
  scaling.type = kernels::RopeScaling::Type::kLlama3;
  scaling.factor = 8.0f;
  scaling.original_max_position_embeddings = 64;
  const Tables tables = MakeTables(128, 300, scaling);
  CheckRope(128, 8, 2, 17, 0, tables, 300);
}

TEST_CASE("CUDA ApplyRope leaves tokens with bad positions alone and reports them",
          "[cuda][rope]") {
  const int64_t head_dim = 64, heads = 4, kv_heads = 2, tokens = 5, max_positions = 16;
  const int64_t q_width = heads * head_dim, k_width = kv_heads * head_dim;
  const Tables tables = MakeTables(head_dim, max_positions);
  const std::vector<float> q = RandomVector(static_cast<size_t>(tokens * q_width), 1);
  const std::vector<float> k = RandomVector(static_cast<size_t>(tokens * k_width), 2);
  const std::vector<int32_t> pos = {3, -1, 15, 16, 0};
  // The CPU rotates the good tokens only (it rejects the whole batch).
  std::vector<float> want_q = q, want_k = k;
  for (int64_t t : {0, 2, 4}) {
    REQUIRE(kernels::cpu::ApplyRope(want_q.data() + t * q_width, q_width, heads,
                                    want_k.data() + t * k_width, k_width, kv_heads, &pos[t], 1,
                                    head_dim, tables.cos.data(), tables.sin.data(), max_positions)
                .ok());
  }
  DeviceArray<float> d_q(q), d_k(k), d_cos(tables.cos), d_sin(tables.sin);
  DeviceArray<int32_t> d_pos(pos);
  DeviceErrorSlot error;
  RequireSuccess(ApplyRope(d_q.get(), q_width, heads, d_k.get(), k_width, kv_heads, d_pos.get(),
                           tokens, head_dim, d_cos.get(), d_sin.get(), max_positions, error.get(),
                           nullptr));
  const std::vector<float> got_q = d_q.Download(), got_k = d_k.Download();
  CHECK(CompareRowsClose(got_q, want_q, tokens, q_width, q_width, kAtol, kRtol) == "");
  CHECK(CompareRowsClose(got_k, want_k, tokens, k_width, k_width, kAtol, kRtol) == "");
  for (int64_t t : {1, 3}) {
    INFO("token " << t);
    CHECK(CompareBits(
              std::vector<float>(got_q.begin() + t * q_width, got_q.begin() + (t + 1) * q_width),
              std::vector<float>(q.begin() + t * q_width, q.begin() + (t + 1) * q_width)) == "");
  }
  const DeviceError e = error.Read();
  CHECK(e.code == static_cast<int32_t>(DeviceErrorCode::kRowIndex));
  CHECK((e.index == 1 || e.index == 3));
  CHECK(e.value == pos[static_cast<size_t>(e.index)]);
  CHECK(e.limit == max_positions);
}

TEST_CASE("CUDA ApplyRope rejects bad arguments", "[cuda][rope]") {
  DeviceArray<float> q(64), k(64), cos(64), sin(64);
  DeviceArray<int32_t> pos(std::vector<int32_t>{0, 1});
  auto call = [&](float* qp, int64_t q_stride, int64_t nq, float* kp, int64_t k_stride, int64_t nkv,
                  const int32_t* p, int64_t n, int64_t d, int64_t max_pos) {
    return ApplyRope(qp, q_stride, nq, kp, k_stride, nkv, p, n, d, cos.get(), sin.get(), max_pos,
                     nullptr, nullptr);
  };
  CHECK(call(q.get(), 8, 2, k.get(), 4, 1, pos.get(), 2, 4, 8) == cudaSuccess);
  CHECK(call(q.get(), 8, 2, k.get(), 4, 1, pos.get(), 2, 3, 8) == cudaErrorInvalidValue);
  CHECK(call(q.get(), 8, 2, k.get(), 4, 1, pos.get(), 2, 0, 8) == cudaErrorInvalidValue);
  CHECK(call(q.get(), 7, 2, k.get(), 4, 1, pos.get(), 2, 4, 8) == cudaErrorInvalidValue);
  CHECK(call(q.get(), 8, 2, k.get(), 3, 1, pos.get(), 2, 4, 8) == cudaErrorInvalidValue);
  CHECK(call(q.get(), 8, -1, k.get(), 4, 1, pos.get(), 2, 4, 8) == cudaErrorInvalidValue);
  CHECK(call(q.get(), 8, 2, k.get(), 4, -1, pos.get(), 2, 4, 8) == cudaErrorInvalidValue);
  CHECK(call(q.get(), 8, 2, k.get(), 4, 1, pos.get(), -1, 4, 8) == cudaErrorInvalidValue);
  CHECK(call(q.get(), 8, 2, k.get(), 4, 1, pos.get(), 2, 4, -1) == cudaErrorInvalidValue);
  CHECK(call(q.get(), 8, 2, nullptr, 4, 1, pos.get(), 2, 4, 8) == cudaErrorInvalidValue);
  CHECK(call(nullptr, 8, 2, k.get(), 4, 1, pos.get(), 2, 4, 8) == cudaErrorInvalidValue);
  CHECK(call(q.get(), 8, 2, k.get(), 4, 1, nullptr, 2, 4, 8) == cudaErrorInvalidValue);
  CHECK(ApplyRope(q.get(), 8, 2, k.get(), 4, 1, pos.get(), 2, 4, nullptr, sin.get(), 8, nullptr,
                  nullptr) == cudaErrorInvalidValue);
  // k may be null without kv heads (its stride is then not checked).
  CHECK(call(q.get(), 8, 2, nullptr, 0, 0, pos.get(), 2, 4, 8) == cudaSuccess);
  CHECK(call(nullptr, 8, 2, nullptr, 4, 1, nullptr, 0, 4, 8) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
}

}  // namespace
}  // namespace kestrel::cuda

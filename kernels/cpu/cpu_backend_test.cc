// The CPU backend: its device (host memory, copies, RAII buffers) and its
// Ops, every one forwarding to its kernel (checked against the references
// on a small attention block run end to end through the interface), with
// errors coming back as statuses.
#include "kernels/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/reference.h"
#include "kernels/cpu/test_util.h"
#include "kernels/rope_tables.h"

namespace kestrel::kernels::cpu {
namespace {

using testing::CompareClose;
using testing::RandomVector;

// One attention block of a tiny GQA model for a 7-token prompt, through the
// Ops interface, against the references.
TEST_CASE("An attention block through the Ops interface", "[cpu_ops]") {
  auto backend = CreateCpuBackend({.num_threads = 2});
  REQUIRE(backend.ok());
  Ops* ops = &(*backend)->ops();
  const int64_t vocab = 19, hidden = 64, heads = 4, kv_heads = 2, d = 16, tokens = 7;
  const int64_t qkv_n = (heads + 2 * kv_heads) * d, max_pos = 32;

  const std::vector<float> emb_f = RandomVector(static_cast<size_t>(vocab * hidden), 1);
  const std::vector<uint16_t> emb = testing::ToBf16(emb_f);
  const std::vector<float> norm_w = RandomVector(static_cast<size_t>(hidden), 2, 0.5f, 1.5f);
  const std::vector<uint16_t> wqkv =
      testing::ToBf16(RandomVector(static_cast<size_t>(qkv_n * hidden), 3));
  const std::vector<float> bqkv = RandomVector(static_cast<size_t>(qkv_n), 4);
  const std::vector<int32_t> ids = {1, 5, 18, 0, 7, 7, 3};
  std::vector<int32_t> pos(tokens), slots(tokens);
  for (int32_t t = 0; t < tokens; ++t) pos[t] = slots[t] = t;

  std::vector<float> cos_t(static_cast<size_t>(max_pos * d / 2)), sin_t(cos_t.size());
  REQUIRE(ComputeRopeTables(d, 10000.0f, {}, max_pos, cos_t.data(), sin_t.data()).ok());

  // Through Ops.
  std::vector<float> x(static_cast<size_t>(tokens * hidden)), h(x.size());
  std::vector<float> qkv(static_cast<size_t>(tokens * qkv_n));
  std::vector<float> kc = testing::NaNVector(static_cast<size_t>(2 * 16 * kv_heads * d)), vc = kc;
  std::vector<float> attn(static_cast<size_t>(tokens * heads * d));
  REQUIRE(ops->EmbeddingGather(emb.data(), DType::kBF16, vocab, hidden, ids.data(), tokens,
                               x.data(), hidden)
              .ok());
  REQUIRE(ops->RmsNorm(x.data(), hidden, h.data(), hidden, norm_w.data(), tokens, hidden, 1e-5f)
              .ok());
  GemmParams g{.x = h.data(), .ldx = hidden, .w = wqkv.data(), .w_dtype = DType::kBF16,
               .ldw = hidden, .bias = bqkv.data(), .y = qkv.data(), .ldy = qkv_n,
               .m = tokens, .n = qkv_n, .k = hidden};
  REQUIRE(ops->Gemm(g).ok());
  float* q = qkv.data();
  float* k = qkv.data() + heads * d;
  float* v = qkv.data() + (heads + kv_heads) * d;
  REQUIRE(ops->RmsNormPerHead(k, qkv_n, tokens, kv_heads, d, norm_w.data(), 1e-6f).ok());
  REQUIRE(ops->ApplyRope(q, qkv_n, heads, k, qkv_n, kv_heads, pos.data(), tokens, d,
                         cos_t.data(), sin_t.data(), max_pos)
              .ok());
  REQUIRE(ops->WriteKvCache(k, qkv_n, v, qkv_n, slots.data(), tokens, kv_heads, d, kc.data(),
                            vc.data(), 2, 16, DType::kF32)
              .ok());
  const std::vector<int32_t> qs = {0, static_cast<int32_t>(tokens)}, ctx = {static_cast<int32_t>(tokens)};
  const std::vector<int32_t> table = {1};
  PagedAttentionParams ap{.q = q, .q_stride = qkv_n, .out = attn.data(), .out_stride = heads * d,
                          .k_cache = kc.data(), .v_cache = vc.data(), .num_blocks = 2,
                          .block_size = 16, .num_seqs = 1, .query_start = qs.data(),
                          .context_lens = ctx.data(), .block_tables = table.data(),
                          .block_table_stride = 1, .num_heads = heads, .num_kv_heads = kv_heads,
                          .head_dim = d};
  // Slots 0..6 are block 0, but the table says block 1: write them there.
  std::vector<int32_t> slots1(tokens);
  for (int32_t t = 0; t < tokens; ++t) slots1[t] = 16 + t;
  REQUIRE(ops->WriteKvCache(k, qkv_n, v, qkv_n, slots1.data(), tokens, kv_heads, d, kc.data(),
                            vc.data(), 2, 16, DType::kF32)
              .ok());
  REQUIRE(ops->PagedAttention(ap).ok());

  // References.
  std::vector<float> rx(x.size()), rh(x.size()), rqkv(qkv.size());
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < hidden; ++i) rx[t * hidden + i] = Bf16ToF32(emb[ids[t] * hidden + i]);
  CHECK(CompareClose(x.data(), rx.data(), x.size(), 0.0f) == "");
  reference::RmsNorm(rx.data(), hidden, rh.data(), hidden, norm_w.data(), tokens, hidden, 1e-5f);
  GemmParams rg = g;
  rg.x = rh.data();
  rg.y = rqkv.data();
  reference::Gemm(rg);
  std::vector<float> rq, rk, rv;
  for (int64_t t = 0; t < tokens; ++t) {
    float* base = rqkv.data() + t * qkv_n;
    reference::RmsNorm(base + heads * d, d, base + heads * d, d, norm_w.data(), kv_heads, d,
                       1e-6f);
    rq.insert(rq.end(), base, base + heads * d);
    rk.insert(rk.end(), base + heads * d, base + (heads + kv_heads) * d);
    rv.insert(rv.end(), base + (heads + kv_heads) * d, base + qkv_n);
  }
  std::vector<float> inv(static_cast<size_t>(d / 2));
  REQUIRE(ComputeRopeInvFreq(d, 10000.0f, {}, inv.data()).ok());
  reference::ApplyRope(rq.data(), heads, rk.data(), kv_heads, pos.data(), tokens, d, inv.data());
  std::vector<float> rattn(attn.size());
  reference::Attention(rq.data(), rk.data(), rv.data(), rattn.data(), tokens, tokens, heads,
                       kv_heads, d, 1.0f / std::sqrt(static_cast<float>(d)), 0);
  CHECK(CompareClose(attn.data(), rattn.data(), attn.size(), 1e-4f, 1e-4f) == "");

  // The remaining ops, and an error coming back through the interface.
  std::vector<float> act(static_cast<size_t>(tokens * 8));
  REQUIRE(ops->SiluAndMul(x.data(), hidden, h.data(), hidden, act.data(), 8, tokens, 8).ok());
  CHECK(act[3] == Approx(x[3] / (1 + std::exp(-x[3])) * h[3]));
  const std::vector<int32_t> rows = {6, 0, 6};
  std::vector<float> gathered(static_cast<size_t>(3 * hidden));
  REQUIRE(ops->GatherRows(x.data(), hidden, rows.data(), 3, hidden, gathered.data(), hidden).ok());
  CHECK(std::equal(gathered.begin(), gathered.begin() + hidden, x.begin() + 6 * hidden));
  CHECK(std::equal(gathered.begin() + hidden, gathered.begin() + 2 * hidden, x.begin()));
  const std::vector<int32_t> bad_ids = {vocab};
  CHECK(absl::IsInvalidArgument(ops->EmbeddingGather(emb.data(), DType::kBF16, vocab, hidden,
                                                     bad_ids.data(), 1, x.data(), hidden)));
}

TEST_CASE("CopyBlocks copies whole blocks in every array", "[cpu_ops]") {
  auto backend = CreateCpuBackend({.num_threads = 1});
  REQUIRE(backend.ok());
  // 3 arrays of 4 blocks of 2 floats, 40 bytes apart (8 bytes of slack).
  std::vector<float> pool(30);
  for (size_t i = 0; i < pool.size(); ++i) pool[i] = static_cast<float>(i);
  const std::vector<float> before = pool;
  const std::vector<int32_t> pairs = {1, 3, 0, 0};
  REQUIRE((*backend)->ops().CopyBlocks(pool.data(), 3, 40, 8, 4, pairs.data(), 2).ok());
  for (int a = 0; a < 3; ++a) {
    const size_t base = static_cast<size_t>(a) * 10;
    CHECK(pool[base + 6] == before[base + 2]);
    CHECK(pool[base + 7] == before[base + 3]);
    for (size_t i : {0, 1, 2, 3, 4, 5, 8, 9}) CHECK(pool[base + i] == before[base + i]);
  }
  const std::vector<int32_t> bad = {0, 4};
  const absl::Status s = (*backend)->ops().CopyBlocks(pool.data(), 3, 40, 8, 4, bad.data(), 1);
  CHECK(absl::IsInvalidArgument(s));
  CHECK(s.message().find("0 -> 4") != std::string::npos);
}

TEST_CASE("The CPU device: buffers, copies, memset", "[cpu_ops]") {
  auto backend = CreateCpuBackend({.num_threads = 1});
  REQUIRE(backend.ok());
  Device& device = (*backend)->device();
  CHECK(device.host_memory());
  CHECK((*backend)->Describe().rfind("cpu (", 0) == 0);
  auto empty = device.Allocate(0, "nothing");
  REQUIRE(empty.ok());
  CHECK(empty->empty());
  // Small (heap) and large (mapped) allocations, aligned for SIMD.
  for (size_t bytes : {size_t{12}, size_t{4} << 20}) {
    auto buffer = device.Allocate(bytes, "test");
    REQUIRE(buffer.ok());
    CHECK(reinterpret_cast<uintptr_t>(buffer->data()) % 64 == 0);
    REQUIRE(device.Memset(buffer->data(), 0xab, bytes).ok());
    std::vector<uint8_t> host(bytes);
    REQUIRE(device.CopyToHost(host.data(), buffer->data(), bytes).ok());
    CHECK(host.front() == 0xab);
    CHECK(host.back() == 0xab);
    host[0] = 7;
    REQUIRE(device.CopyToDevice(buffer->data(), host.data(), bytes).ok());
    DeviceBuffer moved = std::move(*buffer);
    CHECK(buffer->empty());
    CHECK(moved.as<uint8_t>()[0] == 7);
    auto copy = device.Allocate(bytes, "copy");
    REQUIRE(copy.ok());
    REQUIRE(device.CopyOnDevice(copy->data(), moved.data(), bytes).ok());
    CHECK(copy->as<uint8_t>()[bytes - 1] == 0xab);
  }
  REQUIRE(device.Synchronize().ok());
  auto memory = device.GetMemoryInfo();
  REQUIRE(memory.ok());
  CHECK(memory->free_bytes > 0);
  CHECK(memory->free_bytes <= memory->total_bytes);
  // An impossible allocation is an error naming what it was for.
  auto huge = device.Allocate(size_t{1} << 62, "the KV pool");
  REQUIRE_FALSE(huge.ok());
  CHECK(huge.status().message().find("the KV pool") != std::string::npos);
  CHECK_FALSE(CreateCpuBackend({.num_threads = -1}).ok());
}

}  // namespace
}  // namespace kestrel::kernels::cpu

// The CPU Ops object: every op forwards to its kernel (checked against the
// references on a small attention block run end to end through the
// interface), and errors come back as statuses.
#include "kernels/cpu/cpu_ops.h"

#include <cmath>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/reference.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/rope_tables.h"

namespace kestrel::kernels::cpu {
namespace {

using testing::CompareClose;
using testing::RandomVector;

// One attention block of a tiny GQA model for a 7-token prompt, through the
// Ops interface, against the references.
TEST_CASE("An attention block through the Ops interface", "[cpu_ops]") {
  auto pool = ThreadPool::Create({.num_threads = 2});
  REQUIRE(pool.ok());
  std::unique_ptr<Ops> ops = CreateCpuOps({.pool = pool->get()});
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
  std::vector<float> sum(x.size()), act(static_cast<size_t>(tokens * 8));
  REQUIRE(ops->Add(x.data(), hidden, h.data(), hidden, sum.data(), hidden, tokens, hidden).ok());
  CHECK(sum[5] == x[5] + h[5]);
  REQUIRE(ops->SiluAndMul(x.data(), hidden, h.data(), hidden, act.data(), 8, tokens, 8).ok());
  CHECK(act[3] == Approx(x[3] / (1 + std::exp(-x[3])) * h[3]));
  std::vector<float> probs(x.size()), logp(x.size());
  std::vector<int32_t> best(tokens);
  REQUIRE(ops->Softmax(x.data(), hidden, probs.data(), hidden, tokens, hidden).ok());
  REQUIRE(ops->LogSoftmax(x.data(), hidden, logp.data(), hidden, tokens, hidden).ok());
  REQUIRE(ops->Argmax(x.data(), hidden, tokens, hidden, best.data()).ok());
  CHECK(std::log(probs[best[0]]) == Approx(logp[best[0]]).margin(1e-5));
  const std::vector<int32_t> bad_ids = {vocab};
  CHECK(absl::IsInvalidArgument(ops->EmbeddingGather(emb.data(), DType::kBF16, vocab, hidden,
                                                     bad_ids.data(), 1, x.data(), hidden)));
}

}  // namespace
}  // namespace kestrel::kernels::cpu

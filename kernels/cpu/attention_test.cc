// Paged attention against a dense reference: mixed batches of prefill chunks
// (with and without a cached prefix, across block boundaries) and decodes;
// MHA, GQA and MQA; head dims 64/80/128; shuffled physical blocks; unused
// cache slots filled with NaN so any read outside the mask shows up.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/kv_cache.h"
#include "kernels/cpu/reference.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/dtype.h"

namespace kestrel::kernels::cpu {
namespace {

using testing::CompareClose;
using testing::RandomVector;

struct Seq {
  int64_t ctx;    // tokens in the cache after this step
  int64_t n_new;  // new tokens this step
};

struct Batch {
  int64_t heads, kv_heads, d, block_size = 16, window = 0;
  std::vector<Seq> seqs;
  DType kv_dtype = DType::kF32;
  bool bf16_dot = false;  // PagedAttentionParams::bf16_dot (BF16 caches)
};

// x rounded to bf16 and back: what a BF16 cache holds.
std::vector<float> RoundedToBf16(std::vector<float> x) {
  for (float& v : x) v = Bf16ToF32(F32ToBf16(v));
  return x;
}

// Builds the cache through WriteKvCache, runs PagedAttention and compares
// every sequence with reference::Attention on its dense history.
void RunBatch(const Batch& b, ThreadPool* pool, std::vector<float>* out_copy = nullptr,
              Isa isa = Isa::kAuto) {
  const int64_t bs = b.block_size, row = b.kv_heads * b.d;
  int64_t blocks_needed = 0, max_blocks = 0, tokens = 0;
  for (const Seq& s : b.seqs) {
    blocks_needed += (s.ctx + bs - 1) / bs;
    max_blocks = std::max(max_blocks, (s.ctx + bs - 1) / bs);
    tokens += s.n_new;
  }
  const int64_t num_blocks = blocks_needed + 3;  // some blocks never used
  std::vector<int32_t> perm(static_cast<size_t>(num_blocks));
  for (int64_t i = 0; i < num_blocks; ++i) perm[i] = static_cast<int32_t>(i);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(42));

  // Room for F32 elements either way; the fill is NaN as F32 and as each
  // bf16 half, so any read of an unused slot shows up.
  std::vector<float> kc(static_cast<size_t>(num_blocks * bs * row));
  const uint32_t nan_bits = 0x7fc07fc0u;
  std::memcpy(kc.data(), std::vector<uint32_t>(kc.size(), nan_bits).data(), kc.size() * 4);
  std::vector<float> vc = kc;
  const int64_t table_stride = max_blocks + 2;
  std::vector<int32_t> tables(static_cast<size_t>(b.seqs.size() * table_stride), -1);
  std::vector<int32_t> query_start = {0}, ctx_lens;
  const int64_t q_stride = b.heads * b.d + 3, out_stride = b.heads * b.d + 5;
  const std::vector<float> q = RandomVector(static_cast<size_t>(tokens * q_stride), 11, -2, 2);
  std::vector<float> out(static_cast<size_t>(tokens * out_stride), -99.0f);
  std::vector<std::vector<float>> keys, values;

  int64_t next_block = 0;
  for (size_t s = 0; s < b.seqs.size(); ++s) {
    const Seq& seq = b.seqs[s];
    const int64_t nb = (seq.ctx + bs - 1) / bs;
    for (int64_t i = 0; i < nb; ++i) tables[s * table_stride + i] = perm[next_block++];
    keys.push_back(RandomVector(static_cast<size_t>(seq.ctx * row), 100 + s, -2, 2));
    values.push_back(RandomVector(static_cast<size_t>(seq.ctx * row), 200 + s));
    std::vector<int32_t> slots(static_cast<size_t>(seq.ctx));
    for (int64_t p = 0; p < seq.ctx; ++p) {
      slots[p] = tables[s * table_stride + p / bs] * static_cast<int32_t>(bs) +
                 static_cast<int32_t>(p % bs);
    }
    REQUIRE(WriteKvCache(keys[s].data(), row, values[s].data(), row, slots.data(), seq.ctx,
                         b.kv_heads, b.d, kc.data(), vc.data(), num_blocks, bs, b.kv_dtype)
                .ok());
    query_start.push_back(query_start.back() + static_cast<int32_t>(seq.n_new));
    ctx_lens.push_back(static_cast<int32_t>(seq.ctx));
  }

  PagedAttentionParams p;
  p.q = q.data();
  p.q_stride = q_stride;
  p.out = out.data();
  p.out_stride = out_stride;
  p.k_cache = kc.data();
  p.v_cache = vc.data();
  p.kv_dtype = b.kv_dtype;
  p.num_blocks = num_blocks;
  p.block_size = bs;
  p.num_seqs = static_cast<int64_t>(b.seqs.size());
  p.query_start = query_start.data();
  p.context_lens = ctx_lens.data();
  p.block_tables = tables.data();
  p.block_table_stride = table_stride;
  p.num_heads = b.heads;
  p.num_kv_heads = b.kv_heads;
  p.head_dim = b.d;
  p.sliding_window = b.window;
  p.bf16_dot = b.bf16_dot;
  REQUIRE(PagedAttention(p, pool, isa).ok());
  if (out_copy != nullptr) *out_copy = out;

  const float scale = 1.0f / std::sqrt(static_cast<float>(b.d));
  for (size_t s = 0; s < b.seqs.size(); ++s) {
    const Seq& seq = b.seqs[s];
    std::vector<float> qs, want(static_cast<size_t>(seq.n_new * b.heads * b.d));
    for (int64_t t = 0; t < seq.n_new; ++t) {
      const float* src = q.data() + (query_start[s] + t) * q_stride;
      qs.insert(qs.end(), src, src + b.heads * b.d);
    }
    const bool bf16 = b.kv_dtype == DType::kBF16;
    const std::vector<float> ks = bf16 ? RoundedToBf16(keys[s]) : keys[s];
    const std::vector<float> vs = bf16 ? RoundedToBf16(values[s]) : values[s];
    // bf16 dot products score with q * scale rounded to bf16: the reference
    // gets the same rounded queries, so what is left is the rounding of the
    // probabilities (2^-9 relative, and they still sum to 1).
    const bool dot = bf16 && b.bf16_dot;
    if (dot) {
      for (float& x : qs) x = Bf16ToF32(F32ToBf16(x * scale));
    }
    reference::Attention(qs.data(), ks.data(), vs.data(), want.data(), seq.n_new, seq.ctx,
                         b.heads, b.kv_heads, b.d, dot ? 1.0f : scale, b.window);
    for (int64_t t = 0; t < seq.n_new; ++t) {
      const float* got = out.data() + (query_start[s] + t) * out_stride;
      INFO("heads=" << b.heads << " kv_heads=" << b.kv_heads << " d=" << b.d << " seq " << s
                    << " (ctx " << seq.ctx << ", new " << seq.n_new << ") token " << t
                    << " window " << b.window << " isa " << IsaName(isa) << " kv "
                    << DTypeName(b.kv_dtype));
      INFO("bf16_dot " << dot);
      REQUIRE(CompareClose(got, want.data() + t * b.heads * b.d,
                           static_cast<size_t>(b.heads * b.d), dot ? 2e-3f : 2e-5f,
                           dot ? 0.0f : 1e-4f) == "");
      for (int64_t e = b.heads * b.d; e < out_stride; ++e) REQUIRE(got[e] == -99.0f);
    }
  }
}

// A mixed step: chunked prefill continuing a cached prefix and crossing a
// block boundary, decodes at and just past block boundaries, a fresh prompt,
// a 1-token context, and a long prompt whose last tokens are new.
const std::vector<Seq> kMixed = {{32, 19}, {17, 1}, {7, 7}, {1, 1}, {16, 1}, {99, 5}};

TEST_CASE("PagedAttention matches the reference: MHA, GQA, MQA", "[attention]") {
  auto pool = ThreadPool::Create({.num_threads = 2});
  REQUIRE(pool.ok());
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa)) continue;
    for (int64_t d : {64, 80, 128}) {
      RunBatch({.heads = 4, .kv_heads = 4, .d = d, .seqs = kMixed}, pool->get(), nullptr, isa);
      RunBatch({.heads = 6, .kv_heads = 2, .d = d, .seqs = kMixed}, pool->get(), nullptr, isa);
      RunBatch({.heads = 5, .kv_heads = 1, .d = d, .seqs = kMixed}, nullptr, nullptr, isa);
    }
    // Head dims that leave a vector tail.
    RunBatch({.heads = 3, .kv_heads = 1, .d = 7, .seqs = {{19, 19}, {20, 1}}}, nullptr, nullptr,
             isa);
    RunBatch({.heads = 2, .kv_heads = 2, .d = 19, .seqs = {{33, 2}}}, nullptr, nullptr, isa);
  }
}

TEST_CASE("PagedAttention on odd head dims and block sizes", "[attention]") {
  RunBatch({.heads = 3, .kv_heads = 1, .d = 7, .seqs = {{19, 19}, {20, 1}}}, nullptr);
  RunBatch({.heads = 2, .kv_heads = 2, .d = 19, .block_size = 1, .seqs = {{7, 3}}}, nullptr);
  RunBatch({.heads = 2, .kv_heads = 1, .d = 64, .block_size = 8, .seqs = {{99, 99}}}, nullptr);
}

TEST_CASE("PagedAttention with blocks longer than a key run, and wide GQA groups", "[attention]") {
  auto pool = ThreadPool::Create({.num_threads = 2});
  REQUIRE(pool.ok());
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa)) continue;
    INFO("isa=" << IsaName(isa));
    // Block size 32: two 16-key runs per block, the second starting mid-tile.
    RunBatch({.heads = 8, .kv_heads = 1, .d = 64, .block_size = 32,
              .seqs = {{70, 70}, {45, 1}, {33, 2}, {32, 1}}},
             pool->get(), nullptr, isa);
    // TinyLlama's group of 8 per kv head, decodes and a chunk.
    RunBatch({.heads = 32, .kv_heads = 4, .d = 64, .seqs = {{129, 1}, {17, 1}, {40, 9}}},
             pool->get(), nullptr, isa);
  }
}

TEST_CASE("PagedAttention over a BF16 cache equals F32 attention on the rounded K/V",
          "[attention]") {
  auto pool = ThreadPool::Create({.num_threads = 2});
  REQUIRE(pool.ok());
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa)) continue;
    for (int64_t d : {64, 80, 128}) {
      RunBatch({.heads = 6, .kv_heads = 2, .d = d, .seqs = kMixed, .kv_dtype = DType::kBF16},
               pool->get(), nullptr, isa);
    }
    RunBatch({.heads = 3, .kv_heads = 1, .d = 7, .seqs = {{19, 19}, {20, 1}},
              .kv_dtype = DType::kBF16},
             nullptr, nullptr, isa);
    RunBatch({.heads = 8, .kv_heads = 1, .d = 19, .block_size = 32,
              .seqs = {{70, 70}, {45, 1}, {33, 2}}, .kv_dtype = DType::kBF16},
             pool->get(), nullptr, isa);
    RunBatch({.heads = 2, .kv_heads = 2, .d = 64, .block_size = 8, .seqs = {{30, 3}},
              .kv_dtype = DType::kBF16},
             nullptr, nullptr, isa);
  }
}

TEST_CASE("PagedAttention with bf16 dot products over a BF16 cache", "[attention]") {
  auto pool = ThreadPool::Create({.num_threads = 2});
  REQUIRE(pool.ok());
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa)) continue;
    INFO("isa=" << IsaName(isa));
    for (int64_t d : {64, 80, 128}) {
      RunBatch({.heads = 16, .kv_heads = 2, .d = d, .seqs = kMixed, .kv_dtype = DType::kBF16,
                .bf16_dot = true},
               pool->get(), nullptr, isa);
    }
    // Odd head dims (the last pair's second half is zero), blocks of 1, 8
    // and 32 (runs starting mid-tile), MQA and TinyLlama's group of 8.
    RunBatch({.heads = 9, .kv_heads = 1, .d = 7, .seqs = {{19, 19}, {20, 1}},
              .kv_dtype = DType::kBF16, .bf16_dot = true},
             nullptr, nullptr, isa);
    RunBatch({.heads = 8, .kv_heads = 1, .d = 19, .block_size = 1, .seqs = {{7, 3}},
              .kv_dtype = DType::kBF16, .bf16_dot = true},
             nullptr, nullptr, isa);
    RunBatch({.heads = 8, .kv_heads = 1, .d = 19, .block_size = 32,
              .seqs = {{70, 70}, {45, 1}, {33, 2}}, .kv_dtype = DType::kBF16, .bf16_dot = true},
             pool->get(), nullptr, isa);
    RunBatch({.heads = 16, .kv_heads = 2, .d = 64, .block_size = 8, .seqs = {{30, 3}},
              .kv_dtype = DType::kBF16, .bf16_dot = true},
             nullptr, nullptr, isa);
    RunBatch({.heads = 32, .kv_heads = 4, .d = 64, .seqs = {{129, 1}, {17, 1}, {40, 9}},
              .kv_dtype = DType::kBF16, .bf16_dot = true},
             pool->get(), nullptr, isa);
    RunBatch({.heads = 16, .kv_heads = 2, .d = 64, .window = 5, .seqs = kMixed,
              .kv_dtype = DType::kBF16, .bf16_dot = true},
             nullptr, nullptr, isa);
  }
}

// Contexts longer than one key chunk (256 positions) are split into chunks
// whose partial results are merged; prefill tiles straddle chunk borders.
const std::vector<Seq> kLong = {{600, 1}, {513, 1}, {256, 1}, {257, 1}, {530, 40}, {300, 300}};

TEST_CASE("PagedAttention over long contexts split into key chunks", "[attention]") {
  auto pool = ThreadPool::Create({.num_threads = 2});
  REQUIRE(pool.ok());
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (!IsaSupported(isa)) continue;
    RunBatch({.heads = 8, .kv_heads = 2, .d = 64, .seqs = kLong}, pool->get(), nullptr, isa);
    RunBatch({.heads = 8, .kv_heads = 2, .d = 64, .seqs = kLong, .kv_dtype = DType::kBF16},
             pool->get(), nullptr, isa);
    RunBatch({.heads = 16, .kv_heads = 2, .d = 64, .seqs = kLong, .kv_dtype = DType::kBF16,
              .bf16_dot = true},
             pool->get(), nullptr, isa);
    RunBatch({.heads = 4, .kv_heads = 1, .d = 80, .window = 300, .seqs = kLong},
             pool->get(), nullptr, isa);
  }
  RunBatch({.heads = 2, .kv_heads = 1, .d = 19, .block_size = 8, .seqs = {{700, 3}}}, nullptr,
           nullptr, Isa::kScalar);
}

// The property speculative decoding relies on: a token's attention output is
// the same bits whether it is decoded alone or is one of several new tokens
// of its sequence (a verification step), and whatever the thread count.
TEST_CASE("PagedAttention gives a token the same bits alone or in a multi-token step",
          "[attention]") {
  const int64_t heads = 16, kv_heads = 2, d = 64, bs = 16, ctx = 600, n_new = 5;
  const int64_t row = kv_heads * d, blocks = (ctx + bs - 1) / bs;
  for (DType kv : {DType::kF32, DType::kBF16}) {
    for (bool dot : {false, true}) {
      INFO("kv " << DTypeName(kv) << " bf16_dot " << dot);
      std::vector<float> kc(static_cast<size_t>(blocks * bs * row)), vc(kc.size());
      std::vector<int32_t> table(static_cast<size_t>(blocks)), slots(static_cast<size_t>(ctx));
      for (int64_t b = 0; b < blocks; ++b) table[b] = static_cast<int32_t>(blocks - 1 - b);
      for (int64_t i = 0; i < ctx; ++i) {
        slots[i] = table[i / bs] * static_cast<int32_t>(bs) + static_cast<int32_t>(i % bs);
      }
      const std::vector<float> keys = RandomVector(static_cast<size_t>(ctx * row), 5, -2, 2);
      const std::vector<float> values = RandomVector(static_cast<size_t>(ctx * row), 6);
      REQUIRE(WriteKvCache(keys.data(), row, values.data(), row, slots.data(), ctx, kv_heads, d,
                           kc.data(), vc.data(), blocks, bs, kv)
                  .ok());
      const std::vector<float> q = RandomVector(static_cast<size_t>(n_new * heads * d), 7, -2, 2);
      auto run = [&](int64_t first, int64_t count, ThreadPool* pool) {
        std::vector<int32_t> qs = {0, static_cast<int32_t>(count)};
        std::vector<int32_t> lens = {static_cast<int32_t>(ctx - n_new + first + count)};
        std::vector<float> out(static_cast<size_t>(count * heads * d));
        PagedAttentionParams p;
        p.q = q.data() + first * heads * d;
        p.q_stride = heads * d;
        p.out = out.data();
        p.out_stride = heads * d;
        p.k_cache = kc.data();
        p.v_cache = vc.data();
        p.kv_dtype = kv;
        p.num_blocks = blocks;
        p.block_size = bs;
        p.num_seqs = 1;
        p.query_start = qs.data();
        p.context_lens = lens.data();
        p.block_tables = table.data();
        p.block_table_stride = blocks;
        p.num_heads = heads;
        p.num_kv_heads = kv_heads;
        p.head_dim = d;
        p.bf16_dot = dot;
        REQUIRE(PagedAttention(p, pool).ok());
        return out;
      };
      auto pool = ThreadPool::Create({.num_threads = 3});
      REQUIRE(pool.ok());
      const std::vector<float> all = run(0, n_new, nullptr);
      for (int64_t t = 0; t < n_new; ++t) {
        const std::vector<float> alone = run(t, 1, pool->get());
        INFO("token " << t);
        CHECK(std::memcmp(alone.data(), all.data() + t * heads * d, alone.size() * 4) == 0);
      }
    }
  }
}

TEST_CASE("PagedAttention with a sliding window", "[attention]") {
  for (int64_t window : {1, 5, 16, 40}) {
    RunBatch({.heads = 4, .kv_heads = 2, .d = 64, .window = window, .seqs = kMixed}, nullptr);
  }
}

TEST_CASE("PagedAttention results do not depend on the thread count", "[attention]") {
  auto pool = ThreadPool::Create({.num_threads = 3});
  REQUIRE(pool.ok());
  std::vector<float> a, b;
  const Batch batch{.heads = 6, .kv_heads = 2, .d = 80, .seqs = kMixed};
  RunBatch(batch, nullptr, &a);
  RunBatch(batch, pool->get(), &b);
  REQUIRE(a.size() == b.size());
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST_CASE("PagedAttention rejects bad arguments", "[attention]") {
  std::vector<float> q(64), out(64), cache(2 * 16 * 64);
  std::vector<int32_t> qs = {0, 1}, ctx = {1}, table = {0};
  PagedAttentionParams p;
  p.q = q.data();
  p.q_stride = 64;
  p.out = out.data();
  p.out_stride = 64;
  p.k_cache = cache.data();
  p.v_cache = cache.data();
  p.num_blocks = 2;
  p.num_seqs = 1;
  p.query_start = qs.data();
  p.context_lens = ctx.data();
  p.block_tables = table.data();
  p.block_table_stride = 1;
  p.num_heads = 1;
  p.num_kv_heads = 1;
  p.head_dim = 64;
  CHECK(PagedAttention(p, nullptr).ok());
  table[0] = 2;  // outside the pool
  CHECK(absl::IsInvalidArgument(PagedAttention(p, nullptr)));
  table[0] = 0;
  ctx[0] = 17;  // needs 2 blocks, table has 1
  CHECK(absl::IsInvalidArgument(PagedAttention(p, nullptr)));
  ctx[0] = 0;  // fewer cached tokens than new ones
  CHECK(absl::IsInvalidArgument(PagedAttention(p, nullptr)));
  ctx[0] = 1;
  PagedAttentionParams bad = p;
  bad.num_heads = 3;
  bad.num_kv_heads = 2;
  CHECK(absl::IsInvalidArgument(PagedAttention(bad, nullptr)));
  bad = p;
  bad.q_stride = 10;
  CHECK(absl::IsInvalidArgument(PagedAttention(bad, nullptr)));
  bad = p;
  bad.kv_dtype = DType::kF16;
  const absl::Status f16 = PagedAttention(bad, nullptr);
  CHECK(f16.message() == "PagedAttention: kv_dtype F16 is not supported (F32 or BF16)");
}

}  // namespace
}  // namespace kestrel::kernels::cpu

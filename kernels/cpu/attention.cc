// Paged attention (see attention.h and PagedAttentionParams in kernels/ops.h).
//
// Work item = (sequence, kv head, tile of up to kQueryTile new tokens): all
// query heads of the kv head's group for those tokens, so each cache block is
// read once per item and reused by every row from L1. Rows keep the online
// softmax state (running max m, denominator l, unnormalised output acc) and
// walk the sequence's blocks through the block table, visiting only the
// slots each row may see (causal + sliding window): unused or future slots
// are never read.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/isa_dispatch.h"

namespace kestrel::kernels::cpu {
namespace {

constexpr int64_t kQueryTile = 16;
constexpr int64_t kDirectMaxRows = 8;
constexpr int64_t kMaxHeadDim = 512;
constexpr int64_t kMaxBlockSize = 256;

struct WorkItem {
  int64_t seq;
  int64_t kv_begin;  // kv head range
  int64_t kv_end;
  int64_t t_begin;  // token range within the sequence's new tokens
  int64_t t_end;
};

absl::Status Validate(const PagedAttentionParams& p) {
  if (p.num_seqs < 0) return absl::InvalidArgumentError(absl::StrCat("PagedAttention: num_seqs=", p.num_seqs));
  if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PagedAttention: num_heads=", p.num_heads, " must be a positive multiple of num_kv_heads=",
        p.num_kv_heads));
  }
  if (p.head_dim <= 0 || p.head_dim > kMaxHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat("PagedAttention: head_dim=", p.head_dim,
                                                   " outside [1, ", kMaxHeadDim, "]"));
  }
  if (p.block_size <= 0 || p.block_size > kMaxBlockSize || p.num_blocks < 0) {
    return absl::InvalidArgumentError(absl::StrCat("PagedAttention: block_size=", p.block_size,
                                                   " num_blocks=", p.num_blocks));
  }
  const int64_t row = p.num_heads * p.head_dim;
  if (p.q_stride < row || p.out_stride < row) {
    return absl::InvalidArgumentError(absl::StrCat("PagedAttention: q_stride=", p.q_stride,
                                                   " out_stride=", p.out_stride,
                                                   " must be >= num_heads*head_dim=", row));
  }
  if (p.sliding_window < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("PagedAttention: sliding_window=", p.sliding_window));
  }
  if (!(p.scale >= 0.0f) || !std::isfinite(p.scale)) {
    return absl::InvalidArgumentError(absl::StrCat("PagedAttention: scale=", p.scale));
  }
  if (p.num_seqs == 0) return absl::OkStatus();
  if (p.query_start == nullptr || p.context_lens == nullptr || p.block_tables == nullptr ||
      p.k_cache == nullptr || p.v_cache == nullptr) {
    return absl::InvalidArgumentError("PagedAttention: null pointer");
  }
  if (p.query_start[0] != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("PagedAttention: query_start[0]=", p.query_start[0], ", want 0"));
  }
  for (int64_t s = 0; s < p.num_seqs; ++s) {
    const int64_t n_new = static_cast<int64_t>(p.query_start[s + 1]) - p.query_start[s];
    const int64_t ctx = p.context_lens[s];
    if (n_new < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("PagedAttention: query_start not monotone at sequence ", s));
    }
    if (ctx < n_new) {
      return absl::InvalidArgumentError(absl::StrCat("PagedAttention: context_lens[", s,
                                                     "]=", ctx, " < new tokens ", n_new));
    }
    if (n_new == 0) continue;
    const int64_t blocks = (ctx + p.block_size - 1) / p.block_size;
    if (blocks > p.block_table_stride) {
      return absl::InvalidArgumentError(absl::StrCat(
          "PagedAttention: context_lens[", s, "]=", ctx, " needs ", blocks,
          " blocks > block_table_stride=", p.block_table_stride));
    }
    const int32_t* table = p.block_tables + s * p.block_table_stride;
    for (int64_t b = 0; b < blocks; ++b) {
      if (table[b] < 0 || table[b] >= p.num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("PagedAttention: block_tables[", s, "][",
                                                       b, "]=", table[b], " outside [0, ",
                                                       p.num_blocks, ")"));
      }
    }
  }
  const int64_t num_tokens = p.query_start[p.num_seqs];
  if (num_tokens > 0 && (p.q == nullptr || p.out == nullptr)) {
    return absl::InvalidArgumentError("PagedAttention: q or out is null");
  }
  return absl::OkStatus();
}

inline void Prefetch(const float* base, int64_t n_floats) {
  const char* c = reinterpret_cast<const char*>(base);
  for (int64_t off = 0; off < n_floats * 4; off += 64) __builtin_prefetch(c + off, 0, 3);
}

void RunItem(const PagedAttentionParams& p, const isa::AttentionVecOps& vec, float scale,
             const WorkItem& item) {
  const int64_t d = p.head_dim;
  const int64_t group = p.num_heads / p.num_kv_heads;
  const int64_t n_new = p.query_start[item.seq + 1] - p.query_start[item.seq];
  const int64_t ctx = p.context_lens[item.seq];
  const int64_t first_pos = ctx - n_new;  // position of new token 0
  const int64_t token0 = p.query_start[item.seq];
  const int64_t tokens = item.t_end - item.t_begin;
  const int64_t heads = item.kv_end - item.kv_begin;  // kv heads in this item
  const int64_t rows = tokens * heads * group;        // row r = (t * heads + g) * group + h
  const int64_t kv_row = p.num_kv_heads * d;          // cache stride between slots
  const int32_t* table = p.block_tables + item.seq * p.block_table_stride;

  thread_local std::vector<float> state;
  state.resize(static_cast<size_t>(rows * (d + 2)));
  float* m = state.data();
  float* l = m + rows;
  float* acc = l + rows;
  std::fill(m, m + rows, -std::numeric_limits<float>::infinity());
  std::fill(l, l + rows, 0.0f);
  std::fill(acc, acc + rows * d, 0.0f);

  const int64_t last_pos = first_pos + item.t_end - 1;  // last key any row sees
  int64_t lowest_key = 0;
  if (p.sliding_window > 0) {
    lowest_key = std::max<int64_t>(0, first_pos + item.t_begin - p.sliding_window + 1);
  }
  constexpr int64_t kTile = isa::kKeyTile;
  // Transposing a run of keys pays off once enough query rows share it
  // (prefill); a decode token's few GQA rows score the keys in place.
  const bool direct = tokens * group <= kDirectMaxRows;
  thread_local std::vector<float> kt_buf;
  kt_buf.resize(static_cast<size_t>(d * kTile));
  float* kt = kt_buf.data();
  // Room for an unaligned 16-wide read starting anywhere in the first 16.
  alignas(64) float scores[2 * kTile];
  // The item's slice of one slot: kv heads [kv_begin, kv_end), contiguous.
  const int64_t slice = heads * d;
  auto slot_of = [&](int64_t key) {
    return static_cast<int64_t>(table[key / p.block_size]) * p.block_size + key % p.block_size;
  };
  // Keys are visited in runs of up to kTile slots that never cross a block.
  for (int64_t sub = lowest_key; sub <= last_pos;) {
    const int64_t block_end = (sub / p.block_size + 1) * p.block_size;
    // Keys [sub, sub_end) exist (< context length); later slots are never read.
    const int64_t sub_end = std::min({sub + kTile, block_end, last_pos + 1});
    const int64_t n_keys = sub_end - sub;
    const int64_t slot = slot_of(sub);
    // Start loading the next run while this one is computed: blocks are
    // scattered, so the hardware prefetcher cannot guess them.
    if (sub_end <= last_pos) {
      const int64_t next_slot = slot_of(sub_end);
      const int64_t next_n = std::min({sub_end + kTile, (sub_end / p.block_size + 1) * p.block_size,
                                       last_pos + 1}) - sub_end;
      for (int64_t j = 0; j < next_n; ++j) {
        Prefetch(p.k_cache + (next_slot + j) * kv_row + item.kv_begin * d, slice);
        Prefetch(p.v_cache + (next_slot + j) * kv_row + item.kv_begin * d, slice);
      }
    }
    for (int64_t g = item.kv_begin; g < item.kv_end; ++g) {
      const float* kb = p.k_cache + slot * kv_row + g * d;
      const float* vb = p.v_cache + slot * kv_row + g * d;
      for (int64_t i = 0; !direct && i < d; ++i) {
        float* dst = kt + i * kTile;
        for (int64_t j = 0; j < n_keys; ++j) dst[j] = kb[j * kv_row + i];
        for (int64_t j = n_keys; j < kTile; ++j) dst[j] = 0.0f;
      }
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t pos = first_pos + item.t_begin + t;
        int64_t lo = sub;
        if (p.sliding_window > 0) lo = std::max(lo, pos - p.sliding_window + 1);
        const int64_t hi = std::min(sub_end - 1, pos);  // inclusive
        if (lo > hi) continue;
        const int64_t off = lo - sub;
        const int64_t count = hi - lo + 1;
        const float* qt = p.q + (token0 + item.t_begin + t) * p.q_stride;
        for (int64_t h = 0; h < group; ++h) {
          const int64_t r = (t * heads + (g - item.kv_begin)) * group + h;
          const float* q = qt + (g * group + h) * d;
          float* sv;
          if (direct) {
            vec.scores_direct(q, kb + off * kv_row, kv_row, count, d, scale, scores);
            sv = scores;
          } else {
            vec.scores(q, kt, d, scale, scores);
            sv = scores + off;
          }
          float block_max = sv[0];
          for (int64_t j = 1; j < count; ++j) block_max = std::max(block_max, sv[j]);
          const float m_new = std::max(m[r], block_max);
          // 0 on the first run (m = -inf); exactly 1 when the max is unchanged.
          const float alpha = m_new == m[r] ? 1.0f : std::exp(m[r] - m_new);
          const float sum = vec.exp_sum(sv, count, m_new);
          l[r] = l[r] * alpha + sum;
          m[r] = m_new;
          vec.accumulate_v(acc + r * d, alpha, sv, vb + off * kv_row, kv_row, count, d);
        }
      }
    }
    sub = sub_end;
  }
  for (int64_t t = 0; t < tokens; ++t) {
    float* ot = p.out + (token0 + item.t_begin + t) * p.out_stride;
    for (int64_t g = item.kv_begin; g < item.kv_end; ++g) {
      for (int64_t h = 0; h < group; ++h) {
        const int64_t r = (t * heads + (g - item.kv_begin)) * group + h;
        const float inv = 1.0f / l[r];
        float* o = ot + (g * group + h) * d;
        const float* a = acc + r * d;
        for (int64_t i = 0; i < d; ++i) o[i] = a[i] * inv;
      }
    }
  }
}

}  // namespace

absl::Status PagedAttention(const PagedAttentionParams& p, ThreadPool* pool, Isa isa) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  const Isa resolved = ResolveIsa(isa);
  if (!IsaSupported(resolved)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PagedAttention: isa ", std::string(IsaName(resolved)), " is not supported by this CPU"));
  }
  if (p.num_seqs == 0) return absl::OkStatus();
  const float scale = p.scale > 0.0f ? p.scale : 1.0f / std::sqrt(static_cast<float>(p.head_dim));
  const isa::AttentionVecOps& vec = *GetIsaTable(resolved).attention;

  // The plan. An item covers all kv heads of a token tile when there are
  // enough tiles to keep every thread busy (each cache slot is then read as
  // one contiguous row); otherwise (small decode batches) kv heads are split
  // across items too.
  int64_t tiles = 0;
  for (int64_t s = 0; s < p.num_seqs; ++s) {
    tiles += (p.query_start[s + 1] - p.query_start[s] + kQueryTile - 1) / kQueryTile;
  }
  const int64_t threads = pool != nullptr ? pool->num_threads() : 1;
  const int64_t kv_per_item = tiles >= 4 * threads ? p.num_kv_heads : 1;
  thread_local std::vector<WorkItem> items;
  items.clear();
  for (int64_t s = 0; s < p.num_seqs; ++s) {
    const int64_t n_new = p.query_start[s + 1] - p.query_start[s];
    for (int64_t g = 0; g < p.num_kv_heads; g += kv_per_item) {
      for (int64_t t = 0; t < n_new; t += kQueryTile) {
        items.push_back({s, g, std::min(p.num_kv_heads, g + kv_per_item), t,
                         std::min(n_new, t + kQueryTile)});
      }
    }
  }
  const std::vector<WorkItem>& plan = items;
  ParallelFor(pool, static_cast<int64_t>(plan.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) RunItem(p, vec, scale, plan[i]);
  });
  return absl::OkStatus();
}

}  // namespace kestrel::kernels::cpu

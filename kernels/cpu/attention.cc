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
  if (p.kv_dtype != DType::kF32 && p.kv_dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("PagedAttention: kv_dtype ",
                                                   std::string(DTypeName(p.kv_dtype)),
                                                   " is not supported (F32 or BF16)"));
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

// To L2 (prefetcht2): into L1 it would evict the block being computed.
inline void Prefetch(const void* base, int64_t bytes) {
  const char* c = static_cast<const char*>(base);
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 0, 1);
}

// The cache element type's entry points: float (F32 cache) or uint16_t (BF16).
template <typename T>
struct KvOps;
template <>
struct KvOps<float> {
  static auto scores(const isa::AttentionVecOps& v) { return v.scores; }
  static auto accumulate_v(const isa::AttentionVecOps& v) { return v.accumulate_v; }
};
template <>
struct KvOps<uint16_t> {
  static auto scores(const isa::AttentionVecOps& v) { return v.scores_bf16; }
  static auto accumulate_v(const isa::AttentionVecOps& v) { return v.accumulate_v_bf16; }
};

template <typename T>
void RunItem(const PagedAttentionParams& p, const isa::AttentionVecOps& vec, float scale,
             const WorkItem& item) {
  const T* k_cache = static_cast<const T*>(p.k_cache);
  const T* v_cache = static_cast<const T*>(p.v_cache);
  const auto scores_fn = KvOps<T>::scores(vec);
  const auto accumulate_v = KvOps<T>::accumulate_v(vec);
  const int64_t d = p.head_dim;
  const int64_t group = p.num_heads / p.num_kv_heads;
  const int64_t n_new = p.query_start[item.seq + 1] - p.query_start[item.seq];
  const int64_t ctx = p.context_lens[item.seq];
  const int64_t first_pos = ctx - n_new;  // position of new token 0
  const int64_t token0 = p.query_start[item.seq];
  const int64_t tokens = item.t_end - item.t_begin;
  const int64_t heads = item.kv_end - item.kv_begin;  // kv heads in this item
  const int64_t rows = tokens * heads * group;        // row r = (t * heads + g) * group + h
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
  // Scores of one run for one row; room for an unaligned 16-wide read
  // starting anywhere in the first 16.
  alignas(64) float scores[2 * kTile] = {};
  const int64_t bs = p.block_size;
  // One (block, kv head) of the cache: K as [d, bs] (keys along the rows, so
  // a run's scores are d vector FMAs with no horizontal sums), V as [bs, d].
  const int64_t head_elems = d * bs;
  auto head_base = [&](int64_t key, int64_t g) {
    return (static_cast<int64_t>(table[key / bs]) * p.num_kv_heads + g) * head_elems;
  };
  // Keys are visited in runs of up to kTile slots that never cross a block.
  for (int64_t sub = lowest_key; sub <= last_pos;) {
    const int64_t block_end = (sub / bs + 1) * bs;
    // Keys [sub, sub_end) exist (< context length); later slots are never read.
    const int64_t sub_end = std::min({sub + kTile, block_end, last_pos + 1});
    const int64_t in_block = sub % bs;
    // Load the next block while this one is computed (blocks are scattered,
    // so the hardware prefetcher cannot guess them), a slice per query head
    // so the prefetches never queue up behind each other.
    const bool prefetch_next = sub_end == block_end && sub_end <= last_pos;
    for (int64_t g = item.kv_begin; g < item.kv_end; ++g) {
      const int64_t base = head_base(sub, g);
      const int64_t next = prefetch_next ? head_base(sub_end, g) : -1;
      const T* kt = k_cache + base + in_block;       // [d, bs], this run's columns
      const T* vb = v_cache + base + in_block * d;   // [sub_end - sub, d]
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
          if (next >= 0 && t == 0) {
            const int64_t begin = head_elems * h / group, end = head_elems * (h + 1) / group;
            Prefetch(k_cache + next + begin, (end - begin) * static_cast<int64_t>(sizeof(T)));
            Prefetch(v_cache + next + begin, (end - begin) * static_cast<int64_t>(sizeof(T)));
          }
          const int64_t r = (t * heads + (g - item.kv_begin)) * group + h;
          const float* q = qt + (g * group + h) * d;
          scores_fn(q, kt, bs, off + count, d, scale, scores);
          float* sv = scores + off;
          const float alpha = vec.softmax_step(sv, count, &m[r], &l[r]);
          accumulate_v(acc + r * d, alpha, sv, vb + off * d, d, count, d);
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
    for (int64_t i = begin; i < end; ++i) {
      if (p.kv_dtype == DType::kBF16) {
        RunItem<uint16_t>(p, vec, scale, plan[i]);
      } else {
        RunItem<float>(p, vec, scale, plan[i]);
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace kestrel::kernels::cpu

// Paged attention (see attention.h and PagedAttentionParams in kernels/ops.h).
//
// Work item = (sequence, kv heads, tile of up to kQueryTile new tokens,
// chunk of kKeyChunk cache positions): all query heads of each kv head's
// group for those tokens, so each cache block is read once per item and
// reused by every row from L1. Rows keep the online softmax state (running
// max m, denominator l, unnormalised output acc) and walk the sequence's
// blocks through the block table, visiting only the slots each row may see
// (causal + sliding window): unused or future slots are never read.
//
// A sequence longer than one chunk is split by key position, so a single
// long decode still spreads over the threads (flash-decoding); each chunk
// leaves its partial state, and a second pass merges the chunks in order.
// The chunks depend only on positions, never on the batch, so a row's result
// is the same whatever else is in the step.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/isa_dispatch.h"
#include "kernels/dtype.h"

namespace kestrel::kernels::cpu {
namespace {

constexpr int64_t kQueryTile = 16;
// Cache positions per work item: a 2,048-token decode is 8 items per kv
// head. A multiple of every power-of-two block size up to 256, so chunks
// never split a block (or a run of keys) there.
constexpr int64_t kKeyChunk = 256;
constexpr int64_t kMaxHeadDim = isa::kMaxAttentionHeadDim;
constexpr int64_t kMaxBlockSize = 256;

struct WorkItem {
  int64_t seq;
  int64_t kv_begin;  // kv head range
  int64_t kv_end;
  int64_t t_begin;  // token range within the sequence's new tokens
  int64_t t_end;
  int64_t key_begin;  // cache positions [key_begin, key_end) this item visits
  int64_t key_end;
  // Floats into the partial-state buffer where this item leaves m, l and
  // acc for the merge; -1 when the item is the rows' only chunk and writes
  // the output itself.
  int64_t partial;
};

// The items of one (sequence, kv heads, token tile), one per key chunk in
// position order: merged into the output after all items ran.
struct MergeGroup {
  int64_t item_begin;
  int64_t item_end;
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

// Rows of an item: r = ((g - kv_begin) * tokens + t) * group + h for kv head
// g, token t of the tile and query head h of g's group, so each kv head's
// rows are contiguous (Bf16DotRun takes them as one block).
struct ItemShape {
  int64_t group, tokens, heads, rows;
  explicit ItemShape(const PagedAttentionParams& p, const WorkItem& item)
      : group(p.num_heads / p.num_kv_heads),
        tokens(item.t_end - item.t_begin),
        heads(item.kv_end - item.kv_begin),
        rows(tokens * heads * group) {}
};

// q * scale rounded to bf16 as 32-bit pairs (Bf16DotRun::q) for every row
// of the item: [rows, (d + 1) / 2].
void QueryPairs(const PagedAttentionParams& p, const WorkItem& item, const ItemShape& shape,
                float scale, std::vector<uint32_t>* out) {
  const int64_t d = p.head_dim, pairs = (d + 1) / 2;
  out->resize(static_cast<size_t>(shape.rows * pairs));
  const int64_t token0 = p.query_start[item.seq] + item.t_begin;
  for (int64_t g = item.kv_begin; g < item.kv_end; ++g) {
    for (int64_t t = 0; t < shape.tokens; ++t) {
      for (int64_t h = 0; h < shape.group; ++h) {
        const int64_t r = ((g - item.kv_begin) * shape.tokens + t) * shape.group + h;
        const float* q = p.q + (token0 + t) * p.q_stride + (g * shape.group + h) * d;
        uint32_t* dst = out->data() + r * pairs;
        for (int64_t i = 0; i < pairs; ++i) {
          const uint32_t even = F32ToBf16(q[2 * i] * scale);
          const uint32_t odd = 2 * i + 1 < d ? F32ToBf16(q[2 * i + 1] * scale) : 0u;
          dst[i] = even | odd << 16;
        }
      }
    }
  }
}

// bf16-dot runs: a row's keys are scored, passed through one online-softmax
// step and added to its output kDotRunSlots positions at a time, so the
// step's max, rescale and sums are paid once per run rather than per
// kKeyTile keys. Runs are aligned to multiples of their length (so to
// positions alone, and a chunk is a whole number of runs) and split into
// pieces at block and kKeyTile boundaries.
static_assert(kKeyChunk % isa::kDotRunSlots == 0);

struct Piece {
  int64_t pos, count;  // keys [pos, pos + count)
};

// The pieces of run [run, run + run_slots) within the keys [lowest_key,
// last_pos], in order; returns their number (<= run_slots).
int64_t SplitRun(int64_t run, int64_t run_slots, int64_t lowest_key, int64_t last_pos,
                 int64_t bs, Piece* pieces) {
  const int64_t end = std::min(run + run_slots, last_pos + 1);
  int64_t num = 0;
  for (int64_t pos = std::max(run, lowest_key); pos < end;) {
    const int64_t piece_end =
        std::min({(pos / isa::kKeyTile + 1) * isa::kKeyTile, (pos / bs + 1) * bs, end});
    pieces[num++] = {pos, piece_end - pos};
    pos = piece_end;
  }
  return num;
}

// The K and V regions (one (block, kv head) each) to prefetch while run
// `run` of kv head g is computed (runs outer, heads inner): the blocks that
// start in g's next run, and during the item's first run also those of
// head g + 1's first run, which would otherwise wait for memory. Returns
// their number (<= 2 * (2 * run_slots + 1)).
template <typename T, typename HeadBase>
int64_t NextRegions(const T* k_cache, const T* v_cache, const HeadBase& head_base, int64_t bs,
                    int64_t run_slots, int64_t lowest_key, int64_t last_pos, int64_t kv_end,
                    int64_t g, int64_t run, const void** out) {
  const int64_t first_run = lowest_key / run_slots * run_slots;
  int64_t n = 0;
  auto add = [&](int64_t from, int64_t to, int64_t head) {
    for (int64_t b = from; b < to; b += bs) {
      out[n++] = k_cache + head_base(b, head);
      out[n++] = v_cache + head_base(b, head);
    }
  };
  if (run == first_run && g + 1 < kv_end) {
    add(lowest_key / bs * bs, std::min(run + run_slots, last_pos + 1), g + 1);
  }
  const int64_t next = run + run_slots;
  add((next + bs - 1) / bs * bs, std::min(next + run_slots, last_pos + 1), g);
  return n;
}

// RunItem's bf16-dot path over a BF16 cache: the item's keys
// [lowest_key, last_pos] in runs of kDotRunSlots positions, every row of a
// kv head's group at once (Bf16DotRun). `state` as RunItem's, already
// initialised.
void RunDotRuns(const PagedAttentionParams& p, const isa::AttentionVecOps& vec, float scale,
                const WorkItem& item, int64_t lowest_key, int64_t last_pos, float* state) {
  constexpr int64_t kRun = isa::kDotRunSlots;
  const uint16_t* k_cache = static_cast<const uint16_t*>(p.k_cache);
  const uint16_t* v_cache = static_cast<const uint16_t*>(p.v_cache);
  const int64_t d = p.head_dim, bs = p.block_size, pairs = (d + 1) / 2;
  const ItemShape shape(p, item);
  const int64_t group = shape.group, tokens = shape.tokens, rows = shape.rows;
  const int64_t n_new = p.query_start[item.seq + 1] - p.query_start[item.seq];
  const int64_t first_pos = p.context_lens[item.seq] - n_new;  // position of new token 0
  const int32_t* table = p.block_tables + item.seq * p.block_table_stride;
  const int64_t head_elems = d * bs;
  auto head_base = [&](int64_t key, int64_t g) {
    return (static_cast<int64_t>(table[key / bs]) * p.num_kv_heads + g) * head_elems;
  };
  float* m = state;
  float* l = m + rows;
  float* acc = l + rows;

  // The query pairs once per item, the rows' visible slots once per run.
  thread_local std::vector<uint32_t> q_pairs;
  thread_local std::vector<int32_t> row_lo, row_hi;
  QueryPairs(p, item, shape, scale, &q_pairs);
  row_lo.resize(static_cast<size_t>(tokens * group));
  row_hi.resize(static_cast<size_t>(tokens * group));

  Piece pieces[kRun];  // at most one key per piece (block size 1)
  isa::Bf16DotSegment segs[kRun];
  const void* prefetch[2 * (2 * kRun + 1)];
  for (int64_t run = lowest_key / kRun * kRun; run <= last_pos; run += kRun) {
    const int64_t num = SplitRun(run, kRun, lowest_key, last_pos, bs, pieces);
    // Every kv head's rows share the tile's token positions.
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t pos = first_pos + item.t_begin + t;
      const int64_t lo = p.sliding_window > 0 ? pos - p.sliding_window + 1 - run : -1;
      const int64_t hi = pos - run;
      for (int64_t h = 0; h < group; ++h) {
        row_lo[t * group + h] = static_cast<int32_t>(std::clamp<int64_t>(lo, -1, kRun));
        row_hi[t * group + h] = static_cast<int32_t>(std::clamp<int64_t>(hi, -1, kRun));
      }
    }
    for (int64_t g = item.kv_begin; g < item.kv_end; ++g) {
      const int64_t num_prefetch = NextRegions(k_cache, v_cache, head_base, bs, kRun, lowest_key,
                                               last_pos, item.kv_end, g, run, prefetch);
      for (int64_t i = 0; i < num; ++i) {
        const int64_t base = head_base(pieces[i].pos, g), in_block = pieces[i].pos % bs;
        segs[i] = {.k = k_cache + base + in_block,
                   .v = v_cache + base + in_block * d,
                   .slot = static_cast<int32_t>(pieces[i].pos - run),
                   .count = static_cast<int32_t>(pieces[i].count)};
      }
      const int64_t r0 = (g - item.kv_begin) * tokens * group;
      vec.bf16_dot_run({.segs = segs, .num_segs = num, .k_stride = bs, .d = d,
                        .rows = tokens * group, .q = q_pairs.data() + r0 * pairs,
                        .q_stride = pairs, .lo = row_lo.data(), .hi = row_hi.data(),
                        .m = m + r0, .l = l + r0, .acc = acc + r0 * d, .acc_stride = d,
                        .prefetch = prefetch, .num_prefetch = num_prefetch,
                        .prefetch_bytes = head_elems * static_cast<int64_t>(sizeof(uint16_t))});
    }
  }
}

// Runs one item: its rows' online-softmax state over its key range, into
// `state` ([rows] m, [rows] l, [rows, d] acc, in that order).
template <typename T>
void RunItem(const PagedAttentionParams& p, const isa::AttentionVecOps& vec, float scale,
             bool bf16_dot, const WorkItem& item, float* state) {
  const T* k_cache = static_cast<const T*>(p.k_cache);
  const T* v_cache = static_cast<const T*>(p.v_cache);
  const auto scores_fn = KvOps<T>::scores(vec);
  const auto accumulate_v = KvOps<T>::accumulate_v(vec);
  const int64_t d = p.head_dim;
  const ItemShape shape(p, item);
  const int64_t group = shape.group, tokens = shape.tokens, rows = shape.rows;
  const int64_t n_new = p.query_start[item.seq + 1] - p.query_start[item.seq];
  const int64_t ctx = p.context_lens[item.seq];
  const int64_t first_pos = ctx - n_new;  // position of new token 0
  const int64_t token0 = p.query_start[item.seq];
  const int32_t* table = p.block_tables + item.seq * p.block_table_stride;

  float* m = state;
  float* l = m + rows;
  float* acc = l + rows;
  std::fill(m, m + rows, -std::numeric_limits<float>::infinity());
  std::fill(l, l + rows, 0.0f);
  std::fill(acc, acc + rows * d, 0.0f);

  // The keys any row of the item sees, within the item's chunk.
  const int64_t last_pos = std::min(first_pos + item.t_end - 1, item.key_end - 1);
  int64_t lowest_key = item.key_begin;
  if (p.sliding_window > 0) {
    lowest_key =
        std::max<int64_t>(lowest_key, first_pos + item.t_begin - p.sliding_window + 1);
  }
  if constexpr (std::is_same_v<T, uint16_t>) {
    if (bf16_dot) return RunDotRuns(p, vec, scale, item, lowest_key, last_pos, state);
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
          const int64_t r = ((g - item.kv_begin) * tokens + t) * group + h;
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
}

// out = the merge of `parts` partial states of the same rows (chunks in
// order): m = max m_c, l = sum l_c e^(m_c - m), acc likewise; out = acc / l.
// A chunk no row key reached (m_c = -inf) adds nothing; a single chunk
// gives exactly acc / l.
void WriteOutput(const PagedAttentionParams& p, const WorkItem& item,
                 const float* const* parts, int64_t num_parts) {
  const int64_t d = p.head_dim;
  const ItemShape shape(p, item);
  const int64_t rows = shape.rows;
  const int64_t token0 = p.query_start[item.seq] + item.t_begin;
  thread_local std::vector<float> merged;
  merged.resize(static_cast<size_t>(d));
  for (int64_t g = item.kv_begin; g < item.kv_end; ++g) {
    for (int64_t t = 0; t < shape.tokens; ++t) {
      for (int64_t h = 0; h < shape.group; ++h) {
        const int64_t r = ((g - item.kv_begin) * shape.tokens + t) * shape.group + h;
        float* o = p.out + (token0 + t) * p.out_stride + (g * shape.group + h) * d;
        if (num_parts == 1) {
          const float inv = 1.0f / parts[0][rows + r];
          const float* a = parts[0] + 2 * rows + r * d;
          for (int64_t i = 0; i < d; ++i) o[i] = a[i] * inv;
          continue;
        }
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t c = 0; c < num_parts; ++c) m = std::max(m, parts[c][r]);
        float l = 0.0f;
        std::fill(merged.begin(), merged.end(), 0.0f);
        for (int64_t c = 0; c < num_parts; ++c) {
          const float mc = parts[c][r];
          if (mc == -std::numeric_limits<float>::infinity()) continue;
          const float w = mc == m ? 1.0f : std::exp(mc - m);
          l += parts[c][rows + r] * w;
          const float* a = parts[c] + 2 * rows + r * d;
          for (int64_t i = 0; i < d; ++i) merged[i] += a[i] * w;
        }
        const float inv = 1.0f / l;
        for (int64_t i = 0; i < d; ++i) o[i] = merged[i] * inv;
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

  // bf16 dot products need a BF16 cache and a variant that has them on this
  // CPU (AVX-512 without AVX512_BF16 has none: the exact path runs).
  // It pays where a kv head has at least 8 query heads to share each loaded
  // pair vector (TinyLlama: 8; with 4, d = 128 it measured slower than the
  // exact path): a per-model rule, so a row is computed the same way in
  // every step.
  const bool bf16_dot = p.bf16_dot && p.kv_dtype == DType::kBF16 &&
                        p.num_heads / p.num_kv_heads >= 8 &&
                        GetIsaTable(resolved).convert_to_bf16 != nullptr;

  // The plan. An item covers all kv heads of a token tile when there are
  // enough tiles to keep every thread busy (each cache slot is then read as
  // one contiguous row); otherwise (small decode batches) kv heads are split
  // across items too. Either way each row is computed the same way.
  int64_t tiles = 0;
  for (int64_t s = 0; s < p.num_seqs; ++s) {
    const int64_t n_new = p.query_start[s + 1] - p.query_start[s];
    const int64_t chunks = (p.context_lens[s] + kKeyChunk - 1) / kKeyChunk;
    tiles += (n_new + kQueryTile - 1) / kQueryTile * chunks;
  }
  const int64_t threads = pool != nullptr ? pool->num_threads() : 1;
  const int64_t kv_per_item = tiles >= 4 * threads ? p.num_kv_heads : 1;
  const int64_t group = p.num_heads / p.num_kv_heads;
  thread_local std::vector<WorkItem> items;
  thread_local std::vector<MergeGroup> merges;
  items.clear();
  merges.clear();
  int64_t partial_floats = 0;
  for (int64_t s = 0; s < p.num_seqs; ++s) {
    const int64_t n_new = p.query_start[s + 1] - p.query_start[s];
    const int64_t first_pos = p.context_lens[s] - n_new;
    for (int64_t g = 0; g < p.num_kv_heads; g += kv_per_item) {
      const int64_t g_end = std::min(p.num_kv_heads, g + kv_per_item);
      for (int64_t t = 0; t < n_new; t += kQueryTile) {
        const int64_t t_end = std::min(n_new, t + kQueryTile);
        const int64_t last_pos = first_pos + t_end - 1;
        const int64_t chunks = last_pos / kKeyChunk + 1;  // chunks holding a visible key
        const int64_t rows = (t_end - t) * (g_end - g) * group;
        const int64_t begin = static_cast<int64_t>(items.size());
        for (int64_t c = 0; c < chunks; ++c) {
          const int64_t partial = chunks == 1 ? -1 : partial_floats;
          if (chunks > 1) partial_floats += rows * (p.head_dim + 2);
          items.push_back({s, g, g_end, t, t_end, c * kKeyChunk, (c + 1) * kKeyChunk, partial});
        }
        if (chunks > 1) merges.push_back({begin, static_cast<int64_t>(items.size())});
      }
    }
  }
  thread_local std::vector<float> partials;
  if (partials.size() < static_cast<size_t>(partial_floats)) {
    partials.resize(static_cast<size_t>(partial_floats));
  }
  const std::vector<WorkItem>& plan = items;
  float* partial_base = partials.data();
  ParallelFor(pool, static_cast<int64_t>(plan.size()), 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> state;
    for (int64_t i = begin; i < end; ++i) {
      const WorkItem& item = plan[i];
      float* out = item.partial >= 0 ? partial_base + item.partial : nullptr;
      if (out == nullptr) {
        state.resize(static_cast<size_t>(ItemShape(p, item).rows * (p.head_dim + 2)));
        out = state.data();
      }
      if (p.kv_dtype == DType::kBF16) {
        RunItem<uint16_t>(p, vec, scale, bf16_dot, item, out);
      } else {
        RunItem<float>(p, vec, scale, false, item, out);
      }
      if (item.partial < 0) {
        const float* part = out;
        WriteOutput(p, item, &part, 1);
      }
    }
  });
  if (merges.empty()) return absl::OkStatus();
  const std::vector<MergeGroup>& to_merge = merges;
  ParallelFor(pool, static_cast<int64_t>(to_merge.size()), 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<const float*> parts;
    for (int64_t i = begin; i < end; ++i) {
      const MergeGroup& mg = to_merge[i];
      parts.clear();
      for (int64_t j = mg.item_begin; j < mg.item_end; ++j) {
        parts.push_back(partial_base + plan[j].partial);
      }
      WriteOutput(p, plan[mg.item_begin], parts.data(), static_cast<int64_t>(parts.size()));
    }
  });
  return absl::OkStatus();
}

}  // namespace kestrel::kernels::cpu

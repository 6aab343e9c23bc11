// Sampling kernels (see sampling.h for the algorithm). One block of kThreads
// threads per row; every helper below is called by the whole block, with the
// same arguments in every thread, and reaches the same barriers in every
// thread. The row's state lives in one static __shared__ struct.
//
// The CPU order of candidates is "more likely first, ties by lower id, NaN
// last". Rank() packs it into one 64-bit integer (a larger Rank is more
// likely), so an argmax, the k-th most likely token (radix select, 8 bits a
// pass) and the top-N logprobs are integer max / select problems.
//
// Built with -fmad=false under nvcc: the penalty arithmetic must round like
// the CPU's (no fused multiply-add).
#include "kernels/cuda/sampling.h"

#include <cstdint>

#include "kernels/cuda/cuda_compat.h"
#include "kernels/cuda/device_error.h"

namespace kestrel::cuda {
namespace {

using kernels::SampleRow;
using kernels::TokenAdjust;

constexpr int kThreads = 256;  // a multiple of the warp size
constexpr int kWarpSize = 32;
constexpr int kWarps = kThreads / kWarpSize;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kRadixBits = 4;  // radix sort digit: 16 counters per thread
constexpr int kRadixBins = 1 << kRadixBits;
constexpr int kSelectBins = 256;  // radix select digit: 8 bits
constexpr int kSmallSort = 1024;  // up to this many candidates: RankSort
// A relative probability below this adds nothing to (or takes nothing from)
// a double sum that is at least 1/2, so such candidates need not be sorted.
constexpr double kNegligible = 0x1p-56;

// The fields of the row being sampled, checked by thread 0.
struct RowInfo {
  int64_t logits_row;
  int adjust_begin;
  int adjust_end;
  int top_k;
  int num_top;
  float temperature;
  float top_p;
  float min_p;
  float repetition_penalty;
  float presence_penalty;
  float frequency_penalty;
  double uniform;
  double accept_uniform;
  int draft_token;  // -1: a plain draw
  int logprobs;  // bool
  int bad;       // bool: a field was out of range (reported)
};

struct SharedState {
  RowInfo row;
  // Radix sort: digit-major counters [kRadixBins][kThreads]; the first
  // kSelectBins are the radix select histogram.
  int counts[kRadixBins * kThreads];
  int adjust_token[kThreads];
  unsigned long long warp_u64[kWarps];
  double warp_f64[kWarps];
  float warp_f32[kWarps];
  int warp_int[kWarps];
  long long select_remaining;
  int select_digit;
  int flag;
  long long pick;
};
static_assert(kRadixBins * kThreads >= kSelectBins);
static_assert(kRadixBins * kThreads >= 2 * kSmallSort);

__device__ __forceinline__ int Lane() { return static_cast<int>(threadIdx.x) % kWarpSize; }
__device__ __forceinline__ int Warp() { return static_cast<int>(threadIdx.x) / kWarpSize; }
__device__ __forceinline__ int Tid() { return static_cast<int>(threadIdx.x); }

// Larger is more likely: NaN lowest, -0 equal to +0.
__device__ __forceinline__ unsigned OrderKey(float v) {
  if (isnan(v)) return 0u;
  unsigned bits = __float_as_uint(v);
  if ((bits & 0x7fffffffu) == 0u) bits = 0u;
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// The CPU's candidate order as one integer: key, then lower id. Never 0.
__device__ __forceinline__ unsigned long long Rank(float v, int id) {
  return (static_cast<unsigned long long>(OrderKey(v)) << 32) |
         (0xffffffffu - static_cast<unsigned>(id));
}

__device__ __forceinline__ int RankId(unsigned long long rank) {
  return static_cast<int>(0xffffffffu - static_cast<unsigned>(rank & 0xffffffffull));
}

__device__ __forceinline__ unsigned long long BlockMaxU64(unsigned long long v, SharedState& sh) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const unsigned long long other = __shfl_xor_sync(kFullMask, v, offset);
    v = other > v ? other : v;
  }
  if (Lane() == 0) sh.warp_u64[Warp()] = v;
  __syncthreads();
  unsigned long long result = sh.warp_u64[0];
  for (int w = 1; w < kWarps; ++w) result = sh.warp_u64[w] > result ? sh.warp_u64[w] : result;
  __syncthreads();
  return result;
}

__device__ __forceinline__ float BlockMaxF32(float v, SharedState& sh) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  }
  if (Lane() == 0) sh.warp_f32[Warp()] = v;
  __syncthreads();
  float result = sh.warp_f32[0];
  for (int w = 1; w < kWarps; ++w) result = fmaxf(result, sh.warp_f32[w]);
  __syncthreads();
  return result;
}

__device__ __forceinline__ double BlockSumF64(double v, SharedState& sh) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(kFullMask, v, offset);
  }
  if (Lane() == 0) sh.warp_f64[Warp()] = v;
  __syncthreads();
  double result = 0.0;
  for (int w = 0; w < kWarps; ++w) result += sh.warp_f64[w];
  __syncthreads();
  return result;
}

// Exclusive prefix sum of one int per thread (thread order); *total gets the sum.
__device__ __forceinline__ int BlockExclusiveScan(int v, int* total, SharedState& sh) {
  int inclusive = v;
  for (int offset = 1; offset < kWarpSize; offset *= 2) {
    const int before = __shfl_up_sync(kFullMask, inclusive, offset);
    if (Lane() >= offset) inclusive += before;
  }
  if (Lane() == kWarpSize - 1) sh.warp_int[Warp()] = inclusive;
  __syncthreads();
  int earlier = 0, all = 0;
  for (int w = 0; w < kWarps; ++w) {
    if (w < Warp()) earlier += sh.warp_int[w];
    all += sh.warp_int[w];
  }
  __syncthreads();
  *total = all;
  return earlier + inclusive - v;
}

__device__ __forceinline__ int BlockSumInt(int v, SharedState& sh) {
  int total = 0;
  BlockExclusiveScan(v, &total, sh);
  return total;
}

// The Rank of the rank-th (0-based) most likely entry of x[0, vocab).
// REQUIRES: 0 <= rank < vocab.
__device__ __forceinline__ unsigned long long SelectRank(const float* x, int vocab, long long rank,
                                         SharedState& sh) {
  unsigned long long prefix = 0;
  for (int shift = 56; shift >= 0; shift -= 8) {
    const unsigned long long high = shift == 56 ? 0ull : ~0ull << (shift + 8);
    for (int d = Tid(); d < kSelectBins; d += kThreads) sh.counts[d] = 0;
    __syncthreads();
    for (int i = Tid(); i < vocab; i += kThreads) {
      const unsigned long long key = Rank(x[i], i);
      if ((key & high) == prefix) atomicAdd(&sh.counts[(key >> shift) & 0xff], 1);
    }
    __syncthreads();
    if (Tid() == 0) {
      int d = kSelectBins - 1;
      while (d > 0 && rank >= sh.counts[d]) rank -= sh.counts[d--];
      sh.select_digit = d;
      sh.select_remaining = rank;
    }
    __syncthreads();
    prefix |= static_cast<unsigned long long>(sh.select_digit) << shift;
    rank = sh.select_remaining;
  }
  __syncthreads();  // select_digit is rewritten by the next call
  return prefix;
}

// Stable ascending LSD radix sort of (keys, ids)[0, n), kRadixBits a pass;
// the result ends in keys/ids (an even number of passes), tmp is scratch.
// Each thread owns a contiguous chunk, so the scatter keeps the input order
// among equal digits.
__device__ __forceinline__ void RadixSort(unsigned* keys, int* ids, unsigned* keys_tmp, int* ids_tmp, int n,
                          SharedState& sh) {
  static_assert((32 / kRadixBits) % 2 == 0, "the sort must end in keys/ids");
  const int chunk = (n + kThreads - 1) / kThreads;
  const int begin = Tid() * chunk < n ? Tid() * chunk : n;
  const int end = begin + chunk < n ? begin + chunk : n;
  int* my_counts = sh.counts + Tid();  // [digit * kThreads]
  for (int shift = 0; shift < 32; shift += kRadixBits) {
    const bool forward = (shift / kRadixBits) % 2 == 0;
    const unsigned* src_keys = forward ? keys : keys_tmp;
    const int* src_ids = forward ? ids : ids_tmp;
    unsigned* dst_keys = forward ? keys_tmp : keys;
    int* dst_ids = forward ? ids_tmp : ids;
    for (int d = 0; d < kRadixBins; ++d) my_counts[d * kThreads] = 0;
    for (int i = begin; i < end; ++i) ++my_counts[((src_keys[i] >> shift) & (kRadixBins - 1)) * kThreads];
    __syncthreads();
    // Exclusive scan of the counters in digit-major order; thread t owns the
    // flat entries [t * kRadixBins, (t + 1) * kRadixBins).
    int* flat = sh.counts + Tid() * kRadixBins;
    int local = 0;
    for (int j = 0; j < kRadixBins; ++j) local += flat[j];
    int total = 0;
    int running = BlockExclusiveScan(local, &total, sh);
    for (int j = 0; j < kRadixBins; ++j) {
      const int c = flat[j];
      flat[j] = running;
      running += c;
    }
    __syncthreads();
    for (int i = begin; i < end; ++i) {
      const unsigned key = src_keys[i];
      const int pos = my_counts[((key >> shift) & (kRadixBins - 1)) * kThreads]++;
      dst_keys[pos] = key;
      dst_ids[pos] = src_ids[i];
    }
    __syncthreads();
  }
}

// Stable ascending sort of (keys, ids)[0, n) for n <= kSmallSort: each
// element's position is the number of elements before it (staged in shared
// memory). Three barriers instead of the radix sort's forty.
__device__ __forceinline__ void RankSort(unsigned* keys, int* ids, int n, SharedState& sh) {
  unsigned* staged_keys = reinterpret_cast<unsigned*>(sh.counts);
  int* staged_ids = sh.counts + kSmallSort;
  for (int i = Tid(); i < n; i += kThreads) {
    staged_keys[i] = keys[i];
    staged_ids[i] = ids[i];
  }
  __syncthreads();
  for (int i = Tid(); i < n; i += kThreads) {
    const unsigned key = staged_keys[i];
    int position = 0;
    for (int j = 0; j < n; ++j) {
      const unsigned other = staged_keys[j];
      position += (other < key || (other == key && j < i)) ? 1 : 0;
    }
    keys[position] = key;
    ids[position] = staged_ids[i];
  }
  __syncthreads();
}

enum AdjustPhase { kBanPhase, kRepetitionPhase, kPenaltyPhase, kBiasPhase };

// Applies the row's adjust entries of one phase to x, in entry order. Entries
// are taken kThreads at a time; within a batch the first entry of each token
// applies all of that token's entries in order, so repeated tokens round as
// on the CPU. The ban phase reports (and every phase skips) tokens outside
// the vocabulary.
__device__ __forceinline__ void ApplyAdjust(float* x, int vocab, const TokenAdjust* adjust, AdjustPhase phase,
                            const RowInfo& row, DeviceError* error, SharedState& sh) {
  for (int base = row.adjust_begin; base < row.adjust_end; base += kThreads) {
    const int batch = row.adjust_end - base < kThreads ? row.adjust_end - base : kThreads;
    int token = -1;
    if (Tid() < batch) {
      const TokenAdjust a = adjust[base + Tid()];
      const bool in_vocab = a.token >= 0 && a.token < vocab;
      if (!in_vocab && phase == kBanPhase) {
        ReportDeviceError(error, DeviceErrorCode::kSampleToken, base + Tid(), a.token, vocab);
      }
      bool applies = false;
      switch (phase) {
        case kBanPhase:
          applies = a.kind == TokenAdjust::kBan;
          break;
        case kRepetitionPhase:
          applies = a.kind == TokenAdjust::kSeen;
          break;
        case kPenaltyPhase:
          applies = a.kind == TokenAdjust::kSeen && a.count != 0;
          break;
        case kBiasPhase:
          applies = a.kind == TokenAdjust::kBias;
          break;
      }
      if (in_vocab && applies) token = a.token;
    }
    sh.adjust_token[Tid()] = token;
    __syncthreads();
    if (token >= 0) {
      bool first = true;
      for (int j = 0; j < Tid() && first; ++j) first = sh.adjust_token[j] != token;
      if (first) {
        float v = x[token];
        for (int j = Tid(); j < batch; ++j) {
          if (sh.adjust_token[j] != token) continue;
          const TokenAdjust& a = adjust[base + j];
          switch (phase) {
            case kBanPhase:
              v = -INFINITY;
              break;
            case kRepetitionPhase:
              v = v > 0 ? v / row.repetition_penalty : v * row.repetition_penalty;
              break;
            case kPenaltyPhase:
              v -= row.presence_penalty + row.frequency_penalty * static_cast<float>(a.count);
              break;
            case kBiasPhase:
              v += a.bias;
              break;
          }
        }
        x[token] = v;
      }
    }
    __syncthreads();
  }
}

// Thread 0: reads and checks rows[r] into sh.row; on a bad field reports it
// and writes the row's defined output.
__device__ __forceinline__ void LoadRow(const SampleRow* rows, int64_t r, int64_t num_logits_rows,
                        int vocab, int64_t num_adjust, int max_top, int32_t* tokens,
                        float* logprobs, DeviceError* error, RowInfo& info) {
  const SampleRow s = rows[r];
  info.logits_row = s.logits_row;
  info.adjust_begin = s.adjust_begin;
  info.adjust_end = s.adjust_end;
  info.top_k = s.top_k;
  info.num_top = s.num_top_logprobs;
  info.temperature = s.temperature;
  info.top_p = s.top_p;
  info.min_p = s.min_p;
  info.repetition_penalty = s.repetition_penalty;
  info.presence_penalty = s.presence_penalty;
  info.frequency_penalty = s.frequency_penalty;
  info.uniform = s.uniform;
  info.accept_uniform = s.accept_uniform;
  info.draft_token = s.draft_token;
  info.logprobs = s.logprobs ? 1 : 0;
  info.bad = 1;
  if (s.logits_row < 0 || s.logits_row >= num_logits_rows) {
    ReportDeviceError(error, DeviceErrorCode::kRowIndex, r, s.logits_row, num_logits_rows);
  } else if (s.adjust_begin < 0 || s.adjust_begin > s.adjust_end || s.adjust_end > num_adjust) {
    const bool begin_bad = s.adjust_begin < 0 || s.adjust_begin > s.adjust_end;
    ReportDeviceError(error, DeviceErrorCode::kRowIndex, r,
                      begin_bad ? s.adjust_begin : s.adjust_end, num_adjust);
  } else if (s.num_top_logprobs < 0 || s.num_top_logprobs > max_top) {
    ReportDeviceError(error, DeviceErrorCode::kRowIndex, r, s.num_top_logprobs, max_top);
  } else if (s.draft_token < -1 || s.draft_token >= vocab) {
    ReportDeviceError(error, DeviceErrorCode::kDraftToken, r, s.draft_token, vocab);
  } else {
    info.bad = 0;
  }
  if (info.bad) {
    tokens[r] = -1;
    if (s.logprobs && logprobs != nullptr) logprobs[r] = __int_as_float(0x7fc00000);
  }
}

// x[0, vocab) = raw[0, vocab), 16 bytes a load where the row is aligned.
__device__ __forceinline__ void CopyRow(const float* raw, float* x, int vocab, bool aligned) {
  int done = 0;
  if (aligned) {
    const int n4 = vocab / 4;
    const float4* src = reinterpret_cast<const float4*>(raw);
    float4* dst = reinterpret_cast<float4*>(x);
    for (int i = Tid(); i < n4; i += kThreads) dst[i] = __ldg(src + i);
    done = n4 * 4;
  }
  for (int i = done + Tid(); i < vocab; i += kThreads) x[i] = __ldg(raw + i);
}

// log(sum(exp(x))) over the non-NaN entries, as the CPU computes it: the
// float max subtracted in float, the exponentials summed in double.
__device__ __forceinline__ double LogSumExp(const float* x, int vocab, SharedState& sh) {
  float m = -INFINITY;
  for (int i = Tid(); i < vocab; i += kThreads) {
    if (!isnan(x[i])) m = fmaxf(m, x[i]);
  }
  m = BlockMaxF32(m, sh);
  double z = 0.0;
  for (int i = Tid(); i < vocab; i += kThreads) {
    const float v = x[i];
    if (!isnan(v)) z += exp(static_cast<double>(v - m));
  }
  z = BlockSumF64(z, sh);
  return static_cast<double>(m) + log(z);
}

// The n most likely entries of x, most likely first, and their logprobs.
__device__ __forceinline__ void TopLogprobs(const float* x, int vocab, int n, double log_z, int32_t* top_tokens,
                            float* top_logprobs, SharedState& sh) {
  unsigned long long previous = ~0ull;
  for (int j = 0; j < n; ++j) {
    unsigned long long best = 0;
    for (int i = Tid(); i < vocab; i += kThreads) {
      const unsigned long long key = Rank(x[i], i);
      if (key < previous && key > best) best = key;
    }
    best = BlockMaxU64(best, sh);
    if (Tid() == 0) {
      const int id = RankId(best);
      top_tokens[j] = id;
      top_logprobs[j] = static_cast<float>(static_cast<double>(x[id]) - log_z);
    }
    previous = best;
  }
}

// ReplayDraw's answer when the m sorted candidates do not settle the draw:
// the caller sorts every candidate (m = n0) and replays again.
constexpr long long kNeedFullOrder = -1;

// Thread 0: the CPU's sums, draft verification and draw
// (kernels/cpu/sampling.cc) over the m sorted candidates that are not
// negligible. The n0 - m others add or subtract exact zeros to running sums
// that include probs[0] = 1, and can only be picked as the last candidate
// when no prefix sum exceeds the draw. `min_p_count` counts the tokens with
// a relative probability >= min_p (a prefix of the order). `draft_rank` is
// the draft's rank in the CPU's order (-1: no draft) and `draft_p` its
// relative probability, used when the draft is not among the m. Returns the
// rank of the token in the CPU's order (draft_rank when the draft is
// accepted), or kNeedFullOrder when a rejected draft was the most likely
// candidate and the draw runs past the m: without probs[0] the running sum
// may be small enough for the negligible ones to count.
__device__ __forceinline__ long long ReplayDraw(const double* probs, long long m, long long n0,
                                                long long min_p_count, long long draft_rank,
                                                double draft_p, const RowInfo& row) {
  double sum = 0.0;
  for (long long i = 0; i < m; ++i) sum += probs[i];
  long long n = n0;
  if (row.min_p > 0.0f) {
    const long long keep = min_p_count < 1 ? 1 : (min_p_count < n ? min_p_count : n);
    for (long long i = keep; i < m; ++i) sum -= probs[i];
    n = keep;
  }
  const long long limit_after_min_p = n < m ? n : m;
  if (row.top_p < 1.0f) {
    double cum = 0.0;
    long long keep = 0;
    bool reached = false;
    while (keep < limit_after_min_p) {
      cum += probs[keep++];
      if (cum >= row.top_p * sum) {
        reached = true;
        break;
      }
    }
    n = reached ? keep : n;
    sum = cum;
  }
  const long long limit = n < m ? n : m;
  // A draft outside the n kept candidates is rejected with no mass removed.
  const long long skip = draft_rank >= 0 && draft_rank < n ? draft_rank : -1;
  double draft_mass = 0.0;
  if (skip >= 0) {
    draft_mass = skip < m ? probs[skip] : draft_p;
    if (row.accept_uniform * sum < draft_mass) return skip;
  }
  const double u = row.uniform * (sum - draft_mass);
  double cum = 0.0;
  for (long long i = 0; i < limit; ++i) {
    if (i == skip) continue;
    cum += probs[i];
    if (u < cum) return i;
  }
  if (skip == 0 && m < n) return kNeedFullOrder;
  // The CPU's fallback: the last candidate that is not the draft (the draft
  // itself when it was the only one).
  long long last = n - 1;
  if (last == skip) --last;
  return last < 0 ? 0 : last;
}

// Temperature, top-k, min-p and top-p, draft verification and the draw;
// returns the token. `top` is the Rank of the most likely entry, whose value
// max_logit is finite.
__device__ __forceinline__ int Draw(const float* x, int vocab, unsigned long long top, float max_logit,
                    const RowInfo& row, unsigned* keys, int* ids, unsigned* keys_tmp,
                    int* ids_tmp, double* probs, SharedState& sh) {
  const float inv_t = 1.0f / row.temperature;
  const long long n0 = row.top_k > 0 && row.top_k < vocab ? row.top_k : vocab;
  const double min_p = row.min_p;
  int count = 0, min_p_count = 0;
  for (int i = Tid(); i < vocab; i += kThreads) {
    const float v = x[i];
    if (isnan(v)) continue;
    const double p = exp(static_cast<double>((v - max_logit) * inv_t));
    count += p >= kNegligible ? 1 : 0;
    min_p_count += p >= min_p ? 1 : 0;
  }
  count = BlockSumInt(count, sh);
  min_p_count = BlockSumInt(min_p_count, sh);
  // The draft's rank in the CPU's order: the entries more likely than it.
  long long draft_rank = -1;
  double draft_p = 0.0;
  if (row.draft_token >= 0) {
    const float draft_v = x[row.draft_token];
    const unsigned long long draft_key = Rank(draft_v, row.draft_token);
    int above = 0;
    for (int i = Tid(); i < vocab; i += kThreads) above += Rank(x[i], i) > draft_key ? 1 : 0;
    draft_rank = BlockSumInt(above, sh);
    draft_p =
        isnan(draft_v) ? 0.0 : exp(static_cast<double>((draft_v - max_logit) * inv_t));
  }
  // Pass 0 sorts the first m candidates of the CPU's order: those with a
  // relative probability >= kNegligible when they are what cuts the list,
  // otherwise those up to the (m-1)-th most likely (a radix select: top_k
  // cuts it). Pass 1, only when ReplayDraw asks, sorts all n0.
  for (int pass = 0; pass < 2; ++pass) {
    long long m = pass == 0 ? (count < n0 ? count : n0) : n0;
    m = m < 1 ? 1 : m;
    const bool by_probability = pass == 0 && count >= 1 && m == count;
    unsigned long long boundary = top;
    if (!by_probability && m > 1) boundary = SelectRank(x, vocab, m - 1, sh);
    auto is_candidate = [&](float v, int i) {
      if (by_probability) {
        return !isnan(v) && exp(static_cast<double>((v - max_logit) * inv_t)) >= kNegligible;
      }
      return Rank(v, i) >= boundary;
    };

    // Compacted in id order, so a stable sort by key yields the CPU's order.
    const int chunk = (vocab + kThreads - 1) / kThreads;
    const int begin = Tid() * chunk < vocab ? Tid() * chunk : vocab;
    const int end = begin + chunk < vocab ? begin + chunk : vocab;
    int mine = 0;
    for (int i = begin; i < end; ++i) mine += is_candidate(x[i], i) ? 1 : 0;
    int total = 0;
    int pos = BlockExclusiveScan(mine, &total, sh);
    for (int i = begin; i < end; ++i) {
      const float v = x[i];
      if (is_candidate(v, i)) {
        keys[pos] = ~OrderKey(v);  // ascending sort = most likely first
        ids[pos] = i;
        ++pos;
      }
    }
    __syncthreads();
    if (total <= kSmallSort) {
      RankSort(keys, ids, total, sh);
    } else {
      RadixSort(keys, ids, keys_tmp, ids_tmp, total, sh);
    }
    for (int i = Tid(); i < total; i += kThreads) {
      const float v = x[ids[i]];  // NaN only among all n0 (pass 1): 0, as on the CPU
      probs[i] = isnan(v) ? 0.0 : exp(static_cast<double>((v - max_logit) * inv_t));
    }
    __syncthreads();
    if (Tid() == 0) {
      sh.pick = ReplayDraw(probs, total, n0, min_p_count, draft_rank, draft_p, row);
    }
    __syncthreads();
    const long long pick = sh.pick;
    if (pick == kNeedFullOrder) continue;  // pass 0 only: pass 1 has m >= n
    if (pick == draft_rank) return row.draft_token;
    if (pick < total) return ids[pick];
    return RankId(SelectRank(x, vocab, pick, sh));
  }
  return RankId(top);  // not reached
}

// Workspace of one row: x [vocab_padded] f32, keys/ids [vocab_padded] each,
// and the sort's scratch keys/ids, reused as [vocab_padded] f64 probabilities.
__host__ __device__ __forceinline__ int64_t PaddedVocab(int64_t vocab) {
  return (vocab + 3) / 4 * 4;
}
__host__ __device__ __forceinline__ size_t RowBytes(int64_t vocab) {
  return static_cast<size_t>(PaddedVocab(vocab)) * 20;
}

// 2 blocks per SM: the register budget (128) at which ptxas does not spill.
__global__ void __launch_bounds__(kThreads, 2)
    SampleKernel(const float* logits, int64_t logits_stride, int64_t num_logits_rows, int vocab,
                 const SampleRow* rows, int64_t num_rows, const TokenAdjust* adjust,
                 int64_t num_adjust, int32_t* tokens, float* logprobs, int32_t* top_tokens,
                 float* top_logprobs, int max_top, unsigned char* workspace, DeviceError* error) {
  __shared__ SharedState sh;
  const int64_t padded = PaddedVocab(vocab);
  float* x = reinterpret_cast<float*>(workspace + blockIdx.x * RowBytes(vocab));
  unsigned* keys = reinterpret_cast<unsigned*>(x + padded);
  int* ids = reinterpret_cast<int*>(keys + padded);
  unsigned* keys_tmp = reinterpret_cast<unsigned*>(ids + padded);
  int* ids_tmp = reinterpret_cast<int*>(keys_tmp + padded);
  double* probs = reinterpret_cast<double*>(keys_tmp);
  const bool aligned = logits_stride % 4 == 0 && reinterpret_cast<uintptr_t>(logits) % 16 == 0;

  for (int64_t r = blockIdx.x; r < num_rows; r += gridDim.x) {
    if (Tid() == 0) {
      LoadRow(rows, r, num_logits_rows, vocab, num_adjust, max_top, tokens, logprobs, error,
              sh.row);
    }
    __syncthreads();
    const RowInfo& row = sh.row;
    if (row.bad) {
      __syncthreads();  // sh.row is rewritten for the next row
      continue;
    }
    const float* raw = logits + row.logits_row * logits_stride;
    CopyRow(raw, x, vocab, aligned);
    __syncthreads();
    ApplyAdjust(x, vocab, adjust, kBanPhase, row, error, sh);

    // Logprobs see the bans only: computed before the other adjustments.
    const bool want_logprobs = row.logprobs && logprobs != nullptr;
    double log_z = 0.0;
    if (want_logprobs) {
      log_z = LogSumExp(x, vocab, sh);
      const int n = row.num_top < vocab ? row.num_top : vocab;
      if (n > 0 && top_tokens != nullptr && top_logprobs != nullptr) {
        TopLogprobs(x, vocab, n, log_z, top_tokens + r * max_top, top_logprobs + r * max_top, sh);
      }
    }
    if (row.repetition_penalty != 1.0f) {
      ApplyAdjust(x, vocab, adjust, kRepetitionPhase, row, error, sh);
    }
    if (row.presence_penalty != 0.0f || row.frequency_penalty != 0.0f) {
      ApplyAdjust(x, vocab, adjust, kPenaltyPhase, row, error, sh);
    }
    ApplyAdjust(x, vocab, adjust, kBiasPhase, row, error, sh);

    unsigned long long top = 0;
    for (int i = Tid(); i < vocab; i += kThreads) {
      const unsigned long long key = Rank(x[i], i);
      top = key > top ? key : top;
    }
    top = BlockMaxU64(top, sh);
    int token = RankId(top);  // greedy: the CPU's ArgMax
    const float max_logit = x[token];
    const bool greedy = row.temperature == 0.0f || row.top_k == 1;
    if (!greedy && !isnan(max_logit) && !isinf(max_logit)) {
      token = Draw(x, vocab, top, max_logit, row, keys, ids, keys_tmp, ids_tmp, probs, sh);
    }

    if (want_logprobs) {
      // The chosen token's logprob uses its ban-masked raw logit.
      if (Tid() == 0) sh.flag = 0;
      __syncthreads();
      for (int i = row.adjust_begin + Tid(); i < row.adjust_end; i += kThreads) {
        if (adjust[i].kind == TokenAdjust::kBan && adjust[i].token == token) {
          atomicMax(&sh.flag, 1);
        }
      }
      __syncthreads();
      if (Tid() == 0) {
        const float masked = sh.flag ? -INFINITY : raw[token];
        logprobs[r] = static_cast<float>(static_cast<double>(masked) - log_z);
      }
    }
    if (Tid() == 0) tokens[r] = token;
    __syncthreads();  // sh.row is rewritten for the next row
  }
}

}  // namespace

size_t SampleWorkspaceBytes(int64_t vocab, int64_t rows_in_flight) {
  if (vocab <= 0 || rows_in_flight <= 0) return 0;
  return RowBytes(vocab) * static_cast<size_t>(rows_in_flight);
}

cudaError_t Sample(const kernels::SampleParams& p, void* workspace, size_t workspace_bytes,
                   DeviceError* error, cudaStream_t stream) {
  if (p.num_rows < 0 || p.vocab < 1 || p.vocab > 0x7fffffff || p.logits_stride < p.vocab ||
      p.num_logits_rows < 0 || p.num_adjust < 0 || p.max_top_logprobs < 0) {
    return cudaErrorInvalidValue;
  }
  if (p.num_rows == 0) return cudaSuccess;
  if (p.logits == nullptr || p.rows == nullptr || p.tokens == nullptr ||
      (p.num_adjust > 0 && p.adjust == nullptr)) {
    return cudaErrorInvalidValue;
  }
  const size_t row_bytes = RowBytes(p.vocab);
  if (workspace == nullptr || workspace_bytes < row_bytes ||
      reinterpret_cast<uintptr_t>(workspace) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  int64_t blocks = static_cast<int64_t>(workspace_bytes / row_bytes);
  blocks = blocks < p.num_rows ? blocks : p.num_rows;
  blocks = blocks < 65535 ? blocks : 65535;
  return launch_kernel(SampleKernel, dim3(static_cast<unsigned>(blocks)), dim3(kThreads), 0,
                       stream, p.logits, p.logits_stride, p.num_logits_rows,
                       static_cast<int>(p.vocab), p.rows, p.num_rows, p.adjust, p.num_adjust,
                       p.tokens, p.logprobs, p.top_tokens, p.top_logprobs, p.max_top_logprobs,
                       static_cast<unsigned char*>(workspace), error);
}

}  // namespace kestrel::cuda

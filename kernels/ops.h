// The op interface the model runner calls: one abstract class per backend
// (CPU now, CUDA next) plus the backend-neutral parameter structs. Pointers
// are raw (host pointers on CPU, device pointers on CUDA); shapes are given
// explicitly, strides in elements. Backends validate arguments cheaply and
// return an error status; they never crash on a bad id or slot.
//
// Layout of the paged KV cache: docs/kv_cache.md. Kernel notes: docs/kernels.md.
#ifndef KESTREL_KERNELS_OPS_H_
#define KESTREL_KERNELS_OPS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace kestrel::kernels {

// y = x · Wᵀ (+ bias) (+ y if accumulate): a Hugging Face Linear layer.
// Every output element is computed the same way whatever M, the thread count
// or the row tiling is, so a sequence's logits do not depend on what else is
// in the batch (batch invariance).
struct GemmParams {
  const float* x = nullptr;  // [M, K], row stride ldx
  int64_t ldx = 0;           // >= K
  const void* w = nullptr;   // [N, K] in w_dtype, row stride ldw (HF Linear.weight)
  // kF32, kF16, kBF16, or kI8: symmetric int8 with one scale per output
  // channel (w_scales; any int8 value, -128 included); x is then quantized per row to int8 inside the call
  // and the dot products are exact int32 (W8A8, docs/kernels.md#int8-weights).
  DType w_dtype = DType::kF32;
  const float* w_scales = nullptr;  // [N], kI8 only (required): W[n, :] ~= w_scales[n] * w[n, :]
  int64_t ldw = 0;              // >= K
  const float* bias = nullptr;  // [N] or nullptr
  float* y = nullptr;           // [M, N], row stride ldy; must not overlap x or w
  int64_t ldy = 0;              // >= N
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
  // If true y += x·Wᵀ (+bias), e.g. to fuse the residual add into o_proj and
  // down_proj; otherwise y is overwritten.
  bool accumulate = false;
  // BF16 weights only: round x to bf16 and use bf16 dot products with f32
  // accumulation (AVX512_BF16 vdpbf16ps; AVX2 and scalar emulate it with the
  // same rounding, at the exact path's speed). About 2x faster for
  // compute-bound (prefill) shapes with AVX512_BF16, at a relative error of
  // ~2^-9 per activation. Default false: widen bf16 -> f32 and use F32 FMA,
  // exact up to f32 summation order. Ignored for F32/F16 weights and on
  // AVX-512 CPUs without AVX512_BF16 (docs/kernels.md).
  bool bf16_dot = false;
};

// Attention over a paged KV cache for a batch of sequences, each with
// `n_new` new query tokens (a prefill chunk, or 1 for a decode). The keys and
// values of the new tokens must already be in the cache (WriteKvCache first).
// New token i (0-based) of sequence s sits at position
//   pos = context_lens[s] - n_new(s) + i
// and attends causally to cache positions [max(0, pos - sliding_window + 1), pos].
// GQA/MQA: query head h reads kv head h / (num_heads / num_kv_heads).
// Softmax is computed online in F32 (numerically stable); masked or unused
// cache slots are never read, so they may hold anything (even NaN).
struct PagedAttentionParams {
  const float* q = nullptr;  // [num_tokens, num_heads, head_dim], token stride q_stride
  int64_t q_stride = 0;      // >= num_heads * head_dim
  float* out = nullptr;      // [num_tokens, num_heads, head_dim], token stride out_stride
  int64_t out_stride = 0;    // >= num_heads * head_dim
  // The layer's cache (docs/kv_cache.md): K [num_blocks, num_kv_heads,
  // head_dim, block_size] (keys transposed), V [num_blocks, num_kv_heads,
  // block_size, head_dim], elements of kv_dtype.
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  DType kv_dtype = DType::kF32;  // kF32 or kBF16; the math is F32 either way
  int64_t num_blocks = 0;
  int64_t block_size = 16;
  int64_t num_seqs = 0;
  const int32_t* query_start = nullptr;   // [num_seqs + 1], cumulative; query_start[0] = 0
  const int32_t* context_lens = nullptr;  // [num_seqs], cached + new tokens per sequence
  // [num_seqs, block_table_stride]: physical block of each logical block.
  const int32_t* block_tables = nullptr;
  int64_t block_table_stride = 0;  // >= ceil(max context_len / block_size)
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // divides num_heads
  int64_t head_dim = 0;      // 1..512 (64, 80, 128 tested)
  float scale = 0.0f;        // 0 means 1/sqrt(head_dim)
  int64_t sliding_window = 0;  // 0 means unlimited (Mistral: config sliding_window)
  // BF16 cache only: score with q rounded to bf16 (the scale folded in) and
  // weight V with the softmax probabilities rounded to bf16, using bf16 dot
  // products with F32 accumulation (as GemmParams::bf16_dot for weights):
  // about twice the decode speed where attention is compute-bound, at
  // ~2^-9 relative rounding of q and p. The CPU uses it for GQA groups of 8
  // or more query heads per kv head; elsewhere (and on backends without it)
  // the math is exact.
  bool bf16_dot = false;
  // Upper bounds the host knows without reading device memory: the largest
  // n_new and context_lens entry. A GPU backend sizes its grids from them
  // (and must have them); the CPU ignores them. 0 means unknown.
  int64_t max_query_len = 0;
  int64_t max_context_len = 0;
};

// One token to draw from a row of logits, with OpenAI/vLLM sampling
// semantics (model/sampler.h documents each field's meaning and range; the
// host validates them). The draw itself is `uniform`, taken from the
// request's own random generator on the host, so a seeded request draws the
// same tokens whatever else is in the batch and on whichever backend.
//
// Speculative decoding (docs/kernels.md "Verifying draft tokens"): a row
// with draft_token >= 0 verifies a proposed token. Greedy rows draw the
// argmax as always (the draft is accepted iff it equals it). Sampled rows
// accept the draft when accept_uniform < p(draft), p being the row's final
// distribution (after bans, penalties, bias, temperature, top-k/top-p/min-p);
// otherwise they draw from p with the draft removed and renormalized. That
// is the standard rejection rule for a deterministic proposal, so the token
// has exactly the distribution p. Either way the row's token equals the
// draft iff the draft was accepted.
struct SampleRow {
  int32_t logits_row = 0;  // row of SampleParams::logits
  float temperature = 1.0f;  // 0: greedy (argmax after bans, penalties and bias)
  int32_t top_k = 0;         // <= 0 disables; 1 is greedy
  float top_p = 1.0f;        // 1 disables
  float min_p = 0.0f;        // 0 disables
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  double uniform = 0.0;  // in [0, 1); unused when greedy
  int32_t draft_token = -1;     // token to verify; -1: a plain draw
  double accept_uniform = 0.0;  // in [0, 1); sampled rows with a draft only
  bool logprobs = false;  // report the chosen token's logprob
  int32_t num_top_logprobs = 0;  // and this many most likely alternatives
  // This row's entries of SampleParams::adjust: [adjust_begin, adjust_end).
  int32_t adjust_begin = 0;
  int32_t adjust_end = 0;
};

// A per-token change to one row's logits, applied in this order over the
// row's entries: every kBan first (the logit becomes -inf before anything
// else, logprobs included: min_tokens), then the repetition penalty on every
// kSeen token (in the prompt or generated), then presence/frequency
// penalties on kSeen tokens with count > 0, then each kBias in order.
struct TokenAdjust {
  enum Kind : uint8_t { kBan = 0, kSeen = 1, kBias = 2 };
  int32_t token = 0;
  Kind kind = kBan;
  int32_t count = 0;   // kSeen: times generated so far (0: only in the prompt)
  float bias = 0.0f;   // kBias
};

// Sampling for a batch. Every pointer is device memory.
struct SampleParams {
  const float* logits = nullptr;  // [num_logits_rows, vocab], row stride logits_stride
  int64_t logits_stride = 0;
  int64_t num_logits_rows = 0;
  int64_t vocab = 0;
  const SampleRow* rows = nullptr;  // [num_rows]
  int64_t num_rows = 0;
  const TokenAdjust* adjust = nullptr;  // [num_adjust]
  int64_t num_adjust = 0;
  int32_t* tokens = nullptr;     // [num_rows] the drawn tokens
  // [num_rows]: log-softmax of the (ban-masked) raw logits at the drawn
  // token, for rows with logprobs; other entries are left alone.
  float* logprobs = nullptr;
  // [num_rows, max_top_logprobs]: the num_top_logprobs most likely tokens of
  // each row and their logprobs, most likely first (ties: lower id first).
  int32_t* top_tokens = nullptr;
  float* top_logprobs = nullptr;
  int32_t max_top_logprobs = 0;  // >= every row's num_top_logprobs
};

// The ops the model runner needs, implemented once per backend.
// Thread-compatible: one Ops per runner thread (or external synchronization).
class Ops {
 public:
  virtual ~Ops() = default;

  // See GemmParams.
  virtual absl::Status Gemm(const GemmParams& p) = 0;

  // out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * weight, for r in [0, rows).
  // x, out: [rows, dim] with row strides; out may equal x (in place).
  // weight: [dim] F32.
  virtual absl::Status RmsNorm(const float* x, int64_t x_stride, float* out, int64_t out_stride,
                               const float* weight, int64_t rows, int64_t dim, float eps) = 0;

  // RMSNorm of every head separately (Qwen3 q_norm / k_norm), in place.
  // x: [num_tokens, num_heads, head_dim] with token stride x_stride (heads
  // contiguous). weight: [head_dim] F32.
  virtual absl::Status RmsNormPerHead(float* x, int64_t x_stride, int64_t num_tokens,
                                      int64_t num_heads, int64_t head_dim, const float* weight,
                                      float eps) = 0;

  // Rotate-half RoPE (HF Llama / GPT-NeoX style), in place on q and k.
  // q: [num_tokens, num_q_heads, head_dim] token stride q_stride.
  // k: [num_tokens, num_kv_heads, head_dim] token stride k_stride (k may be null
  //    when num_kv_heads == 0).
  // positions: [num_tokens], each in [0, max_positions).
  // cos_table, sin_table: [max_positions, head_dim / 2] from ComputeRopeTables.
  virtual absl::Status ApplyRope(float* q, int64_t q_stride, int64_t num_q_heads, float* k,
                                 int64_t k_stride, int64_t num_kv_heads,
                                 const int32_t* positions, int64_t num_tokens, int64_t head_dim,
                                 const float* cos_table, const float* sin_table,
                                 int64_t max_positions) = 0;

  // out[r, i] = silu(gate[r, i]) * up[r, i]; all [rows, dim] with row strides.
  // out may equal gate or up.
  virtual absl::Status SiluAndMul(const float* gate, int64_t gate_stride, const float* up,
                                  int64_t up_stride, float* out, int64_t out_stride,
                                  int64_t rows, int64_t dim) = 0;

  // out[t, :] = float(table[ids[t], :]).
  // table: [vocab_size, dim] in table_dtype, contiguous. ids: [num_tokens].
  // out: [num_tokens, dim] with row stride out_stride.
  // An id outside [0, vocab_size) is an InvalidArgument error naming it.
  virtual absl::Status EmbeddingGather(const void* table, DType table_dtype, int64_t vocab_size,
                                       int64_t dim, const int32_t* ids, int64_t num_tokens,
                                       float* out, int64_t out_stride) = 0;

  // Writes the new tokens' keys and values into the paged cache.
  // k: [num_tokens, num_kv_heads, head_dim] token stride k_stride; v likewise.
  // slot_mapping: [num_tokens], slot = block * block_size + offset; -1 skips
  //   the token (padding). A slot >= num_blocks * block_size is an error.
  // k_cache: [num_blocks, num_kv_heads, head_dim, block_size] (keys
  // transposed per block and head); v_cache: [num_blocks, num_kv_heads,
  // block_size, head_dim]; elements of cache_dtype, kF32 or kBF16 (rounded
  // to nearest even) (docs/kv_cache.md).
  virtual absl::Status WriteKvCache(const float* k, int64_t k_stride, const float* v,
                                    int64_t v_stride, const int32_t* slot_mapping,
                                    int64_t num_tokens, int64_t num_kv_heads, int64_t head_dim,
                                    void* k_cache, void* v_cache, int64_t num_blocks,
                                    int64_t block_size, DType cache_dtype) = 0;

  // See PagedAttentionParams.
  virtual absl::Status PagedAttention(const PagedAttentionParams& p) = 0;

  // dst[r, :] = src[rows[r], :] for r in [0, num_rows): gathers the hidden
  // states of the positions that get logits. src: [*, dim] row stride
  // src_stride; rows: [num_rows] (device memory); dst: [num_rows, dim] row
  // stride dst_stride, not overlapping src.
  virtual absl::Status GatherRows(const float* src, int64_t src_stride, const int32_t* rows,
                                  int64_t num_rows, int64_t dim, float* dst,
                                  int64_t dst_stride) = 0;

  // Copy-on-write of KV blocks: for each pair (src, dst) of `pairs`
  // ([num_pairs, 2], device memory), block dst becomes a copy of block src
  // in every one of `num_arrays` arrays that start `array_stride` bytes
  // apart from `base` (the KV pool: K and V of every layer), where a block is
  // `block_bytes` long. A block id outside [0, num_blocks) is an error.
  virtual absl::Status CopyBlocks(void* base, int64_t num_arrays, int64_t array_stride,
                                  int64_t block_bytes, int64_t num_blocks, const int32_t* pairs,
                                  int64_t num_pairs) = 0;

  // Draws one token per SampleRow from its logits row (see SampleParams).
  virtual absl::Status Sample(const SampleParams& p) = 0;
};

}  // namespace kestrel::kernels

#endif  // KESTREL_KERNELS_OPS_H_

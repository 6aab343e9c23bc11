// Runs one forward step of a Llama-family model (llama, mistral, qwen2,
// qwen3: one code path, switched by ModelConfig) for a batch of sequences
// over a paged KV cache, on the kernels' op interface (kernels/ops.h).
//
// A step is what the scheduler decided: for each sequence its new tokens (a
// prefill chunk or one decode token), where they start, and its block table.
// Per layer: RMSNorm, q/k/v GEMMs (+bias), q/k norm, RoPE, KV-cache write,
// paged attention over each sequence's blocks, o_proj (+residual), RMSNorm,
// gate/up GEMMs, SiLU-mul, down_proj (+residual); then final norm and
// lm_head only for the rows that need logits.
//
//   ASSIGN_OR_RETURN(auto runner, ModelRunner::Create({.model_dir = dir}));
//   std::vector<int32_t> blocks = {0};                  // from the block manager
//   SequenceInput seq{.token_ids = prompt, .position = 0, .block_table = blocks,
//                     .logits = LogitsMode::kLast};
//   StepOutput out;
//   RETURN_IF_ERROR(runner->Step({&seq, 1}, &out));    // out.logits: [1, vocab]
//
// Every row of every op is computed the same way whatever else is in the
// batch (the kernels guarantee it per row), so a sequence's logits do not
// depend on its batch mates or on how its prompt was chunked beyond float
// summation order inside attention (which is per sequence).
#ifndef KESTREL_MODEL_MODEL_RUNNER_H_
#define KESTREL_MODEL_MODEL_RUNNER_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/ops.h"
#include "model/config.h"
#include "model/kv_pool.h"
#include "model/safetensors.h"
#include "model/weights.h"

namespace kestrel::model {

// Which of a sequence's new positions get logits.
enum class LogitsMode {
  kNone,  // mid-prompt prefill chunk: nothing to sample
  kLast,  // the last new token (the one the sampler continues from)
  kAll,   // every new token (prompt logprobs, --logits-out, golden tests)
};

// One sequence's part of a step. Spans are not owned and must outlive Step.
struct SequenceInput {
  std::span<const int32_t> token_ids = {};  // [n_new], n_new >= 1
  // Position of token_ids[0]: how many of this sequence's tokens are already
  // in the KV cache.
  int32_t position = 0;
  // Physical KV blocks for logical blocks 0.. of this sequence; must cover
  // positions [0, position + n_new).
  std::span<const int32_t> block_table = {};
  LogitsMode logits = LogitsMode::kNone;
};

struct StepOutput {
  // [num_rows, vocab_size]: rows for the sequences that asked, in batch
  // order (kAll contributes n_new rows, kLast one).
  std::vector<float> logits;
  // [num_seqs]: index of each sequence's first logits row, -1 for kNone.
  std::vector<int32_t> first_row;
  int64_t vocab_size = 0;

  std::span<const float> row(int64_t r) const {
    return {logits.data() + r * vocab_size, static_cast<size_t>(vocab_size)};
  }
};

// Element type of the KV cache. kAuto follows the checkpoint (vLLM's
// "auto"): BF16 when the attention weights are BF16, else F32.
enum class KvCacheDType { kAuto, kF32, kBF16 };

// "auto", "f32" or "bf16" (case-insensitive); InvalidArgument naming the value.
absl::StatusOr<KvCacheDType> ParseKvCacheDType(std::string_view name);

// Not thread-safe: one thread (the engine's step loop) calls Step.
class ModelRunner {
 public:
  struct Options {
    // Directory with config.json and safetensors (ignored by the Create
    // overload that takes weights).
    std::filesystem::path model_dir = {};
    // Weight storage (default anonymous huge-page memory).
    SafetensorsCheckpoint::Storage storage = SafetensorsCheckpoint::Storage::kAnonymous;
    // Threads running GEMM and attention, including the caller; 0 = one per CPU.
    int num_threads = 0;
    // Bytes for the paged KV cache over all layers (default 256 MiB).
    uint64_t kv_cache_bytes = 256ull << 20;
    // Tokens per KV block.
    int64_t block_size = 16;
    // Longest sequence (positions) the RoPE tables cover; 0 = the config's
    // max_position_embeddings.
    int64_t max_context_len = 0;
    // BF16 weights: the GEMM rounds activations to bf16 and uses bf16 dot
    // products with F32 accumulation (as llama.cpp and vLLM's CPU backend do
    // for BF16 checkpoints, and GPUs do in bf16 matmuls): ~1.6x faster
    // prefill and large batches, ~2^-9 relative activation rounding. false =
    // widen the weights to F32 and multiply exactly (see GemmParams::bf16_dot).
    bool bf16_dot = true;
    // KV cache element type. BF16 halves the cache's bytes (twice the
    // tokens in the same budget, half the attention reads); keys and values
    // are rounded to bf16 when written, the attention math stays F32.
    KvCacheDType kv_cache_dtype = KvCacheDType::kAuto;
  };

  static absl::StatusOr<std::unique_ptr<ModelRunner>> Create(const Options& options);
  static absl::StatusOr<std::unique_ptr<ModelRunner>> Create(
      const Options& options, std::unique_ptr<ModelWeights> weights);
  ~ModelRunner();

  // Runs one step. On error (bad token id, block table too short, position
  // beyond max_context_len, ...) the status names the sequence and field;
  // the KV cache rows of that step may have been partly written.
  absl::Status Step(std::span<const SequenceInput> batch, StepOutput* out);

  // Copies the K and V of KV block `src` into block `dst` in every layer
  // (copy-on-write of a block shared by several samples, before a step that
  // writes into it). InvalidArgument for a block id outside the pool.
  absl::Status CopyKvBlock(int32_t src, int32_t dst);

  const ModelConfig& config() const { return weights_->config(); }
  const ModelWeights& weights() const { return *weights_; }
  int64_t num_kv_blocks() const { return kv_->num_blocks(); }
  int64_t block_size() const { return kv_->block_size(); }
  kernels::DType kv_cache_dtype() const { return kv_->dtype(); }
  int64_t max_context_len() const { return max_context_len_; }
  int num_threads() const { return pool_->num_threads(); }

 private:
  ModelRunner() = default;
  absl::Status Validate(std::span<const SequenceInput> batch) const;
  absl::Status Layer(int64_t layer, int64_t num_tokens, int64_t num_seqs);
  absl::Status Linear(const float* x, int64_t ldx, const Matrix& w, const Vec& bias, float* y,
                      int64_t ldy, int64_t m, bool accumulate);

  // Constant after Create.
  Options options_;
  std::unique_ptr<ModelWeights> weights_;
  std::unique_ptr<kernels::cpu::ThreadPool> pool_;
  std::unique_ptr<kernels::Ops> ops_;  // uses pool_
  std::unique_ptr<KvPool> kv_;
  int64_t max_context_len_ = 0;
  std::vector<float> rope_cos_;  // [max_context_len, head_dim / 2]
  std::vector<float> rope_sin_;  // [max_context_len, head_dim / 2]

  // Per-step scratch, grown on demand and reused.
  std::vector<int32_t> ids_;           // [T]
  std::vector<int32_t> positions_;     // [T]
  std::vector<int32_t> slots_;         // [T]
  std::vector<int32_t> query_start_;   // [S + 1]
  std::vector<int32_t> context_lens_;  // [S]
  std::vector<int32_t> block_tables_;  // [S, block_table_stride_]
  int64_t block_table_stride_ = 0;
  std::vector<float> x_;     // [T, hidden] residual stream
  std::vector<float> h_;     // [T, hidden] normed input
  std::vector<float> qkv_;   // [T, q_size + 2 * kv_size]
  std::vector<float> attn_;  // [T, q_size]
  std::vector<float> mlp_;   // [T, 2 * intermediate]: gate | up, then silu(gate)*up
  std::vector<int32_t> logit_rows_;  // token rows that get logits
  std::vector<float> final_;         // [R, hidden]
};

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_MODEL_RUNNER_H_

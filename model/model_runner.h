// Runs one forward step of a Llama-family model (llama, mistral, qwen2,
// qwen3: one code path, switched by ModelConfig) for a batch of sequences
// over a paged KV cache, on a backend (kernels/backend.h): every buffer it
// computes with lives in the backend's device memory.
//
// A step is what the scheduler decided: for each sequence its new tokens (a
// prefill chunk or one decode token), where they start, and its block table;
// the copy-on-write block copies to do first; and the tokens to sample.
// Plan once per step (host metadata, uploaded in one copy), then per layer:
// RMSNorm, q/k/v GEMMs (+bias), q/k norm, RoPE, KV-cache write, paged
// attention, o_proj (+residual), RMSNorm, gate/up GEMMs, SiLU-mul, down_proj
// (+residual); then final norm and lm_head only for the rows that need
// logits, and sampling on the device. Only the sampled tokens (and asked-for
// logprobs) come back to the host; full logits only when asked.
//
// With a communicator (Options::communicator) the runner is one
// tensor-parallel rank: it computes its heads, KV heads, MLP columns and
// lm_head rows (model/shard.h) and all-reduces after o_proj, down_proj and
// lm_head; rank 0 samples (docs/parallel.md).
//
//   ASSIGN_OR_RETURN(auto worker, Worker::Create({}, weights));  // model/worker.h
//   std::vector<int32_t> blocks = {0};                  // from the block manager
//   SequenceInput seq{.token_ids = prompt, .position = 0, .block_table = blocks,
//                     .logits = LogitsMode::kLast};
//   StepOutput out;
//   RETURN_IF_ERROR(worker->runner().Step({&seq, 1}, &out));  // out.logits: [1, vocab]
//
// Every row of every op is computed the same way whatever else is in the
// batch (the kernels guarantee it per row), so a sequence's logits do not
// depend on its batch mates or on how its prompt was chunked beyond float
// summation order inside attention (which is per sequence).
#ifndef KESTREL_MODEL_MODEL_RUNNER_H_
#define KESTREL_MODEL_MODEL_RUNNER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/ops.h"
#include "model/config.h"
#include "model/kv_pool.h"
#include "model/sampler.h"
#include "model/shard.h"
#include "model/weights.h"
#include "parallel/communicator.h"

namespace kestrel::model {

// Which of a sequence's new positions get logits.
enum class LogitsMode {
  kNone,  // mid-prompt prefill chunk: nothing to sample
  kLast,  // the last new token (the one the sampler continues from)
  kAll,   // every new token (prompt logits: --logits-out, golden tests)
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

// One step. Spans are not owned and must outlive Step.
struct StepInput {
  std::span<const SequenceInput> sequences = {};
  // (src, dst) copy-on-write block copies, done before the forward pass.
  std::span<const std::pair<int32_t, int32_t>> block_copies = {};
  // Tokens to draw: each row's logits_row indexes this step's logits rows
  // (batch order; kLast gives a sequence one row, kAll n_new). Its
  // adjust range indexes `adjust`.
  std::span<const kernels::SampleRow> samples = {};
  std::span<const kernels::TokenAdjust> adjust = {};
  // Copy every logits row back to the host (StepOutput::logits).
  bool return_logits = false;
};

struct StepOutput {
  // One per StepInput::samples entry, in order (logprobs when the row asked).
  std::vector<SampledToken> sampled;
  // [num_rows, vocab_size] when StepInput::return_logits, else empty: rows
  // for the sequences that asked, in batch order.
  std::vector<float> logits;
  // [num_seqs]: index of each sequence's first logits row, -1 for kNone.
  std::vector<int32_t> first_row;
  int64_t vocab_size = 0;

  std::span<const float> row(int64_t r) const {
    return {logits.data() + r * vocab_size, static_cast<size_t>(vocab_size)};
  }
};

// Element type of the KV cache. kAuto follows the checkpoint (vLLM's
// "auto"): BF16 when its weights are BF16 (int8 quantization aside, which
// the embedding table never gets), else F32.
enum class KvCacheDType { kAuto, kF32, kBF16 };

// "auto", "f32" or "bf16" (case-insensitive); InvalidArgument naming the value.
absl::StatusOr<KvCacheDType> ParseKvCacheDType(std::string_view name);

// Not thread-safe: one thread (its worker's) calls Step.
class ModelRunner {
 public:
  struct Options {
    // Bytes for this runner's paged KV cache over all layers (default 256
    // MiB); with tensor parallelism, this rank's pool of its KV heads.
    uint64_t kv_cache_bytes = 256ull << 20;
    // When in (0, 1] (a GPU's --gpu-memory-utilization), the KV cache gets
    // what is left of this share of the device's memory once the weights
    // are loaded, instead of kv_cache_bytes; the rest stays free for
    // activations and the CUDA libraries' workspaces.
    double memory_utilization = 0;
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
    // Tensor parallelism (docs/parallel.md): this runner computes rank
    // communicator->rank()'s shard of the model (its heads, KV heads, MLP
    // columns and lm_head rows, as zero-copy views on host memory) and
    // combines shards with the communicator, whose ranks must run the same
    // steps. Only rank 0 samples and returns logits. Null: the whole model.
    // Not owned; must outlive the runner (see set_communicator).
    parallel::Communicator* communicator = nullptr;
  };

  // `backend` (not owned) must outlive the runner. Weights are used in place
  // where the backend's memory is host memory, else uploaded once.
  static absl::StatusOr<std::unique_ptr<ModelRunner>> Create(
      const Options& options, std::shared_ptr<const ModelWeights> weights,
      kernels::Backend* backend);
  ~ModelRunner();

  // Runs one step. On error (bad token id, block table too short, position
  // beyond max_context_len, a bad block copy, ...) the status names the
  // sequence and field; the KV cache rows of that step may have been partly
  // written.
  absl::Status Step(const StepInput& in, StepOutput* out);
  // The logits of `batch` (return_logits, nothing sampled): for tests and
  // golden checks.
  absl::Status Step(std::span<const SequenceInput> batch, StepOutput* out);

  const ModelConfig& config() const { return weights_->config(); }
  const ModelWeights& weights() const { return *weights_; }
  int64_t num_kv_blocks() const { return kv_->num_blocks(); }
  int64_t block_size() const { return kv_->block_size(); }
  kernels::DType kv_cache_dtype() const { return kv_->dtype(); }
  int64_t max_context_len() const { return max_context_len_; }
  const Shard& shard() const { return shard_; }
  // Bytes of weights this runner copied into device memory: 0 on the CPU
  // backend, whose shards are views of the checkpoint.
  uint64_t uploaded_weight_bytes() const {
    uint64_t total = 0;
    for (const kernels::DeviceBuffer& b : uploaded_) total += b.size();
    return total;
  }
  // Replaces the communicator (a new group after the old one was aborted).
  // REQUIRES: same rank and size as the one given at Create; not during Step.
  void set_communicator(parallel::Communicator* communicator) {
    options_.communicator = communicator;
  }

 private:
  // A layer's weights as the kernels read them: matrices (in place or
  // uploaded) and F32 vectors in device memory (null when absent).
  struct LayerView {
    Matrix q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;
    const float* input_norm = nullptr;
    const float* post_attention_norm = nullptr;
    const float* q_bias = nullptr;
    const float* k_bias = nullptr;
    const float* v_bias = nullptr;
    const float* o_bias = nullptr;
    const float* q_norm = nullptr;
    const float* k_norm = nullptr;
  };
  // Offsets (in int32 elements) of each section of the step's metadata.
  struct MetaLayout {
    int64_t ids = 0, positions = 0, slots = 0, query_start = 0, context_lens = 0,
            block_tables = 0, logit_rows = 0, copies = 0, total = 0;
  };

  ModelRunner() = default;
  absl::Status UploadWeights();
  // The KV budget for Options::memory_utilization (see there).
  absl::StatusOr<uint64_t> KvBudgetFromUtilization(double utilization) const;
  absl::StatusOr<Matrix> DeviceMatrix(const Matrix& m);
  // v[begin, end) in device memory (all of v when end < 0); null when v is empty.
  absl::StatusOr<const float*> DeviceVector(const Vec& v, int64_t begin = 0, int64_t end = -1);
  absl::Status Validate(const StepInput& in) const;
  // Flattens the batch into meta_host_; returns the token and logits row counts.
  std::pair<int64_t, int64_t> Plan(const StepInput& in, StepOutput* out);
  // Grows `buffer` to at least `bytes` (contents are not kept).
  absl::Status Reserve(kernels::DeviceBuffer& buffer, size_t bytes, const char* what);
  absl::Status Layer(int64_t layer, int64_t num_tokens, int64_t num_seqs);
  absl::Status Linear(const float* x, int64_t ldx, const Matrix& w, const float* bias, float* y,
                      int64_t ldy, int64_t m, bool accumulate);
  // x_ += in · wᵀ (+ bias), summed over the ranks: a row-parallel layer
  // (o_proj, down_proj) with its residual add.
  absl::Status RowParallelLinear(const float* in, int64_t ld_in, const Matrix& w,
                                 const float* bias, int64_t num_tokens);
  absl::Status SampleRows(const StepInput& in, int64_t num_rows, StepOutput* out);
  const int32_t* meta(int64_t offset) const { return meta_.as<int32_t>() + offset; }

  // Constant after Create.
  Options options_;
  std::shared_ptr<const ModelWeights> weights_;
  kernels::Backend* backend_ = nullptr;  // not owned
  kernels::Device* device_ = nullptr;    // backend_->device()
  kernels::Ops* ops_ = nullptr;          // backend_->ops()
  Shard shard_;                          // the whole model when no communicator
  // This rank's widths: q_size, kv_size and intermediate_size of its shard.
  int64_t q_size_ = 0, kv_size_ = 0, intermediate_ = 0;
  std::vector<kernels::DeviceBuffer> uploaded_;  // weights copied to the device
  std::vector<LayerView> layers_;
  Matrix embed_tokens_, lm_head_;
  const float* final_norm_ = nullptr;
  std::unique_ptr<KvPool> kv_;
  int64_t max_context_len_ = 0;
  kernels::DeviceBuffer rope_;  // cos then sin, each [max_context_len, head_dim / 2]

  // Per-step state, grown on demand and reused.
  MetaLayout layout_;
  int64_t block_table_stride_ = 0;
  // The step's largest query count and context length (attention grids).
  int64_t step_max_query_len_ = 0;
  int64_t step_max_context_len_ = 0;
  std::vector<int32_t> meta_host_;
  kernels::DeviceBuffer meta_;  // the step's int32 metadata, laid out as layout_
  kernels::DeviceBuffer x_;     // [T, hidden] residual stream
  kernels::DeviceBuffer h_;     // [T, hidden] normed input
  kernels::DeviceBuffer qkv_;   // [T, q_size + 2 * kv_size]
  kernels::DeviceBuffer attn_;  // [T, q_size]
  kernels::DeviceBuffer mlp_;   // [T, 2 * intermediate]: gate | up, then silu(gate)*up
  kernels::DeviceBuffer final_;   // [R, hidden]
  kernels::DeviceBuffer logits_;  // [R, vocab]
  // Sampling: rows and adjustments in, tokens and logprobs out.
  kernels::DeviceBuffer sample_rows_, sample_adjust_, sample_out_;
  std::vector<int32_t> sample_out_host_;  // sample_out_'s layout, on the host
};

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_MODEL_RUNNER_H_

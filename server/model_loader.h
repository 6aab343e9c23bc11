// Loads what the server serves: a Hugging Face model directory, or a
// built-in model (model/builtin_models.h), so a fresh checkout serves
// requests with no files: "demo", the real stories260K embedded in the
// binary, or "random", a small deterministic random-weight Llama.
#ifndef KESTREL_SERVER_MODEL_LOADER_H_
#define KESTREL_SERVER_MODEL_LOADER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_executor.h"
#include "kestrel/v1/info.pb.h"
#include "model/generation_config.h"
#include "model/model_runner.h"
#include "model/tokenizer/tokenizer.h"
#include "server/chat_prompt.h"

namespace kestrel::server {

struct ModelLoadOptions {
  // "demo" or "random" for a built-in model, else a directory with
  // config.json, safetensors weights and tokenizer.json.
  std::string model = "demo";
  // Name reported by GetModelInfo and in metrics; empty: the directory's
  // base name, or "stories260K-demo" / "random" for the built-in models.
  std::string model_name;
  // What the model runs on (kernels/backends.h): "cpu", "cuda" or "cuda:N".
  std::string device = "cpu";
  // CPU backend threads (GEMM, attention, sampling) per tensor-parallel
  // rank; 0 = one per CPU, shared out among the ranks.
  int threads = 0;
  // Ranks the model is sharded across (docs/parallel.md); > 1 needs
  // device "cpu" for now.
  int tensor_parallel_size = 1;
  // Bytes for the paged KV cache on the CPU (all ranks together).
  uint64_t kv_cache_bytes = 256ull << 20;
  // On a GPU the KV cache takes what is left of this share of the device's
  // memory once the weights are loaded (vLLM's --gpu-memory-utilization).
  double gpu_memory_utilization = 0.9;
  // Cap on prompt plus output; 0 = the model's context length.
  int max_model_len = 0;
  // Map the checkpoint file instead of copying it into anonymous memory.
  bool mmap_weights = false;
  // BF16 weights: AVX-512 BF16 dot products in the GEMMs (activations
  // rounded to bf16, as GPU bf16 matmuls do). About 1.6x faster prefill;
  // false = the exact path (weights widened to F32), whose greedy output
  // can differ slightly.
  bool bf16_dot = true;
  // KV cache element type (auto: BF16 for BF16 checkpoints, else F32).
  model::KvCacheDType kv_cache_dtype = model::KvCacheDType::kAuto;
  // kInt8: quantize the linear weights at load (model/weights.h). CPU only.
  model::Quantization quantization = model::Quantization::kNone;
  // A directory without tokenizer.json is an error; false loads the model
  // without one (token ids only: kestrel-generate --prompt-ids).
  bool require_tokenizer = true;
  // Take the sampling defaults of the directory's generation_config.json
  // (vLLM's --generation-config auto); false: SamplingParams' own. Its
  // eos_token_id always counts.
  bool use_generation_config_defaults = true;
};

struct LoadedModel {
  // Null only when !require_tokenizer and the directory has none.
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::unique_ptr<engine::ModelExecutor> executor;
  // The model's chat template (chat_template.jinja or tokenizer_config.json);
  // null when it has none (the built-in models have none).
  std::unique_ptr<ChatRenderer> chat_renderer;
  kestrel::v1::ModelInfo info;
  // config.json's and generation_config.json's, and else the tokenizer's.
  std::vector<int32_t> eos_token_ids;
  // Values of the sampling fields a request leaves unset, and what they are
  // in words for the startup log ("temperature=0.6 top_p=0.9", "none").
  model::SamplingParams sampling_defaults;
  std::string sampling_defaults_source = "none";
  // The KV cache's element type once "auto" is resolved ("F32" or "BF16").
  std::string kv_cache_dtype;
  // How the linear weights are held: "none" (the checkpoint's dtype) or
  // "int8" (also ModelInfo.quantization).
  std::string quantization;
  // What the model runs on: "cpu (avx512, 2 threads)", "cuda:0 (NVIDIA H200, ...)".
  std::string backend;
  // Matrix bytes one decode step reads (the memory-bandwidth bound).
  uint64_t weight_bytes_per_token = 0;
};

// Errors name the path or flag at fault (missing config.json, bad
// tokenizer.json, a checkpoint that does not match its config, ...).
absl::StatusOr<LoadedModel> LoadModel(const ModelLoadOptions& options);

}  // namespace kestrel::server

#endif  // KESTREL_SERVER_MODEL_LOADER_H_

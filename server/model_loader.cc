#include "server/model_loader.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/worker_executor.h"
#include "model/builtin_models.h"
#include "model/weights.h"
#include "model/worker.h"

namespace kestrel::server {
namespace {

namespace fs = std::filesystem;

int64_t CountParameters(const model::ModelWeights& weights) {
  auto matrix = [](const model::Matrix& m) { return m.rows * m.cols; };
  int64_t total = matrix(weights.embed_tokens()) + static_cast<int64_t>(weights.final_norm().size());
  // A tied lm_head is the embedding (its int8 copy, when quantized).
  if (!weights.config().tie_word_embeddings) total += matrix(weights.lm_head());
  for (const model::LayerWeights& l : weights.layers()) {
    total += matrix(l.q_proj) + matrix(l.k_proj) + matrix(l.v_proj) + matrix(l.o_proj) +
             matrix(l.gate_proj) + matrix(l.up_proj) + matrix(l.down_proj);
    for (const model::Vec* v : {&l.input_norm, &l.post_attention_norm, &l.q_bias, &l.k_bias,
                                &l.v_bias, &l.o_bias, &l.q_norm, &l.k_norm}) {
      total += static_cast<int64_t>(v->size());
    }
  }
  return total;
}

}  // namespace

absl::StatusOr<LoadedModel> LoadModel(const ModelLoadOptions& options) {
  LoadedModel loaded;
  model::Worker::Options worker_options;
  worker_options.device = options.device;
  worker_options.threads = options.threads;
  worker_options.runner.kv_cache_bytes = options.kv_cache_bytes;
  if (options.device != "cpu") {
    worker_options.runner.memory_utilization = options.gpu_memory_utilization;
  }
  worker_options.runner.bf16_dot = options.bf16_dot;
  worker_options.runner.kv_cache_dtype = options.kv_cache_dtype;
  const model::SafetensorsCheckpoint::Storage storage =
      options.mmap_weights ? model::SafetensorsCheckpoint::Storage::kFileMmap
                           : model::SafetensorsCheckpoint::Storage::kAnonymous;
  std::string name = options.model_name;

  std::shared_ptr<const model::ModelWeights> weights;
  model::GenerationConfig generation;
  if (model::IsBuiltinModel(options.model)) {
    // Built in (model/builtin_models.h): loaded from memory, no files.
    ASSIGN_OR_RETURN(model::BuiltinModel builtin, model::LoadBuiltinModel(options.model, options.quantization));
    weights = std::move(builtin.weights);
    loaded.tokenizer = std::move(builtin.tokenizer);
    if (name.empty()) name = builtin.name;
  } else {
    const fs::path dir(options.model);
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      return absl::NotFoundError(
          absl::StrCat("--model=", options.model,
                       " is neither a built-in model (demo, random) nor a directory"));
    }
    // The chat template first: a malformed one stops the server before the
    // weights are read.
    if (options.require_tokenizer || fs::exists(dir / "tokenizer.json")) {
      // Errors name the file and the line.
      ASSIGN_OR_RETURN(loaded.chat_renderer, LoadChatRenderer(dir.string()));
    }
    ASSIGN_OR_RETURN(const model::ModelConfig config, model::ModelConfig::LoadFromDir(dir));
    ASSIGN_OR_RETURN(generation, model::GenerationConfig::LoadFromDir(dir, config.vocab_size));
    ASSIGN_OR_RETURN(weights, model::ModelWeights::Load(
                                  {.dir = dir, .storage = storage, .quantization = options.quantization}));
    if (options.require_tokenizer || fs::exists(dir / "tokenizer.json")) {
      absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok =
          tokenizer::Tokenizer::LoadFromDirectory(dir.string(), {});
      if (!tok.ok()) {
        return absl::Status(tok.status().code(), absl::StrCat("loading the tokenizer of --model=",
                                                              options.model, ": ",
                                                              tok.status().message()));
      }
      loaded.tokenizer = std::move(*tok);
    }
    if (name.empty()) name = fs::absolute(dir).lexically_normal().filename().string();
    if (name.empty()) name = fs::absolute(dir).lexically_normal().parent_path().filename().string();
  }
  engine::WorkerExecutor::Options executor_options;
  executor_options.tensor_parallel_size = options.tensor_parallel_size;
  executor_options.worker = worker_options;
  executor_options.max_model_len = options.max_model_len;
  ASSIGN_OR_RETURN(std::unique_ptr<engine::WorkerExecutor> executor,
                   engine::WorkerExecutor::Create(executor_options, std::move(weights)));
  const model::ModelRunner& runner = executor->runner();
  loaded.backend = executor->worker(0).Describe();
  if (executor->tensor_parallel_size() > 1) {
    loaded.backend = absl::StrCat(executor->tensor_parallel_size(), " ranks x ", loaded.backend);
  }

  const model::ModelConfig& config = runner.config();
  loaded.kv_cache_dtype = std::string(kernels::DTypeName(runner.kv_cache_dtype()));
  if (loaded.tokenizer != nullptr && loaded.tokenizer->vocab_size() > config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the tokenizer has ids up to ", loaded.tokenizer->vocab_size() - 1,
        " but the model's vocab_size is ", config.vocab_size));
  }
  for (int64_t eos : config.eos_token_ids) loaded.eos_token_ids.push_back(static_cast<int32_t>(eos));
  // Instruct models list their end-of-turn token only in
  // generation_config.json (Llama 3's <|eot_id|>): generation stops at both.
  for (int64_t eos : generation.eos_token_ids) {
    if (std::find(loaded.eos_token_ids.begin(), loaded.eos_token_ids.end(), eos) ==
        loaded.eos_token_ids.end()) {
      loaded.eos_token_ids.push_back(static_cast<int32_t>(eos));
    }
  }
  if (options.use_generation_config_defaults && generation.has_sampling_defaults()) {
    loaded.sampling_defaults = generation.SamplingDefaults();
    loaded.sampling_defaults_source = generation.DescribeSamplingDefaults();
  }
  if (loaded.eos_token_ids.empty() && loaded.tokenizer != nullptr &&
      loaded.tokenizer->config().eos_id.has_value()) {
    loaded.eos_token_ids.push_back(*loaded.tokenizer->config().eos_id);
  }

  kestrel::v1::ModelInfo& info = loaded.info;
  info.set_name(name);
  info.set_architecture(std::string(model::ModelTypeName(config.model_type)));
  info.set_vocab_size(static_cast<int32_t>(config.vocab_size));
  info.set_dtype(kernels::DTypeName(runner.weights().embed_tokens().dtype));
  loaded.quantization = model::QuantizationName(runner.weights().quantization());
  info.set_quantization(loaded.quantization);
  if (!config.bos_token_ids.empty()) {
    info.set_bos_token_id(static_cast<int32_t>(config.bos_token_ids[0]));
  } else if (loaded.tokenizer != nullptr && loaded.tokenizer->config().bos_id.has_value()) {
    info.set_bos_token_id(*loaded.tokenizer->config().bos_id);
  }
  info.mutable_eos_token_ids()->Add(loaded.eos_token_ids.begin(), loaded.eos_token_ids.end());
  info.set_has_chat_template(loaded.chat_renderer != nullptr);
  info.set_num_parameters(CountParameters(runner.weights()));
  loaded.weight_bytes_per_token = runner.weights().matrix_bytes_per_token();

  info.set_context_length(executor->max_model_len());
  loaded.executor = std::move(executor);
  return loaded;
}

}  // namespace kestrel::server

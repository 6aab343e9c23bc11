// The model architecture read from a Hugging Face config.json: the handful
// of numbers and switches that make llama, mistral, qwen2 and qwen3 one code
// path (see model_runner.h). Parsing validates every field it uses and names
// the field and value when one is wrong.
#ifndef KESTREL_MODEL_CONFIG_H_
#define KESTREL_MODEL_CONFIG_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/rope_tables.h"
#include "model/quant_config.h"

namespace kestrel::model {

enum class ModelType { kLlama, kMistral, kQwen2, kQwen3 };

std::string_view ModelTypeName(ModelType t);

using kernels::RopeScaling;  // kernels/rope_tables.h

// Plain data, freely copyable. All sizes are validated positive and
// consistent (heads divide evenly into KV heads, etc.) after Parse.
struct ModelConfig {
  ModelType model_type = ModelType::kLlama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  // Equal to num_attention_heads for MHA, fewer for GQA, 1 for MQA.
  int64_t num_key_value_heads = 0;
  // From config.json when given (Qwen3, Gemma-style), else hidden/heads.
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  // q/k/v projections carry a bias (Qwen2 always; llama/qwen3 when
  // attention_bias is true).
  bool qkv_bias = false;
  // o_proj carries a bias (llama-family attention_bias = true only).
  bool o_bias = false;
  // Per-head RMSNorm on q and k before RoPE (Qwen3).
  bool qk_norm = false;
  // Mistral-style sliding-window attention span in tokens; 0 = full
  // attention. Passed to the attention kernel (PagedAttentionParams).
  int64_t sliding_window = 0;
  // The dtype the checkpoint was saved in ("torch_dtype"); informational,
  // the tensors' own dtypes are what the loader uses.
  kernels::DType torch_dtype = kernels::DType::kF32;
  // How the checkpoint stores its linear layers ("quantization_config";
  // default: unquantized). See quant_config.h.
  CheckpointQuantization quantization;
  std::vector<int64_t> bos_token_ids;
  std::vector<int64_t> eos_token_ids;

  int64_t q_size() const { return num_attention_heads * head_dim; }
  int64_t kv_size() const { return num_key_value_heads * head_dim; }

  // Parses config.json text. Errors name the field and value, e.g.
  // "config.json: num_key_value_heads must divide num_attention_heads (8), got 3".
  static absl::StatusOr<ModelConfig> Parse(std::string_view json_text);
  // Reads `dir`/config.json and parses it.
  static absl::StatusOr<ModelConfig> LoadFromDir(const std::filesystem::path& dir);
};

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_CONFIG_H_

#include "model/config.h"

#include <cmath>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace kestrel::model {
namespace {

using json = nlohmann::json;

absl::Status FieldError(const std::string& field, const std::string& what, const json& value) {
  return absl::InvalidArgumentError(
      absl::StrCat("config.json: ", field, " ", what, ", got ", value.dump()));
}

// Reads a required (or, with `fallback`, optional) positive integer field.
absl::StatusOr<int64_t> PositiveInt(const json& obj, const std::string& field,
                                    std::optional<int64_t> fallback = std::nullopt) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) {
    if (fallback) return *fallback;
    return absl::InvalidArgumentError(absl::StrCat("config.json: missing field ", field));
  }
  if (!it->is_number_integer()) return FieldError(field, "must be an integer", *it);
  const int64_t v = it->get<int64_t>();
  // 2^31 is far beyond any real model dimension and keeps products of two
  // fields inside int64.
  if (v <= 0 || v > (int64_t{1} << 31)) {
    return FieldError(field, "must be a positive integer below 2^31", *it);
  }
  return v;
}

absl::StatusOr<double> PositiveNumber(const json& obj, const std::string& field,
                                      double fallback) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_number()) return FieldError(field, "must be a number", *it);
  const double v = it->get<double>();
  if (!(v > 0.0) || !std::isfinite(v)) return FieldError(field, "must be positive", *it);
  return v;
}

absl::StatusOr<bool> Bool(const json& obj, const std::string& field, bool fallback) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return FieldError(field, "must be true or false", *it);
  return it->get<bool>();
}

// bos/eos ids are an int, a list of ints, or null.
absl::StatusOr<std::vector<int64_t>> TokenIds(const json& obj, const std::string& field,
                                              int64_t vocab_size) {
  std::vector<int64_t> ids;
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return ids;
  auto add = [&](const json& v) -> absl::Status {
    if (!v.is_number_integer()) return FieldError(field, "must be an integer or list of integers", *it);
    const int64_t id = v.get<int64_t>();
    if (id < 0 || id >= vocab_size) {
      return FieldError(field, absl::StrCat("must be in [0, vocab_size=", vocab_size, ")"), v);
    }
    ids.push_back(id);
    return absl::OkStatus();
  };
  if (it->is_array()) {
    for (const json& v : *it) RETURN_IF_ERROR(add(v));
  } else {
    RETURN_IF_ERROR(add(*it));
  }
  return ids;
}

absl::Status ParseRopeScaling(const json& obj, ModelConfig& c) {
  auto it = obj.find("rope_scaling");
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object()) return FieldError("rope_scaling", "must be an object or null", *it);
  const json& rs = *it;
  // Newer configs say "rope_type", older ones "type".
  auto type_it = rs.find("rope_type");
  if (type_it == rs.end()) type_it = rs.find("type");
  if (type_it == rs.end() || !type_it->is_string()) {
    return FieldError("rope_scaling.rope_type", "must be a string", rs);
  }
  const std::string type = type_it->get<std::string>();
  if (type == "default") return absl::OkStatus();
  if (type != "linear" && type != "llama3") {
    return FieldError("rope_scaling.rope_type", "is not supported (supported: linear, llama3)",
                      *type_it);
  }
  ASSIGN_OR_RETURN(double factor, PositiveNumber(rs, "factor", 0.0));
  if (factor == 0.0) return absl::InvalidArgumentError("config.json: missing field rope_scaling.factor");
  c.rope_scaling.factor = static_cast<float>(factor);
  if (type == "linear") {
    c.rope_scaling.type = RopeScaling::Type::kLinear;
    return absl::OkStatus();
  }
  c.rope_scaling.type = RopeScaling::Type::kLlama3;
  ASSIGN_OR_RETURN(double low, PositiveNumber(rs, "low_freq_factor", 1.0));
  ASSIGN_OR_RETURN(double high, PositiveNumber(rs, "high_freq_factor", 4.0));
  if (!(high > low)) {
    return FieldError("rope_scaling.high_freq_factor",
                      absl::StrCat("must exceed low_freq_factor (", low, ")"), high);
  }
  ASSIGN_OR_RETURN(int64_t orig, PositiveInt(rs, "original_max_position_embeddings", 8192));
  c.rope_scaling.low_freq_factor = static_cast<float>(low);
  c.rope_scaling.high_freq_factor = static_cast<float>(high);
  c.rope_scaling.original_max_position_embeddings = orig;
  return absl::OkStatus();
}

}  // namespace

std::string_view ModelTypeName(ModelType t) {
  switch (t) {
    case ModelType::kLlama: return "llama";
    case ModelType::kMistral: return "mistral";
    case ModelType::kQwen2: return "qwen2";
    case ModelType::kQwen3: return "qwen3";
  }
  return "?";
}

absl::StatusOr<ModelConfig> ModelConfig::Parse(std::string_view json_text) {
  const json obj = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (obj.is_discarded()) return absl::InvalidArgumentError("config.json: not valid JSON");
  if (!obj.is_object()) return absl::InvalidArgumentError("config.json: top level must be an object");

  ModelConfig c;
  auto mt = obj.find("model_type");
  if (mt == obj.end() || !mt->is_string()) {
    return absl::InvalidArgumentError("config.json: missing string field model_type");
  }
  const std::string type = mt->get<std::string>();
  if (type == "llama") {
    c.model_type = ModelType::kLlama;
  } else if (type == "mistral") {
    c.model_type = ModelType::kMistral;
  } else if (type == "qwen2") {
    c.model_type = ModelType::kQwen2;
  } else if (type == "qwen3") {
    c.model_type = ModelType::kQwen3;
  } else {
    return FieldError("model_type", "is not supported (supported: llama, mistral, qwen2, qwen3)", *mt);
  }

  ASSIGN_OR_RETURN(c.vocab_size, PositiveInt(obj, "vocab_size"));
  ASSIGN_OR_RETURN(c.hidden_size, PositiveInt(obj, "hidden_size"));
  ASSIGN_OR_RETURN(c.intermediate_size, PositiveInt(obj, "intermediate_size"));
  ASSIGN_OR_RETURN(c.num_hidden_layers, PositiveInt(obj, "num_hidden_layers"));
  ASSIGN_OR_RETURN(c.num_attention_heads, PositiveInt(obj, "num_attention_heads"));
  ASSIGN_OR_RETURN(c.num_key_value_heads,
                   PositiveInt(obj, "num_key_value_heads", c.num_attention_heads));
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return FieldError("num_key_value_heads",
                      absl::StrCat("must divide num_attention_heads (", c.num_attention_heads, ")"),
                      c.num_key_value_heads);
  }
  std::optional<int64_t> default_head_dim;
  if (c.hidden_size % c.num_attention_heads == 0) {
    default_head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (auto it = obj.find("head_dim"); (it == obj.end() || it->is_null()) && !default_head_dim) {
    return FieldError("num_attention_heads",
                      absl::StrCat("must divide hidden_size (", c.hidden_size,
                                   ") when head_dim is not given"),
                      c.num_attention_heads);
  }
  ASSIGN_OR_RETURN(const int64_t head_dim, PositiveInt(obj, "head_dim", default_head_dim));
  c.head_dim = head_dim;
  if (c.head_dim % 2 != 0) return FieldError("head_dim", "must be even (RoPE rotates pairs)", c.head_dim);
  ASSIGN_OR_RETURN(c.max_position_embeddings, PositiveInt(obj, "max_position_embeddings", 2048));

  ASSIGN_OR_RETURN(double eps, PositiveNumber(obj, "rms_norm_eps", 1e-6));
  c.rms_norm_eps = static_cast<float>(eps);
  ASSIGN_OR_RETURN(c.rope_theta, PositiveNumber(obj, "rope_theta", 10000.0));
  RETURN_IF_ERROR(ParseRopeScaling(obj, c));

  // Every supported family uses SiLU-gated MLPs without biases; anything else
  // would silently compute the wrong function.
  if (auto act = obj.find("hidden_act"); act != obj.end() && !act->is_null()) {
    if (!act->is_string() || act->get<std::string>() != "silu") {
      return FieldError("hidden_act", "is not supported (supported: silu)", *act);
    }
  }
  ASSIGN_OR_RETURN(bool mlp_bias, Bool(obj, "mlp_bias", false));
  if (mlp_bias) return FieldError("mlp_bias", "is not supported", true);

  ASSIGN_OR_RETURN(c.tie_word_embeddings, Bool(obj, "tie_word_embeddings", false));
  ASSIGN_OR_RETURN(bool attention_bias, Bool(obj, "attention_bias", false));
  switch (c.model_type) {
    case ModelType::kQwen2:
      // Qwen2 has q/k/v biases by construction; its config has no switch.
      c.qkv_bias = true;
      c.o_bias = false;
      break;
    case ModelType::kQwen3:
      c.qk_norm = true;
      c.qkv_bias = attention_bias;
      c.o_bias = false;
      break;
    case ModelType::kLlama:
    case ModelType::kMistral:
      c.qkv_bias = attention_bias;
      c.o_bias = attention_bias;
      break;
  }

  // Qwen configs carry sliding_window but only honour it with
  // use_sliding_window; Mistral honours it whenever it is set.
  bool use_sliding = c.model_type == ModelType::kMistral;
  if (c.model_type == ModelType::kQwen2 || c.model_type == ModelType::kQwen3) {
    ASSIGN_OR_RETURN(use_sliding, Bool(obj, "use_sliding_window", false));
  }
  if (use_sliding) {
    ASSIGN_OR_RETURN(int64_t window, PositiveInt(obj, "sliding_window", int64_t{0x7fffffff}));
    if (window < c.max_position_embeddings) c.sliding_window = window;
  }

  for (const char* field : {"torch_dtype", "dtype"}) {
    auto it = obj.find(field);
    if (it == obj.end() || it->is_null()) continue;
    if (!it->is_string()) return FieldError(field, "must be a string", *it);
    const std::string d = it->get<std::string>();
    if (d == "float32") {
      c.torch_dtype = kernels::DType::kF32;
    } else if (d == "float16") {
      c.torch_dtype = kernels::DType::kF16;
    } else if (d == "bfloat16") {
      c.torch_dtype = kernels::DType::kBF16;
    } else {
      return FieldError(field, "is not supported (supported: float32, float16, bfloat16)", *it);
    }
    break;
  }
  if (auto it = obj.find("quantization_config"); it != obj.end() && !it->is_null()) {
    auto q = ParseQuantizationConfig(it->dump());
    if (!q.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("config.json: ", q.status().message()));
    }
    c.quantization = *std::move(q);
  }
  ASSIGN_OR_RETURN(c.bos_token_ids, TokenIds(obj, "bos_token_id", c.vocab_size));
  ASSIGN_OR_RETURN(c.eos_token_ids, TokenIds(obj, "eos_token_id", c.vocab_size));
  return c;
}

absl::StatusOr<ModelConfig> ModelConfig::LoadFromDir(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "config.json";
  ASSIGN_OR_RETURN(const std::string json, ReadFileToString(path));
  auto config = Parse(json);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path.string(), ": ", config.status().message()));
  }
  return config;
}

}  // namespace kestrel::model

#include "model/synthetic.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/quantize.h"
#include "nlohmann/json.hpp"

namespace kestrel::model {
namespace {

using json = nlohmann::json;

uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t HashName(std::string_view s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

// `n` values uniform in [center - scale, center + scale).
std::vector<float> Uniform(std::string_view name, uint64_t seed, int64_t n, float center,
                           float scale) {
  uint64_t state = HashName(name, seed);
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) {
    const float u = static_cast<float>(SplitMix(state) >> 40) * 0x1.0p-24f;  // [0, 1)
    v[i] = center + scale * (2.0f * u - 1.0f);
  }
  return v;
}

std::string TokenizerJson(int64_t vocab_size) {
  // A byte-level BPE with no merges: token i < 256 is byte i (GPT-2's
  // byte-to-unicode alphabet), then <s>, </s>, then filler tokens.
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xa1; b <= 0xac; ++b) bs.push_back(b);
  for (int b = 0xae; b <= 0xff; ++b) bs.push_back(b);
  std::vector<int> cs = bs;
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) {
      bs.push_back(b);
      cs.push_back(256 + extra++);
    }
  }
  json vocab = json::object();
  for (size_t i = 0; i < bs.size(); ++i) {
    std::string utf8;
    const int cp = cs[i];
    if (cp < 0x80) {
      utf8 += static_cast<char>(cp);
    } else {
      utf8 += static_cast<char>(0xc0 | (cp >> 6));
      utf8 += static_cast<char>(0x80 | (cp & 0x3f));
    }
    vocab[utf8] = bs[i];
  }
  vocab["<s>"] = 256;
  vocab["</s>"] = 257;
  for (int64_t i = 258; i < vocab_size; ++i) vocab[absl::StrCat("<extra_", i, ">")] = i;
  json added = json::array();
  for (int id : {256, 257}) {
    added.push_back({{"id", id}, {"content", id == 256 ? "<s>" : "</s>"}, {"single_word", false},
                     {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                     {"special", true}});
  }
  json tok = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
        {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder",
       {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true},
        {"use_regex", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
        {"fuse_unk", false}, {"byte_fallback", false}, {"vocab", vocab},
        {"merges", json::array()}}},
  };
  return tok.dump(1);
}

absl::Status WriteText(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

}  // namespace

std::string SyntheticTokenizerJson(int64_t vocab_size) { return TokenizerJson(vocab_size); }

absl::StatusOr<std::string> SyntheticPresetConfig(std::string_view preset, kernels::DType dtype) {
  json c;
  if (preset == "tiny" || preset == "tiny-qwen2" || preset == "tiny-qwen3") {
    c = {{"model_type", "llama"}, {"vocab_size", 320}, {"hidden_size", 64},
         {"intermediate_size", 160}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
         {"num_key_value_heads", 2}, {"max_position_embeddings", 1024},
         {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"tie_word_embeddings", false},
         {"bos_token_id", 256}, {"eos_token_id", 257}, {"hidden_act", "silu"}};
    if (preset == "tiny-qwen2") {
      c["model_type"] = "qwen2";
      c["tie_word_embeddings"] = true;
      c["rope_theta"] = 1000000.0;
    } else if (preset == "tiny-qwen3") {
      c["model_type"] = "qwen3";
      c["head_dim"] = 32;  // != hidden / heads, as in real Qwen3 models
      c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}};
    }
  } else if (preset == "tinyllama-1.1b") {
    c = {{"model_type", "llama"}, {"vocab_size", 32000}, {"hidden_size", 2048},
         {"intermediate_size", 5632}, {"num_hidden_layers", 22}, {"num_attention_heads", 32},
         {"num_key_value_heads", 4}, {"max_position_embeddings", 2048},
         {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"tie_word_embeddings", false},
         {"bos_token_id", 1}, {"eos_token_id", 2}, {"hidden_act", "silu"}};
  } else if (preset == "qwen2.5-0.5b") {
    c = {{"model_type", "qwen2"}, {"vocab_size", 151936}, {"hidden_size", 896},
         {"intermediate_size", 4864}, {"num_hidden_layers", 24}, {"num_attention_heads", 14},
         {"num_key_value_heads", 2}, {"max_position_embeddings", 32768},
         {"rms_norm_eps", 1e-6}, {"rope_theta", 1000000.0}, {"tie_word_embeddings", true},
         {"use_sliding_window", false}, {"sliding_window", 32768},
         {"bos_token_id", 151643}, {"eos_token_id", 151643}, {"hidden_act", "silu"}};
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown preset \"", std::string(preset),
        "\" (known: tiny, tiny-qwen2, tiny-qwen3, tinyllama-1.1b, qwen2.5-0.5b)"));
  }
  c["torch_dtype"] = dtype == kernels::DType::kBF16 ? "bfloat16" : dtype == kernels::DType::kF16 ? "float16" : "float32";
  return c.dump(2);
}

std::vector<TensorToWrite> SyntheticTensors(const ModelConfig& c, kernels::DType dtype, uint64_t seed) {
  std::vector<TensorToWrite> out;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float center, float scale) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    out.push_back({name, dtype, std::move(shape),
                   EncodeFloats(Uniform(name, seed, n, center, scale), dtype)});
  };
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    add(name, {rows, cols}, 0.0f, 1.0f / std::sqrt(static_cast<float>(cols)));
  };
  const int64_t h = c.hidden_size;
  add("model.embed_tokens.weight", {c.vocab_size, h}, 0.0f, 1.0f);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    add(p + "input_layernorm.weight", {h}, 1.0f, 0.1f);
    matrix(p + "self_attn.q_proj.weight", c.q_size(), h);
    matrix(p + "self_attn.k_proj.weight", c.kv_size(), h);
    matrix(p + "self_attn.v_proj.weight", c.kv_size(), h);
    if (c.qkv_bias) {
      add(p + "self_attn.q_proj.bias", {c.q_size()}, 0.0f, 0.1f);
      add(p + "self_attn.k_proj.bias", {c.kv_size()}, 0.0f, 0.1f);
      add(p + "self_attn.v_proj.bias", {c.kv_size()}, 0.0f, 0.1f);
    }
    if (c.qk_norm) {
      add(p + "self_attn.q_norm.weight", {c.head_dim}, 1.0f, 0.1f);
      add(p + "self_attn.k_norm.weight", {c.head_dim}, 1.0f, 0.1f);
    }
    matrix(p + "self_attn.o_proj.weight", h, c.q_size());
    if (c.o_bias) add(p + "self_attn.o_proj.bias", {h}, 0.0f, 0.1f);
    add(p + "post_attention_layernorm.weight", {h}, 1.0f, 0.1f);
    matrix(p + "mlp.gate_proj.weight", c.intermediate_size, h);
    matrix(p + "mlp.up_proj.weight", c.intermediate_size, h);
    matrix(p + "mlp.down_proj.weight", h, c.intermediate_size);
  }
  add("model.norm.weight", {h}, 1.0f, 0.1f);
  if (!c.tie_word_embeddings) matrix("lm_head.weight", c.vocab_size, h);
  return out;
}

std::string CompressedTensorsInt8Config(const std::vector<std::string>& ignore) {
  const json args = {{"num_bits", 8}, {"type", "int"}, {"symmetric", true},
                     {"group_size", nullptr}, {"block_structure", nullptr},
                     {"actorder", nullptr}, {"observer_kwargs", json::object()}};
  json weights = args, input = args;
  weights["strategy"] = "channel";
  weights["dynamic"] = false;
  weights["observer"] = "minmax";
  input["strategy"] = "token";
  input["dynamic"] = true;
  input["observer"] = nullptr;
  const json q = {
      {"quant_method", "compressed-tensors"},
      {"format", "int-quantized"},
      {"quantization_status", "compressed"},
      {"config_groups",
       {{"group_0",
         {{"targets", {"Linear"}}, {"weights", weights}, {"input_activations", input},
          {"output_activations", nullptr}}}}},
      {"ignore", ignore},
      {"kv_cache_scheme", nullptr},
      {"sparsity_config", json::object()}};
  return q.dump(2);
}

void QuantizeTensorsInt8(std::vector<TensorToWrite>& tensors,
                         const std::vector<std::string>& ignore) {
  std::vector<TensorToWrite> out;
  out.reserve(tensors.size() * 2);
  for (TensorToWrite& t : tensors) {
    bool linear = false;
    for (const char* suffix : {"_proj.weight", "lm_head.weight"}) {
      linear = linear || absl::EndsWith(t.name, suffix);
    }
    const std::string module = t.name.substr(0, t.name.size() - std::string(".weight").size());
    if (!linear || t.shape.size() != 2 ||
        std::find(ignore.begin(), ignore.end(), module) != ignore.end()) {
      out.push_back(std::move(t));
      continue;
    }
    const int64_t rows = t.shape[0], cols = t.shape[1];
    std::string q(static_cast<size_t>(rows * cols), '\0');
    std::vector<float> scales(static_cast<size_t>(rows));
    kernels::QuantizeRowsI8(t.bytes.data(), t.dtype, rows, cols, cols,
                            reinterpret_cast<int8_t*>(q.data()), scales.data());
    out.push_back({t.name, kernels::DType::kI8, t.shape, std::move(q)});
    out.push_back({module + ".weight_scale", kernels::DType::kF32, {rows, 1},
                   EncodeFloats(scales, kernels::DType::kF32)});
  }
  tensors = std::move(out);
}

absl::Status WriteSyntheticCheckpoint(const SyntheticCheckpointOptions& options) {
  if (!kernels::IsWeightDType(options.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("synthetic checkpoint dtype must be F32, F16 or BF16, got ",
                                                   kernels::DTypeName(options.dtype)));
  }
  ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::Parse(options.config_json));
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", options.dir.string(), ": ", ec.message()));
  std::vector<TensorToWrite> tensors = SyntheticTensors(config, options.dtype, options.seed);
  std::string config_json = options.config_json;
  if (options.int8) {
    // As llm-compressor's W8A8 recipe: lm_head stays in the float dtype.
    const std::vector<std::string> ignore = {"lm_head"};
    json c = json::parse(config_json);
    c["quantization_config"] = json::parse(CompressedTensorsInt8Config(ignore));
    config_json = c.dump(2);
    QuantizeTensorsInt8(tensors, ignore);
  }
  RETURN_IF_ERROR(WriteText(options.dir / "config.json", config_json));
  RETURN_IF_ERROR(WriteCheckpoint(options.dir, tensors, options.max_shard_bytes));
  if (options.write_tokenizer) {
    RETURN_IF_ERROR(WriteText(options.dir / "tokenizer.json", TokenizerJson(config.vocab_size)));
  }
  return absl::OkStatus();
}

}  // namespace kestrel::model

#include "model/config.h"

#include <functional>
#include <string>

#include <catch2/catch.hpp>

#include "nlohmann/json.hpp"
#include "testing/shared_data.h"

namespace kestrel::model {
namespace {

// A minimal llama config; tests patch fields into it.
std::string Llama(const std::string& extra = "") {
  return R"({"model_type": "llama", "vocab_size": 100, "hidden_size": 64,
             "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 8, "num_key_value_heads": 2)" +
         extra + "}";
}

std::string ErrorOf(const std::string& text) {
  auto c = ModelConfig::Parse(text);
  REQUIRE_FALSE(c.ok());
  return std::string(c.status().message());
}

TEST_CASE("parses the stories260K config", "[config]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  auto c = ModelConfig::LoadFromDir(dir);
  REQUIRE(c.ok());
  CHECK(c->model_type == ModelType::kLlama);
  CHECK(c->hidden_size == 64);
  CHECK(c->intermediate_size == 172);
  CHECK(c->num_hidden_layers == 5);
  CHECK(c->num_attention_heads == 8);
  CHECK(c->num_key_value_heads == 4);
  CHECK(c->head_dim == 8);
  CHECK(c->vocab_size == 512);
  CHECK(c->max_position_embeddings == 512);
  CHECK(c->rms_norm_eps == Approx(1e-5));
  CHECK(c->rope_theta == 10000.0);
  CHECK(c->rope_scaling.type == RopeScaling::Type::kNone);
  CHECK(c->tie_word_embeddings);
  CHECK_FALSE(c->qkv_bias);
  CHECK_FALSE(c->qk_norm);
  CHECK(c->torch_dtype == kernels::DType::kF32);
  CHECK(c->bos_token_ids == std::vector<int64_t>{1});
  CHECK(c->eos_token_ids == std::vector<int64_t>{2});
}

TEST_CASE("defaults: head_dim from hidden/heads, kv heads = heads", "[config]") {
  auto c = ModelConfig::Parse(R"({"model_type": "mistral", "vocab_size": 10, "hidden_size": 32,
      "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4})");
  REQUIRE(c.ok());
  CHECK(c->model_type == ModelType::kMistral);
  CHECK(c->head_dim == 8);
  CHECK(c->num_key_value_heads == 4);
  CHECK(c->max_position_embeddings == 2048);
  CHECK_FALSE(c->tie_word_embeddings);
}

TEST_CASE("qwen2 has q/k/v biases, qwen3 has q/k norm and explicit head_dim", "[config]") {
  auto q2 = ModelConfig::Parse(R"({"model_type": "qwen2", "vocab_size": 151936,
      "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
      "num_attention_heads": 14, "num_key_value_heads": 2, "rope_theta": 1000000.0,
      "rms_norm_eps": 1e-06, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
      "sliding_window": 32768, "use_sliding_window": false, "max_position_embeddings": 32768,
      "bos_token_id": 151643, "eos_token_id": 151643})");
  REQUIRE(q2.ok());
  CHECK(q2->qkv_bias);
  CHECK_FALSE(q2->o_bias);
  CHECK(q2->head_dim == 64);
  CHECK(q2->sliding_window == 0);
  CHECK(q2->torch_dtype == kernels::DType::kBF16);
  CHECK(q2->rope_theta == 1e6);

  auto q3 = ModelConfig::Parse(R"({"model_type": "qwen3", "vocab_size": 1000, "hidden_size": 64,
      "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
      "num_key_value_heads": 2, "head_dim": 32, "attention_bias": false,
      "eos_token_id": [5, 7]})");
  REQUIRE(q3.ok());
  CHECK(q3->qk_norm);
  CHECK_FALSE(q3->qkv_bias);
  CHECK(q3->head_dim == 32);
  CHECK(q3->q_size() == 128);
  CHECK(q3->kv_size() == 64);
  CHECK(q3->eos_token_ids == std::vector<int64_t>{5, 7});
}

TEST_CASE("llama attention_bias adds q/k/v/o biases", "[config]") {
  auto c = ModelConfig::Parse(Llama(R"(, "attention_bias": true)"));
  REQUIRE(c.ok());
  CHECK(c->qkv_bias);
  CHECK(c->o_bias);
}

TEST_CASE("rope_scaling llama3 and linear", "[config]") {
  auto l3 = ModelConfig::Parse(Llama(R"(, "rope_scaling": {"factor": 8.0,
      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192, "rope_type": "llama3"})"));
  REQUIRE(l3.ok());
  CHECK(l3->rope_scaling.type == RopeScaling::Type::kLlama3);
  CHECK(l3->rope_scaling.factor == 8.0f);
  CHECK(l3->rope_scaling.high_freq_factor == 4.0f);
  CHECK(l3->rope_scaling.original_max_position_embeddings == 8192);
  auto lin = ModelConfig::Parse(Llama(R"(, "rope_scaling": {"type": "linear", "factor": 2})"));
  REQUIRE(lin.ok());
  CHECK(lin->rope_scaling.type == RopeScaling::Type::kLinear);
  CHECK(lin->rope_scaling.factor == 2.0f);
}

TEST_CASE("mistral sliding window below the context is kept", "[config]") {
  auto c = ModelConfig::Parse(R"({"model_type": "mistral", "vocab_size": 10, "hidden_size": 32,
      "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
      "max_position_embeddings": 32768, "sliding_window": 4096})");
  REQUIRE(c.ok());
  CHECK(c->sliding_window == 4096);
}

TEST_CASE("bad configs name the field and value", "[config]") {
  CHECK(ErrorOf("{not json") == "config.json: not valid JSON");
  CHECK(ErrorOf("[1]") == "config.json: top level must be an object");
  CHECK(ErrorOf(R"({"model_type": "gpt2"})") ==
        "config.json: model_type is not supported (supported: llama, mistral, qwen2, qwen3), "
        "got \"gpt2\"");
  CHECK(ErrorOf(R"({"vocab_size": 1})") == "config.json: missing string field model_type");
  CHECK(ErrorOf(R"({"model_type": "llama", "vocab_size": 10})") ==
        "config.json: missing field hidden_size");
  CHECK(ErrorOf(Llama(R"(, "hidden_size": -64)")) ==
        "config.json: hidden_size must be a positive integer below 2^31, got -64");
  CHECK(ErrorOf(Llama(R"(, "num_key_value_heads": 3)")) ==
        "config.json: num_key_value_heads must divide num_attention_heads (8), got 3");
  CHECK(ErrorOf(Llama(R"(, "num_hidden_layers": "2")")) ==
        "config.json: num_hidden_layers must be an integer, got \"2\"");
  CHECK(ErrorOf(Llama(R"(, "rms_norm_eps": 0)")) == "config.json: rms_norm_eps must be positive, got 0");
  CHECK(ErrorOf(Llama(R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4})")) ==
        "config.json: rope_scaling.rope_type is not supported (supported: linear, llama3), "
        "got \"yarn\"");
  CHECK(ErrorOf(Llama(R"(, "hidden_act": "gelu")")) ==
        "config.json: hidden_act is not supported (supported: silu), got \"gelu\"");
  CHECK(ErrorOf(Llama(R"(, "torch_dtype": "int8")")) ==
        "config.json: torch_dtype is not supported (supported: float32, float16, bfloat16), "
        "got \"int8\"");
  CHECK(ErrorOf(Llama(R"(, "eos_token_id": 100)")) ==
        "config.json: eos_token_id must be in [0, vocab_size=100), got 100");
  CHECK(ErrorOf(Llama(R"(, "head_dim": 7)")) ==
        "config.json: head_dim must be even (RoPE rotates pairs), got 7");
  CHECK(ErrorOf(Llama(R"(, "hidden_size": 60, "num_attention_heads": 8, "head_dim": null)")) ==
        "config.json: num_attention_heads must divide hidden_size (60) when head_dim is not "
        "given, got 8");
}

// quantization_config as llm-compressor 0.5 writes it for its W8A8 int8
// recipe (every optional field spelled out).
nlohmann::json CompressedTensorsInt8() {
  return nlohmann::json::parse(R"({
    "config_groups": {"group_0": {
      "input_activations": {"actorder": null, "block_structure": null, "dynamic": true,
        "group_size": null, "num_bits": 8, "observer": null, "observer_kwargs": {},
        "strategy": "token", "symmetric": true, "type": "int"},
      "output_activations": null,
      "targets": ["Linear"],
      "weights": {"actorder": null, "block_structure": null, "dynamic": false,
        "group_size": null, "num_bits": 8, "observer": "minmax", "observer_kwargs": {},
        "strategy": "channel", "symmetric": true, "type": "int"}}},
    "format": "int-quantized",
    "global_compression_ratio": 1.46,
    "ignore": ["lm_head"],
    "kv_cache_scheme": null,
    "quant_method": "compressed-tensors",
    "quantization_status": "compressed",
    "sparsity_config": {}})");
}

std::string WithQuant(const nlohmann::json& q) {
  return Llama(", \"quantization_config\": " + q.dump());
}

TEST_CASE("compressed-tensors int8 quantization_config", "[config][int8]") {
  auto plain = ModelConfig::Parse(Llama());
  REQUIRE(plain.ok());
  CHECK_FALSE(plain->quantization.int8);
  CHECK_FALSE(plain->quantization.Quantizes("model.layers.0.mlp.up_proj"));

  auto c = ModelConfig::Parse(WithQuant(CompressedTensorsInt8()));
  REQUIRE(c.ok());
  CHECK(c->quantization.int8);
  CHECK(c->quantization.ignore == std::vector<std::string>{"lm_head"});
  CHECK(c->quantization.Quantizes("model.layers.0.self_attn.q_proj"));
  CHECK_FALSE(c->quantization.Quantizes("lm_head"));

  // Minimal spelling: defaults (type int, symmetric, weights static) and
  // naive-quantized (also I8 tensors); "re:" ignores match from the start.
  nlohmann::json q = {
      {"quant_method", "compressed-tensors"},
      {"format", "naive-quantized"},
      {"ignore", {"re:.*down_proj", "lm_head"}},
      {"config_groups",
       {{"g", {{"targets", {"Linear"}},
               {"weights", {{"num_bits", 8}, {"strategy", "channel"}}},
               {"input_activations",
                {{"num_bits", 8}, {"strategy", "token"}, {"dynamic", true}}}}}}}};
  auto m = ModelConfig::Parse(WithQuant(q));
  REQUIRE(m.ok());
  CHECK_FALSE(m->quantization.Quantizes("model.layers.1.mlp.down_proj"));
  CHECK(m->quantization.Quantizes("model.layers.1.mlp.up_proj"));
  CHECK_FALSE(m->quantization.Quantizes("lm_head"));
  CHECK(m->quantization.Quantizes("lm_head_2"));  // exact names match exactly
}

TEST_CASE("unsupported quantization_config fields name field and value", "[config][int8]") {
  auto error = [](const std::function<void(nlohmann::json&)>& patch) {
    nlohmann::json q = CompressedTensorsInt8();
    patch(q);
    return ErrorOf(WithQuant(q));
  };
  const std::string pre = "config.json: quantization_config.";
  CHECK(error([](auto& q) { q["quant_method"] = "gptq"; }) ==
        pre + "quant_method is not supported (supported: compressed-tensors), got \"gptq\"");
  CHECK(error([](auto& q) { q["format"] = "pack-quantized"; }) ==
        pre + "format is not supported (supported: int-quantized, naive-quantized), got "
              "\"pack-quantized\"");
  CHECK(error([](auto& q) { q["format"] = "float-quantized"; }) ==
        pre + "format is not supported (supported: int-quantized, naive-quantized), got "
              "\"float-quantized\"");
  CHECK(error([](auto& q) { q["quantization_status"] = "frozen"; }) ==
        pre + "quantization_status is not supported (supported: compressed), got \"frozen\"");
  CHECK(error([](auto& q) { q["kv_cache_scheme"] = {{"num_bits", 8}}; }) ==
        pre + "kv_cache_scheme is not supported (supported: null), got {\"num_bits\":8}");
  CHECK(error([](auto& q) { q["config_groups"]["group_1"] = q["config_groups"]["group_0"]; })
            .starts_with(pre + "config_groups is not supported (supported: an object with "
                               "one group), got {"));
  const std::string w = pre + "config_groups.group_0.weights.";
  const std::string a = pre + "config_groups.group_0.input_activations.";
  CHECK(error([](auto& q) { q["config_groups"]["group_0"]["weights"]["num_bits"] = 4; }) ==
        w + "num_bits is not supported (supported: 8), got 4");
  CHECK(error([](auto& q) { q["config_groups"]["group_0"]["weights"]["type"] = "float"; }) ==
        w + "type is not supported (supported: int), got \"float\"");
  CHECK(error([](auto& q) { q["config_groups"]["group_0"]["weights"]["symmetric"] = false; }) ==
        w + "symmetric is not supported (supported: true), got false");
  CHECK(error([](auto& q) { q["config_groups"]["group_0"]["weights"]["strategy"] = "group"; }) ==
        w + "strategy is not supported (supported: channel), got \"group\"");
  CHECK(error([](auto& q) { q["config_groups"]["group_0"]["weights"]["strategy"] = "tensor"; }) ==
        w + "strategy is not supported (supported: channel), got \"tensor\"");
  CHECK(error([](auto& q) { q["config_groups"]["group_0"]["weights"]["group_size"] = 128; }) ==
        w + "group_size is not supported (supported: null), got 128");
  CHECK(error([](auto& q) { q["config_groups"]["group_0"]["weights"]["dynamic"] = true; }) ==
        w + "dynamic is not supported (supported: false), got true");
  CHECK(error([](auto& q) {
          q["config_groups"]["group_0"]["input_activations"]["dynamic"] = false;
        }) == a + "dynamic is not supported (supported: true), got false");
  CHECK(error([](auto& q) {
          q["config_groups"]["group_0"]["input_activations"].erase("dynamic");
        }) == a + "dynamic is not supported (supported: true), got false");
  CHECK(error([](auto& q) {
          q["config_groups"]["group_0"]["input_activations"]["strategy"] = "tensor";
        }) == a + "strategy is not supported (supported: token), got \"tensor\"");
  CHECK(error([](auto& q) { q["config_groups"]["group_0"]["input_activations"] = nullptr; }) ==
        "config.json: quantization_config.config_groups.group_0.input_activations is missing "
        "or null: only W8A8 int8 is supported (int8 weights per channel, int8 activations per "
        "token, dynamic)");
  CHECK(error([](auto& q) { q["config_groups"]["group_0"]["targets"] = {"re:.*mlp.*"}; }) ==
        pre + "config_groups.group_0.targets is not supported (supported: [\"Linear\"]), got "
              "[\"re:.*mlp.*\"]");
  CHECK(error([](auto& q) { q["config_groups"]["group_0"]["weights"].erase("num_bits"); }) ==
        "config.json: quantization_config: missing field "
        "config_groups.group_0.weights.num_bits");
  CHECK(error([](auto& q) { q["ignore"] = "lm_head"; }) ==
        pre + "ignore is not supported (supported: a list of module names), got \"lm_head\"");
  CHECK(error([](auto& q) { q["ignore"] = {"re:(unclosed"}; })
            .starts_with(pre + "ignore: \"re:(unclosed\" is not a valid pattern: "));
  CHECK(ErrorOf(Llama(R"(, "quantization_config": [1])")) ==
        "config.json: quantization_config must be an object");
}

}  // namespace
}  // namespace kestrel::model

#include "model/weights.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "model/safetensors_writer.h"
#include "model/synthetic.h"
#include "testing/shared_data.h"

namespace kestrel::model {
namespace {

namespace fs = std::filesystem;

fs::path FreshDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  fs::path dir = fs::path(tmp != nullptr ? tmp : "/tmp") / ("weights_test_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

struct Checkpoint {
  std::string config_json;
  ModelConfig config;
  std::vector<TensorToWrite> tensors;
};

Checkpoint Preset(const std::string& preset, kernels::DType dtype = kernels::DType::kF32) {
  Checkpoint c;
  auto json = SyntheticPresetConfig(preset, dtype);
  REQUIRE(json.ok());
  c.config_json = *json;
  auto config = ModelConfig::Parse(c.config_json);
  REQUIRE(config.ok());
  c.config = *config;
  c.tensors = SyntheticTensors(c.config, dtype, /*seed=*/1);
  return c;
}

absl::StatusOr<std::unique_ptr<ModelWeights>> LoadFrom(const std::string& name,
                                                       const Checkpoint& c) {
  const fs::path dir = FreshDir(name);
  std::ofstream(dir / "config.json") << c.config_json;
  REQUIRE(WriteSafetensors(dir / "model.safetensors", c.tensors).ok());
  return ModelWeights::Load({.dir = dir});
}

std::string ErrorOf(const std::string& name, const Checkpoint& c) {
  auto w = LoadFrom(name, c);
  REQUIRE_FALSE(w.ok());
  return std::string(w.status().message());
}

TEST_CASE("stories260K weights bind to the config", "[weights]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  auto w = ModelWeights::Load({.dir = dir});
  REQUIRE(w.ok());
  const ModelWeights& m = **w;
  CHECK(m.layers().size() == 5);
  CHECK(m.lm_head().data == m.embed_tokens().data);  // tied
  CHECK(m.layers()[0].k_proj.rows == 32);
  CHECK(m.layers()[0].input_norm.size() == 64);
  CHECK(m.layers()[0].q_bias.empty());
  CHECK(m.final_norm().size() == 64);
  // 5 layers * (64*64*2 + 32*64*2 + 172*64*3) floats + lm_head 512*64.
  CHECK(m.matrix_bytes_per_token() == 4u * (5 * (8192 + 4096 + 33024) + 32768));
}

TEST_CASE("qwen2 biases and qwen3 q/k norms are bound", "[weights]") {
  auto q2 = LoadFrom("qwen2", Preset("tiny-qwen2", kernels::DType::kBF16));
  REQUIRE(q2.ok());
  CHECK((*q2)->layers()[1].q_bias.size() == 64);
  CHECK((*q2)->layers()[1].v_bias.size() == 32);
  CHECK((*q2)->layers()[1].o_bias.empty());
  CHECK((*q2)->layers()[1].q_proj.dtype == kernels::DType::kBF16);
  CHECK((*q2)->lm_head().data == (*q2)->embed_tokens().data);
  auto q3 = LoadFrom("qwen3", Preset("tiny-qwen3", kernels::DType::kF16));
  REQUIRE(q3.ok());
  CHECK((*q3)->layers()[0].q_norm.size() == 32);
  CHECK((*q3)->layers()[0].q_proj.rows == 128);  // 4 heads * head_dim 32
  CHECK((*q3)->lm_head().data != (*q3)->embed_tokens().data);
}

TEST_CASE("inconsistent checkpoints name the tensor", "[weights]") {
  SECTION("missing tensor") {
    Checkpoint c = Preset("tiny");
    std::erase_if(c.tensors, [](const TensorToWrite& t) {
      return t.name == "model.layers.1.mlp.up_proj.weight";
    });
    CHECK(ErrorOf("missing", c) ==
          "checkpoint is missing tensor \"model.layers.1.mlp.up_proj.weight\" (expected shape "
          "[160, 64])");
  }
  SECTION("wrong shape") {
    Checkpoint c = Preset("tiny");
    for (TensorToWrite& t : c.tensors) {
      if (t.name == "model.layers.0.self_attn.k_proj.weight") t.shape = {64, 32};
    }
    CHECK(ErrorOf("shape", c) ==
          "tensor \"model.layers.0.self_attn.k_proj.weight\" in model.safetensors has shape "
          "[64, 32], config.json implies [32, 64]");
  }
  SECTION("dtype the model cannot use") {
    Checkpoint c = Preset("tiny");
    for (TensorToWrite& t : c.tensors) {
      if (t.name == "model.norm.weight") {
        t.dtype = kernels::DType::kI32;  // same byte size as F32
      }
    }
    CHECK(ErrorOf("dtype", c) ==
          "tensor \"model.norm.weight\" in model.safetensors has dtype I32; weights must be F32, "
          "F16 or BF16");
  }
  SECTION("tensor the config does not describe") {
    Checkpoint c = Preset("tiny");
    c.tensors.push_back({"model.layers.0.self_attn.q_proj.bias", kernels::DType::kF32, {64},
                         std::string(256, '\0')});
    CHECK_THAT(ErrorOf("extra", c),
               Catch::StartsWith("tensor \"model.layers.0.self_attn.q_proj.bias\" in "
                                 "model.safetensors is not part of the architecture"));
  }
  SECTION("untied config without lm_head") {
    Checkpoint c = Preset("tiny");
    std::erase_if(c.tensors, [](const TensorToWrite& t) { return t.name == "lm_head.weight"; });
    CHECK_THAT(ErrorOf("lm_head", c), Catch::StartsWith("checkpoint is missing tensor \"lm_head.weight\""));
  }
  SECTION("bad config JSON") {
    Checkpoint c = Preset("tiny");
    c.config_json = "{\"model_type\": ";
    CHECK_THAT(ErrorOf("json", c), Catch::EndsWith("config.json: not valid JSON"));
  }
  SECTION("truncated weights file") {
    Checkpoint c = Preset("tiny");
    const fs::path dir = FreshDir("truncated");
    std::ofstream(dir / "config.json") << c.config_json;
    const std::string bytes = SerializeSafetensors(c.tensors);
    std::ofstream(dir / "model.safetensors", std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 1000));
    auto w = ModelWeights::Load({.dir = dir});
    REQUIRE_FALSE(w.ok());
    CHECK_THAT(std::string(w.status().message()),
               Catch::Contains("tensor \"lm_head.weight\"") && Catch::Contains("file truncated?"));
  }
}

}  // namespace
}  // namespace kestrel::model

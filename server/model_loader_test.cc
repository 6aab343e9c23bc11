// LoadModel on a model directory: generation_config.json's stop ids join
// config.json's, its sampling defaults apply unless turned off, a bad one
// is an error naming the file, and the chat template is found.
#include "server/model_loader.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "model/synthetic.h"

namespace kestrel::server {
namespace {

std::filesystem::path TinyModel(const std::string& name,
                                kernels::DType dtype = kernels::DType::kF32) {
  const auto dir = std::filesystem::temp_directory_path() / ("kestrel_model_loader_test_" + name);
  std::filesystem::remove_all(dir);
  auto config = model::SyntheticPresetConfig("tiny", dtype);
  REQUIRE(config.ok());
  REQUIRE(model::WriteSyntheticCheckpoint({.dir = dir,
                                           .config_json = *config,
                                           .dtype = dtype,
                                           .seed = 1,
                                           .max_shard_bytes = 2ull << 30,
                                           .write_tokenizer = true})
              .ok());
  return dir;
}

ModelLoadOptions Options(const std::filesystem::path& dir) {
  ModelLoadOptions options;
  options.model = dir.string();
  options.threads = 1;
  options.kv_cache_bytes = 4 << 20;
  return options;
}

TEST_CASE("--tensor-parallel-size shards the model, or says which dimension does not divide") {
  // The tiny preset: 4 heads, 2 KV heads, intermediate 160.
  const auto dir = TinyModel("tp");
  ModelLoadOptions options = Options(dir);
  options.tensor_parallel_size = 2;
  absl::StatusOr<LoadedModel> two = LoadModel(options);
  REQUIRE(two.ok());
  CHECK(two->backend.rfind("2 ranks x cpu", 0) == 0);
  // The KV budget is shared by the ranks, each holding half the KV heads:
  // the block count is TP = 1's.
  options.tensor_parallel_size = 1;
  absl::StatusOr<LoadedModel> one = LoadModel(options);
  REQUIRE(one.ok());
  CHECK(two->executor->num_kv_blocks() == one->executor->num_kv_blocks());
  options.tensor_parallel_size = 3;
  absl::StatusOr<LoadedModel> three = LoadModel(options);
  REQUIRE(!three.ok());
  CHECK(std::string(three.status().message()).find("num_attention_heads (4)") !=
        std::string::npos);
  options.tensor_parallel_size = 2;
  options.device = "cuda";
  CHECK(LoadModel(options).status().code() == absl::StatusCode::kUnimplemented);
}

TEST_CASE("quantization = int8: int8 linear weights, the checkpoint's dtype elsewhere") {
  const auto dir = TinyModel("int8", kernels::DType::kBF16);
  ModelLoadOptions options = Options(dir);
  absl::StatusOr<LoadedModel> plain = LoadModel(options);
  REQUIRE(plain.ok());
  CHECK(plain->quantization == "none");
  CHECK(plain->info.quantization() == "none");
  options.quantization = model::Quantization::kInt8;
  absl::StatusOr<LoadedModel> int8 = LoadModel(options);
  INFO(int8.status().ToString());
  REQUIRE(int8.ok());
  CHECK(int8->quantization == "int8");
  CHECK(int8->info.quantization() == "int8");
  CHECK(int8->info.dtype() == "BF16");
  // kv_cache_dtype auto follows the checkpoint, not the int8 matrices.
  CHECK(int8->kv_cache_dtype == "BF16");
  CHECK(int8->info.num_parameters() == plain->info.num_parameters());
  // Half the bytes per decoded token, plus the scales.
  CHECK(int8->weight_bytes_per_token < plain->weight_bytes_per_token * 6 / 10);
  // The built-in models take it too.
  options.model = "demo";
  absl::StatusOr<LoadedModel> demo = LoadModel(options);
  REQUIRE(demo.ok());
  CHECK(demo->quantization == "int8");
  std::filesystem::remove_all(dir);
}

TEST_CASE("generation_config.json: stop ids and sampling defaults") {
  const auto dir = TinyModel("generation");
  // Without the file: the engine's own defaults.
  absl::StatusOr<LoadedModel> plain = LoadModel(Options(dir));
  REQUIRE(plain.ok());
  CHECK(plain->sampling_defaults.temperature == 1.0f);
  CHECK(plain->sampling_defaults_source == "none");
  const std::vector<int32_t> config_eos = plain->eos_token_ids;

  std::ofstream(dir / "generation_config.json")
      << R"({"eos_token_id": [257, 300], "temperature": 0.6, "top_p": 0.9, "do_sample": true})";
  absl::StatusOr<LoadedModel> loaded = LoadModel(Options(dir));
  REQUIRE(loaded.ok());
  CHECK(loaded->sampling_defaults.temperature == 0.6f);
  CHECK(loaded->sampling_defaults.top_p == 0.9f);
  CHECK(loaded->sampling_defaults_source == "temperature=0.6 top_p=0.9");
  // config.json's ids first, then the new ones, each once.
  std::vector<int32_t> expected = config_eos;
  for (int32_t id : {257, 300}) {
    if (std::find(expected.begin(), expected.end(), id) == expected.end()) expected.push_back(id);
  }
  CHECK(loaded->eos_token_ids == expected);
  CHECK(std::find(loaded->eos_token_ids.begin(), loaded->eos_token_ids.end(), 300) !=
        loaded->eos_token_ids.end());

  ModelLoadOptions none = Options(dir);
  none.use_generation_config_defaults = false;
  absl::StatusOr<LoadedModel> off = LoadModel(none);
  REQUIRE(off.ok());
  CHECK(off->sampling_defaults.temperature == 1.0f);
  CHECK(off->eos_token_ids == expected);  // stop ids count either way

  std::ofstream(dir / "generation_config.json") << R"({"top_p": 0})";
  absl::StatusOr<LoadedModel> bad = LoadModel(Options(dir));
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.status().message()).find("generation_config.json: top_p must be") !=
        std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST_CASE("the chat template is found, and its absence reported") {
  const auto dir = TinyModel("chat");
  absl::StatusOr<LoadedModel> plain = LoadModel(Options(dir));
  REQUIRE(plain.ok());
  CHECK(plain->chat_renderer == nullptr);
  CHECK_FALSE(plain->info.has_chat_template());
  std::ofstream(dir / "chat_template.jinja") << "{% for m in messages %}{{ m.content }}{% endfor %}";
  absl::StatusOr<LoadedModel> chat = LoadModel(Options(dir));
  REQUIRE(chat.ok());
  REQUIRE(chat->chat_renderer != nullptr);
  CHECK(chat->info.has_chat_template());
  ChatInput input;
  input.messages = {{{"role", "user"}, {"content", "hi"}}};
  CHECK(*chat->chat_renderer->Render(input) == "hi");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kestrel::server

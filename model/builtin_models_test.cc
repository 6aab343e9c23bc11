#include "model/builtin_models.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "model/demo/stories260K_golden.h"
#include "model/synthetic.h"
#include "nlohmann/json.hpp"
#include "testing/shared_data.h"

namespace kestrel::model {
namespace {

namespace fs = std::filesystem;

using demo::kGoldenOutputIds;
using demo::kGoldenOutputText;
using demo::kGoldenPrompt;
using demo::kGoldenPromptIds;

TEST_CASE("demo is stories260K: its shape, tokenizer and licence", "[builtin_models]") {
  absl::StatusOr<BuiltinModel> demo = LoadBuiltinModel("demo");
  REQUIRE(demo.ok());
  CHECK(demo->name == "stories260K-demo");
  const ModelConfig& c = demo->weights->config();
  CHECK(c.vocab_size == 512);
  CHECK(c.hidden_size == 64);
  CHECK(c.num_hidden_layers == 5);
  CHECK(c.max_position_embeddings == 512);
  // </s> as in config.json, and BOS, where llama2.c ends a story.
  CHECK(c.eos_token_ids == std::vector<int64_t>{2, 1});
  CHECK(demo->weights->checkpoint().tensors().size() == 47);
  CHECK(demo->weights->checkpoint().data_bytes() == 1040128);

  REQUIRE(demo->tokenizer != nullptr);
  auto ids = demo->tokenizer->Encode(kGoldenPrompt, {});
  REQUIRE(ids.ok());
  CHECK(*ids == kGoldenPromptIds);
  auto text = demo->tokenizer->Decode(kGoldenOutputIds, /*skip_special_tokens=*/true);
  REQUIRE(text.ok());
  CHECK(*text == kGoldenOutputText);
  // Newlines are byte-fallback tokens (<0x0A> is id 13) and decode to "\n".
  auto newline = demo->tokenizer->Decode(std::vector<int32_t>{426, 13, 438, 310}, true);
  REQUIRE(newline.ok());
  CHECK(*newline == ".\nLily");

  CHECK(DemoModelLicense().find("MIT License") != std::string_view::npos);
  CHECK(DemoModelLicense().find("Copyright (c) 2023 Andrej") != std::string_view::npos);
}

TEST_CASE("the embedded demo is byte for byte the shared stories260K", "[builtin_models]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  auto demo = LoadBuiltinModel("demo");
  REQUIRE(demo.ok());
  auto shared = ModelWeights::Load({.dir = dir});
  REQUIRE(shared.ok());
  const SafetensorsCheckpoint& a = demo->weights->checkpoint();
  const SafetensorsCheckpoint& b = (*shared)->checkpoint();
  REQUIRE(a.tensors().size() == b.tensors().size());
  for (const LoadedTensor& t : b.tensors()) {
    INFO(t.name);
    const LoadedTensor* e = a.Find(t.name);
    REQUIRE(e != nullptr);
    CHECK(e->shape == t.shape);
    REQUIRE(e->nbytes == t.nbytes);
    CHECK(std::memcmp(e->data, t.data, t.nbytes) == 0);
  }
  // The golden copy the offline tests use is the shared reference.
  std::ifstream in(dir / "golden/greedy.json");
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json golden = nlohmann::json::parse(text.str());
  CHECK(golden["prompt"] == kGoldenPrompt);
  CHECK(golden["prompt_ids"].get<std::vector<int32_t>>() == kGoldenPromptIds);
  CHECK(golden["greedy"]["output_ids"].get<std::vector<int32_t>>() == kGoldenOutputIds);
  CHECK(golden["greedy"]["output_text"] == kGoldenOutputText);

  auto tok = tokenizer::Tokenizer::LoadFromDirectory(dir.string(), {});
  REQUIRE(tok.ok());
  const std::vector<int32_t> all = [] {
    std::vector<int32_t> v(512);
    for (int32_t i = 0; i < 512; ++i) v[i] = i;
    return v;
  }();
  CHECK(*demo->tokenizer->Decode(all, false) == *(*tok)->Decode(all, false));
}

TEST_CASE("random keeps its shape, and its weights are the old generated demo's", "[builtin_models]") {
  absl::StatusOr<BuiltinModel> random = LoadBuiltinModel("random");
  REQUIRE(random.ok());
  CHECK(random->name == "random");
  const ModelConfig& c = random->weights->config();
  CHECK(c.vocab_size == 320);
  CHECK(c.num_hidden_layers == 2);
  CHECK(c.max_position_embeddings == 1024);
  auto hi = random->tokenizer->Encode("hi", {.add_special_tokens = false});
  REQUIRE(hi.ok());
  CHECK(*hi == std::vector<int32_t>{'h', 'i'});

  // What the loader used to do: write the "tiny" preset with this seed to a
  // directory and load it.
  const char* tmp = std::getenv("TEST_TMPDIR");
  const fs::path dir = fs::path(tmp != nullptr ? tmp : "/tmp") / "builtin_models_random";
  fs::remove_all(dir);
  auto config = SyntheticPresetConfig("tiny", kernels::DType::kF32);
  REQUIRE(config.ok());
  REQUIRE(WriteSyntheticCheckpoint({.dir = dir, .config_json = *config, .seed = 20261125,
                                    .write_tokenizer = false})
              .ok());
  auto written = ModelWeights::Load({.dir = dir});
  REQUIRE(written.ok());
  for (const LoadedTensor& t : (*written)->checkpoint().tensors()) {
    INFO(t.name);
    const LoadedTensor* e = random->weights->checkpoint().Find(t.name);
    REQUIRE(e != nullptr);
    REQUIRE(e->nbytes == t.nbytes);
    CHECK(std::memcmp(e->data, t.data, t.nbytes) == 0);
  }
  CHECK(random->weights->checkpoint().tensors().size() ==
        (*written)->checkpoint().tensors().size());
}

TEST_CASE("only demo and random are built in", "[builtin_models]") {
  CHECK(IsBuiltinModel("demo"));
  CHECK(IsBuiltinModel("random"));
  CHECK_FALSE(IsBuiltinModel("stories260K"));
  absl::StatusOr<BuiltinModel> none = LoadBuiltinModel("tiny");
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().code() == absl::StatusCode::kNotFound);
  CHECK(none.status().message() == "no built-in model \"tiny\" (known: demo, random)");
}

}  // namespace
}  // namespace kestrel::model

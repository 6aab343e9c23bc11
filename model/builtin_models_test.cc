#include "model/builtin_models.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "model/synthetic.h"
#include "testing/shared_data.h"

namespace kestrel::model {
namespace {

namespace fs = std::filesystem;

// llama2.c's run.c on the original stories260K checkpoint, greedy, prompt
// "Once upon a time" (../shared/models/stories260K/golden/greedy.json): the
// prompt's ids and the 60 generated ids with their text.
const std::vector<int32_t> kPromptIds = {1, 403, 407, 261, 378};
const std::vector<int32_t> kGreedyIds = {
    432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338,
    401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282,
    295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352,
    266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432,
    398, 312, 286, 267, 414, 270, 333, 415, 426, 13, 438, 310};
constexpr char kGreedyText[] =
    ", there was a little girl named Lily. She loved to play outside in th"
    "e park. One day, she saw a big, red ball. She wanted to play with it, "
    "but it was too high.\nLily";

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
  auto ids = demo->tokenizer->Encode("Once upon a time", {});
  REQUIRE(ids.ok());
  CHECK(*ids == kPromptIds);
  auto text = demo->tokenizer->Decode(kGreedyIds, /*skip_special_tokens=*/true);
  REQUIRE(text.ok());
  CHECK(*text == kGreedyText);
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

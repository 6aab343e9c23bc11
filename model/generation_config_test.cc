// generation_config.json: Llama 3 Instruct's and Qwen2.5's real files (their
// end-of-turn ids, their sampling defaults), absent fields, and every bad
// value named.
#include "model/generation_config.h"

#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

namespace kestrel::model {
namespace {

TEST_CASE("Llama 3.1 Instruct: end-of-turn ids and sampling defaults") {
  // The file as published (Meta-Llama-3.1-8B-Instruct).
  auto c = GenerationConfig::Parse(R"({
    "bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128008, 128009],
    "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.42.3"})",
                                   128256);
  REQUIRE(c.ok());
  CHECK(c->eos_token_ids == std::vector<int64_t>{128001, 128008, 128009});
  REQUIRE(c->has_sampling_defaults());
  const SamplingParams defaults = c->SamplingDefaults();
  CHECK(defaults.temperature == 0.6f);
  CHECK(defaults.top_p == 0.9f);
  CHECK(defaults.top_k == 0);                  // not in the file: the engine's default
  CHECK(defaults.repetition_penalty == 1.0f);  // likewise
  CHECK(c->DescribeSamplingDefaults() == "temperature=0.6 top_p=0.9");
}

TEST_CASE("Qwen2.5 Instruct: top_k and repetition_penalty; a single eos id") {
  auto c = GenerationConfig::Parse(R"({"bos_token_id": 151643, "pad_token_id": 151643,
    "do_sample": true, "eos_token_id": [151645, 151643], "repetition_penalty": 1.05,
    "temperature": 0.7, "top_p": 0.8, "top_k": 20})",
                                   151936);
  REQUIRE(c.ok());
  CHECK(c->SamplingDefaults().top_k == 20);
  CHECK(c->SamplingDefaults().repetition_penalty == 1.05f);
  auto single = GenerationConfig::Parse(R"({"eos_token_id": 2, "do_sample": false})", 512);
  REQUIRE(single.ok());
  CHECK(single->eos_token_ids == std::vector<int64_t>{2});
  CHECK_FALSE(single->has_sampling_defaults());  // do_sample alone changes nothing, as in vLLM
  CHECK(single->DescribeSamplingDefaults() == "none");
  auto disabled = GenerationConfig::Parse(R"({"top_k": -1, "temperature": null})", 512);
  REQUIRE(disabled.ok());
  CHECK(disabled->top_k == 0);
  CHECK_FALSE(disabled->temperature.has_value());
}

TEST_CASE("bad values are named") {
  auto error = [](const char* text) {
    auto c = GenerationConfig::Parse(text, 1000);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == absl::StatusCode::kInvalidArgument);
    return std::string(c.status().message());
  };
  CHECK(error("[1]") == "generation_config.json: not a JSON object");
  CHECK(error("{") == "generation_config.json: not a JSON object");
  CHECK(error(R"({"top_p": 1.5})") == "generation_config.json: top_p must be a number in (0, 1], got 1.5");
  CHECK(error(R"({"temperature": "hot"})") ==
        "generation_config.json: temperature must be a number in [0, 100], got \"hot\"");
  CHECK(error(R"({"repetition_penalty": 0})") ==
        "generation_config.json: repetition_penalty must be a number in (0, 10], got 0");
  CHECK(error(R"({"top_k": 2.5})") == "generation_config.json: top_k must be an integer >= -1, got 2.5");
  CHECK(error(R"({"eos_token_id": [1, 1000]})") ==
        "generation_config.json: eos_token_id must be a token id in [0, 1000) or a list of them, got [1,1000]");
}

TEST_CASE("LoadFromDir: absent file is an empty config; errors name the path") {
  const auto dir = std::filesystem::temp_directory_path() / "kestrel_generation_config_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto none = GenerationConfig::LoadFromDir(dir, 100);
  REQUIRE(none.ok());
  CHECK(none->eos_token_ids.empty());
  CHECK_FALSE(none->has_sampling_defaults());
  std::ofstream(dir / "generation_config.json") << R"({"min_p": 2})";
  auto bad = GenerationConfig::LoadFromDir(dir, 100);
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.status().message()) ==
        (dir / "generation_config.json").string() +
            ": generation_config.json: min_p must be a number in [0, 1], got 2");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kestrel::model

#include "model/tokenizer/post_processors.h"

#include <vector>

#include <catch2/catch.hpp>

namespace kestrel::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

Ids Apply(const char* json, Ids ids) {
  auto processor = PostProcessor::FromJson(Json::parse(json));
  REQUIRE(processor.ok());
  (*processor)->AddSpecialTokens(&ids);
  return ids;
}

TEST_CASE("TemplateProcessing adds BOS/EOS around the sequence") {
  const char* mistral = R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
      "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}})";
  CHECK(Apply(mistral, {5, 6}) == Ids{1, 5, 6});
  const char* string_form = R"({"type": "TemplateProcessing", "single": "<s> $A </s>",
      "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                         "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}})";
  CHECK(Apply(string_form, {}) == Ids{1, 2});
}

TEST_CASE("ByteLevel adds nothing; Sequence chains; Bert wraps") {
  CHECK(Apply(R"({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false})", {7}) == Ids{7});
  CHECK(Apply(R"({"type": "Sequence", "processors": [{"type": "ByteLevel"},
      {"type": "TemplateProcessing", "single": "<s> $A",
       "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}]})", {7}) == Ids{1, 7});
  CHECK(Apply(R"({"type": "BertProcessing", "sep": ["[SEP]", 102], "cls": ["[CLS]", 101]})", {7}) ==
        Ids{101, 7, 102});
}

TEST_CASE("post_processor errors") {
  auto unknown = PostProcessor::FromJson(Json::parse(R"({"type": "Fancy"})"));
  REQUIRE_FALSE(unknown.ok());
  CHECK(std::string(unknown.status().message()).find("\"Fancy\"") != std::string::npos);
  auto missing = PostProcessor::FromJson(Json::parse(
      R"({"type": "TemplateProcessing", "single": "<s> $A", "special_tokens": {}})"));
  REQUIRE_FALSE(missing.ok());
  CHECK(std::string(missing.status().message()).find("\"<s>\"") != std::string::npos);
  CHECK_FALSE(PostProcessor::FromJson(Json::parse(
      R"({"type": "TemplateProcessing", "single": "$B", "special_tokens": {}})")).ok());
  CHECK_FALSE(PostProcessor::FromJson(Json::parse(R"({"type": "TemplateProcessing"})")).ok());
}

}  // namespace
}  // namespace kestrel::tokenizer

#include "model/tokenizer/tokenizer.h"

#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "testing/shared_data.h"

namespace kestrel::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

// A tiny SentencePiece-style tokenizer.json, enough to exercise the facade
// without the shared data.
constexpr char kTiny[] = R"({
  "version": "1.0",
  "added_tokens": [
    {"id": 0, "content": "<unk>", "special": true, "normalized": false},
    {"id": 1, "content": "<s>", "special": true, "normalized": false},
    {"id": 2, "content": "</s>", "special": true, "normalized": false}],
  "normalizer": {"type": "Sequence", "normalizers": [
    {"type": "Prepend", "prepend": "\u2581"},
    {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
  "pre_tokenizer": null,
  "post_processor": {"type": "TemplateProcessing", "single": "<s> $A",
    "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
  "decoder": {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
    "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0xC3>": 3, "<0xA9>": 4,
              "\u2581": 5, "h": 6, "i": 7, "\u2581h": 8, "\u2581hi": 9},
    "merges": ["\u2581 h", "\u2581h i"]}
})";

constexpr char kTinyConfig[] = R"({"bos_token": "<s>", "eos_token": {"content": "</s>"},
  "unk_token": "<unk>", "pad_token": null, "add_bos_token": true, "chat_template": "{{ x }}"})";

std::unique_ptr<Tokenizer> Tiny() {
  auto tokenizer = Tokenizer::FromJson(kTiny, kTinyConfig, {});
  REQUIRE(tokenizer.ok());
  return *std::move(tokenizer);
}

TEST_CASE("encode and decode through the whole pipeline") {
  auto tok = Tiny();
  EncodeOptions plain{.add_special_tokens = false, .parse_special_tokens = true};
  CHECK(*tok->Encode("hi hi", plain) == Ids{9, 9});
  CHECK(*tok->Encode("hi hi", {}) == Ids{1, 9, 9});
  CHECK(*tok->Encode("hi</s>", plain) == Ids{9, 2});
  CHECK(*tok->Encode("\xC3\xA9", plain) == Ids{5, 3, 4});  // byte fallback
  CHECK(*tok->Decode(Ids{1, 9, 9, 2}, false) == "<s> hi hi</s>");
  CHECK(*tok->Decode(Ids{1, 9, 9, 2}, true) == "hi hi");
  CHECK(*tok->Decode(Ids{9, 12345, -1}, false) == "hi");  // unknown ids are skipped
}

TEST_CASE("special-token text can be treated as plain text") {
  auto tok = Tiny();
  EncodeOptions user{.add_special_tokens = false, .parse_special_tokens = false};
  const Ids ids = *tok->Encode("</s>", user);
  CHECK(std::find(ids.begin(), ids.end(), 2) == ids.end());
}

TEST_CASE("config fields are loaded") {
  auto tok = Tiny();
  CHECK(tok->config().bos_id == 1);
  CHECK(tok->config().eos_id == 2);
  CHECK(tok->config().unk_id == 0);
  CHECK_FALSE(tok->config().pad_token.has_value());
  CHECK(tok->config().add_bos_token);
  CHECK_FALSE(tok->config().add_eos_token);
  CHECK(tok->config().chat_template == "{{ x }}");
  CHECK(tok->vocab_size() == 10);
  CHECK(tok->IsSpecialToken(1));
  CHECK_FALSE(tok->IsSpecialToken(9));
  CHECK(tok->IsByteFallbackToken(3));
  CHECK_FALSE(tok->IsByteFallbackToken(9));
  CHECK(tok->TokenToId("\xE2\x96\x81hi") == 9);
}

TEST_CASE("invalid UTF-8 input is an error, not a crash") {
  auto tok = Tiny();
  auto ids = tok->Encode("a\xFF", {});
  REQUIRE_FALSE(ids.ok());
  CHECK(ids.status().code() == absl::StatusCode::kInvalidArgument);
}

// Replaces the first occurrence of `from` in kTiny.
std::string Mutated(const std::string& from, const std::string& to) {
  std::string json = kTiny;
  const size_t pos = json.find(from);
  REQUIRE(pos != std::string::npos);
  json.replace(pos, from.size(), to);
  return json;
}

void ExpectError(const std::string& json, const std::string& needle) {
  auto tok = Tokenizer::FromJson(json, "", {});
  REQUIRE_FALSE(tok.ok());
  INFO(tok.status().message());
  CHECK(std::string(tok.status().message()).find(needle) != std::string::npos);
}

TEST_CASE("malformed tokenizer.json files give clear errors") {
  ExpectError(std::string(kTiny).substr(0, 300), "not valid JSON");
  ExpectError("[1, 2]", "must be a JSON object");
  ExpectError(std::string(100000, '[') + std::string(100000, ']'), "nested 100000 levels deep");
  ExpectError(Mutated("\"model\":", "\"modle\":"), "missing field \"model\"");
  ExpectError(Mutated("\"type\": \"BPE\"", "\"type\": \"WordPiece\""), "\"WordPiece\"");
  ExpectError(Mutated("\"type\": \"BPE\"", "\"type\": \"Unigram\""), "\"Unigram\"");
  ExpectError(Mutated("\"type\": \"Prepend\"", "\"type\": \"Precompiled\""), "\"Precompiled\"");
  ExpectError(Mutated("\"type\": \"Fuse\"", "\"type\": \"CTC\""), "\"CTC\"");
  ExpectError(Mutated("\"pre_tokenizer\": null", "\"pre_tokenizer\": {\"type\": \"UnicodeScripts\"}"),
              "\"UnicodeScripts\"");
  ExpectError(Mutated("\"\\u2581h i\"", "\"\\u2581h zz\""), "\"zz\" which is not in the vocabulary");
  ExpectError(Mutated("\"pre_tokenizer\": null",
                      R"("pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(?<!"}, "behavior": "Isolated"})"),
              "invalid regex");
  ExpectError(Mutated("\"id\": 2,", "\"id\": \"2\","), "added_tokens[2].id");
  auto bad_config = Tokenizer::FromJson(kTiny, "{\"bos_token\": 5}", {});
  REQUIRE_FALSE(bad_config.ok());
  CHECK(std::string(bad_config.status().message()).find("tokenizer_config.bos_token") != std::string::npos);
  auto missing_dir = Tokenizer::LoadFromDirectory("/nonexistent/kestrel", {});
  REQUIRE_FALSE(missing_dir.ok());
  CHECK(missing_dir.status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("llama3: config, special tokens and the injection switch") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "tokenizers/llama3");
  auto tok = Tokenizer::LoadFromDirectory(dir.string(), {});
  REQUIRE(tok.ok());
  CHECK((*tok)->config().bos_id == 128000);
  CHECK((*tok)->config().eos_id == 128001);
  CHECK_FALSE((*tok)->config().chat_template.empty());
  CHECK((*tok)->vocab_size() == 128256);
  EncodeOptions trusted{.add_special_tokens = false, .parse_special_tokens = true};
  EncodeOptions user{.add_special_tokens = false, .parse_special_tokens = false};
  CHECK(*(*tok)->Encode("<|eot_id|>", trusted) == Ids{128009});
  const Ids plain = *(*tok)->Encode("<|eot_id|>", user);
  CHECK(plain.size() > 1);
  for (int32_t id : plain) CHECK(id < 128000);
  CHECK(*(*tok)->Decode(plain, false) == "<|eot_id|>");
}

TEST_CASE("concurrent encodes agree with single-threaded results") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "tokenizers/mistral_v0_1");
  Tokenizer::Options options;
  options.word_cache_capacity = 256;  // small, so threads also evict
  auto tok = Tokenizer::LoadFromDirectory(dir.string(), options);
  REQUIRE(tok.ok());
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) {
    texts.push_back("Item " + std::to_string(i * 7919) + ": caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD " +
                    std::string(i % 5, ' ') + "for (int i = 0; i < n; ++i) {}");
  }
  std::vector<Ids> expected;
  for (const auto& text : texts) expected.push_back(*(*tok)->Encode(text, {}));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (size_t i = t; i < texts.size(); i += 1) {
          auto ids = (*tok)->Encode(texts[i], {});
          if (!ids.ok() || *ids != expected[i]) ++mismatches;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(mismatches == 0);
}

}  // namespace
}  // namespace kestrel::tokenizer

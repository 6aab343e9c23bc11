#include "model/tokenizer/incremental_detokenizer.h"

#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "model/tokenizer/unicode_util.h"
#include "testing/shared_data.h"

namespace kestrel::tokenizer {
namespace {

// Streams `ids` and checks every delta is complete UTF-8 and that the deltas
// concatenate to the whole-sequence decode.
void CheckStream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  IncrementalDetokenizer detok(&tok, skip);
  std::string streamed;
  for (int32_t id : ids) {
    auto delta = detok.Add(id);
    REQUIRE(delta.ok());
    CHECK(IsValidUtf8(*delta));
    streamed += *delta;
  }
  auto rest = detok.Finish();
  REQUIRE(rest.ok());
  streamed += *rest;
  auto whole = tok.Decode(ids, skip);
  REQUIRE(whole.ok());
  CHECK(streamed == *whole);
}

std::vector<int32_t> RandomIds(std::mt19937& rng, const Tokenizer& tok, size_t n,
                               const std::vector<int32_t>& favourites) {
  std::uniform_int_distribution<int32_t> any(0, tok.vocab_size() - 1);
  std::uniform_int_distribution<size_t> pick(0, favourites.size() - 1);
  std::vector<int32_t> ids;
  for (size_t i = 0; i < n; ++i) ids.push_back(rng() % 3 == 0 ? favourites[pick(rng)] : any(rng));
  return ids;
}

// A small vocabulary with markers, spaces and byte tokens under a given
// decoder, for decoders the shared files do not use.
std::unique_ptr<Tokenizer> WithDecoder(const std::string& decoder) {
  const std::string json = R"({"added_tokens": [{"id": 0, "content": "<s>", "special": true}],
    "model": {"type": "BPE", "merges": [], "vocab": {"<s>": 0, "\u2581": 1, "a": 2, "\u2581b": 3,
      "\u2581\u2581": 4, " ": 5, "c ": 6, "<0xC3>": 7, "<0xA9>": 8, "<0xE2>": 9, "\u00e9": 10}},
    "decoder": )" + decoder + "}";
  auto tok = Tokenizer::FromJson(json, "", {});
  REQUIRE(tok.ok());
  return *std::move(tok);
}

TEST_CASE("other decoders stream exactly too (Metaspace, Strip with stop, no Fuse)") {
  const std::vector<std::string> decoders = {
      R"({"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always"})",
      R"({"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
          {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 1}]})",
      R"({"type": "Sequence", "decoders": [{"type": "ByteFallback"},
          {"type": "Strip", "content": " ", "start": 1, "stop": 1}]})",
      R"({"type": "Sequence", "decoders": [{"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first"}, {"type": "ByteFallback"}]})",
  };
  std::mt19937 rng(3);
  for (const std::string& decoder : decoders) {
    INFO(decoder);
    auto tok = WithDecoder(decoder);
    for (int trial = 0; trial < 300; ++trial) {
      std::vector<int32_t> ids;
      const size_t n = 1 + trial % 30;
      for (size_t i = 0; i < n; ++i) ids.push_back(static_cast<int32_t>(rng() % 11));
      CheckStream(*tok, ids, false);
      CheckStream(*tok, ids, true);
    }
  }
}

TEST_CASE("mistral: random id streams, byte tokens and specials included") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "tokenizers/mistral_v0_1");
  auto tok = Tokenizer::LoadFromDirectory(dir.string(), {});
  REQUIRE(tok.ok());
  // Byte tokens (ids 3..258), specials and "▁" make the hard cases common.
  std::vector<int32_t> favourites = {0, 1, 2, 28705};
  for (int32_t id = 3; id < 259; id += 5) favourites.push_back(id);
  std::mt19937 rng(42);
  for (int trial = 0; trial < 200; ++trial) {
    const auto ids = RandomIds(rng, **tok, 1 + trial % 40, favourites);
    CheckStream(**tok, ids, false);
    CheckStream(**tok, ids, true);
  }
  // An emoji spelled in byte tokens, cut off before its last byte.
  const auto emoji = *(*tok)->Encode("a \xF0\x9F\xA6\x99 b", {});
  CheckStream(**tok, emoji, false);
  CheckStream(**tok, std::vector<int32_t>(emoji.begin(), emoji.end() - 3), false);
}

TEST_CASE("llama3: random id streams split characters across tokens") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "tokenizers/llama3");
  auto tok = Tokenizer::LoadFromDirectory(dir.string(), {});
  REQUIRE(tok.ok());
  // Single-byte tokens (the byte alphabet) split multi-byte characters.
  std::vector<int32_t> favourites = {128000, 128009, 220};
  for (int b = 0; b < 256; b += 3) {
    auto id = (*tok)->TokenToId(ByteToUnicode()[b]);
    if (id) favourites.push_back(*id);
  }
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const auto ids = RandomIds(rng, **tok, 1 + trial % 40, favourites);
    CheckStream(**tok, ids, false);
    CheckStream(**tok, ids, true);
  }
  // A long stream exercises the window compaction.
  std::string text;
  for (int i = 0; i < 50; ++i) text += "Streaming \xF0\x9F\x98\x81 text \xE4\xBD\xA0\xE5\xA5\xBD, line " + std::to_string(i) + "\n";
  CheckStream(**tok, *(*tok)->Encode(text, {}), false);
}

}  // namespace
}  // namespace kestrel::tokenizer

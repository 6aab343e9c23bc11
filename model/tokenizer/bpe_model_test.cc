#include "model/tokenizer/bpe_model.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace kestrel::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

absl::StatusOr<std::unique_ptr<BpeModel>> Make(const std::string& json) {
  return BpeModel::FromJson(Json::parse(json), {});
}

Ids Tok(const BpeModel& model, const std::string& word) {
  Ids ids;
  REQUIRE(model.Tokenize(word, &ids).ok());
  return ids;
}

TEST_CASE("merges apply by rank, in both serialized forms") {
  // "b c" outranks "a b", so "abc" is a + bc, not ab + c.
  auto model = Make(R"({"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5},
                        "merges": ["b c", ["a", "b"]]})");
  REQUIRE(model.ok());
  CHECK(Tok(**model, "abc") == Ids{0, 4});
  CHECK(Tok(**model, "abc") == Ids{0, 4});  // second time from the cache
  CHECK(Tok(**model, "ab") == Ids{3});
  CHECK(Tok(**model, "cab") == Ids{2, 3});
  CHECK(Tok(**model, "") == Ids{});
}

TEST_CASE("equal ranks merge leftmost first") {
  auto model = Make(R"({"type": "BPE", "vocab": {"a": 0, "aa": 1}, "merges": ["a a"]})");
  REQUIRE(model.ok());
  CHECK(Tok(**model, "aaa") == Ids{1, 0});
  CHECK(Tok(**model, "aaaa") == Ids{1, 1});
}

TEST_CASE("unknown characters: unk, fuse_unk, byte_fallback, dropped") {
  auto fused = Make(R"({"type": "BPE", "unk_token": "<unk>", "fuse_unk": true,
                        "vocab": {"<unk>": 0, "a": 1}, "merges": []})");
  REQUIRE(fused.ok());
  CHECK(Tok(**fused, "a\xC3\xA9\xC3\xA9" "a") == Ids{1, 0, 1});
  auto unfused = Make(R"({"type": "BPE", "unk_token": "<unk>", "fuse_unk": false,
                          "vocab": {"<unk>": 0, "a": 1}, "merges": []})");
  REQUIRE(unfused.ok());
  CHECK(Tok(**unfused, "\xC3\xA9\xC3\xA9") == Ids{0, 0});
  auto bytes = Make(R"({"type": "BPE", "byte_fallback": true, "unk_token": "<unk>",
                        "vocab": {"<unk>": 0, "<0xC3>": 1, "<0xA9>": 2, "a": 3}, "merges": []})");
  REQUIRE(bytes.ok());
  CHECK(Tok(**bytes, "a\xC3\xA9") == Ids{3, 1, 2});
  CHECK(Tok(**bytes, "\xE2\x82\xAC") == Ids{0});  // a byte is missing: unk
  auto none = Make(R"({"type": "BPE", "vocab": {"a": 0}, "merges": []})");
  REQUIRE(none.ok());
  CHECK(Tok(**none, "a\xC3\xA9" "a") == Ids{0, 0});
}

TEST_CASE("ignore_merges takes whole-word vocabulary hits first") {
  auto model = Make(R"({"type": "BPE", "ignore_merges": true,
                        "vocab": {"a": 0, "b": 1, "ab": 2, "abb": 3, "bb": 4}, "merges": ["a b", "b b"]})");
  REQUIRE(model.ok());
  CHECK(Tok(**model, "abb") == Ids{3});
  CHECK(Tok(**model, "abbb") == Ids{2, 4});
}

TEST_CASE("continuing_subword_prefix and end_of_word_suffix") {
  auto model = Make(R"({"type": "BPE", "continuing_subword_prefix": "##",
                        "vocab": {"a": 0, "##b": 1, "ab": 2}, "merges": ["a ##b"]})");
  REQUIRE(model.ok());
  CHECK(Tok(**model, "ab") == Ids{2});
  auto suffix = Make(R"({"type": "BPE", "end_of_word_suffix": "</w>",
                         "vocab": {"a": 0, "b</w>": 1}, "merges": []})");
  REQUIRE(suffix.ok());
  CHECK(Tok(**suffix, "ab") == Ids{0, 1});
}

TEST_CASE("malformed models are errors naming the problem") {
  auto unknown = Make(R"({"type": "BPE", "vocab": {"a": 0}, "merges": ["a zz"]})");
  REQUIRE_FALSE(unknown.ok());
  CHECK(std::string(unknown.status().message()).find("\"zz\" which is not in the vocabulary") !=
        std::string::npos);
  auto no_result = Make(R"({"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]})");
  REQUIRE_FALSE(no_result.ok());
  CHECK(std::string(no_result.status().message()).find("makes \"ab\"") != std::string::npos);
  CHECK_FALSE(Make(R"({"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]})").ok());
  CHECK_FALSE(Make(R"({"type": "BPE", "vocab": {"a": -1}, "merges": []})").ok());
  CHECK_FALSE(Make(R"({"type": "BPE", "vocab": {"a": "x"}, "merges": []})").ok());
  CHECK_FALSE(Make(R"({"type": "BPE", "vocab": [], "merges": []})").ok());
  CHECK_FALSE(Make(R"({"type": "BPE", "vocab": {"a": 0}})").ok());
  CHECK_FALSE(Make(R"({"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"})").ok());
  CHECK_FALSE(Make(R"({"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": 0.1})").ok());
  CHECK(Make(R"({"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": null})").ok());
}

TEST_CASE("words are cut before the SentencePiece marker only when no merge crosses it") {
  // Safe vocabulary: "▁" only ever starts tokens, so cutting is invisible.
  auto safe = Make(R"({"type": "BPE", "vocab": {"\u2581": 0, "a": 1, "\u2581a": 2, "\u2581\u2581": 3},
                       "merges": ["\u2581 a", "\u2581 \u2581"]})");
  REQUIRE(safe.ok());
  // Unsplit, the reference merges every "▁ a" (rank 0) before "▁ ▁", leaving
  // a lone "▁"; the cut words must give the same.
  CHECK(Tok(**safe, "\u2581a\u2581\u2581a\u2581a") == Ids{2, 0, 2, 2});
  // "a▁" joins a character to a following marker: no cutting allowed.
  auto unsafe = Make(R"({"type": "BPE", "vocab": {"\u2581": 0, "a": 1, "a\u2581": 2, "a\u2581a": 3},
                         "merges": ["a \u2581", "a\u2581 a"]})");
  REQUIRE(unsafe.ok());
  CHECK(Tok(**unsafe, "a\u2581a") == Ids{3});
}

TEST_CASE("id and token lookups") {
  auto model = Make(R"({"type": "BPE", "vocab": {"a": 0, "b": 2}, "merges": []})");
  REQUIRE(model.ok());
  CHECK((*model)->TokenToId("b") == 2);
  CHECK_FALSE((*model)->TokenToId("c").has_value());
  REQUIRE((*model)->IdToToken(2) != nullptr);
  CHECK(*(*model)->IdToToken(2) == "b");
  CHECK((*model)->IdToToken(1) == nullptr);
  CHECK((*model)->IdToToken(-5) == nullptr);
  CHECK((*model)->id_limit() == 3);
}

}  // namespace
}  // namespace kestrel::tokenizer

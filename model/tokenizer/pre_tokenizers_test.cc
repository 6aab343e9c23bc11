#include "model/tokenizer/pre_tokenizers.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace kestrel::tokenizer {
namespace {

using V = std::vector<std::string>;

V Run(const char* json, const std::string& text) {
  auto pre = PreTokenizer::FromJson(Json::parse(json));
  REQUIRE(pre.ok());
  std::vector<Piece> pieces(1);
  pieces[0].text = text;
  pieces[0].at_origin = true;
  REQUIRE((*pre)->PreTokenize(&pieces).ok());
  V out;
  for (const Piece& p : pieces) out.push_back(p.text);
  return out;
}

TEST_CASE("ByteLevel with its GPT-2 regex and byte mapping") {
  CHECK(Run(R"({"type": "ByteLevel", "add_prefix_space": false})", "Hello world") ==
        V{"Hello", "\xC4\xA0world"});
  CHECK(Run(R"({"type": "ByteLevel", "add_prefix_space": true})", "Hello world") ==
        V{"\xC4\xA0Hello", "\xC4\xA0world"});
  // Without its regex it only maps bytes.
  CHECK(Run(R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": false})", "a b\n") ==
        V{"a\xC4\xA0" "b\xC4\x8A"});
}

TEST_CASE("Split with Isolated behaviour and invert") {
  const char* isolated = R"({"type": "Split", "pattern": {"Regex": "\\d+"}, "behavior": "Isolated", "invert": false})";
  CHECK(Run(isolated, "ab12cd") == V{"ab", "12", "cd"});
  const char* inverted = R"({"type": "Split", "pattern": {"Regex": "\\d+"}, "behavior": "Removed", "invert": true})";
  CHECK(Run(inverted, "ab12cd") == V{"12"});
}

TEST_CASE("Digits, Whitespace, WhitespaceSplit, Punctuation, Metaspace") {
  CHECK(Run(R"({"type": "Digits", "individual_digits": true})", "a123") == V{"a", "1", "2", "3"});
  CHECK(Run(R"({"type": "Digits", "individual_digits": false})", "a123b") == V{"a", "123", "b"});
  CHECK(Run(R"({"type": "Whitespace"})", "Hey man!! ok") == V{"Hey", "man", "!!", "ok"});
  CHECK(Run(R"({"type": "WhitespaceSplit"})", " Hey  man! ") == V{"Hey", "man!"});
  CHECK(Run(R"({"type": "Punctuation"})", "a,b") == V{"a", ",", "b"});
  CHECK(Run(R"({"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": true})",
            "Hey friend") == V{"\xE2\x96\x81Hey", "\xE2\x96\x81" "friend"});
  CHECK(Run(R"({"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": false, "split": false})",
            "a b") == V{"a\xE2\x96\x81" "b"});
}

TEST_CASE("pieces that are added tokens pass through untouched") {
  auto pre = PreTokenizer::FromJson(Json::parse(R"({"type": "WhitespaceSplit"})"));
  REQUIRE(pre.ok());
  std::vector<Piece> pieces(2);
  pieces[0].text = "a b";
  pieces[1].text = "<s> x";
  pieces[1].token_id = 1;
  REQUIRE((*pre)->PreTokenize(&pieces).ok());
  REQUIRE(pieces.size() == 3);
  CHECK(pieces[2].text == "<s> x");
  CHECK(pieces[2].token_id == 1);
}

TEST_CASE("pre_tokenizer errors name the type") {
  auto unknown = PreTokenizer::FromJson(Json::parse(R"({"type": "UnicodeScripts"})"));
  REQUIRE_FALSE(unknown.ok());
  CHECK(std::string(unknown.status().message()).find("\"UnicodeScripts\"") != std::string::npos);
  auto bad_regex = PreTokenizer::FromJson(Json::parse(
      R"({"type": "Split", "pattern": {"Regex": "(?<"}, "behavior": "Isolated"})"));
  REQUIRE_FALSE(bad_regex.ok());
  CHECK(std::string(bad_regex.status().message()).find("invalid regex") != std::string::npos);
  CHECK_FALSE(PreTokenizer::FromJson(Json::parse(
      R"({"type": "Split", "pattern": {"String": "x"}, "behavior": "Exploded"})")).ok());
  CHECK_FALSE(PreTokenizer::FromJson(Json::parse(R"({"type": "Sequence", "pretokenizers": 3})")).ok());
}

}  // namespace
}  // namespace kestrel::tokenizer

#include "model/tokenizer/added_vocabulary.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace kestrel::tokenizer {
namespace {

AddedToken Token(std::string content, int32_t id, bool special = true) {
  AddedToken token;
  token.content = std::move(content);
  token.id = id;
  token.special = special;
  token.normalized = !special;
  return token;
}

// Renders pieces as "text" or "[id]".
std::vector<std::string> Split(const AddedVocabulary& vocab, const std::string& text,
                               bool parse_special = true, const Normalizer* normalizer = nullptr) {
  std::vector<Piece> pieces;
  REQUIRE(vocab.ExtractAndNormalize(text, normalizer, parse_special, &pieces).ok());
  std::vector<std::string> out;
  for (const Piece& p : pieces) {
    out.push_back(p.token_id >= 0 ? "[" + std::to_string(p.token_id) + "]" : p.text);
  }
  return out;
}

using V = std::vector<std::string>;

TEST_CASE("leftmost-longest matching of literal tokens") {
  LiteralMatcher matcher({"<s>", "<s>x", "s>"});
  auto found = matcher.FindAll("a<s>xb<s>");
  REQUIRE(found.size() == 2);
  CHECK(found[0].pattern == 1);
  CHECK(found[0].start == 1);
  CHECK(found[0].end == 5);
  CHECK(found[1].pattern == 0);
}

TEST_CASE("special tokens split the text; the switch turns them off") {
  auto vocab = AddedVocabulary::Create({Token("<|eot_id|>", 9), Token("<s>", 1)}, nullptr);
  REQUIRE(vocab.ok());
  CHECK(Split(**vocab, "hi<|eot_id|>there<s>") == V{"hi", "[9]", "there", "[1]"});
  CHECK(Split(**vocab, "hi<|eot_id|>", /*parse_special=*/false) == V{"hi<|eot_id|>"});
  CHECK(Split(**vocab, "") == V{});
}

TEST_CASE("lstrip, rstrip and single_word") {
  AddedToken mask = Token("<mask>", 5);
  mask.lstrip = true;
  mask.rstrip = true;
  AddedToken word = Token("yo", 6, /*special=*/false);
  word.normalized = false;
  word.single_word = true;
  auto vocab = AddedVocabulary::Create({mask, word}, nullptr);
  REQUIRE(vocab.ok());
  CHECK(Split(**vocab, "a  <mask>  b") == V{"a", "[5]", "b"});
  CHECK(Split(**vocab, "yo yoyo, yo!") == V{"[6]", " yoyo, ", "[6]", "!"});
}

TEST_CASE("normalized tokens match the normalized text") {
  auto lower = Normalizer::FromJson(Json::parse(R"({"type": "Lowercase"})"));
  REQUIRE(lower.ok());
  AddedToken hello = Token("HELLO", 3, /*special=*/false);  // normalized: true
  auto vocab = AddedVocabulary::Create({hello}, lower->get());
  REQUIRE(vocab.ok());
  CHECK(Split(**vocab, "Say Hello!", true, lower->get()) == V{"say ", "[3]", "!"});
  CHECK((*vocab)->FindById(3)->content == "HELLO");
  CHECK((*vocab)->FindByContent("HELLO")->id == 3);
  CHECK((*vocab)->FindById(4) == nullptr);
}

TEST_CASE("ParseAddedToken validates fields") {
  auto ok = ParseAddedToken(Json::parse(R"({"id": 2, "content": "</s>", "special": true})"), 0);
  REQUIRE(ok.ok());
  CHECK(ok->id == 2);
  CHECK_FALSE(ok->normalized);  // specials default to not normalized
  auto bad = ParseAddedToken(Json::parse(R"({"id": "two", "content": "</s>"})"), 4);
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.status().message()).find("added_tokens[4].id") != std::string::npos);
  CHECK_FALSE(ParseAddedToken(Json::parse(R"({"id": 1})"), 0).ok());
  CHECK_FALSE(ParseAddedToken(Json::parse(R"({"id": -3, "content": "x"})"), 0).ok());
}

}  // namespace
}  // namespace kestrel::tokenizer

#include "model/tokenizer/pattern.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace kestrel::tokenizer {
namespace {

using Ranges = std::vector<std::pair<size_t, size_t>>;

constexpr char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::vector<std::string> Words(const Regex& regex, const std::string& text) {
  Ranges ranges;
  REQUIRE(regex.FindAll(text, &ranges).ok());
  std::vector<std::string> words;
  for (auto [s, e] : ranges) words.push_back(text.substr(s, e - s));
  return words;
}

TEST_CASE("Llama 3 pattern: classes, lookahead, case-insensitive contractions") {
  auto regex = Regex::Create(kLlama3Pattern);
  REQUIRE(regex.ok());
  using V = std::vector<std::string>;
  CHECK(Words(**regex, "Hello world  1234567 YOU'RE") ==
        V{"Hello", " world", " ", " ", "123", "456", "7", " YOU", "'RE"});
  CHECK(Words(**regex, "a  \n\tb") == V{"a", "  \n", "\tb"});
  CHECK(Words(**regex, "x   ") == V{"x", "   "});
  CHECK(Words(**regex, "\xE4\xBD\xA0\xE5\xA5\xBD!!") == V{"\xE4\xBD\xA0\xE5\xA5\xBD", "!!"});
}

TEST_CASE("empty matches follow Rust's find_iter rule") {
  auto regex = Regex::Create("a*");
  REQUIRE(regex.ok());
  Ranges ranges;
  REQUIRE((*regex)->FindAll("baaac", &ranges).ok());
  CHECK(ranges == Ranges{{0, 0}, {1, 4}, {5, 5}});
}

TEST_CASE("long whitespace runs do not exhaust the JIT stack") {
  auto regex = Regex::Create(kLlama3Pattern);
  REQUIRE(regex.ok());
  const std::string text = std::string(200000, ' ') + "x";
  Ranges ranges;
  REQUIRE((*regex)->FindAll(text, &ranges).ok());
  CHECK(ranges.size() == 2);
}

TEST_CASE("invalid regex and invalid subject are errors") {
  auto bad = Regex::Create("(unclosed");
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.status().message()).find("invalid regex \"(unclosed\"") != std::string::npos);
  auto regex = Regex::Create("a");
  REQUIRE(regex.ok());
  Ranges ranges;
  CHECK_FALSE((*regex)->FindAll("\xFF", &ranges).ok());
}

TEST_CASE("Pattern::FromJson accepts String and Regex, rejects others") {
  auto literal = Pattern::FromJson(Json::parse(R"({"String": "-"})"), "test");
  REQUIRE(literal.ok());
  std::vector<Match> matches;
  REQUIRE((*literal)->FindMatches("a-b", &matches).ok());
  REQUIRE(matches.size() == 3);
  CHECK(matches[1].is_match);
  CHECK_FALSE(Pattern::FromJson(Json::parse(R"({"Glob": "*"})"), "test").ok());
  auto bad = Pattern::FromJson(Json::parse(R"({"Regex": "[a-"})"), "pre_tokenizer Split");
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.status().message()).find("pre_tokenizer Split") != std::string::npos);
}

TEST_CASE("split behaviours match the reference's documented example") {
  // The tokenizers docs' example: "the-final--countdown" split on '-'.
  const std::string text = "the-final--countdown";
  auto pattern = Pattern::Literal("-");
  std::vector<Match> matches;
  REQUIRE(pattern->FindMatches(text, &matches).ok());
  auto split = [&](SplitBehavior behavior) {
    std::vector<std::string> out;
    for (auto [s, e] : ApplySplitBehavior(matches, behavior)) out.push_back(text.substr(s, e - s));
    return out;
  };
  using V = std::vector<std::string>;
  CHECK(split(SplitBehavior::kRemoved) == V{"the", "final", "countdown"});
  CHECK(split(SplitBehavior::kIsolated) == V{"the", "-", "final", "-", "-", "countdown"});
  CHECK(split(SplitBehavior::kMergedWithPrevious) == V{"the-", "final-", "-", "countdown"});
  CHECK(split(SplitBehavior::kMergedWithNext) == V{"the", "-final", "-", "-countdown"});
  CHECK(split(SplitBehavior::kContiguous) == V{"the", "-", "final", "--", "countdown"});
  CHECK_FALSE(ParseSplitBehavior("Sideways", "Split").ok());
}

}  // namespace
}  // namespace kestrel::tokenizer

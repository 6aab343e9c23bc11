#include "model/tokenizer/normalizers.h"

#include <string>

#include <catch2/catch.hpp>

namespace kestrel::tokenizer {
namespace {

std::string Apply(const char* json, std::string text) {
  auto normalizer = Normalizer::FromJson(Json::parse(json));
  REQUIRE(normalizer.ok());
  REQUIRE((*normalizer)->Normalize(&text).ok());
  return text;
}

TEST_CASE("Mistral's Prepend + Replace sequence") {
  const char* json = R"({"type": "Sequence", "normalizers": [
      {"type": "Prepend", "prepend": "\u2581"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]})";
  CHECK(Apply(json, "Hello world") == "\xE2\x96\x81Hello\xE2\x96\x81world");
  CHECK(Apply(json, "") == "");  // empty pieces stay empty
}

TEST_CASE("Unicode normal forms through ICU") {
  CHECK(Apply(R"({"type": "NFC"})", "e\xCC\x81") == "\xC3\xA9");
  CHECK(Apply(R"({"type": "NFD"})", "\xC3\xA9") == "e\xCC\x81");
  CHECK(Apply(R"({"type": "NFKC"})", "\xEF\xAC\x81") == "fi");  // U+FB01 ligature
  CHECK(Apply(R"({"type": "NFKD"})", "\xEF\xBC\x91") == "1");    // fullwidth 1
}

TEST_CASE("Lowercase, Strip, StripAccents, Replace with a regex") {
  CHECK(Apply(R"({"type": "Lowercase"})", "HeLLo \xC3\x89") == "hello \xC3\xA9");
  CHECK(Apply(R"({"type": "Strip", "strip_left": true, "strip_right": true})",
              " \t x y \xE3\x80\x80") == "x y");
  CHECK(Apply(R"({"type": "Strip", "strip_left": false, "strip_right": true})", "  x  ") == "  x");
  CHECK(Apply(R"({"type": "StripAccents"})", "e\xCC\x81") == "e");
  CHECK(Apply(R"({"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "})",
              "a \t\n b") == "a b");
}

TEST_CASE("normalizer errors name the component and value") {
  auto unknown = Normalizer::FromJson(Json::parse(R"({"type": "Precompiled"})"));
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.status().code() == absl::StatusCode::kUnimplemented);
  CHECK(std::string(unknown.status().message()).find("\"Precompiled\"") != std::string::npos);
  auto missing = Normalizer::FromJson(Json::parse(R"({"type": "Prepend"})"));
  REQUIRE_FALSE(missing.ok());
  CHECK(std::string(missing.status().message()).find("prepend") != std::string::npos);
  CHECK_FALSE(Normalizer::FromJson(Json::parse(R"({"type": "Replace", "pattern": {"Regex": "("}, "content": ""})")).ok());
  CHECK_FALSE(Normalizer::FromJson(Json::parse(R"([1, 2])")).ok());
  CHECK_FALSE(Normalizer::FromJson(Json::parse(R"({"type": 7})")).ok());
}

}  // namespace
}  // namespace kestrel::tokenizer

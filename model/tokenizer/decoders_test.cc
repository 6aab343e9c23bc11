#include "model/tokenizer/decoders.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace kestrel::tokenizer {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

std::string Decode(const char* json, std::vector<std::string> tokens) {
  auto decoder = Decoder::FromJson(Json::parse(json));
  REQUIRE(decoder.ok());
  REQUIRE((*decoder)->DecodeChain(&tokens).ok());
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

constexpr char kMistral[] = R"({"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})";

TEST_CASE("SentencePiece-style chain: leading space stripped once, bytes assembled") {
  CHECK(Decode(kMistral, {"\xE2\x96\x81Hello", "\xE2\x96\x81world"}) == "Hello world");
  CHECK(Decode(kMistral, {"<s>", "\xE2\x96\x81Hello"}) == "<s> Hello");
  CHECK(Decode(kMistral, {"<0xE2>", "<0x82>", "<0xAC>", "!"}) == "\xE2\x82\xAC!");
  // An invalid run becomes one U+FFFD per byte token.
  CHECK(Decode(kMistral, {"a", "<0xE2>", "<0x82>", "b"}) == "a" + kFffd + kFffd + "b");
}

TEST_CASE("ByteLevel decodes the byte alphabet lossily") {
  const char* json = R"({"type": "ByteLevel"})";
  CHECK(Decode(json, {"Hello", "\xC4\xA0world", "\xC4\x8A"}) == "Hello world\n");
  // "Ã¢" is bytes C3 A2: a truncated character at the end.
  CHECK(Decode(json, {"x", "\xC3\xA2"}) == "x" + kFffd);
  // Tokens outside the alphabet (added tokens) pass through unchanged.
  CHECK(Decode(json, {"<|eot_id|>", "\xE4\xBD\xA0"}) == "<|eot_id|>\xE4\xBD\xA0");
}

TEST_CASE("Metaspace, Strip with stop, Fuse") {
  CHECK(Decode(R"({"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always"})",
               {"\xE2\x96\x81Hey", "\xE2\x96\x81you"}) == "Hey you");
  CHECK(Decode(R"({"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never"})",
               {"\xE2\x96\x81Hey"}) == " Hey");
  CHECK(Decode(R"({"type": "Strip", "content": "x", "start": 2, "stop": 1})", {"xxxaxx"}) == "xax");
  CHECK(Decode(R"({"type": "Fuse"})", {"a", "b"}) == "ab");
}

TEST_CASE("ParseByteToken") {
  CHECK(ParseByteToken("<0x0A>") == 10);
  CHECK(ParseByteToken("<0xff>") == 255);
  CHECK(ParseByteToken("<0xG0>") == -1);
  CHECK(ParseByteToken("<0x0A") == -1);
}

TEST_CASE("decoder errors") {
  auto unknown = Decoder::FromJson(Json::parse(R"({"type": "WordPiece", "prefix": "##"})"));
  REQUIRE_FALSE(unknown.ok());
  CHECK(std::string(unknown.status().message()).find("\"WordPiece\"") != std::string::npos);
  CHECK_FALSE(Decoder::FromJson(Json::parse(R"({"type": "Strip", "content": "ab"})")).ok());
  CHECK_FALSE(Decoder::FromJson(Json::parse(R"({"type": "Replace", "content": " "})")).ok());
  CHECK_FALSE(Decoder::FromJson(Json::parse(R"({"decoders": []})")).ok());
}

}  // namespace
}  // namespace kestrel::tokenizer

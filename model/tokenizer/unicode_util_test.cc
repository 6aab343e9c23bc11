#include "model/tokenizer/unicode_util.h"

#include <catch2/catch.hpp>

namespace kestrel::tokenizer {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST_CASE("Utf8Lossy replaces each maximal invalid subpart like Rust") {
  // Examples from Rust's String::from_utf8_lossy documentation and the
  // Unicode "maximal subpart" practice.
  CHECK(Utf8Lossy("Hello \xF0\x90\x80World") == "Hello " + kFffd + "World");
  CHECK(Utf8Lossy("\xE2\x82") == kFffd);                       // truncated 3-byte char
  CHECK(Utf8Lossy("\x80\x80") == kFffd + kFffd);               // lone continuations
  CHECK(Utf8Lossy("\xED\xA0\x80") == kFffd + kFffd + kFffd);   // surrogate
  CHECK(Utf8Lossy("\xF4\x90\x80\x80") == kFffd + kFffd + kFffd + kFffd);  // > U+10FFFF
  CHECK(Utf8Lossy("\xC0\xAF") == kFffd + kFffd);               // overlong
  CHECK(Utf8Lossy("a\xE2\x82\xACz") == "a\xE2\x82\xACz");
}

TEST_CASE("IsValidUtf8 and DecodeUtf8") {
  CHECK(IsValidUtf8("h\xC3\xA9llo \xF0\x9F\xA6\x99"));
  CHECK_FALSE(IsValidUtf8("\xC3"));
  CHECK_FALSE(IsValidUtf8("\xED\xA0\x80"));
  std::string s = "\xF0\x9F\xA6\x99!";
  size_t pos = 0;
  CHECK(DecodeUtf8(s, &pos) == 0x1F999);
  CHECK(pos == 4);
  std::string bad = "\xFF" "a";
  pos = 0;
  CHECK(DecodeUtf8(bad, &pos) == 0xFFFD);
  CHECK(pos == 1);
  std::string out;
  AppendUtf8(0x20AC, &out);
  CHECK(out == "\xE2\x82\xAC");
}

TEST_CASE("Rust char predicates") {
  CHECK(IsWhitespace(U' '));
  CHECK(IsWhitespace(0x85));    // NEL is White_Space
  CHECK(IsWhitespace(0x3000));
  CHECK_FALSE(IsWhitespace(0x200B));  // zero width space is not
  CHECK(IsNumeric(U'7'));
  CHECK(IsNumeric(0x0663));  // Arabic-Indic three
  CHECK(IsNumeric(0x00BD));  // vulgar fraction one half (No)
  CHECK(IsAlphanumeric(U'z'));
  CHECK(IsAlphanumeric(0x4F60));
  CHECK_FALSE(IsAlphanumeric(U'-'));
  CHECK(IsCombiningMark(0x0301));
}

TEST_CASE("LowercaseRust maps chars one by one with full mappings") {
  CHECK(LowercaseRust("HeLLo") == "hello");
  CHECK(LowercaseRust("\xC4\xB0") == "i\xCC\x87");  // U+0130 -> i + U+0307
  // No final-sigma context: every capital sigma becomes U+03C3.
  CHECK(LowercaseRust("\xCE\x91\xCE\xA3") == "\xCE\xB1\xCF\x83");
}

TEST_CASE("byte-level alphabet is GPT-2's and invertible") {
  const auto& table = ByteToUnicode();
  CHECK(table[' '] == "\xC4\xA0");   // U+0120 'Ġ'
  CHECK(table['\n'] == "\xC4\x8A");  // U+010A 'Ċ'
  CHECK(table['A'] == "A");
  for (int b = 0; b < 256; ++b) {
    size_t pos = 0;
    const char32_t c = DecodeUtf8(table[b], &pos);
    CHECK(UnicodeToByte(c) == b);
  }
  CHECK(UnicodeToByte(0x4F60) == -1);
}

}  // namespace
}  // namespace kestrel::tokenizer

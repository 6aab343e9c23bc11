// UTF-8 and Unicode helpers with the exact semantics of the Rust functions
// the reference (Hugging Face `tokenizers`) relies on: char::is_whitespace,
// char::to_lowercase, String::from_utf8_lossy, GPT-2's byte-to-unicode map.
// Matching those, not "roughly Unicode", is what keeps token ids identical.
#ifndef KESTREL_MODEL_TOKENIZER_UNICODE_UTIL_H_
#define KESTREL_MODEL_TOKENIZER_UNICODE_UTIL_H_

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace kestrel::tokenizer {

// True when `s` is well-formed UTF-8 (no surrogates, no overlongs).
bool IsValidUtf8(std::string_view s);

// Decodes the code point at s[*pos] and advances *pos past it. On malformed
// input returns U+FFFD and advances one byte, so callers never loop forever.
// REQUIRES: *pos < s.size().
char32_t DecodeUtf8(std::string_view s, size_t* pos);

// Appends the UTF-8 encoding of `cp` (U+FFFD for invalid code points).
void AppendUtf8(char32_t cp, std::string* out);

// Length in bytes of the character starting at s[pos] (1 on malformed input).
size_t Utf8CharLength(std::string_view s, size_t pos);

// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one
// U+FFFD. Decoders use it, so the replacement count must match exactly.
std::string Utf8Lossy(std::string_view bytes);

// Rust char predicates (Unicode properties via ICU).
bool IsWhitespace(char32_t c);    // White_Space
bool IsNumeric(char32_t c);       // General_Category N*
bool IsAlphanumeric(char32_t c);  // Alphabetic or N*
bool IsCombiningMark(char32_t c); // General_Category M*

// Rust str::to_lowercase applied char by char (the reference lowercases
// chars independently, so there is no final-sigma context).
std::string LowercaseRust(std::string_view s);

// GPT-2 byte-level alphabet: byte -> UTF-8 of its printable stand-in.
const std::array<std::string, 256>& ByteToUnicode();
// Inverse of ByteToUnicode: the byte for `c`, or -1 when `c` is not in the
// alphabet.
int UnicodeToByte(char32_t c);

}  // namespace kestrel::tokenizer

#endif  // KESTREL_MODEL_TOKENIZER_UNICODE_UTIL_H_

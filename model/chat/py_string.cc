#include "model/chat/py_string.h"

#include <unicode/locid.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include "model/chat/lexer.h"
#include "model/tokenizer/unicode_util.h"

namespace kestrel::chat {
namespace {

using tokenizer::AppendUtf8;
using tokenizer::DecodeUtf8;

std::vector<char32_t> Decode(std::string_view text) {
  std::vector<char32_t> out;
  size_t pos = 0;
  while (pos < text.size()) out.push_back(DecodeUtf8(text, &pos));
  return out;
}

bool IsCased(char32_t c) {
  const int8_t type = u_charType(static_cast<UChar32>(c));
  return type == U_UPPERCASE_LETTER || type == U_LOWERCASE_LETTER || type == U_TITLECASE_LETTER;
}

template <typename Predicate>
bool AllOf(std::string_view text, Predicate predicate) {
  if (text.empty()) return false;
  for (char32_t c : Decode(text)) {
    if (!predicate(c)) return false;
  }
  return true;
}

// True when `text` has a cased character and every cased one passes `predicate`.
template <typename Predicate>
bool CasedAllOf(std::string_view text, Predicate predicate) {
  bool any_cased = false;
  for (char32_t c : Decode(text)) {
    if (!IsCased(c)) continue;
    if (!predicate(c)) return false;
    any_cased = true;
  }
  return any_cased;
}

}  // namespace

std::vector<std::string_view> CodePoints(std::string_view text) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    DecodeUtf8(text, &pos);
    out.push_back(text.substr(start, pos - start));
  }
  return out;
}

size_t CodePointCount(std::string_view text) {
  size_t count = 0;
  for (unsigned char c : text) count += (c & 0xC0) != 0x80;
  return count;
}

std::string_view PyStrip(std::string_view text, const std::optional<std::string>& chars, bool left,
                         bool right) {
  const std::vector<char32_t> strip_set = chars ? Decode(*chars) : std::vector<char32_t>();
  auto strips = [&](char32_t c) {
    if (!chars) return IsPythonSpace(c);
    for (char32_t s : strip_set) {
      if (s == c) return true;
    }
    return false;
  };
  size_t begin = 0;
  size_t end = text.size();
  if (left) {
    while (begin < end) {
      size_t next = begin;
      if (!strips(DecodeUtf8(text, &next))) break;
      begin = next;
    }
  }
  if (right) {
    size_t keep = begin;
    size_t pos = begin;
    while (pos < end) {
      if (!strips(DecodeUtf8(text, &pos))) keep = pos;
    }
    end = keep;
  }
  return text.substr(begin, end - begin);
}

std::vector<std::string> PySplit(std::string_view text, const std::optional<std::string>& sep,
                                 int64_t max_split) {
  std::vector<std::string> parts;
  if (sep) {
    size_t start = 0;
    while (max_split < 0 || static_cast<int64_t>(parts.size()) < max_split) {
      const size_t found = text.find(*sep, start);
      if (found == std::string_view::npos) break;
      parts.emplace_back(text.substr(start, found - start));
      start = found + sep->size();
    }
    parts.emplace_back(text.substr(start));
    return parts;
  }
  size_t pos = 0;
  while (true) {
    // Skip whitespace, then take a word.
    std::string_view rest = PyStrip(text.substr(pos), std::nullopt, true, false);
    pos = text.size() - rest.size();
    if (pos >= text.size()) break;
    if (max_split >= 0 && static_cast<int64_t>(parts.size()) >= max_split) {
      parts.emplace_back(PyStrip(text.substr(pos), std::nullopt, false, true));
      break;
    }
    size_t end = pos;
    while (end < text.size()) {
      size_t next = end;
      if (IsPythonSpace(DecodeUtf8(text, &next))) break;
      end = next;
    }
    parts.emplace_back(text.substr(pos, end - pos));
    pos = end;
  }
  return parts;
}

std::vector<std::string> PySplitLines(std::string_view text) {
  std::vector<std::string> lines;
  size_t start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t at = pos;
    const char32_t c = DecodeUtf8(text, &pos);
    const bool line_break = c == '\n' || c == '\r' || c == '\v' || c == '\f' || (c >= 0x1c && c <= 0x1e) ||
                            c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!line_break) continue;
    lines.emplace_back(text.substr(start, at - start));
    if (c == '\r' && pos < text.size() && text[pos] == '\n') ++pos;
    start = pos;
  }
  if (start < text.size()) lines.emplace_back(text.substr(start));
  return lines;
}

std::string PyReplace(std::string_view text, std::string_view old_text, std::string_view new_text,
                      int64_t count) {
  std::string out;
  if (old_text.empty()) {
    // Python inserts `new_text` around every code point.
    int64_t done = 0;
    for (std::string_view c : CodePoints(text)) {
      if (count < 0 || done < count) {
        out += new_text;
        ++done;
      }
      out += c;
    }
    if (count < 0 || done < count) out += new_text;
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t found = text.find(old_text, start);
    if (found == std::string_view::npos) break;
    out.append(text.substr(start, found - start));
    out.append(new_text);
    start = found + old_text.size();
    ++done;
  }
  out.append(text.substr(start));
  return out;
}

std::string PyUpper(std::string_view text) {
  std::string out;
  icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), static_cast<int32_t>(text.size())))
      .toUpper(icu::Locale::getRoot())
      .toUTF8String(out);
  return out;
}

std::string PyLower(std::string_view text) {
  std::string out;
  icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), static_cast<int32_t>(text.size())))
      .toLower(icu::Locale::getRoot())
      .toUTF8String(out);
  return out;
}

std::string PyCapitalize(std::string_view text) {
  if (text.empty()) return "";
  size_t pos = 0;
  const char32_t first = DecodeUtf8(text, &pos);
  std::string out;
  AppendUtf8(static_cast<char32_t>(u_totitle(static_cast<UChar32>(first))), &out);
  return out + PyLower(text.substr(pos));
}

std::string PyTitle(std::string_view text) {
  std::string out;
  bool previous_cased = false;
  for (char32_t c : Decode(text)) {
    const UChar32 u = static_cast<UChar32>(c);
    AppendUtf8(static_cast<char32_t>(previous_cased ? u_tolower(u) : u_totitle(u)), &out);
    previous_cased = IsCased(c);
  }
  return out;
}

std::string JinjaTitle(std::string_view text) {
  auto is_boundary = [](char32_t c) {
    return IsPythonSpace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
  };
  std::string out;
  bool word_start = true;
  for (char32_t c : Decode(text)) {
    const UChar32 u = static_cast<UChar32>(c);
    if (is_boundary(c)) {
      AppendUtf8(c, &out);
      word_start = true;
      continue;
    }
    AppendUtf8(static_cast<char32_t>(word_start ? u_toupper(u) : u_tolower(u)), &out);
    word_start = false;
  }
  return out;
}

bool PyIsSpace(std::string_view text) { return AllOf(text, IsPythonSpace); }
bool PyIsDigit(std::string_view text) {
  return AllOf(text, [](char32_t c) {
    const int type = u_getIntPropertyValue(static_cast<UChar32>(c), UCHAR_NUMERIC_TYPE);
    return type == U_NT_DECIMAL || type == U_NT_DIGIT;
  });
}
bool PyIsAlpha(std::string_view text) {
  return AllOf(text, [](char32_t c) { return u_isalpha(static_cast<UChar32>(c)) != 0; });
}
bool PyIsAlnum(std::string_view text) {
  return AllOf(text, [](char32_t c) {
    return u_isalpha(static_cast<UChar32>(c)) ||
           u_getIntPropertyValue(static_cast<UChar32>(c), UCHAR_NUMERIC_TYPE) != U_NT_NONE;
  });
}
bool PyIsUpper(std::string_view text) {
  return CasedAllOf(text, [](char32_t c) { return u_charType(c) != U_LOWERCASE_LETTER; });
}
bool PyIsLower(std::string_view text) {
  return CasedAllOf(text, [](char32_t c) { return u_charType(c) == U_LOWERCASE_LETTER; });
}

}  // namespace kestrel::chat

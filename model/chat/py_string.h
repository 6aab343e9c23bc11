// Python str methods on UTF-8 text: they count and slice code points and use
// Python's notion of whitespace and case, so lengths and slices of CJK or
// emoji content match Python's. Internal to model/chat.
#ifndef KESTREL_MODEL_CHAT_PY_STRING_H_
#define KESTREL_MODEL_CHAT_PY_STRING_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kestrel::chat {

// The code points of `text`, each as its UTF-8 bytes.
std::vector<std::string_view> CodePoints(std::string_view text);
size_t CodePointCount(std::string_view text);

// str.strip / lstrip / rstrip: Python whitespace, or any code point of `chars`.
std::string_view PyStrip(std::string_view text, const std::optional<std::string>& chars, bool left,
                         bool right);
// str.split(sep, maxsplit): with no separator, runs of whitespace split and
// leading/trailing whitespace yields no empty parts. REQUIRES: sep not empty.
std::vector<std::string> PySplit(std::string_view text, const std::optional<std::string>& sep,
                                 int64_t max_split);
// str.splitlines(): breaks at \n, \r, \r\n, \v, \f, \x1c-\x1e, \x85,
// U+2028 and U+2029; no empty piece after a final line break.
std::vector<std::string> PySplitLines(std::string_view text);
// str.replace(old, new, count); count < 0 replaces all.
std::string PyReplace(std::string_view text, std::string_view old_text, std::string_view new_text,
                      int64_t count);

// Unicode full case mapping (str.upper, str.lower).
std::string PyUpper(std::string_view text);
std::string PyLower(std::string_view text);
// str.capitalize: the first character upper (title) case, the rest lower.
std::string PyCapitalize(std::string_view text);
// str.title: each run of cased letters starts upper case.
std::string PyTitle(std::string_view text);
// jinja2's title filter: words split at whitespace, '-', and opening brackets.
std::string JinjaTitle(std::string_view text);

bool PyIsSpace(std::string_view text);  // non-empty and all whitespace
bool PyIsDigit(std::string_view text);
bool PyIsAlpha(std::string_view text);
bool PyIsAlnum(std::string_view text);
bool PyIsUpper(std::string_view text);
bool PyIsLower(std::string_view text);

}  // namespace kestrel::chat

#endif  // KESTREL_MODEL_CHAT_PY_STRING_H_

// Non-throwing accessors over nlohmann::json for the tokenizer.json loader.
// tokenizer.json is untrusted file content: every accessor checks the type
// first and reports the component, the field and the offending value.
#ifndef KESTREL_MODEL_TOKENIZER_JSON_UTIL_H_
#define KESTREL_MODEL_TOKENIZER_JSON_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kestrel::tokenizer {

using Json = nlohmann::json;

// Debian's Abseil (20220623) has its own absl::string_view, distinct from
// std::string_view, so StrCat and absl's string-keyed containers do not
// accept std::string_view. These two bridge the gap.
inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

namespace internal {
template <typename T>
decltype(auto) ForStrCat(const T& value) {
  if constexpr (std::is_same_v<T, std::string_view>) {
    return AbslView(value);
  } else {
    return (value);
  }
}
}  // namespace internal

// absl::StrCat that also takes std::string_view.
template <typename... Args>
std::string Concat(const Args&... args) {
  return absl::StrCat(internal::ForStrCat(args)...);
}

// Parses `text` without exceptions. `what` names the document in errors.
absl::StatusOr<Json> ParseJson(std::string_view text, std::string_view what);

// A short, always-valid rendering of `value` for error messages (invalid
// UTF-8 replaced, truncated to ~80 characters).
std::string Describe(const Json& value);

// The member `key` of object `obj`, or nullptr when `obj` is not an object,
// the key is absent, or its value is null.
const Json* FindField(const Json& obj, std::string_view key);

// The string member `key`; `component` (e.g. "normalizer Replace") prefixes
// errors.
absl::StatusOr<std::string> GetString(const Json& obj, std::string_view key,
                                      std::string_view component);
// Like GetString, but absent/null yields `fallback`.
absl::StatusOr<std::string> GetStringOr(const Json& obj, std::string_view key,
                                        std::string_view fallback,
                                        std::string_view component);
absl::StatusOr<bool> GetBoolOr(const Json& obj, std::string_view key, bool fallback,
                               std::string_view component);
absl::StatusOr<int64_t> GetIntOr(const Json& obj, std::string_view key, int64_t fallback,
                                 std::string_view component);
// A member that must be present and an array / an object.
absl::StatusOr<const Json*> GetArray(const Json& obj, std::string_view key,
                                     std::string_view component);
absl::StatusOr<const Json*> GetObject(const Json& obj, std::string_view key,
                                      std::string_view component);

// The "type" string of a component object (normalizer, decoder, ...).
absl::StatusOr<std::string> GetComponentType(const Json& obj, std::string_view component);

// The members of a "Sequence" component: each element of the array `key`
// parsed by T::FromJson (T = Normalizer, PreTokenizer, PostProcessor,
// Decoder), the first error returned as is.
template <typename T>
absl::StatusOr<std::vector<std::unique_ptr<T>>> ParseSequence(const Json& obj,
                                                              std::string_view key,
                                                              std::string_view component) {
  absl::StatusOr<const Json*> list = GetArray(obj, key, component);
  if (!list.ok()) return list.status();
  std::vector<std::unique_ptr<T>> parts;
  for (const Json& item : **list) {
    absl::StatusOr<std::unique_ptr<T>> part = T::FromJson(item);
    if (!part.ok()) return part.status();
    parts.push_back(std::move(*part));
  }
  return parts;
}

}  // namespace kestrel::tokenizer

#endif  // KESTREL_MODEL_TOKENIZER_JSON_UTIL_H_

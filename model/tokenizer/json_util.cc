#include "model/tokenizer/json_util.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kestrel::tokenizer {

namespace {

// Nesting depth of a JSON text (brackets outside strings). nlohmann's dump()
// and our component builders recurse per level, so a hostile file nested a
// million levels deep must be refused before it can overflow the stack.
size_t NestingDepth(std::string_view text) {
  size_t depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return max_depth;
}

constexpr size_t kMaxJsonDepth = 256;

}  // namespace

absl::StatusOr<Json> ParseJson(std::string_view text, std::string_view what) {
  if (const size_t depth = NestingDepth(text); depth > kMaxJsonDepth) {
    return absl::InvalidArgumentError(Concat(what, " is nested ", depth,
                                             " levels deep; the limit is ", kMaxJsonDepth));
  }
  Json value = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return absl::InvalidArgumentError(
        Concat(what, " is not valid JSON (truncated or malformed, ", text.size(),
                     " bytes)"));
  }
  return value;
}

std::string Describe(const Json& value) {
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 80) {
    text.resize(77);
    text += "...";
  }
  return text;
}

const Json* FindField(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<std::string> GetString(const Json& obj, std::string_view key,
                                      std::string_view component) {
  const Json* field = FindField(obj, key);
  if (field == nullptr) {
    return absl::InvalidArgumentError(Concat(component, ": missing field \"", key, "\""));
  }
  if (!field->is_string()) {
    return absl::InvalidArgumentError(Concat(component, ".", key,
                                                   " must be a string, got ", Describe(*field)));
  }
  return field->get_ref<const std::string&>();
}

absl::StatusOr<std::string> GetStringOr(const Json& obj, std::string_view key,
                                        std::string_view fallback,
                                        std::string_view component) {
  if (FindField(obj, key) == nullptr) return std::string(fallback);
  return GetString(obj, key, component);
}

absl::StatusOr<bool> GetBoolOr(const Json& obj, std::string_view key, bool fallback,
                               std::string_view component) {
  const Json* field = FindField(obj, key);
  if (field == nullptr) return fallback;
  if (!field->is_boolean()) {
    return absl::InvalidArgumentError(Concat(component, ".", key,
                                                   " must be a boolean, got ", Describe(*field)));
  }
  return field->get<bool>();
}

absl::StatusOr<int64_t> GetIntOr(const Json& obj, std::string_view key, int64_t fallback,
                                 std::string_view component) {
  const Json* field = FindField(obj, key);
  if (field == nullptr) return fallback;
  if (field->is_number_unsigned()) {
    uint64_t v = field->get<uint64_t>();
    if (v > static_cast<uint64_t>(INT64_MAX)) {
      return absl::InvalidArgumentError(
          Concat(component, ".", key, " is out of range: ", Describe(*field)));
    }
    return static_cast<int64_t>(v);
  }
  if (!field->is_number_integer()) {
    return absl::InvalidArgumentError(Concat(component, ".", key,
                                                   " must be an integer, got ", Describe(*field)));
  }
  return field->get<int64_t>();
}

absl::StatusOr<const Json*> GetArray(const Json& obj, std::string_view key,
                                     std::string_view component) {
  const Json* field = FindField(obj, key);
  if (field == nullptr) {
    return absl::InvalidArgumentError(Concat(component, ": missing field \"", key, "\""));
  }
  if (!field->is_array()) {
    return absl::InvalidArgumentError(Concat(component, ".", key,
                                                   " must be an array, got ", Describe(*field)));
  }
  return field;
}

absl::StatusOr<const Json*> GetObject(const Json& obj, std::string_view key,
                                      std::string_view component) {
  const Json* field = FindField(obj, key);
  if (field == nullptr) {
    return absl::InvalidArgumentError(Concat(component, ": missing field \"", key, "\""));
  }
  if (!field->is_object()) {
    return absl::InvalidArgumentError(Concat(component, ".", key,
                                                   " must be an object, got ", Describe(*field)));
  }
  return field;
}

absl::StatusOr<std::string> GetComponentType(const Json& obj, std::string_view component) {
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(
        Concat(component, " must be an object, got ", Describe(obj)));
  }
  return GetString(obj, "type", component);
}

}  // namespace kestrel::tokenizer

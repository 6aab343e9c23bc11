// The operations a template applies to values, with jinja2's (and Python's)
// semantics: operators, attribute and item access (dict keys through `.`),
// slicing, iteration, filters, tests, and the methods of str, dict and list
// that an ImmutableSandboxedEnvironment allows. Internal to model/chat.
#ifndef KESTREL_MODEL_CHAT_BUILTINS_H_
#define KESTREL_MODEL_CHAT_BUILTINS_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/chat/value.h"

namespace kestrel::chat {

// Caps on the values one render may build, so that "'x' * 10**9" or a
// doubling loop fails instead of exhausting memory.
struct ValueLimits {
  size_t max_bytes = 32 << 20;  // a string's length, a container's printed size
};

// Binary operators: + - * / // % ** ~ (Python semantics; int overflow is an
// error, Python would switch to big integers).
absl::StatusOr<Value> BinaryOp(std::string_view op, const Value& left, const Value& right,
                               const ValueLimits& limits);
// "-x" and "+x".
absl::StatusOr<Value> UnaryOp(std::string_view op, const Value& operand);
// ==, !=, <, <=, >, >=, in, notin.
absl::StatusOr<bool> Compare(std::string_view op, const Value& left, const Value& right);

// `object.name` as jinja2's sandbox resolves it: a method or attribute
// first, then a dict key. Undefined when missing; an error on Undefined.
absl::StatusOr<Value> GetAttribute(const Value& object, std::string_view name);
// `object[key]`: the item first, then (for a string key) the attribute.
absl::StatusOr<Value> GetItem(const Value& object, const Value& key);
// `object[start:stop:step]` on lists, tuples and strings; absent parts are
// nullopt.
absl::StatusOr<Value> GetSlice(const Value& object, const std::optional<Value>& start,
                               const std::optional<Value>& stop, const std::optional<Value>& step);

// The items a for loop visits: list items, dict keys, string characters;
// nothing for Undefined.
absl::StatusOr<std::vector<Value>> Iterate(const Value& value);

// Filters (`x|name(args)`) and tests (`x is name(args)`) by name.
absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& input, CallArgs& args,
                                  const ValueLimits& limits);
absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& input, CallArgs& args);
bool HasFilter(std::string_view name);
bool HasTest(std::string_view name);

// json.dumps(value, ensure_ascii, indent, separators, sort_keys), the
// `tojson` transformers installs for chat templates.
struct JsonOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // nullopt: one line
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
absl::StatusOr<std::string> ToJson(const Value& value, const JsonOptions& options,
                                   const ValueLimits& limits);

}  // namespace kestrel::chat

#endif  // KESTREL_MODEL_CHAT_BUILTINS_H_

// jinja2's filters and tests, and transformers' tojson (builtins.h).
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "model/chat/builtins.h"
#include "model/chat/lexer.h"
#include "model/chat/py_string.h"
#include "model/tokenizer/unicode_util.h"

namespace kestrel::chat {
namespace {

using FilterFn =
    std::function<absl::StatusOr<Value>(const Value& input, CallArgs& args, const ValueLimits& limits)>;
using TestFn = std::function<absl::StatusOr<bool>(const Value& input, CallArgs& args)>;

absl::Status Error(const std::string& what) { return absl::InvalidArgumentError(what); }

bool IsInteger(const Value& v) { return v.is_int() || v.is_bool(); }

absl::StatusOr<int64_t> IntArg(const Value& v, std::string_view what) {
  if (!IsInteger(v)) return Error(absl::StrCat(std::string(what), " must be an integer, got ", v.TypeName()));
  return v.as_integer();
}

Value Generator(std::vector<Value> items) {
  return Value::MakeList(std::move(items), ListData::Kind::kGenerator);
}

absl::StatusOr<int64_t> Length(const Value& v) {
  if (v.is_string()) return static_cast<int64_t>(CodePointCount(v.as_string()));
  if (v.is_generator()) return Error("object of type 'generator' has no len()");
  if (v.is_list()) return static_cast<int64_t>(v.list().items.size());
  if (v.is_dict()) return static_cast<int64_t>(v.dict().entries.size());
  if (v.is_undefined()) return 0;
  return Error("object of type '" + v.TypeName() + "' has no len()");
}

// jinja2's attribute paths for map/sort/selectattr: "a.b" and "items.0".
absl::StatusOr<Value> GetPath(const Value& item, const std::string& path) {
  Value current = item;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? dot : dot - start);
    Value key = part;
    if (!part.empty() && std::all_of(part.begin(), part.end(), ::isdigit) && part.size() < 18) {
      key = static_cast<int64_t>(std::stoll(part));
    }
    ASSIGN_OR_RETURN(current, GetItem(current, key));
    if (dot == std::string::npos) return current;
    start = dot + 1;
  }
}

// The sort key of `item`: the attribute when given, strings lower-cased
// unless case sensitive (jinja2's ignore_case).
absl::StatusOr<Value> SortKey(const Value& item, const Value& attribute, bool case_sensitive) {
  Value key = item;
  if (attribute.is_string()) {
    ASSIGN_OR_RETURN(key, GetPath(item, attribute.as_string()));
  }
  if (!case_sensitive && key.is_string()) return PyLower(key.as_string());
  return key;
}

absl::StatusOr<std::vector<Value>> SortedItems(const Value& input, bool reverse, bool case_sensitive,
                                               const Value& attribute) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  std::vector<std::pair<Value, Value>> keyed;
  for (const Value& item : items) {
    ASSIGN_OR_RETURN(Value key, SortKey(item, attribute, case_sensitive));
    keyed.emplace_back(std::move(key), item);
  }
  absl::Status status;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    if (!status.ok()) return false;
    auto less = Compare("<", reverse ? b.first : a.first, reverse ? a.first : b.first);
    if (!less.ok()) {
      status = less.status();
      return false;
    }
    return *less;
  });
  RETURN_IF_ERROR(status);
  std::vector<Value> out;
  for (auto& entry : keyed) out.push_back(std::move(entry.second));
  return out;
}

// ---- filters ----

absl::StatusOr<Value> DefaultFilter(const Value& input, CallArgs& args, const ValueLimits&) {
  const Value fallback = args.Take(0, "default_value", "");
  const Value boolean = args.Take(1, "boolean", false);
  RETURN_IF_ERROR(args.CheckAllTaken("default"));
  if (input.is_undefined() || (boolean.Truthy() && !input.Truthy())) return fallback;
  return input;
}

absl::StatusOr<Value> JoinFilter(const Value& input, CallArgs& args, const ValueLimits& limits) {
  const std::string separator = args.Take(0, "d", "").Str();
  const Value attribute = args.Take(1, "attribute", None{});
  RETURN_IF_ERROR(args.CheckAllTaken("join"));
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    Value item = items[i];
    if (attribute.is_string()) {
    ASSIGN_OR_RETURN(item, GetPath(item, attribute.as_string()));
  }
    if (i > 0) out += separator;
    out += item.Str();
    if (out.size() > limits.max_bytes) return absl::ResourceExhaustedError("join result too large");
  }
  return out;
}

absl::StatusOr<Value> MapFilter(const Value& input, CallArgs& args, const ValueLimits& limits) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  std::vector<Value> out;
  if (args.positional.empty()) {
    const Value attribute = args.Take(0, "attribute");
    const Value fallback = args.Take(1, "default");
    RETURN_IF_ERROR(args.CheckAllTaken("map"));
    if (!attribute.is_string()) return Error("map() needs a filter name or attribute=");
    for (const Value& item : items) {
      ASSIGN_OR_RETURN(Value value, GetPath(item, attribute.as_string()));
      out.push_back(value.is_undefined() && !fallback.is_undefined() ? fallback : value);
    }
    return Generator(std::move(out));
  }
  const std::string filter = args.positional[0].Str();
  for (const Value& item : items) {
    CallArgs rest{std::vector<Value>(args.positional.begin() + 1, args.positional.end()), args.keyword};
    ASSIGN_OR_RETURN(Value value, ApplyFilter(filter, item, rest, limits));
    out.push_back(std::move(value));
  }
  return Generator(std::move(out));
}

// select / reject / selectattr / rejectattr.
absl::StatusOr<Value> SelectFilter(const Value& input, CallArgs& args, bool by_attribute, bool keep) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  size_t next = 0;
  std::string attribute;
  if (by_attribute) {
    if (args.positional.empty()) return Error("selectattr() needs an attribute name");
    attribute = args.positional[next++].Str();
  }
  std::string test;
  if (next < args.positional.size()) test = args.positional[next++].Str();
  std::vector<Value> out;
  for (const Value& item : items) {
    Value subject = item;
    if (by_attribute) {
    ASSIGN_OR_RETURN(subject, GetPath(item, attribute));
  }
    bool passed = subject.Truthy();
    if (!test.empty()) {
      CallArgs rest{std::vector<Value>(args.positional.begin() + next, args.positional.end()),
                    args.keyword};
      ASSIGN_OR_RETURN(passed, ApplyTest(test, subject, rest));
    }
    if (passed == keep) out.push_back(item);
  }
  return Generator(std::move(out));
}

absl::StatusOr<Value> IndentFilter(const Value& input, CallArgs& args, const ValueLimits& limits) {
  const Value width = args.Take(0, "width", int64_t{4});
  const bool first = args.Take(1, "first", false).Truthy();
  const bool blank = args.Take(2, "blank", false).Truthy();
  RETURN_IF_ERROR(args.CheckAllTaken("indent"));
  std::string indentation;
  if (width.is_string()) {
    indentation = width.as_string();
  } else {
    ASSIGN_OR_RETURN(int64_t spaces, IntArg(width, "indent width"));
    if (spaces > static_cast<int64_t>(limits.max_bytes)) return absl::ResourceExhaustedError("indent too wide");
    indentation.assign(std::max<int64_t>(spaces, 0), ' ');
  }
  // jinja2 appends a newline before splitting, so "" still gives one line.
  const std::vector<std::string> lines = PySplitLines(input.Str() + "\n");
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out += "\n";
    if (i > 0 && (blank || !lines[i].empty())) out += indentation;
    out += lines[i];
    if (out.size() > limits.max_bytes) return absl::ResourceExhaustedError("indent result too large");
  }
  if (first) out = indentation + out;
  return out;
}

absl::StatusOr<Value> RoundFilter(const Value& input, CallArgs& args, const ValueLimits&) {
  ASSIGN_OR_RETURN(int64_t precision, IntArg(args.Take(0, "precision", int64_t{0}), "round precision"));
  const std::string method = args.Take(1, "method", "common").Str();
  RETURN_IF_ERROR(args.CheckAllTaken("round"));
  if (!input.is_number()) return Error("round() needs a number, got " + input.TypeName());
  if (method == "common" && IsInteger(input) && precision >= 0) return input.as_integer();
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = input.as_double() * scale;
  double rounded;
  if (method == "common") {
    rounded = std::nearbyint(x);  // ties to even, as Python's round()
  } else if (method == "ceil") {
    rounded = std::ceil(x);
  } else if (method == "floor") {
    rounded = std::floor(x);
  } else {
    return Error("round() method must be 'common', 'ceil' or 'floor', got '" + method + "'");
  }
  return rounded / scale;
}

absl::StatusOr<Value> IntFilter(const Value& input, CallArgs& args, const ValueLimits&) {
  const Value fallback = args.Take(0, "default", int64_t{0});
  ASSIGN_OR_RETURN(int64_t base, IntArg(args.Take(1, "base", int64_t{10}), "int base"));
  RETURN_IF_ERROR(args.CheckAllTaken("int"));
  if (IsInteger(input)) return input.as_integer();
  if (input.is_float()) {
    const double d = input.as_double();
    if (std::isfinite(d) && std::fabs(d) < 9.2e18) return static_cast<int64_t>(d);
    return fallback;
  }
  if (!input.is_string() || base < 2 || base > 36) return fallback;
  std::string text(PyStrip(input.as_string(), std::nullopt, true, true));
  std::string digits;
  for (char c : text) {
    if (c != '_') digits.push_back(c);
  }
  errno = 0;
  char* end = nullptr;
  const long long parsed = std::strtoll(digits.c_str(), &end, static_cast<int>(base));
  if (!digits.empty() && end == digits.c_str() + digits.size() && errno == 0 &&
      !std::isspace(static_cast<unsigned char>(digits[0]))) {
    return static_cast<int64_t>(parsed);
  }
  const double d = std::strtod(text.c_str(), &end);  // int(float(value))
  if (!text.empty() && end == text.c_str() + text.size() && std::isfinite(d) && std::fabs(d) < 9.2e18) {
    return static_cast<int64_t>(d);
  }
  return fallback;
}

absl::StatusOr<Value> FloatFilter(const Value& input, CallArgs& args, const ValueLimits&) {
  const Value fallback = args.Take(0, "default", 0.0);
  RETURN_IF_ERROR(args.CheckAllTaken("float"));
  if (input.is_number()) return input.as_double();
  if (!input.is_string()) return fallback;
  const std::string text(PyStrip(input.as_string(), std::nullopt, true, true));
  char* end = nullptr;
  const double d = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || text.find_first_of("xX") != std::string::npos) {
    return fallback;
  }
  return d;
}

absl::StatusOr<Value> TruncateFilter(const Value& input, CallArgs& args, const ValueLimits&) {
  ASSIGN_OR_RETURN(int64_t length, IntArg(args.Take(0, "length", int64_t{255}), "truncate length"));
  const bool kill_words = args.Take(1, "killwords", false).Truthy();
  const std::string end = args.Take(2, "end", "...").Str();
  const Value leeway_arg = args.Take(3, "leeway", int64_t{5});
  RETURN_IF_ERROR(args.CheckAllTaken("truncate"));
  ASSIGN_OR_RETURN(int64_t leeway, IntArg(leeway_arg.is_none() ? Value(5) : leeway_arg, "leeway"));
  const int64_t end_length = CodePointCount(end);
  if (length < end_length || leeway < 0) return Error("truncate length shorter than its end");
  const std::string text = input.Str();
  const std::vector<std::string_view> chars = CodePoints(text);
  if (static_cast<int64_t>(chars.size()) <= length + leeway) return text;
  std::string head;
  for (int64_t i = 0; i < length - end_length; ++i) head += chars[i];
  if (!kill_words) {
    const size_t space = head.rfind(' ');
    if (space != std::string::npos) head.resize(space);
  }
  return head + end;
}

absl::StatusOr<Value> MinMaxFilter(const Value& input, CallArgs& args, bool want_max) {
  const bool case_sensitive = args.Take(0, "case_sensitive", false).Truthy();
  const Value attribute = args.Take(1, "attribute", None{});
  RETURN_IF_ERROR(args.CheckAllTaken(want_max ? "max" : "min"));
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  if (items.empty()) return Value(Undefined{"No aggregated item, sequence was empty."});
  Value best = items[0];
  ASSIGN_OR_RETURN(Value best_key, SortKey(best, attribute, case_sensitive));
  for (size_t i = 1; i < items.size(); ++i) {
    ASSIGN_OR_RETURN(Value key, SortKey(items[i], attribute, case_sensitive));
    ASSIGN_OR_RETURN(bool better, Compare(want_max ? ">" : "<", key, best_key));
    if (better) {
      best = items[i];
      best_key = key;
    }
  }
  return best;
}

absl::StatusOr<Value> TojsonFilter(const Value& input, CallArgs& args, const ValueLimits& limits) {
  JsonOptions options;
  options.ensure_ascii = args.Take(0, "ensure_ascii", false).Truthy();
  const Value indent = args.Take(1, "indent", None{});
  const Value separators = args.Take(2, "separators", None{});
  options.sort_keys = args.Take(3, "sort_keys", false).Truthy();
  RETURN_IF_ERROR(args.CheckAllTaken("tojson"));
  if (indent.is_string()) {
    options.indent = indent.as_string();
  } else if (IsInteger(indent)) {
    if (indent.as_integer() > 1000) return Error("tojson indent too large");
    options.indent = std::string(std::max<int64_t>(indent.as_integer(), 0), ' ');
  } else if (!indent.is_none()) {
    return Error("tojson indent must be an integer or a string, got " + indent.TypeName());
  }
  if (options.indent) options.item_separator = ",";
  if (!separators.is_none()) {
    if (!separators.is_list() || separators.list().items.size() != 2) {
      return Error("tojson separators must be a pair of strings");
    }
    options.item_separator = separators.list().items[0].Str();
    options.key_separator = separators.list().items[1].Str();
  }
  ASSIGN_OR_RETURN(std::string json, ToJson(input, options, limits));
  return json;
}

// A filter of one string argument-free transformation.
FilterFn StringFilter(std::string (*transform)(std::string_view), const char* name) {
  return [transform, name](const Value& input, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
    RETURN_IF_ERROR(args.CheckAllTaken(name));
    return transform(input.Str());
  };
}

std::string HtmlEscape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string Identity(std::string_view text) { return std::string(text); }

const std::map<std::string, FilterFn, std::less<>>& Filters() {
  static const auto* filters = new std::map<std::string, FilterFn, std::less<>>{
      {"abs", [](const Value& in, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
         RETURN_IF_ERROR(args.CheckAllTaken("abs"));
         if (in.is_float()) return std::fabs(in.as_double());
         if (!IsInteger(in)) return Error("bad operand type for abs(): '" + in.TypeName() + "'");
         return UnaryOp(in.as_integer() < 0 ? "-" : "+", in);
       }},
      {"batch", [](const Value& in, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
         ASSIGN_OR_RETURN(int64_t size, IntArg(args.Take(0, "linecount"), "batch size"));
         const Value fill = args.Take(1, "fill_with", None{});
         RETURN_IF_ERROR(args.CheckAllTaken("batch"));
         if (size <= 0) return Error("batch size must be positive");
         ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(in));
         std::vector<Value> batches;
         for (size_t i = 0; i < items.size(); i += size) {
           std::vector<Value> batch(items.begin() + i, items.begin() + std::min(items.size(), i + size));
           while (!fill.is_none() && static_cast<int64_t>(batch.size()) < size) batch.push_back(fill);
           batches.push_back(Value::MakeList(std::move(batch)));
         }
         return Generator(std::move(batches));
       }},
      {"capitalize", StringFilter(PyCapitalize, "capitalize")},
      {"center", [](const Value& in, CallArgs& args, const ValueLimits& limits) -> absl::StatusOr<Value> {
         ASSIGN_OR_RETURN(int64_t width, IntArg(args.Take(0, "width", int64_t{80}), "center width"));
         RETURN_IF_ERROR(args.CheckAllTaken("center"));
         const std::string text = in.Str();
         const int64_t pad = width - static_cast<int64_t>(CodePointCount(text));
         if (pad <= 0) return text;
         if (pad > static_cast<int64_t>(limits.max_bytes)) return absl::ResourceExhaustedError("center too wide");
         const int64_t left = pad / 2 + (pad & width & 1);
         return std::string(left, ' ') + text + std::string(pad - left, ' ');
       }},
      {"count", [](const Value& in, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
         RETURN_IF_ERROR(args.CheckAllTaken("count"));
         return Length(in);
       }},
      {"default", DefaultFilter},
      {"d", DefaultFilter},
      {"dictsort", [](const Value& in, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
         const bool case_sensitive = args.Take(0, "case_sensitive", false).Truthy();
         const std::string by = args.Take(1, "by", "key").Str();
         const bool reverse = args.Take(2, "reverse", false).Truthy();
         RETURN_IF_ERROR(args.CheckAllTaken("dictsort"));
         if (!in.is_dict()) return Error("dictsort needs a dict, got " + in.TypeName());
         if (by != "key" && by != "value") return Error("dictsort: 'by' must be 'key' or 'value'");
         std::vector<Value> pairs;
         for (const auto& [key, value] : in.dict().entries) {
           pairs.push_back(Value::MakeList({key, value}, ListData::Kind::kTuple));
         }
         ASSIGN_OR_RETURN(std::vector<Value> sorted,
                          SortedItems(Value::MakeList(std::move(pairs)), reverse, case_sensitive,
                                      by == "key" ? "0" : "1"));
         return Value::MakeList(std::move(sorted));
       }},
      {"escape", StringFilter(HtmlEscape, "escape")},
      {"e", StringFilter(HtmlEscape, "e")},
      {"first", [](const Value& in, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
         RETURN_IF_ERROR(args.CheckAllTaken("first"));
         ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(in));
         if (items.empty()) return Value(Undefined{"No first item, sequence was empty."});
         return items.front();
       }},
      {"float", FloatFilter},
      {"format", [](const Value& in, CallArgs& args, const ValueLimits& limits) -> absl::StatusOr<Value> {
         if (!args.keyword.empty()) return Error("format() with keyword arguments is not supported");
         return BinaryOp("%", in.Str(), Value::MakeList(args.positional, ListData::Kind::kTuple), limits);
       }},
      {"indent", IndentFilter},
      {"int", IntFilter},
      {"items", [](const Value& in, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
         RETURN_IF_ERROR(args.CheckAllTaken("items"));
         if (in.is_undefined()) return Generator({});
         if (!in.is_dict()) return Error("Can only get item pairs from a mapping.");
         std::vector<Value> pairs;
         for (const auto& [key, value] : in.dict().entries) {
           pairs.push_back(Value::MakeList({key, value}, ListData::Kind::kTuple));
         }
         return Generator(std::move(pairs));
       }},
      {"join", JoinFilter},
      {"last", [](const Value& in, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
         RETURN_IF_ERROR(args.CheckAllTaken("last"));
         if (in.is_generator()) return Error("'generator' object is not reversible");
         ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(in));
         if (items.empty()) return Value(Undefined{"No last item, sequence was empty."});
         return items.back();
       }},
      {"length", [](const Value& in, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
         RETURN_IF_ERROR(args.CheckAllTaken("length"));
         return Length(in);
       }},
      {"list", [](const Value& in, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
         RETURN_IF_ERROR(args.CheckAllTaken("list"));
         ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(in));
         return Value::MakeList(std::move(items));
       }},
      {"lower", StringFilter(PyLower, "lower")},
      {"map", MapFilter},
      {"max", [](const Value& in, CallArgs& args, const ValueLimits&) { return MinMaxFilter(in, args, true); }},
      {"min", [](const Value& in, CallArgs& args, const ValueLimits&) { return MinMaxFilter(in, args, false); }},
      {"reject", [](const Value& in, CallArgs& args, const ValueLimits&) { return SelectFilter(in, args, false, false); }},
      {"rejectattr", [](const Value& in, CallArgs& args, const ValueLimits&) { return SelectFilter(in, args, true, false); }},
      {"replace", [](const Value& in, CallArgs& args, const ValueLimits& limits) -> absl::StatusOr<Value> {
         const std::string old_text = args.Take(0, "old").Str();
         const std::string new_text = args.Take(1, "new").Str();
         const Value count = args.Take(2, "count", None{});
         RETURN_IF_ERROR(args.CheckAllTaken("replace"));
         const std::string text = in.Str();
         if (!new_text.empty() && (text.size() + 1) * new_text.size() > limits.max_bytes &&
             (old_text.empty() || new_text.size() > old_text.size())) {
           return absl::ResourceExhaustedError("replace result may exceed the template limit");
         }
         return PyReplace(text, old_text, new_text, IsInteger(count) ? count.as_integer() : -1);
       }},
      {"reverse", [](const Value& in, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
         RETURN_IF_ERROR(args.CheckAllTaken("reverse"));
         if (in.is_string()) return GetSlice(in, std::nullopt, std::nullopt, Value(-1));
         ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(in));
         std::reverse(items.begin(), items.end());
         return Generator(std::move(items));  // jinja2 returns a reverse iterator
       }},
      {"round", RoundFilter},
      {"safe", [](const Value& in, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
         RETURN_IF_ERROR(args.CheckAllTaken("safe"));
         return in.Str();
       }},
      {"select", [](const Value& in, CallArgs& args, const ValueLimits&) { return SelectFilter(in, args, false, true); }},
      {"selectattr", [](const Value& in, CallArgs& args, const ValueLimits&) { return SelectFilter(in, args, true, true); }},
      {"sort", [](const Value& in, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
         const bool reverse = args.Take(0, "reverse", false).Truthy();
         const bool case_sensitive = args.Take(1, "case_sensitive", false).Truthy();
         const Value attribute = args.Take(2, "attribute", None{});
         RETURN_IF_ERROR(args.CheckAllTaken("sort"));
         ASSIGN_OR_RETURN(std::vector<Value> items, SortedItems(in, reverse, case_sensitive, attribute));
         return Value::MakeList(std::move(items));
       }},
      {"string", StringFilter(Identity, "string")},
      {"sum", [](const Value& in, CallArgs& args, const ValueLimits& limits) -> absl::StatusOr<Value> {
         const Value attribute = args.Take(0, "attribute", None{});
         Value total = args.Take(1, "start", int64_t{0});
         RETURN_IF_ERROR(args.CheckAllTaken("sum"));
         ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(in));
         for (const Value& item : items) {
           Value term = item;
           if (attribute.is_string()) {
    ASSIGN_OR_RETURN(term, GetPath(item, attribute.as_string()));
  }
           ASSIGN_OR_RETURN(total, BinaryOp("+", total, term, limits));
         }
         return total;
       }},
      {"title", StringFilter(JinjaTitle, "title")},
      {"tojson", TojsonFilter},
      {"trim", [](const Value& in, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
         const Value chars = args.Take(0, "chars", None{});
         RETURN_IF_ERROR(args.CheckAllTaken("trim"));
         const std::string text = in.Str();
         return std::string(PyStrip(text, chars.is_string() ? std::optional<std::string>(chars.as_string())
                                                           : std::nullopt, true, true));
       }},
      {"truncate", TruncateFilter},
      {"unique", [](const Value& in, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
         const bool case_sensitive = args.Take(0, "case_sensitive", false).Truthy();
         const Value attribute = args.Take(1, "attribute", None{});
         RETURN_IF_ERROR(args.CheckAllTaken("unique"));
         ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(in));
         std::vector<Value> seen;
         std::vector<Value> out;
         for (const Value& item : items) {
           ASSIGN_OR_RETURN(Value key, SortKey(item, attribute, case_sensitive));
           if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return s.Equals(key); })) continue;
           seen.push_back(key);
           out.push_back(item);
         }
         return Generator(std::move(out));
       }},
      {"upper", StringFilter(PyUpper, "upper")},
      {"wordcount", [](const Value& in, CallArgs& args, const ValueLimits&) -> absl::StatusOr<Value> {
         RETURN_IF_ERROR(args.CheckAllTaken("wordcount"));
         int64_t words = 0;
         bool in_word = false;
         const std::string text = in.Str();
         for (std::string_view c : CodePoints(text)) {
           const bool word_char = c == "_" || PyIsAlnum(c);
           words += word_char && !in_word;
           in_word = word_char;
         }
         return words;
       }},
  };
  return *filters;
}

// ---- tests ----

TestFn NoArgTest(bool (*predicate)(const Value&)) {
  return [predicate](const Value& in, CallArgs& args) -> absl::StatusOr<bool> {
    RETURN_IF_ERROR(args.CheckAllTaken("test"));
    return predicate(in);
  };
}

TestFn CompareTest(const char* op) {
  return [op](const Value& in, CallArgs& args) -> absl::StatusOr<bool> {
    const Value other = args.Take(0, "b");
    RETURN_IF_ERROR(args.CheckAllTaken(op));
    return Compare(op, in, other);
  };
}

absl::StatusOr<bool> OddEven(const Value& in, CallArgs& args, int64_t remainder) {
  RETURN_IF_ERROR(args.CheckAllTaken("odd"));
  if (!IsInteger(in)) return Error("odd/even need an integer, got " + in.TypeName());
  return ((in.as_integer() % 2) + 2) % 2 == remainder;
}

const std::map<std::string, TestFn, std::less<>>& Tests() {
  static const auto* tests = new std::map<std::string, TestFn, std::less<>>{
      {"defined", NoArgTest([](const Value& v) { return !v.is_undefined(); })},
      {"undefined", NoArgTest([](const Value& v) { return v.is_undefined(); })},
      {"none", NoArgTest([](const Value& v) { return v.is_none(); })},
      {"boolean", NoArgTest([](const Value& v) { return v.is_bool(); })},
      {"true", NoArgTest([](const Value& v) { return v.is_bool() && v.as_bool(); })},
      {"false", NoArgTest([](const Value& v) { return v.is_bool() && !v.as_bool(); })},
      {"integer", NoArgTest([](const Value& v) { return v.is_int(); })},
      {"float", NoArgTest([](const Value& v) { return v.is_float(); })},
      {"number", NoArgTest([](const Value& v) { return v.is_number(); })},
      {"string", NoArgTest([](const Value& v) { return v.is_string(); })},
      {"mapping", NoArgTest([](const Value& v) { return v.is_dict(); })},
      {"iterable", NoArgTest([](const Value& v) {
         return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
       })},
      {"sequence", NoArgTest([](const Value& v) {
         return (v.is_list() && !v.is_generator()) || v.is_dict() || v.is_string() || v.is_undefined();
       })},
      {"callable", NoArgTest([](const Value& v) { return v.is_function(); })},
      {"lower", NoArgTest([](const Value& v) { return v.is_string() && PyIsLower(v.as_string()); })},
      {"upper", NoArgTest([](const Value& v) { return v.is_string() && PyIsUpper(v.as_string()); })},
      {"escaped", NoArgTest([](const Value&) { return false; })},
      {"odd", [](const Value& in, CallArgs& args) { return OddEven(in, args, 1); }},
      {"even", [](const Value& in, CallArgs& args) { return OddEven(in, args, 0); }},
      {"divisibleby", [](const Value& in, CallArgs& args) -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(int64_t divisor, IntArg(args.Take(0, "num"), "divisibleby"));
         RETURN_IF_ERROR(args.CheckAllTaken("divisibleby"));
         if (!IsInteger(in)) return Error("divisibleby needs an integer, got " + in.TypeName());
         if (divisor == 0) return Error("integer division or modulo by zero");
         if (divisor == -1) return true;
         return in.as_integer() % divisor == 0;
       }},
      {"eq", CompareTest("==")}, {"equalto", CompareTest("==")}, {"==", CompareTest("==")},
      {"ne", CompareTest("!=")}, {"!=", CompareTest("!=")},
      {"lt", CompareTest("<")}, {"lessthan", CompareTest("<")}, {"<", CompareTest("<")},
      {"gt", CompareTest(">")}, {"greaterthan", CompareTest(">")}, {">", CompareTest(">")},
      {"le", CompareTest("<=")}, {"<=", CompareTest("<=")},
      {"ge", CompareTest(">=")}, {">=", CompareTest(">=")},
      {"in", CompareTest("in")},
      {"sameas", [](const Value& in, CallArgs& args) -> absl::StatusOr<bool> {
         const Value other = args.Take(0, "other");
         RETURN_IF_ERROR(args.CheckAllTaken("sameas"));
         // Identity: exact for None, booleans and containers; small values compare by value.
         return in.TypeName() == other.TypeName() && in.Equals(other);
       }},
      {"filter", [](const Value& in, CallArgs& args) -> absl::StatusOr<bool> {
         RETURN_IF_ERROR(args.CheckAllTaken("filter"));
         return in.is_string() && HasFilter(in.as_string());
       }},
      {"test", [](const Value& in, CallArgs& args) -> absl::StatusOr<bool> {
         RETURN_IF_ERROR(args.CheckAllTaken("test"));
         return in.is_string() && HasTest(in.as_string());
       }},
  };
  return *tests;
}

// ---- JSON ----

class JsonWriter {
 public:
  JsonWriter(const JsonOptions& options, const ValueLimits& limits) : options_(options), limits_(limits) {}

  absl::Status Write(const Value& v, int depth) {
    if (out_.size() > limits_.max_bytes) return absl::ResourceExhaustedError("tojson result too large");
    if (depth > 200) return Error("tojson: value nested too deeply");
    if (v.is_none()) {
      out_ += "null";
    } else if (v.is_bool()) {
      out_ += v.as_bool() ? "true" : "false";
    } else if (v.is_int()) {
      out_ += std::to_string(v.as_int());
    } else if (v.is_float()) {
      const double d = v.as_double();
      out_ += std::isnan(d) ? "NaN" : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity") : FloatRepr(d);
    } else if (v.is_string()) {
      WriteString(v.as_string());
    } else if (v.is_list() && !v.is_generator()) {
      return WriteContainer('[', ']', v.list().items.size(), depth, [&](size_t i) {
        return Write(v.list().items[i], depth + 1);
      });
    } else if (v.is_dict()) {
      return WriteDict(v.dict(), depth);
    } else {
      return Error("Object of type " + v.TypeName() + " is not JSON serializable");
    }
    return absl::OkStatus();
  }

  std::string Take() { return std::move(out_); }

 private:
  absl::Status WriteDict(const DictData& dict, int depth) {
    std::vector<std::pair<std::string, const Value*>> entries;
    for (const auto& [key, value] : dict.entries) {
      std::string name;
      if (key.is_string()) {
        name = key.as_string();
      } else if (key.is_bool()) {
        name = key.as_bool() ? "true" : "false";
      } else if (key.is_none()) {
        name = "null";
      } else if (key.is_number()) {
        name = key.Repr();
      } else {
        return Error("keys must be str, int, float, bool or None, not " + key.TypeName());
      }
      entries.emplace_back(std::move(name), &value);
    }
    if (options_.sort_keys) {
      std::stable_sort(entries.begin(), entries.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
    }
    return WriteContainer('{', '}', entries.size(), depth, [&](size_t i) {
      WriteString(entries[i].first);
      out_ += options_.key_separator;
      return Write(*entries[i].second, depth + 1);
    });
  }

  template <typename WriteItem>
  absl::Status WriteContainer(char open, char close, size_t count, int depth, WriteItem write_item) {
    out_.push_back(open);
    if (count == 0) {
      out_.push_back(close);
      return absl::OkStatus();
    }
    for (size_t i = 0; i < count; ++i) {
      if (i > 0) out_ += options_.item_separator;
      NewLine(depth + 1);
      RETURN_IF_ERROR(write_item(i));
    }
    NewLine(depth);
    out_.push_back(close);
    return absl::OkStatus();
  }

  void NewLine(int depth) {
    if (!options_.indent) return;
    out_.push_back('\n');
    for (int i = 0; i < depth; ++i) out_ += *options_.indent;
  }

  void WriteString(std::string_view text) {
    out_.push_back('"');
    size_t pos = 0;
    while (pos < text.size()) {
      const size_t start = pos;
      const char32_t c = tokenizer::DecodeUtf8(text, &pos);
      switch (c) {
        case '"': out_ += "\\\""; break;
        case '\\': out_ += "\\\\"; break;
        case '\n': out_ += "\\n"; break;
        case '\r': out_ += "\\r"; break;
        case '\t': out_ += "\\t"; break;
        case '\b': out_ += "\\b"; break;
        case '\f': out_ += "\\f"; break;
        default:
          if (c < 0x20 || (options_.ensure_ascii && c >= 0x7f)) {
            AppendUnicodeEscape(c);
          } else {
            out_.append(text.substr(start, pos - start));
          }
      }
    }
    out_.push_back('"');
  }

  void AppendUnicodeEscape(char32_t c) {
    char buffer[16];
    if (c >= 0x10000) {  // a surrogate pair, as json.dumps writes it
      const char32_t v = c - 0x10000;
      std::snprintf(buffer, sizeof(buffer), "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                    static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
    } else {
      std::snprintf(buffer, sizeof(buffer), "\\u%04x", static_cast<unsigned>(c));
    }
    out_ += buffer;
  }

  const JsonOptions& options_;
  const ValueLimits& limits_;
  std::string out_;
};

}  // namespace

absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& input, CallArgs& args,
                                  const ValueLimits& limits) {
  const auto& filters = Filters();
  const auto it = filters.find(name);
  if (it == filters.end()) return Error(absl::StrCat("no filter named '", std::string(name), "'"));
  return it->second(input, args, limits);
}

absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& input, CallArgs& args) {
  const auto& tests = Tests();
  const auto it = tests.find(name);
  if (it == tests.end()) return Error(absl::StrCat("no test named '", std::string(name), "'"));
  return it->second(input, args);
}

bool HasFilter(std::string_view name) { return Filters().count(name) > 0; }
bool HasTest(std::string_view name) { return Tests().count(name) > 0; }

absl::StatusOr<std::string> ToJson(const Value& value, const JsonOptions& options,
                                   const ValueLimits& limits) {
  JsonWriter writer(options, limits);
  RETURN_IF_ERROR(writer.Write(value, 0));
  return writer.Take();
}

}  // namespace kestrel::chat

#include "model/chat/value.h"

#include <unicode/uchar.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>

#include "absl/strings/str_cat.h"
#include "model/tokenizer/unicode_util.h"

namespace kestrel::chat {
namespace {

// Python's str.isprintable() for one code point: everything except the
// "Other" and "Separator" categories, but the ASCII space is printable.
bool IsPrintable(char32_t c) {
  if (c == ' ') return true;
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_CONTROL_CHAR:
    case U_FORMAT_CHAR:
    case U_SURROGATE:
    case U_PRIVATE_USE_CHAR:
    case U_UNASSIGNED:
    case U_LINE_SEPARATOR:
    case U_PARAGRAPH_SEPARATOR:
    case U_SPACE_SEPARATOR:
      return false;
    default:
      return true;
  }
}

void AppendEscape(char32_t c, std::string* out) {
  char buffer[16];
  if (c < 0x100) {
    std::snprintf(buffer, sizeof(buffer), "\\x%02x", static_cast<unsigned>(c));
  } else if (c < 0x10000) {
    std::snprintf(buffer, sizeof(buffer), "\\u%04x", static_cast<unsigned>(c));
  } else {
    std::snprintf(buffer, sizeof(buffer), "\\U%08x", static_cast<unsigned>(c));
  }
  out->append(buffer);
}

// Deeper than this, containers print as "..." (a namespace can hold itself).
constexpr int kMaxReprDepth = 64;

void AppendSequenceRepr(const ListData& list, std::string* out, size_t limit, int depth) {
  if (list.kind == ListData::Kind::kGenerator) {
    // jinja2 prints "<generator object ... at 0x...>", an address that no
    // output could match; a template that prints one is broken anyway.
    out->append("<generator object>");
    return;
  }
  const bool tuple = list.kind == ListData::Kind::kTuple;
  out->push_back(tuple ? '(' : '[');
  for (size_t i = 0; i < list.items.size() && out->size() <= limit; ++i) {
    if (i > 0) out->append(", ");
    list.items[i].AppendRepr(out, limit, depth + 1);
  }
  if (tuple && list.items.size() == 1) out->push_back(',');
  out->push_back(tuple ? ')' : ']');
}

void AppendDictRepr(const DictData& dict, std::string* out, size_t limit, int depth) {
  out->push_back('{');
  for (size_t i = 0; i < dict.entries.size() && out->size() <= limit; ++i) {
    if (i > 0) out->append(", ");
    dict.entries[i].first.AppendRepr(out, limit, depth + 1);
    out->append(": ");
    dict.entries[i].second.AppendRepr(out, limit, depth + 1);
  }
  out->push_back('}');
}

size_t SaturatingAdd(size_t a, size_t b) { return a + b < a ? SIZE_MAX : a + b; }

}  // namespace

std::string FloatRepr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  // The shortest digits that round-trip, then Python's layout: positional
  // for exponents in [-4, 16), scientific with a two-digit exponent otherwise.
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value,
                                 std::chars_format::scientific);
  (void)ec;  // 64 bytes always hold a double
  std::string_view text(buffer, end - buffer);
  const bool negative = text.front() == '-';
  if (negative) text.remove_prefix(1);
  const size_t e = text.find('e');
  std::string digits;
  for (char c : text.substr(0, e)) {
    if (c != '.') digits.push_back(c);
  }
  const int exponent = std::stoi(std::string(text.substr(e + 1)));
  const int point = exponent + 1;  // digits before the decimal point
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (point <= 0) {
      out += "0." + std::string(-point, '0') + digits;
    } else if (static_cast<size_t>(point) >= digits.size()) {
      out += digits + std::string(point - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, point) + "." + digits.substr(point);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char exp_text[16];
  std::snprintf(exp_text, sizeof(exp_text), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out + exp_text;
}

std::string StringRepr(std::string_view text) {
  const bool has_single = text.find('\'') != std::string_view::npos;
  const bool has_double = text.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    const char32_t c = tokenizer::DecodeUtf8(text, &pos);
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x80 ? (c < 0x20 || c == 0x7f) : !IsPrintable(c)) {
      AppendEscape(c, &out);
    } else {
      out.append(text.substr(start, pos - start));
    }
  }
  out.push_back(quote);
  return out;
}

const Value* DictData::Find(const Value& key) const {
  for (const auto& [k, v] : entries) {
    if (k.Equals(key)) return &v;
  }
  return nullptr;
}

const Value* DictData::Find(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k.is_string() && k.as_string() == key) return &v;
  }
  return nullptr;
}

void DictData::Set(Value key, Value value) {
  for (auto& entry : entries) {
    if (entry.first.Equals(key)) {
      entry.second = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

Value Namespace::GetAttr(std::string_view name) const {
  if (const Value* value = attrs_->Find(name)) return *value;
  return Undefined{absl::StrCat("'Namespace' object has no attribute '", std::string(name), "'")};
}

void Namespace::AppendRepr(std::string* out, size_t limit, int depth) const {
  out->append("<Namespace ");
  AppendDictRepr(*attrs_, out, limit, depth);
  out->push_back('>');
}

void Namespace::SetAttr(std::string_view name, Value value) {
  attrs_->Set(std::string(name), std::move(value));
}

Value Value::MakeList(std::vector<Value> items, ListData::Kind kind) {
  auto list = std::make_shared<ListData>();
  list->items = std::move(items);
  list->kind = kind;
  list->weight = 2;
  for (const Value& item : list->items) list->weight = SaturatingAdd(list->weight, item.Weight() + 2);
  return Value(ListPtr(std::move(list)));
}

Value Value::MakeDict(DictData dict) {
  dict.weight = 2;
  for (const auto& [key, value] : dict.entries) {
    dict.weight = SaturatingAdd(dict.weight, SaturatingAdd(key.Weight(), value.Weight() + 4));
  }
  return Value(DictPtr(std::make_shared<DictData>(std::move(dict))));
}

Value Value::MakeFunction(std::string name,
                          std::function<absl::StatusOr<Value>(CallArgs&)> call) {
  return Value(FunctionPtr(std::make_shared<Function>(Function{std::move(name), std::move(call)})));
}

Value Value::FromJson(const nlohmann::ordered_json& json) {
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null:
      return None{};
    case nlohmann::ordered_json::value_t::boolean:
      return json.get<bool>();
    case nlohmann::ordered_json::value_t::number_integer:
      return json.get<int64_t>();
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = json.get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return static_cast<int64_t>(u);
      }
      return static_cast<double>(u);
    }
    case nlohmann::ordered_json::value_t::number_float:
      return json.get<double>();
    case nlohmann::ordered_json::value_t::string:
      return json.get<std::string>();
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) items.push_back(FromJson(item));
      return MakeList(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      DictData dict;
      dict.entries.reserve(json.size());
      for (const auto& [key, item] : json.items()) dict.entries.emplace_back(key, FromJson(item));
      return MakeDict(std::move(dict));
    }
    default:  // binary and discarded values do not come out of a JSON parse
      return None{};
  }
}

double Value::as_double() const {
  if (is_float()) return std::get<double>(data_);
  return static_cast<double>(as_integer());
}

bool Value::Truthy() const {
  if (is_undefined() || is_none()) return false;
  if (is_bool()) return as_bool();
  if (is_int()) return as_int() != 0;
  if (is_float()) return as_double() != 0.0;
  if (is_string()) return !as_string().empty();
  if (is_list()) return is_generator() || !list().items.empty();
  if (is_dict()) return !dict().entries.empty();
  return true;
}

bool Value::Equals(const Value& other) const {
  if (is_number() && other.is_number()) {
    if (is_float() || other.is_float()) return as_double() == other.as_double();
    return as_integer() == other.as_integer();
  }
  if (data_.index() != other.data_.index()) return false;
  if (is_undefined() || is_none()) return true;
  if (is_string()) return as_string() == other.as_string();
  if (is_list()) {
    const ListData& a = list();
    const ListData& b = other.list();
    if (a.kind != b.kind || a.items.size() != b.items.size()) return false;
    if (a.kind == ListData::Kind::kGenerator) return &a == &b;
    for (size_t i = 0; i < a.items.size(); ++i) {
      if (!a.items[i].Equals(b.items[i])) return false;
    }
    return true;
  }
  if (is_dict()) {
    const DictData& a = dict();
    const DictData& b = other.dict();
    if (a.entries.size() != b.entries.size()) return false;
    for (const auto& [key, value] : a.entries) {
      const Value* found = b.Find(key);
      if (found == nullptr || !found->Equals(value)) return false;
    }
    return true;
  }
  if (is_function()) return &function() == &other.function();
  return object() == other.object();
}

std::string Value::Str() const {
  if (is_undefined()) return "";
  if (is_string()) return as_string();
  return Repr();
}

std::string Value::Repr() const {
  std::string out;
  AppendRepr(&out, SIZE_MAX);
  return out;
}

void Value::AppendRepr(std::string* out, size_t limit, int depth) const {
  if (depth > kMaxReprDepth) {
    out->append("...");
  } else if (is_undefined()) {
    out->append("Undefined");
  } else if (is_none()) {
    out->append("None");
  } else if (is_bool()) {
    out->append(as_bool() ? "True" : "False");
  } else if (is_int()) {
    out->append(std::to_string(as_int()));
  } else if (is_float()) {
    out->append(FloatRepr(as_double()));
  } else if (is_string()) {
    out->append(StringRepr(as_string()));
  } else if (is_list()) {
    AppendSequenceRepr(list(), out, limit, depth);
  } else if (is_dict()) {
    AppendDictRepr(dict(), out, limit, depth);
  } else if (is_function()) {
    out->append("<function " + function().name + ">");
  } else {
    object()->AppendRepr(out, limit, depth);
  }
}

size_t Value::Weight() const {
  if (is_string()) return as_string().size() + 2;
  if (is_list()) return list().weight;
  if (is_dict()) return dict().weight;
  return 24;  // the longest float repr; objects print their own contents
}

std::string Value::TypeName() const {
  if (is_undefined()) return "Undefined";
  if (is_none()) return "NoneType";
  if (is_bool()) return "bool";
  if (is_int()) return "int";
  if (is_float()) return "float";
  if (is_string()) return "str";
  if (is_list()) {
    switch (list().kind) {
      case ListData::Kind::kTuple:
        return "tuple";
      case ListData::Kind::kGenerator:
        return "generator";
      case ListData::Kind::kList:
        return "list";
    }
  }
  if (is_dict()) return "dict";
  if (is_function()) return "function";
  return std::string(object()->TypeName());
}

Value CallArgs::Take(size_t index, std::string_view name, Value fallback) {
  taken_.resize(positional.size() + keyword.size(), false);
  if (index < positional.size()) {
    taken_[index] = true;
    return positional[index];
  }
  for (size_t k = 0; k < keyword.size(); ++k) {
    if (keyword[k].first == name) {
      taken_[positional.size() + k] = true;
      return keyword[k].second;
    }
  }
  return fallback;
}

absl::Status CallArgs::CheckAllTaken(std::string_view function) const {
  for (size_t i = 0; i < positional.size() + keyword.size(); ++i) {
    if (i < taken_.size() && taken_[i]) continue;
    if (i < positional.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(function), "() got too many positional arguments (", positional.size(), ")"));
    }
    return absl::InvalidArgumentError(absl::StrCat(std::string(function), "() got an unexpected keyword argument '",
                                                   keyword[i - positional.size()].first, "'"));
  }
  return absl::OkStatus();
}

}  // namespace kestrel::chat

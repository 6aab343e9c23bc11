// Operators, attribute and item access, slicing, iteration and the str /
// dict methods, with Python's and jinja2's semantics (builtins.h).
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "model/chat/builtins.h"
#include "model/chat/py_string.h"

namespace kestrel::chat {
namespace {

absl::Status TypeError(const std::string& what) { return absl::InvalidArgumentError(what); }

absl::Status UndefinedError(const Value& value) {
  return absl::InvalidArgumentError(value.undefined().hint);
}

absl::Status OperandError(std::string_view op, const Value& left, const Value& right) {
  if (left.is_undefined()) return UndefinedError(left);
  if (right.is_undefined()) return UndefinedError(right);
  return TypeError(absl::StrCat("unsupported operand type(s) for ", std::string(op), ": '", left.TypeName(),
                                "' and '", right.TypeName(), "'"));
}

absl::Status Overflow() {
  return absl::OutOfRangeError("integer overflow (Python would switch to a big integer)");
}

absl::Status TooLarge(size_t weight, const ValueLimits& limits) {
  return absl::ResourceExhaustedError(absl::StrCat("value of about ", weight,
                                                   " bytes exceeds the template limit of ",
                                                   limits.max_bytes, " bytes"));
}

bool IsInteger(const Value& v) { return v.is_int() || v.is_bool(); }

absl::StatusOr<Value> IntPower(int64_t base, int64_t exponent) {
  int64_t result = 1;
  for (int64_t i = 0; i < exponent; ++i) {
    if (__builtin_mul_overflow(result, base, &result)) return Overflow();
    if (result == 0 || result == 1) break;  // 0**n and 1**n stay put
    if (result == -1 && exponent % 2 == (i + 1) % 2) break;
  }
  return result;
}

// Python's % on floats takes the sign of the divisor.
double FloatMod(double a, double b) {
  double m = std::fmod(a, b);
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

absl::StatusOr<Value> Arithmetic(std::string_view op, const Value& a, const Value& b) {
  if (IsInteger(a) && IsInteger(b)) {
    const int64_t x = a.as_integer();
    const int64_t y = b.as_integer();
    int64_t r = 0;
    if (op == "+") return __builtin_add_overflow(x, y, &r) ? absl::StatusOr<Value>(Overflow()) : r;
    if (op == "-") return __builtin_sub_overflow(x, y, &r) ? absl::StatusOr<Value>(Overflow()) : r;
    if (op == "*") return __builtin_mul_overflow(x, y, &r) ? absl::StatusOr<Value>(Overflow()) : r;
    if (op == "**") {
      if (y >= 0) return IntPower(x, y);
      if (x == 0) return absl::InvalidArgumentError("0 cannot be raised to a negative power");
      return std::pow(static_cast<double>(x), static_cast<double>(y));
    }
    if (y == 0 && op != "/") return absl::InvalidArgumentError("integer division or modulo by zero");
    if (op == "//" || op == "%") {
      if (x == std::numeric_limits<int64_t>::min() && y == -1) return Overflow();
      int64_t q = x / y;
      int64_t m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        --q;
        m += y;
      }
      return op == "//" ? q : m;
    }
  }
  const double x = a.as_double();
  const double y = b.as_double();
  if (op == "+") return x + y;
  if (op == "-") return x - y;
  if (op == "*") return x * y;
  if (op == "**") {
    if (x == 0 && y < 0) return absl::InvalidArgumentError("0.0 cannot be raised to a negative power");
    if (x < 0 && y != std::floor(y)) return absl::InvalidArgumentError("complex result of '**'");
    return std::pow(x, y);
  }
  if (y == 0) return absl::InvalidArgumentError("division by zero");
  if (op == "/") return x / y;
  if (op == "//") return std::floor(x / y);
  return FloatMod(x, y);
}

// "'%s: %d' % (a, b)": the printf-style formatting of str, for %s %r %d %i %%.
absl::StatusOr<Value> FormatPercent(const std::string& format, const Value& args) {
  std::vector<Value> values;
  if (args.is_list() && args.list().kind == ListData::Kind::kTuple) {
    values = args.list().items;
  } else {
    values.push_back(args);
  }
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out.push_back(format[i]);
      continue;
    }
    if (++i >= format.size()) return TypeError("incomplete format");
    const char spec = format[i];
    if (spec == '%') {
      out.push_back('%');
      continue;
    }
    if (next >= values.size()) return TypeError("not enough arguments for format string");
    const Value& value = values[next++];
    if (spec == 's') {
      out += value.Str();
    } else if (spec == 'r') {
      out += value.Repr();
    } else if ((spec == 'd' || spec == 'i') && value.is_number()) {
      out += std::to_string(value.is_float() ? static_cast<int64_t>(value.as_double()) : value.as_integer());
    } else {
      return TypeError(absl::StrCat("unsupported format '%", std::string(1, spec), "' for ", value.TypeName()));
    }
  }
  if (next < values.size()) return TypeError("not all arguments converted during string formatting");
  return out;
}

absl::StatusOr<Value> Repeat(const Value& sequence, int64_t times, const ValueLimits& limits) {
  times = std::max<int64_t>(times, 0);
  const size_t weight = sequence.Weight();
  if (times > 0 && weight > limits.max_bytes / static_cast<size_t>(times)) {
    return TooLarge(weight * static_cast<size_t>(std::min<int64_t>(times, 1 << 20)), limits);
  }
  if (sequence.is_string()) {
    std::string out;
    out.reserve(sequence.as_string().size() * times);
    for (int64_t i = 0; i < times; ++i) out += sequence.as_string();
    return out;
  }
  std::vector<Value> items;
  for (int64_t i = 0; i < times; ++i) {
    items.insert(items.end(), sequence.list().items.begin(), sequence.list().items.end());
  }
  return Value::MakeList(std::move(items), sequence.list().kind);
}

bool IsSequence(const Value& v) { return v.is_list() && !v.is_generator(); }

absl::StatusOr<bool> Less(const Value& a, const Value& b, std::string_view op) {
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_integer() < b.as_integer();
  }
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
  if (IsSequence(a) && IsSequence(b) && a.list().kind == b.list().kind) {
    const auto& x = a.list().items;
    const auto& y = b.list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (x[i].Equals(y[i])) continue;
      return Less(x[i], y[i], op);
    }
    return x.size() < y.size();
  }
  return TypeError(absl::StrCat("'", std::string(op), "' not supported between instances of '", a.TypeName(),
                                "' and '", b.TypeName(), "'"));
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item) {
  if (container.is_string()) {
    if (!item.is_string()) {
      if (item.is_undefined()) return UndefinedError(item);
      return TypeError("'in <string>' requires string as left operand, not " + item.TypeName());
    }
    return container.as_string().find(item.as_string()) != std::string::npos;
  }
  if (container.is_list()) {
    for (const Value& v : container.list().items) {
      if (v.Equals(item)) return true;
    }
    return false;
  }
  if (container.is_dict()) return container.dict().Find(item) != nullptr;
  if (container.is_undefined()) return false;  // jinja2's Undefined iterates as empty
  return TypeError("argument of type '" + container.TypeName() + "' is not iterable");
}

// Python's slice.indices(length): clamps start and stop for `step`.
void AdjustSlice(int64_t length, int64_t step, std::optional<int64_t> start, std::optional<int64_t> stop,
                 int64_t* out_start, int64_t* out_stop) {
  auto clamp = [&](std::optional<int64_t> index, int64_t fallback) {
    if (!index) return fallback;
    int64_t i = *index;
    if (i < 0) i += length;
    if (step > 0) return std::clamp<int64_t>(i, 0, length);
    return std::clamp<int64_t>(i, -1, length - 1);
  };
  *out_start = clamp(start, step > 0 ? 0 : length - 1);
  *out_stop = clamp(stop, step > 0 ? length : -1);
}

absl::StatusOr<std::optional<int64_t>> SliceIndex(const std::optional<Value>& v) {
  if (!v || v->is_none()) return std::optional<int64_t>();
  if (!IsInteger(*v)) return TypeError("slice indices must be integers or None, got " + v->TypeName());
  return std::optional<int64_t>(v->as_integer());
}

// ---- methods ----

std::optional<std::string> OptionalString(const Value& v) {
  if (v.is_string()) return v.as_string();
  return std::nullopt;
}

absl::StatusOr<std::string> StringArg(const Value& v, std::string_view method) {
  if (!v.is_string()) return TypeError(absl::StrCat(std::string(method), "() argument must be str, not ", v.TypeName()));
  return v.as_string();
}

Value StringList(const std::vector<std::string>& parts) {
  std::vector<Value> items(parts.begin(), parts.end());
  return Value::MakeList(std::move(items));
}

// str.startswith / endswith with a string or a tuple of strings.
absl::StatusOr<Value> AffixTest(const std::string& self, const Value& affix, bool prefix) {
  std::vector<Value> options = IsSequence(affix) ? affix.list().items : std::vector<Value>{affix};
  for (const Value& option : options) {
    ASSIGN_OR_RETURN(std::string text, StringArg(option, prefix ? "startswith" : "endswith"));
    const bool match = text.size() <= self.size() &&
                       (prefix ? self.compare(0, text.size(), text) == 0
                               : self.compare(self.size() - text.size(), text.size(), text) == 0);
    if (match) return true;
  }
  return false;
}

absl::StatusOr<Value> CallStringMethod(const std::string& self, std::string_view name, CallArgs& args) {
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const std::optional<std::string> chars = OptionalString(args.Take(0, "chars", None{}));
    RETURN_IF_ERROR(args.CheckAllTaken(name));
    return std::string(PyStrip(self, chars, name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    const std::optional<std::string> sep = OptionalString(args.Take(0, "sep", None{}));
    const Value max_split = args.Take(1, "maxsplit", int64_t{-1});
    RETURN_IF_ERROR(args.CheckAllTaken(name));
    if (sep && sep->empty()) return TypeError("empty separator");
    if (!IsInteger(max_split)) return TypeError("maxsplit must be an integer");
    if (name == "rsplit" && max_split.as_integer() >= 0) {
      return TypeError("rsplit with maxsplit is not supported");
    }
    return StringList(PySplit(self, sep, max_split.as_integer()));
  }
  if (name == "splitlines") {
    RETURN_IF_ERROR(args.CheckAllTaken(name));
    return StringList(PySplitLines(self));
  }
  if (name == "startswith" || name == "endswith") {
    const Value affix = args.Take(0, "prefix");
    RETURN_IF_ERROR(args.CheckAllTaken(name));
    return AffixTest(self, affix, name == "startswith");
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    RETURN_IF_ERROR(args.CheckAllTaken(name));
    if (name == "upper") return PyUpper(self);
    if (name == "lower") return PyLower(self);
    if (name == "title") return PyTitle(self);
    return PyCapitalize(self);
  }
  if (name == "replace") {
    ASSIGN_OR_RETURN(std::string old_text, StringArg(args.Take(0, "old"), name));
    ASSIGN_OR_RETURN(std::string new_text, StringArg(args.Take(1, "new"), name));
    const Value count = args.Take(2, "count", int64_t{-1});
    RETURN_IF_ERROR(args.CheckAllTaken(name));
    if (!IsInteger(count)) return TypeError("replace() count must be an integer");
    return PyReplace(self, old_text, new_text, count.as_integer());
  }
  if (name == "find" || name == "rfind" || name == "count") {
    ASSIGN_OR_RETURN(std::string needle, StringArg(args.Take(0, "sub"), name));
    RETURN_IF_ERROR(args.CheckAllTaken(name));
    if (name == "count") {
      int64_t count = 0;
      if (needle.empty()) return static_cast<int64_t>(CodePointCount(self) + 1);
      for (size_t at = self.find(needle); at != std::string::npos; at = self.find(needle, at + needle.size())) {
        ++count;
      }
      return count;
    }
    const size_t at = name == "find" ? self.find(needle) : self.rfind(needle);
    if (at == std::string::npos) return int64_t{-1};
    return static_cast<int64_t>(CodePointCount(std::string_view(self).substr(0, at)));
  }
  if (name == "join") {
    const Value items = args.Take(0, "iterable");
    RETURN_IF_ERROR(args.CheckAllTaken(name));
    ASSIGN_OR_RETURN(std::vector<Value> parts, Iterate(items));
    std::vector<std::string> texts;
    for (const Value& part : parts) {
      ASSIGN_OR_RETURN(std::string text, StringArg(part, "join"));
      texts.push_back(std::move(text));
    }
    return absl::StrJoin(texts, self);
  }
  RETURN_IF_ERROR(args.CheckAllTaken(name));
  if (name == "isspace") return PyIsSpace(self);
  if (name == "isdigit") return PyIsDigit(self);
  if (name == "isalpha") return PyIsAlpha(self);
  if (name == "isalnum") return PyIsAlnum(self);
  if (name == "isupper") return PyIsUpper(self);
  if (name == "islower") return PyIsLower(self);
  return TypeError(absl::StrCat("str.", std::string(name), " is not supported"));
}

absl::StatusOr<Value> CallDictMethod(const Value& self, std::string_view name, CallArgs& args) {
  if (name == "get") {
    const Value key = args.Take(0, "key");
    const Value fallback = args.Take(1, "default", None{});
    RETURN_IF_ERROR(args.CheckAllTaken(name));
    const Value* found = self.dict().Find(key);
    return found ? *found : fallback;
  }
  RETURN_IF_ERROR(args.CheckAllTaken(name));
  std::vector<Value> out;
  for (const auto& [key, value] : self.dict().entries) {
    if (name == "keys") {
      out.push_back(key);
    } else if (name == "values") {
      out.push_back(value);
    } else {
      out.push_back(Value::MakeList({key, value}, ListData::Kind::kTuple));
    }
  }
  return Value::MakeList(std::move(out));
}

bool IsStringMethod(std::string_view name) {
  static constexpr std::string_view kMethods[] = {
      "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith",
      "upper", "lower", "title", "capitalize", "replace", "find", "rfind", "count", "join",
      "isspace", "isdigit", "isalpha", "isalnum", "isupper", "islower"};
  return std::find(std::begin(kMethods), std::end(kMethods), name) != std::end(kMethods);
}

// Methods that would change a list or dict: the immutable sandbox refuses them.
bool IsMutatingMethod(const Value& object, std::string_view name) {
  static constexpr std::string_view kList[] = {"append", "extend", "insert", "pop", "remove",
                                               "clear", "sort", "reverse"};
  static constexpr std::string_view kDict[] = {"pop", "popitem", "setdefault", "update", "clear"};
  if (object.is_list()) return std::find(std::begin(kList), std::end(kList), name) != std::end(kList);
  return std::find(std::begin(kDict), std::end(kDict), name) != std::end(kDict);
}

Value BoundMethod(const Value& self, std::string_view name) {
  std::string method(name);
  return Value::MakeFunction(self.TypeName() + "." + method, [self, method](CallArgs& args) {
    return self.is_string() ? CallStringMethod(self.as_string(), method, args)
                            : CallDictMethod(self, method, args);
  });
}

Value NoAttribute(const Value& object, std::string_view name) {
  return Undefined{absl::StrCat("'", object.TypeName(), " object' has no attribute '", std::string(name), "'")};
}

}  // namespace

absl::StatusOr<Value> BinaryOp(std::string_view op, const Value& left, const Value& right,
                               const ValueLimits& limits) {
  Value result;
  if (op == "~") {
    result = left.Str() + right.Str();
  } else if (left.is_number() && right.is_number()) {
    return Arithmetic(op, left, right);
  } else if (op == "+" && left.is_string() && right.is_string()) {
    result = left.as_string() + right.as_string();
  } else if (op == "+" && IsSequence(left) && IsSequence(right) &&
             left.list().kind == right.list().kind) {
    if (left.Weight() + right.Weight() > limits.max_bytes) {
      return TooLarge(left.Weight() + right.Weight(), limits);
    }
    std::vector<Value> items = left.list().items;
    items.insert(items.end(), right.list().items.begin(), right.list().items.end());
    return Value::MakeList(std::move(items), left.list().kind);
  } else if (op == "*" && (left.is_string() || IsSequence(left)) && IsInteger(right)) {
    return Repeat(left, right.as_integer(), limits);
  } else if (op == "*" && IsInteger(left) && (right.is_string() || IsSequence(right))) {
    return Repeat(right, left.as_integer(), limits);
  } else if (op == "%" && left.is_string()) {
    ASSIGN_OR_RETURN(result, FormatPercent(left.as_string(), right));
  } else {
    return OperandError(op, left, right);
  }
  if (result.Weight() > limits.max_bytes) return TooLarge(result.Weight(), limits);
  return result;
}

absl::StatusOr<Value> UnaryOp(std::string_view op, const Value& operand) {
  if (operand.is_undefined()) return UndefinedError(operand);
  if (!operand.is_number()) {
    return TypeError(absl::StrCat("bad operand type for unary ", std::string(op), ": '", operand.TypeName(), "'"));
  }
  if (op == "+") return operand.is_bool() ? Value(operand.as_integer()) : operand;
  if (operand.is_float()) return -operand.as_double();
  if (operand.as_integer() == std::numeric_limits<int64_t>::min()) return Overflow();
  return -operand.as_integer();
}

absl::StatusOr<bool> Compare(std::string_view op, const Value& left, const Value& right) {
  if (op == "==") return left.Equals(right);
  if (op == "!=") return !left.Equals(right);
  if (op == "in") return Contains(right, left);
  if (op == "notin") {
    ASSIGN_OR_RETURN(bool in, Contains(right, left));
    return !in;
  }
  if (op == "<") return Less(left, right, op);
  if (op == ">") return Less(right, left, op);
  ASSIGN_OR_RETURN(bool less, Less(op == "<=" ? right : left, op == "<=" ? left : right, op));
  return !less;  // a <= b is not (b < a) for the orders templates compare
}

absl::StatusOr<Value> GetAttribute(const Value& object, std::string_view name) {
  if (object.is_undefined()) return UndefinedError(object);
  if (object.is_object()) return object.object()->GetAttr(name);
  if (object.is_string() && IsStringMethod(name)) return BoundMethod(object, name);
  if (object.is_dict() && (name == "items" || name == "keys" || name == "values" || name == "get")) {
    return BoundMethod(object, name);
  }
  if ((object.is_list() || object.is_dict()) && IsMutatingMethod(object, name)) {
    return Undefined{absl::StrCat("access to attribute '", std::string(name), "' of '", object.TypeName(),
                                  "' object is unsafe.")};
  }
  if (object.is_dict()) {
    if (const Value* found = object.dict().Find(name)) return *found;
  }
  return NoAttribute(object, name);
}

absl::StatusOr<Value> GetItem(const Value& object, const Value& key) {
  if (object.is_undefined()) return UndefinedError(object);
  if (object.is_dict()) {
    if (const Value* found = object.dict().Find(key)) return *found;
  } else if ((IsSequence(object) || object.is_string()) && IsInteger(key)) {
    const bool is_string = object.is_string();
    std::vector<std::string_view> chars;
    if (is_string) chars = CodePoints(object.as_string());
    const int64_t length = is_string ? chars.size() : object.list().items.size();
    int64_t index = key.as_integer();
    if (index < 0) index += length;
    if (index >= 0 && index < length) {
      if (is_string) return std::string(chars[index]);
      return object.list().items[index];
    }
    return Undefined{absl::StrCat(object.TypeName(), " index ", key.as_integer(), " out of range")};
  }
  if (key.is_string()) return GetAttribute(object, key.as_string());
  return Undefined{absl::StrCat("'", object.TypeName(), " object' has no item ", key.Repr())};
}

absl::StatusOr<Value> GetSlice(const Value& object, const std::optional<Value>& start,
                               const std::optional<Value>& stop, const std::optional<Value>& step) {
  if (object.is_undefined()) return UndefinedError(object);
  if (!object.is_string() && !IsSequence(object)) {
    return Undefined{absl::StrCat("'", object.TypeName(), "' object cannot be sliced")};
  }
  ASSIGN_OR_RETURN(std::optional<int64_t> begin, SliceIndex(start));
  ASSIGN_OR_RETURN(std::optional<int64_t> end, SliceIndex(stop));
  ASSIGN_OR_RETURN(std::optional<int64_t> stride, SliceIndex(step));
  const int64_t by = stride.value_or(1);
  if (by == 0) return absl::InvalidArgumentError("slice step cannot be zero");
  std::vector<std::string_view> chars;
  if (object.is_string()) chars = CodePoints(object.as_string());
  const int64_t length = object.is_string() ? chars.size() : object.list().items.size();
  int64_t from = 0;
  int64_t to = 0;
  AdjustSlice(length, by, begin, end, &from, &to);
  std::string text;
  std::vector<Value> items;
  for (int64_t i = from; by > 0 ? i < to : i > to; i += by) {
    if (object.is_string()) {
      text += chars[i];
    } else {
      items.push_back(object.list().items[i]);
    }
  }
  if (object.is_string()) return text;
  return Value::MakeList(std::move(items), object.list().kind);
}

absl::StatusOr<std::vector<Value>> Iterate(const Value& value) {
  if (value.is_list()) return value.list().items;
  if (value.is_undefined()) return std::vector<Value>();
  std::vector<Value> items;
  if (value.is_dict()) {
    for (const auto& entry : value.dict().entries) items.push_back(entry.first);
    return items;
  }
  if (value.is_string()) {
    for (std::string_view c : CodePoints(value.as_string())) items.emplace_back(std::string(c));
    return items;
  }
  return TypeError("'" + value.TypeName() + "' object is not iterable");
}

}  // namespace kestrel::chat

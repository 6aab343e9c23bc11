// The values a chat template computes with, with Python's semantics where
// they show in the output: truthiness, equality (1 == 1.0 == True), str()
// and repr() printing ("None", "True", "1.0", "{'a': [1, 'b']}"), and
// jinja2's Undefined. See docs/chat-templates.md.
#ifndef KESTREL_MODEL_CHAT_VALUE_H_
#define KESTREL_MODEL_CHAT_VALUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

namespace kestrel::chat {

class Value;
class Object;
struct CallArgs;

// jinja2's default Undefined: prints as "", is falsy and iterates as empty;
// most other uses (attribute access, arithmetic, calls) fail with `hint`.
struct Undefined {
  std::string hint;  // e.g. "'foo' is undefined"
};
struct None {};

// A list, a tuple, or a one-shot iterator such as the result of
// `|selectattr` (`generator`): jinja2's generators are always truthy and have
// no length, so templates that rely on either fail here too.
struct ListData {
  enum class Kind { kList, kTuple, kGenerator };
  std::vector<Value> items;
  Kind kind = Kind::kList;
  size_t weight = 0;  // Value::Weight(), computed by Value::MakeList
};

// A Python dict: insertion-ordered, keys compared with Python equality.
struct DictData {
  std::vector<std::pair<Value, Value>> entries;

  // The value for `key`, or nullptr.
  const Value* Find(const Value& key) const;
  const Value* Find(std::string_view key) const;
  // Sets `key` (replacing an equal key in place, as Python does).
  void Set(Value key, Value value);

  size_t weight = 0;  // Value::Weight(), computed by Value::MakeDict
};

// A built-in or template-defined function (a macro, `range`, a bound
// string method). Calls may render template code, hence the renderer-side
// hook in CallArgs.
struct Function {
  std::string name;
  std::function<absl::StatusOr<Value>(CallArgs&)> call;
};

// Objects with attributes: namespace(), the loop variable.
class Object {
 public:
  virtual ~Object() = default;
  // The Python type name used in messages ("Namespace", "LoopContext").
  virtual std::string_view TypeName() const = 0;
  // The attribute, or an Undefined naming it.
  virtual Value GetAttr(std::string_view name) const = 0;
  // As Value::AppendRepr.
  virtual void AppendRepr(std::string* out, size_t limit, int depth) const = 0;
};

// jinja2's namespace(): the only object whose attributes a template may set.
class Namespace final : public Object {
 public:
  std::string_view TypeName() const override { return "Namespace"; }
  Value GetAttr(std::string_view name) const override;
  void AppendRepr(std::string* out, size_t limit, int depth) const override;
  void SetAttr(std::string_view name, Value value);
  // Drops every attribute (the renderer's way to break a namespace that
  // holds itself once a render ends).
  void Clear() { attrs_->entries.clear(); }

 private:
  std::shared_ptr<DictData> attrs_ = std::make_shared<DictData>();
};

using ListPtr = std::shared_ptr<const ListData>;
using DictPtr = std::shared_ptr<const DictData>;
using FunctionPtr = std::shared_ptr<const Function>;
using ObjectPtr = std::shared_ptr<Object>;

// An immutable value (lists and dicts are shared, never changed after they
// are built; only a Namespace's attributes change). Cheap to copy.
class Value {
 public:
  Value() : data_(Undefined{}) {}
  Value(Undefined u) : data_(std::move(u)) {}  // NOLINT: implicit by design
  Value(None) : data_(None{}) {}               // NOLINT
  Value(bool b) : data_(b) {}                  // NOLINT
  Value(int64_t i) : data_(i) {}               // NOLINT
  Value(int i) : data_(int64_t{i}) {}          // NOLINT
  Value(double d) : data_(d) {}                // NOLINT
  Value(std::string s) : data_(std::move(s)) {}  // NOLINT
  Value(const char* s) : data_(std::string(s)) {}  // NOLINT
  Value(ListPtr l) : data_(std::move(l)) {}    // NOLINT
  Value(DictPtr d) : data_(std::move(d)) {}    // NOLINT
  Value(FunctionPtr f) : data_(std::move(f)) {}  // NOLINT
  Value(ObjectPtr o) : data_(std::move(o)) {}  // NOLINT

  static Value MakeList(std::vector<Value> items,
                        ListData::Kind kind = ListData::Kind::kList);
  static Value MakeDict(DictData dict);
  static Value MakeFunction(std::string name,
                            std::function<absl::StatusOr<Value>(CallArgs&)> call);
  // JSON to Value: objects keep their order, numbers stay int or float.
  static Value FromJson(const nlohmann::ordered_json& json);

  bool is_undefined() const { return std::holds_alternative<Undefined>(data_); }
  bool is_none() const { return std::holds_alternative<None>(data_); }
  bool is_bool() const { return std::holds_alternative<bool>(data_); }
  bool is_int() const { return std::holds_alternative<int64_t>(data_); }
  bool is_float() const { return std::holds_alternative<double>(data_); }
  // Python numbers: bool is an int subclass.
  bool is_number() const { return is_bool() || is_int() || is_float(); }
  bool is_string() const { return std::holds_alternative<std::string>(data_); }
  bool is_list() const { return std::holds_alternative<ListPtr>(data_); }
  bool is_dict() const { return std::holds_alternative<DictPtr>(data_); }
  bool is_function() const { return std::holds_alternative<FunctionPtr>(data_); }
  bool is_object() const { return std::holds_alternative<ObjectPtr>(data_); }
  bool is_generator() const { return is_list() && list().kind == ListData::Kind::kGenerator; }

  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const { return std::get<int64_t>(data_); }
  // An int, a bool or a float as a double. REQUIRES: is_number().
  double as_double() const;
  // An int or a bool as an integer. REQUIRES: is_int() || is_bool().
  int64_t as_integer() const { return is_bool() ? as_bool() : as_int(); }
  const std::string& as_string() const { return std::get<std::string>(data_); }
  const ListData& list() const { return *std::get<ListPtr>(data_); }
  const DictData& dict() const { return *std::get<DictPtr>(data_); }
  const Function& function() const { return *std::get<FunctionPtr>(data_); }
  const ObjectPtr& object() const { return std::get<ObjectPtr>(data_); }
  const Undefined& undefined() const { return std::get<Undefined>(data_); }

  // Python's bool(x). Undefined is false, every object and generator true.
  bool Truthy() const;
  // Python's ==, including 1 == 1.0 == True and deep list/dict equality.
  bool Equals(const Value& other) const;
  // Python's str(x) (Undefined prints as "").
  std::string Str() const;
  // Python's repr(x): strings in quotes, as inside a printed list.
  std::string Repr() const;
  // Appends repr(x) to `out`; stops early (the text is then incomplete)
  // once `out` is longer than `limit` bytes, so printing an object graph
  // that holds a namespace many times, or itself, stays bounded.
  void AppendRepr(std::string* out, size_t limit, int depth = 0) const;
  // The Python type name, for error messages ("str", "list", "dict").
  std::string TypeName() const;
  // An upper bound of the size of Repr() for strings, numbers and nested
  // containers (objects count as small), O(1): the renderer rejects values
  // heavier than its limit, so a doubling loop cannot exhaust memory.
  size_t Weight() const;

 private:
  std::variant<Undefined, None, bool, int64_t, double, std::string, ListPtr, DictPtr,
               FunctionPtr, ObjectPtr>
      data_;
};

// Arguments of a function call: positional, then keyword in call order.
struct CallArgs {
  CallArgs() = default;
  CallArgs(std::vector<Value> positional_args, std::vector<std::pair<std::string, Value>> keyword_args)
      : positional(std::move(positional_args)), keyword(std::move(keyword_args)) {}

  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // The argument at `index` or named `name`, consuming it; `fallback` when
  // given neither way.
  Value Take(size_t index, std::string_view name, Value fallback = Value());
  // Fails naming `function` when arguments remain that no Take consumed.
  absl::Status CheckAllTaken(std::string_view function) const;

 private:
  std::vector<bool> taken_;
};

// Python's repr() of a float ("1.0", "0.1", "1e+16", "inf").
std::string FloatRepr(double value);
// Python's repr() of a string: single quotes unless it holds a single quote
// and no double quote; control and non-printable characters escaped.
std::string StringRepr(std::string_view text);

}  // namespace kestrel::chat

#endif  // KESTREL_MODEL_CHAT_VALUE_H_

#include "model/chat/template.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/chat/ast.h"
#include "model/chat/builtins.h"
#include "model/chat/lexer.h"
#include "model/chat/parser.h"

namespace kestrel::chat {
namespace {

// jinja2's sandbox refuses range() longer than this (MAX_RANGE).
constexpr int64_t kMaxRange = 100000;
// Nested evaluations (expressions within expressions, through macro calls):
// bounds the C++ stack a render uses.
constexpr int kMaxEvalDepth = 400;

// Prefixes `status` with the line it happened at, once (the innermost line wins).
absl::Status AtLine(const absl::Status& status, int line) {
  if (status.ok() || absl::StartsWith(status.message(), "chat template line ")) return status;
  return absl::Status(status.code(), absl::StrCat("chat template line ", line, ": ", status.message()));
}

// One scope: a for-loop iteration, a macro call, or the template's top
// level. Lookups walk out through the parents.
struct Frame {
  explicit Frame(std::shared_ptr<Frame> parent_frame) : parent(std::move(parent_frame)) {}

  const Value* Find(std::string_view name) const {
    for (const Frame* frame = this; frame != nullptr; frame = frame->parent.get()) {
      if (const Value* value = frame->vars.Find(name)) return value;
    }
    return nullptr;
  }

  std::shared_ptr<Frame> parent;
  DictData vars;
};
using FramePtr = std::shared_ptr<Frame>;

// The `loop` variable of one iteration.
class LoopObject final : public Object {
 public:
  LoopObject(std::shared_ptr<const std::vector<Value>> items, size_t index)
      : items_(std::move(items)), index_(index) {}

  std::string_view TypeName() const override { return "LoopContext"; }

  Value GetAttr(std::string_view name) const override {
    const int64_t length = static_cast<int64_t>(items_->size());
    const int64_t index = static_cast<int64_t>(index_);
    if (name == "index") return index + 1;
    if (name == "index0") return index;
    if (name == "revindex") return length - index;
    if (name == "revindex0") return length - index - 1;
    if (name == "first") return index == 0;
    if (name == "last") return index == length - 1;
    if (name == "length") return length;
    if (name == "depth") return 1;
    if (name == "depth0") return 0;
    if (name == "previtem") {
      if (index > 0) return (*items_)[index_ - 1];
      return Undefined{"there is no previous item"};
    }
    if (name == "nextitem") {
      if (index + 1 < length) return (*items_)[index_ + 1];
      return Undefined{"there is no next item"};
    }
    if (name == "cycle") {
      const size_t position = index_;
      return Value::MakeFunction("loop.cycle", [position](CallArgs& args) -> absl::StatusOr<Value> {
        if (args.positional.empty()) return absl::InvalidArgumentError("no items for cycling given");
        return args.positional[position % args.positional.size()];
      });
    }
    return Undefined{absl::StrCat("'LoopContext object' has no attribute '", std::string(name), "'")};
  }

  void AppendRepr(std::string* out, size_t, int) const override {
    absl::StrAppend(out, "<LoopContext ", index_ + 1, "/", items_->size(), ">");
  }

 private:
  std::shared_ptr<const std::vector<Value>> items_;
  size_t index_;
};

enum class Flow { kNormal, kBreak, kContinue };

// Counts nesting on the way down and back up.
class DepthGuard {
 public:
  explicit DepthGuard(int* depth) : depth_(depth) { ++*depth_; }
  ~DepthGuard() { --*depth_; }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;

 private:
  int* depth_;
};

// One render: output buffer, step count and nesting depth. Not thread-safe;
// each Render call has its own.
class Renderer {
 public:
  explicit Renderer(const TemplateOptions& options) : options_(options) {
    limits_.max_bytes = options.max_output_bytes;
  }

  // Values can form reference cycles (a macro stored in the scope it
  // captures, a namespace holding itself); nothing outlives the render, so
  // emptying those scopes and namespaces frees everything.
  ~Renderer() {
    for (const std::weak_ptr<Frame>& weak : captured_frames_) {
      if (auto frame = weak.lock()) frame->vars.entries.clear();
    }
    for (const std::weak_ptr<Namespace>& weak : namespaces_) {
      if (auto ns = weak.lock()) ns->Clear();
    }
  }

  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  absl::StatusOr<std::string> Run(const Body& body, const DictData& variables) {
    auto globals = std::make_shared<Frame>(nullptr);
    AddGlobals(&globals->vars);
    auto top = std::make_shared<Frame>(globals);
    top->vars = variables;
    std::string out;
    out_ = &out;
    ASSIGN_OR_RETURN(Flow flow, Exec(body, top));
    (void)flow;  // the parser allows break and continue only inside loops
    return out;
  }

 private:
  // ---- statements ----

  absl::StatusOr<Flow> Exec(const Body& body, const FramePtr& frame) {
    for (const NodePtr& node : body) {
      auto flow = ExecNode(*node, frame);
      if (!flow.ok()) return AtLine(flow.status(), node->line);
      if (*flow != Flow::kNormal) return *flow;
    }
    return Flow::kNormal;
  }

  absl::StatusOr<Flow> ExecNode(const Node& node, const FramePtr& frame) {
    RETURN_IF_ERROR(Step());
    switch (node.kind) {
      case NodeKind::kText:
        RETURN_IF_ERROR(Write(node.text));
        return Flow::kNormal;
      case NodeKind::kOutput: {
        ASSIGN_OR_RETURN(Value value, Eval(*node.expr, frame));
        RETURN_IF_ERROR(WriteValue(value));
        return Flow::kNormal;
      }
      case NodeKind::kIf: {
        ASSIGN_OR_RETURN(Value condition, Eval(*node.expr, frame));
        return Exec(condition.Truthy() ? node.body : node.else_body, frame);
      }
      case NodeKind::kFor:
        RETURN_IF_ERROR(ExecFor(node, frame));
        return Flow::kNormal;
      case NodeKind::kSet: {
        ASSIGN_OR_RETURN(Value value, Eval(*node.expr, frame));
        RETURN_IF_ERROR(Assign(node.target, std::move(value), frame));
        return Flow::kNormal;
      }
      case NodeKind::kSetBlock: {
        ASSIGN_OR_RETURN(Value value, Capture(node.body, frame));
        ASSIGN_OR_RETURN(value, ApplyFilters(node.filters, std::move(value), frame));
        RETURN_IF_ERROR(Assign(node.target, std::move(value), frame));
        return Flow::kNormal;
      }
      case NodeKind::kMacro:
        frame->vars.Set(node.name, MakeMacro(node.name, node.params, node.body, frame));
        return Flow::kNormal;
      case NodeKind::kCallBlock: {
        ASSIGN_OR_RETURN(Value result, EvalCall(*node.expr, frame,
                                                MakeMacro("caller", node.params, node.body, frame)));
        RETURN_IF_ERROR(WriteValue(result));
        return Flow::kNormal;
      }
      case NodeKind::kFilterBlock: {
        ASSIGN_OR_RETURN(Value value, Capture(node.body, frame));
        ASSIGN_OR_RETURN(value, ApplyFilters(node.filters, std::move(value), frame));
        RETURN_IF_ERROR(WriteValue(value));
        return Flow::kNormal;
      }
      case NodeKind::kGeneration:
        return Exec(node.body, frame);
      case NodeKind::kBreak:
        return Flow::kBreak;
      case NodeKind::kContinue:
        return Flow::kContinue;
    }
    return absl::InternalError("unknown statement");
  }

  // A for loop: the `if` filter first (loop.length counts what passes),
  // then one fresh scope per iteration, so a `set` in the body neither
  // survives into the next iteration nor leaks out of the loop.
  absl::Status ExecFor(const Node& node, const FramePtr& frame) {
    ASSIGN_OR_RETURN(Value iterable, Eval(*node.expr, frame));
    ASSIGN_OR_RETURN(std::vector<Value> all, Iterate(iterable));
    RETURN_IF_ERROR(Step(all.size() / 16));  // copying the items is work too
    auto items = std::make_shared<std::vector<Value>>();
    for (Value& item : all) {
      if (node.condition) {
        RETURN_IF_ERROR(Step());
        auto scope = std::make_shared<Frame>(frame);
        RETURN_IF_ERROR(Assign(node.target, item, scope));
        ASSIGN_OR_RETURN(Value keep, Eval(*node.condition, scope));
        if (!keep.Truthy()) continue;
      }
      items->push_back(std::move(item));
    }
    if (items->empty()) {
      ASSIGN_OR_RETURN(Flow flow, Exec(node.else_body, std::make_shared<Frame>(frame)));
      (void)flow;
      return absl::OkStatus();
    }
    for (size_t i = 0; i < items->size(); ++i) {
      RETURN_IF_ERROR(Step());
      auto scope = std::make_shared<Frame>(frame);
      RETURN_IF_ERROR(Assign(node.target, (*items)[i], scope));
      scope->vars.Set("loop", Value(ObjectPtr(std::make_shared<LoopObject>(items, i))));
      ASSIGN_OR_RETURN(Flow flow, Exec(node.body, scope));
      if (flow == Flow::kBreak) break;
    }
    return absl::OkStatus();
  }

  absl::Status Assign(const Target& target, Value value, const FramePtr& frame) {
    if (!target.attribute.empty()) {
      const Value* object = frame->Find(target.names[0]);
      if (object == nullptr || !object->is_object() ||
          object->object()->TypeName() != "Namespace") {
        return absl::InvalidArgumentError(absl::StrCat(
            "cannot assign attribute on non-namespace object '", target.names[0], "'"));
      }
      static_cast<Namespace&>(*object->object()).SetAttr(target.attribute, std::move(value));
      return absl::OkStatus();
    }
    if (!target.is_tuple) {
      frame->vars.Set(target.names[0], std::move(value));
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(std::vector<Value> parts, Iterate(value));
    if (parts.size() != target.names.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          parts.size() < target.names.size() ? "not enough" : "too many", " values to unpack (expected ",
          target.names.size(), ", got ", parts.size(), ")"));
    }
    for (size_t i = 0; i < parts.size(); ++i) frame->vars.Set(target.names[i], std::move(parts[i]));
    return absl::OkStatus();
  }

  // Renders `body` into a string instead of the output.
  absl::StatusOr<Value> Capture(const Body& body, const FramePtr& frame) {
    std::string captured;
    std::string* saved = out_;
    out_ = &captured;
    auto flow = Exec(body, frame);
    out_ = saved;
    if (!flow.ok()) return flow.status();
    return Value(std::move(captured));
  }

  absl::StatusOr<Value> ApplyFilters(const std::vector<ExprPtr>& filters, Value value,
                                     const FramePtr& frame) {
    for (const ExprPtr& filter : filters) {
      ASSIGN_OR_RETURN(value, EvalFilter(*filter, std::move(value), frame));
    }
    return value;
  }

  // A macro (or a call block's caller) as a function value. Its body runs
  // in a scope whose parent is where it was defined, so it sees variables
  // set there later too, as in jinja2.
  Value MakeMacro(const std::string& name, const std::vector<MacroParam>& params, const Body& body,
                  const FramePtr& frame) {
    captured_frames_.push_back(frame);
    return Value::MakeFunction(name, [this, name, &params, &body, frame](CallArgs& args) {
      return CallMacro(name, params, body, frame, args);
    });
  }

  absl::StatusOr<Value> CallMacro(const std::string& name, const std::vector<MacroParam>& params,
                                  const Body& body, const FramePtr& closure, CallArgs& args) {
    DepthGuard guard(&call_depth_);
    if (call_depth_ > options_.max_call_depth) {
      return absl::ResourceExhaustedError(
          absl::StrCat("macro calls nested deeper than ", options_.max_call_depth));
    }
    if (args.positional.size() > params.size()) {
      return absl::InvalidArgumentError(absl::StrCat("macro '", name, "' takes not more than ",
                                                     params.size(), " argument(s)"));
    }
    auto scope = std::make_shared<Frame>(closure);
    for (const auto& [key, value] : args.keyword) {
      const bool known = key == "caller" || std::any_of(params.begin(), params.end(),
                                                         [&](const MacroParam& p) { return p.name == key; });
      if (!known) {
        return absl::InvalidArgumentError(
            absl::StrCat("macro '", name, "' takes no keyword argument '", key, "'"));
      }
      if (key == "caller") scope->vars.Set("caller", value);
    }
    for (size_t i = 0; i < params.size(); ++i) {
      Value value = args.Take(i, params[i].name);
      if (value.is_undefined() && params[i].default_value) {
        ASSIGN_OR_RETURN(value, Eval(*params[i].default_value, scope));
      } else if (value.is_undefined()) {
        value = Undefined{absl::StrCat("parameter '", params[i].name, "' was not provided")};
      }
      scope->vars.Set(params[i].name, std::move(value));
    }
    return Capture(body, scope);
  }

  // ---- expressions ----

  absl::StatusOr<Value> Eval(const Expr& expr, const FramePtr& frame) {
    DepthGuard guard(&eval_depth_);
    if (eval_depth_ > kMaxEvalDepth) {
      return absl::ResourceExhaustedError("template evaluation nested too deeply");
    }
    RETURN_IF_ERROR(Step());
    auto value = EvalUnchecked(expr, frame);
    if (!value.ok()) return AtLine(value.status(), expr.line);
    // Values the template builds are bounded; what it only looks up (the
    // request itself) may be larger.
    const bool built = expr.kind != ExprKind::kName && expr.kind != ExprKind::kGetAttr &&
                       expr.kind != ExprKind::kGetItem && expr.kind != ExprKind::kLiteral;
    if (built && value->Weight() > limits_.max_bytes) {
      return AtLine(absl::ResourceExhaustedError(absl::StrCat(
                        "value of about ", value->Weight(), " bytes exceeds the template limit of ",
                        limits_.max_bytes, " bytes")),
                    expr.line);
    }
    return value;
  }

  absl::StatusOr<Value> EvalUnchecked(const Expr& expr, const FramePtr& frame) {
    switch (expr.kind) {
      case ExprKind::kLiteral:
        return expr.literal;
      case ExprKind::kName: {
        if (const Value* value = frame->Find(expr.name)) return *value;
        return Value(Undefined{absl::StrCat("'", expr.name, "' is undefined")});
      }
      case ExprKind::kList:
      case ExprKind::kTuple: {
        ASSIGN_OR_RETURN(std::vector<Value> items, EvalAll(expr.args, 0, frame));
        return Value::MakeList(std::move(items), expr.kind == ExprKind::kTuple ? ListData::Kind::kTuple
                                                                               : ListData::Kind::kList);
      }
      case ExprKind::kDict: {
        ASSIGN_OR_RETURN(std::vector<Value> parts, EvalAll(expr.args, 0, frame));
        DictData dict;
        for (size_t i = 0; i + 1 < parts.size(); i += 2) dict.Set(parts[i], parts[i + 1]);
        return Value::MakeDict(std::move(dict));
      }
      case ExprKind::kGetAttr: {
        ASSIGN_OR_RETURN(Value object, Eval(*expr.args[0], frame));
        return GetAttribute(object, expr.name);
      }
      case ExprKind::kGetItem: {
        ASSIGN_OR_RETURN(Value object, Eval(*expr.args[0], frame));
        ASSIGN_OR_RETURN(Value key, Eval(*expr.args[1], frame));
        return GetItem(object, key);
      }
      case ExprKind::kSlice:
        return EvalSlice(expr, frame);
      case ExprKind::kCall:
        return EvalCall(expr, frame, std::nullopt);
      case ExprKind::kFilter: {
        ASSIGN_OR_RETURN(Value input, Eval(*expr.args[0], frame));
        return EvalFilter(expr, std::move(input), frame);
      }
      case ExprKind::kTest:
        return EvalTest(expr, frame);
      case ExprKind::kUnary: {
        ASSIGN_OR_RETURN(Value operand, Eval(*expr.args[0], frame));
        if (expr.name == "not") return !operand.Truthy();
        return UnaryOp(expr.name, operand);
      }
      case ExprKind::kBinary:
        return EvalBinary(expr, frame);
      case ExprKind::kCompare:
        return EvalCompare(expr, frame);
      case ExprKind::kConditional: {
        ASSIGN_OR_RETURN(Value condition, Eval(*expr.args[0], frame));
        if (condition.Truthy()) return Eval(*expr.args[1], frame);
        if (expr.args[2]) return Eval(*expr.args[2], frame);
        return Value(Undefined{"the inline if expression evaluated to false and has no else"});
      }
    }
    return absl::InternalError("unknown expression");
  }

  absl::StatusOr<std::vector<Value>> EvalAll(const std::vector<ExprPtr>& exprs, size_t from,
                                             const FramePtr& frame) {
    std::vector<Value> values;
    for (size_t i = from; i < exprs.size(); ++i) {
      ASSIGN_OR_RETURN(Value value, Eval(*exprs[i], frame));
      values.push_back(std::move(value));
    }
    return values;
  }

  absl::StatusOr<CallArgs> EvalArgs(const Expr& expr, size_t from, const FramePtr& frame) {
    CallArgs args;
    ASSIGN_OR_RETURN(args.positional, EvalAll(expr.args, from, frame));
    for (const auto& [name, value_expr] : expr.kwargs) {
      ASSIGN_OR_RETURN(Value value, Eval(*value_expr, frame));
      args.keyword.emplace_back(name, std::move(value));
    }
    return args;
  }

  absl::StatusOr<Value> EvalBinary(const Expr& expr, const FramePtr& frame) {
    ASSIGN_OR_RETURN(Value left, Eval(*expr.args[0], frame));
    if (expr.name == "and" && !left.Truthy()) return left;
    if (expr.name == "or" && left.Truthy()) return left;
    ASSIGN_OR_RETURN(Value right, Eval(*expr.args[1], frame));
    if (expr.name == "and" || expr.name == "or") return right;
    return BinaryOp(expr.name, left, right, limits_);
  }

  absl::StatusOr<Value> EvalCompare(const Expr& expr, const FramePtr& frame) {
    ASSIGN_OR_RETURN(Value left, Eval(*expr.args[0], frame));
    for (size_t i = 0; i < expr.ops.size(); ++i) {
      ASSIGN_OR_RETURN(Value right, Eval(*expr.args[i + 1], frame));
      ASSIGN_OR_RETURN(bool holds, Compare(expr.ops[i], left, right));
      if (!holds) return false;
      left = std::move(right);
    }
    return true;
  }

  absl::StatusOr<Value> EvalSlice(const Expr& expr, const FramePtr& frame) {
    ASSIGN_OR_RETURN(Value object, Eval(*expr.args[0], frame));
    std::optional<Value> parts[3];
    for (int i = 0; i < 3; ++i) {
      if (expr.args[i + 1]) {
    ASSIGN_OR_RETURN(parts[i], Eval(*expr.args[i + 1], frame));
  }
    }
    return GetSlice(object, parts[0], parts[1], parts[2]);
  }

  // A call; `caller` is the body of an enclosing {% call %} block.
  absl::StatusOr<Value> EvalCall(const Expr& expr, const FramePtr& frame, std::optional<Value> caller) {
    ASSIGN_OR_RETURN(Value callee, Eval(*expr.args[0], frame));
    ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, frame));
    if (caller) args.keyword.emplace_back("caller", *caller);
    if (callee.is_undefined()) return absl::InvalidArgumentError(callee.undefined().hint);
    if (!callee.is_function()) {
      return absl::InvalidArgumentError("'" + callee.TypeName() + "' object is not callable");
    }
    return callee.function().call(args);
  }

  absl::StatusOr<Value> EvalFilter(const Expr& expr, Value input, const FramePtr& frame) {
    ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, frame));
    return ApplyFilter(expr.name, input, args, limits_);
  }

  absl::StatusOr<Value> EvalTest(const Expr& expr, const FramePtr& frame) {
    ASSIGN_OR_RETURN(Value input, Eval(*expr.args[0], frame));
    ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, frame));
    ASSIGN_OR_RETURN(bool passed, ApplyTest(expr.name, input, args));
    return passed != expr.negated;
  }

  // ---- globals ----

  void AddGlobals(DictData* globals) {
    globals->Set("range", Value::MakeFunction("range", Range));
    globals->Set("namespace", Value::MakeFunction("namespace", [this](CallArgs& args) {
      return MakeNamespace(args);
    }));
    globals->Set("dict", Value::MakeFunction("dict", [](CallArgs& args) -> absl::StatusOr<Value> {
      if (!args.positional.empty()) return absl::InvalidArgumentError("dict() takes keyword arguments only");
      DictData dict;
      for (auto& [key, value] : args.keyword) dict.Set(key, value);
      return Value::MakeDict(std::move(dict));
    }));
    globals->Set("raise_exception", Value::MakeFunction("raise_exception",
                                                        [](CallArgs& args) -> absl::StatusOr<Value> {
      return absl::InvalidArgumentError(
          absl::StrCat("raise_exception: ", args.Take(0, "message").Str()));
    }));
    globals->Set("strftime_now", Value::MakeFunction("strftime_now",
                                                     [this](CallArgs& args) -> absl::StatusOr<Value> {
      const Value format = args.Take(0, "format");
      RETURN_IF_ERROR(args.CheckAllTaken("strftime_now"));
      if (!format.is_string()) return absl::InvalidArgumentError("strftime_now() needs a format string");
      return absl::FormatTime(format.as_string(), options_.clock(), options_.time_zone);
    }));
  }

  static absl::StatusOr<Value> Range(CallArgs& args) {
    if (!args.keyword.empty() || args.positional.empty() || args.positional.size() > 3) {
      return absl::InvalidArgumentError("range() takes 1 to 3 integer arguments");
    }
    int64_t bounds[3] = {0, 0, 1};
    for (size_t i = 0; i < args.positional.size(); ++i) {
      const Value& v = args.positional[i];
      if (!v.is_int() && !v.is_bool()) {
        return absl::InvalidArgumentError("range() arguments must be integers, got " + v.TypeName());
      }
      bounds[args.positional.size() == 1 ? 1 : i] = v.as_integer();
    }
    const auto [start, stop, step] = bounds;
    if (step == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
    const long double count = step > 0 ? (static_cast<long double>(stop) - start + step - 1) / step
                                       : (static_cast<long double>(start) - stop - step - 1) / -step;
    if (count > kMaxRange) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "Range too big. The sandbox blocks ranges larger than MAX_RANGE (", kMaxRange, ")."));
    }
    std::vector<Value> items;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) items.push_back(i);
    return Value::MakeList(std::move(items));
  }

  absl::StatusOr<Value> MakeNamespace(CallArgs& args) {
    auto ns = std::make_shared<Namespace>();
    namespaces_.push_back(ns);
    for (const Value& initial : args.positional) {
      if (!initial.is_dict()) return absl::InvalidArgumentError("namespace() takes a dict or keywords");
      for (const auto& [key, value] : initial.dict().entries) ns->SetAttr(key.Str(), value);
    }
    for (const auto& [key, value] : args.keyword) ns->SetAttr(key, value);
    return Value(ObjectPtr(std::move(ns)));
  }

  // ---- output and limits ----

  absl::Status Step(int64_t count = 1) {
    steps_ += count;
    if (steps_ > options_.max_steps) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "template exceeded ", options_.max_steps, " evaluation steps (a runaway loop?)"));
    }
    return absl::OkStatus();
  }

  absl::Status Write(std::string_view text) {
    if (out_->size() + text.size() > options_.max_output_bytes) return OutputTooLarge();
    out_->append(text);
    return absl::OkStatus();
  }

  absl::Status WriteValue(const Value& value) {
    if (value.is_string()) return Write(value.as_string());
    if (value.is_undefined()) return absl::OkStatus();
    value.AppendRepr(out_, options_.max_output_bytes);
    if (out_->size() > options_.max_output_bytes) return OutputTooLarge();
    return absl::OkStatus();
  }

  absl::Status OutputTooLarge() const {
    return absl::ResourceExhaustedError(
        absl::StrCat("rendered output exceeds ", options_.max_output_bytes, " bytes"));
  }

  const TemplateOptions& options_;
  ValueLimits limits_;
  std::string* out_ = nullptr;  // not owned: the render's output or a capture
  int64_t steps_ = 0;
  // Weak: to break reference cycles when the render ends (see ~Renderer).
  std::vector<std::weak_ptr<Frame>> captured_frames_;
  std::vector<std::weak_ptr<Namespace>> namespaces_;
  int eval_depth_ = 0;
  int call_depth_ = 0;
};

}  // namespace

absl::StatusOr<Template> Template::Parse(std::string_view source, TemplateOptions options) {
  ASSIGN_OR_RETURN(Body body, ParseTemplate(source));
  return Template(std::make_shared<const Body>(std::move(body)), std::move(options));
}

absl::StatusOr<std::string> Template::Render(const DictData& variables) const {
  return Renderer(options_).Run(*body_, variables);
}

}  // namespace kestrel::chat

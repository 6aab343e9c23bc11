// The syntax tree of a parsed chat template: expressions and statements.
// Built once by the parser, then only read (rendering is const).
#ifndef KESTREL_MODEL_CHAT_AST_H_
#define KESTREL_MODEL_CHAT_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/chat/value.h"

namespace kestrel::chat {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  kLiteral,      // literal
  kName,         // a variable: name
  kList,         // [args...]
  kTuple,        // (args...)
  kDict,         // {args[0]: args[1], args[2]: args[3], ...}
  kGetAttr,      // args[0].name
  kGetItem,      // args[0][args[1]]
  kSlice,        // args[0][args[1]:args[2]:args[3]]; absent parts are null
  kCall,         // args[0](args[1...], kwargs)
  kFilter,       // args[0] | name(args[1...], kwargs); args[0] is null in filter blocks
  kTest,         // args[0] is [not] name(args[1...])
  kUnary,        // name args[0]: "-", "+", "not"
  kBinary,       // args[0] name args[1]: + - * / // % ** ~ and or
  kCompare,      // args[0] ops[0] args[1] ops[1] args[2] ...: == != < <= > >= in notin
  kConditional,  // args[1] if args[0] else args[2]; args[2] null: undefined
};

struct Expr {
  ExprKind kind;
  int line;
  std::string name;
  Value literal;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;  // kTest: "is not"
};

// Where a for loop or a set statement assigns: one name, a tuple of names
// (`for key, value in ...`), or a namespace attribute (`set ns.count = 1`).
struct Target {
  std::vector<std::string> names;
  bool is_tuple = false;
  std::string attribute;  // non-empty: names[0].attribute
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // null: required (undefined when not given)
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

enum class NodeKind {
  kText,         // text
  kOutput,       // {{ expr }}
  kIf,           // if expr: body else else_body (elif nests an If)
  kFor,          // for target in expr [if condition]: body, else else_body
  kSet,          // set target = expr
  kSetBlock,     // set target: body, through filters
  kMacro,        // macro name(params): body
  kCallBlock,    // call(params) expr: body is the caller
  kFilterBlock,  // filter filters: body
  kBreak,
  kContinue,
  kGeneration,   // generation: body (rendered as is)
};

struct Node {
  NodeKind kind;
  int line;
  std::string text;
  std::string name;
  ExprPtr expr;
  ExprPtr condition;
  Target target;
  std::vector<MacroParam> params;
  std::vector<ExprPtr> filters;  // kSetBlock, kFilterBlock: kFilter exprs with a null input
  Body body;
  Body else_body;
};

}  // namespace kestrel::chat

#endif  // KESTREL_MODEL_CHAT_AST_H_

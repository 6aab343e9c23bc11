#include "model/chat/parser.h"

#include <initializer_list>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/chat/lexer.h"

namespace kestrel::chat {
namespace {

// Counts nesting on the way down and back up, failing past the limit.
class DepthGuard {
 public:
  explicit DepthGuard(int* depth) : depth_(depth) { ++*depth_; }
  ~DepthGuard() { --*depth_; }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;

 private:
  int* depth_;
};

ExprPtr MakeExpr(ExprKind kind, int line) {
  auto expr = std::make_unique<Expr>();
  expr->kind = kind;
  expr->line = line;
  return expr;
}

NodePtr MakeNode(NodeKind kind, int line) {
  auto node = std::make_unique<Node>();
  node->kind = kind;
  node->line = line;
  return node;
}

// How a token reads in an error message.
std::string Describe(const Token& token) {
  switch (token.type) {
    case Token::Type::kText:
      return "template text";
    case Token::Type::kOutputBegin:
      return "'{{'";
    case Token::Type::kOutputEnd:
      return "'}}'";
    case Token::Type::kBlockBegin:
      return "'{%'";
    case Token::Type::kBlockEnd:
      return "'%}'";
    case Token::Type::kString:
      return "a string";
    case Token::Type::kInteger:
    case Token::Type::kFloat:
      return "a number";
    case Token::Type::kEnd:
      return "the end of the template";
    case Token::Type::kName:
    case Token::Type::kOperator:
      break;
  }
  return "'" + token.text + "'";
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  absl::StatusOr<Body> ParseAll() {
    ASSIGN_OR_RETURN(Body body, ParseBody({}, "", 0));
    return body;
  }

 private:
  // ---- statements ----

  // Parses nodes until a block tag named in `end_tags` (consumed up to its
  // name; its name is left in end_tag_) or, with no end tags, the end.
  absl::StatusOr<Body> ParseBody(std::set<std::string> end_tags, std::string_view opener,
                                 int opener_line) {
    DepthGuard guard(&depth_);
    if (depth_ > kMaxNestingDepth) return Error("blocks nested too deeply");
    Body body;
    while (true) {
      const Token& token = Peek();
      switch (token.type) {
        case Token::Type::kEnd:
          if (end_tags.empty()) return body;
          return TemplateError(opener_line, absl::StrCat("'", std::string(opener), "' is never closed (expected '",
                                                         *end_tags.rbegin(), "')"));
        case Token::Type::kText: {
          NodePtr node = MakeNode(NodeKind::kText, token.line);
          node->text = token.text;
          body.push_back(std::move(node));
          ++pos_;
          break;
        }
        case Token::Type::kOutputBegin: {
          NodePtr node = MakeNode(NodeKind::kOutput, token.line);
          ++pos_;
          ASSIGN_OR_RETURN(node->expr, ParseExpression());
          RETURN_IF_ERROR(Expect(Token::Type::kOutputEnd, "'}}'"));
          body.push_back(std::move(node));
          break;
        }
        case Token::Type::kBlockBegin: {
          const Token& tag = tokens_[pos_ + 1];
          if (tag.type == Token::Type::kName && end_tags.count(tag.text)) {
            pos_ += 2;
            end_tag_ = tag.text;
            return body;
          }
          ++pos_;
          ASSIGN_OR_RETURN(NodePtr node, ParseStatement());
          if (node) body.push_back(std::move(node));
          break;
        }
        default:
          return Error("unexpected " + Describe(token));
      }
    }
  }

  absl::StatusOr<NodePtr> ParseStatement() {
    const Token& tag = Peek();
    if (tag.type != Token::Type::kName) return Error("expected a tag name, got " + Describe(tag));
    const std::string name = tag.text;
    ++pos_;
    if (name == "if") return ParseIf(tag.line);
    if (name == "for") return ParseFor(tag.line);
    if (name == "set") return ParseSet(tag.line);
    if (name == "macro") return ParseMacro(tag.line);
    if (name == "call") return ParseCallBlock(tag.line);
    if (name == "filter") return ParseFilterBlock(tag.line);
    if (name == "generation") return ParseSimpleBlock(NodeKind::kGeneration, "endgeneration", tag.line);
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) return Error("'" + name + "' outside a for loop");
      RETURN_IF_ERROR(ExpectBlockEnd());
      return MakeNode(name == "break" ? NodeKind::kBreak : NodeKind::kContinue, tag.line);
    }
    static const std::set<std::string> kUnsupported = {
        "include", "import", "from", "extends", "block", "raw", "with", "do", "autoescape"};
    if (kUnsupported.count(name)) return Error("unsupported tag '" + name + "'");
    return Error("unexpected '" + name + "'");
  }

  absl::StatusOr<NodePtr> ParseIf(int line) {
    NodePtr node = MakeNode(NodeKind::kIf, line);
    ASSIGN_OR_RETURN(node->expr, ParseExpression());
    RETURN_IF_ERROR(ExpectBlockEnd());
    ASSIGN_OR_RETURN(node->body, ParseBody({"elif", "else", "endif"}, "if", line));
    if (end_tag_ == "elif") {
      ASSIGN_OR_RETURN(NodePtr elif, ParseIf(Peek().line));
      node->else_body.push_back(std::move(elif));
      return node;  // the nested if consumed the endif
    }
    if (end_tag_ == "else") {
      RETURN_IF_ERROR(ExpectBlockEnd());
      ASSIGN_OR_RETURN(node->else_body, ParseBody({"endif"}, "if", line));
    }
    RETURN_IF_ERROR(ExpectBlockEnd());
    return node;
  }

  absl::StatusOr<NodePtr> ParseFor(int line) {
    NodePtr node = MakeNode(NodeKind::kFor, line);
    ASSIGN_OR_RETURN(node->target, ParseTarget(false));
    if (!IsName("in")) return Error("expected 'in' in for loop, got " + Describe(Peek()));
    ++pos_;
    ASSIGN_OR_RETURN(node->expr, ParseOr());
    if (IsName("if")) {
      ++pos_;
      ASSIGN_OR_RETURN(node->condition, ParseExpression());
    }
    if (IsName("recursive")) return Error("recursive for loops are not supported");
    RETURN_IF_ERROR(ExpectBlockEnd());
    ++loop_depth_;
    auto body = ParseBody({"else", "endfor"}, "for", line);
    --loop_depth_;
    if (!body.ok()) return body.status();
    node->body = std::move(*body);
    if (end_tag_ == "else") {
      RETURN_IF_ERROR(ExpectBlockEnd());
      ASSIGN_OR_RETURN(node->else_body, ParseBody({"endfor"}, "for", line));
    }
    RETURN_IF_ERROR(ExpectBlockEnd());
    return node;
  }

  absl::StatusOr<NodePtr> ParseSet(int line) {
    ASSIGN_OR_RETURN(Target target, ParseTarget(true));
    if (IsOp("=")) {
      ++pos_;
      NodePtr node = MakeNode(NodeKind::kSet, line);
      node->target = std::move(target);
      ASSIGN_OR_RETURN(node->expr, ParseExpression());
      RETURN_IF_ERROR(ExpectBlockEnd());
      return node;
    }
    if (!target.attribute.empty() || target.is_tuple) {
      return Error("a block set assigns one name, got " + Describe(Peek()));
    }
    NodePtr node = MakeNode(NodeKind::kSetBlock, line);
    node->target = std::move(target);
    while (IsOp("|")) {
      ++pos_;
      ASSIGN_OR_RETURN(ExprPtr filter, ParseFilter(nullptr));
      node->filters.push_back(std::move(filter));
    }
    RETURN_IF_ERROR(ExpectBlockEnd());
    ASSIGN_OR_RETURN(node->body, ParseBody({"endset"}, "set", line));
    RETURN_IF_ERROR(ExpectBlockEnd());
    return node;
  }

  absl::StatusOr<NodePtr> ParseMacro(int line) {
    NodePtr node = MakeNode(NodeKind::kMacro, line);
    ASSIGN_OR_RETURN(node->name, ExpectName("a macro name"));
    RETURN_IF_ERROR(ParseParams(&node->params));
    RETURN_IF_ERROR(ExpectBlockEnd());
    const int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;  // a macro body is not inside the loop around its definition
    auto body = ParseBody({"endmacro"}, "macro", line);
    loop_depth_ = saved_loop_depth;
    if (!body.ok()) return body.status();
    node->body = std::move(*body);
    RETURN_IF_ERROR(ExpectBlockEnd());
    return node;
  }

  absl::StatusOr<NodePtr> ParseCallBlock(int line) {
    NodePtr node = MakeNode(NodeKind::kCallBlock, line);
    if (IsOp("(")) RETURN_IF_ERROR(ParseParams(&node->params));
    ASSIGN_OR_RETURN(node->expr, ParseExpression());
    if (node->expr->kind != ExprKind::kCall) return TemplateError(line, "expected a call after 'call'");
    RETURN_IF_ERROR(ExpectBlockEnd());
    const int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    auto body = ParseBody({"endcall"}, "call", line);
    loop_depth_ = saved_loop_depth;
    if (!body.ok()) return body.status();
    node->body = std::move(*body);
    RETURN_IF_ERROR(ExpectBlockEnd());
    return node;
  }

  absl::StatusOr<NodePtr> ParseFilterBlock(int line) {
    NodePtr node = MakeNode(NodeKind::kFilterBlock, line);
    do {
      if (IsOp("|")) ++pos_;
      ASSIGN_OR_RETURN(ExprPtr filter, ParseFilter(nullptr));
      node->filters.push_back(std::move(filter));
    } while (IsOp("|"));
    RETURN_IF_ERROR(ExpectBlockEnd());
    ASSIGN_OR_RETURN(node->body, ParseBody({"endfilter"}, "filter", line));
    RETURN_IF_ERROR(ExpectBlockEnd());
    return node;
  }

  absl::StatusOr<NodePtr> ParseSimpleBlock(NodeKind kind, const std::string& end, int line) {
    NodePtr node = MakeNode(kind, line);
    RETURN_IF_ERROR(ExpectBlockEnd());
    ASSIGN_OR_RETURN(node->body, ParseBody({end}, tokens_[pos_ - 2].text, line));
    RETURN_IF_ERROR(ExpectBlockEnd());
    return node;
  }

  // "(a, b='x')" of a macro or a call block.
  absl::Status ParseParams(std::vector<MacroParam>* params) {
    RETURN_IF_ERROR(ExpectOp("("));
    while (!IsOp(")")) {
      MacroParam param;
      ASSIGN_OR_RETURN(param.name, ExpectName("a parameter name"));
      if (IsOp("=")) {
        ++pos_;
        ASSIGN_OR_RETURN(param.default_value, ParseExpression());
      }
      params->push_back(std::move(param));
      if (!IsOp(",")) break;
      ++pos_;
    }
    return ExpectOp(")");
  }

  // "x", "a, b", "(a, b)" or (for set) "ns.attr".
  absl::StatusOr<Target> ParseTarget(bool allow_attribute) {
    Target target;
    const bool parenthesized = IsOp("(");
    if (parenthesized) ++pos_;
    ASSIGN_OR_RETURN(std::string first, ExpectName("a variable name"));
    target.names.push_back(std::move(first));
    if (allow_attribute && !parenthesized && IsOp(".")) {
      ++pos_;
      ASSIGN_OR_RETURN(target.attribute, ExpectName("an attribute name"));
      return target;
    }
    while (IsOp(",")) {
      ++pos_;
      target.is_tuple = true;
      if (Peek().type != Token::Type::kName) break;
      ASSIGN_OR_RETURN(std::string name, ExpectName("a variable name"));
      target.names.push_back(std::move(name));
    }
    if (parenthesized) RETURN_IF_ERROR(ExpectOp(")"));
    return target;
  }

  // ---- expressions, lowest precedence first ----

  absl::StatusOr<ExprPtr> ParseExpression() {
    DepthGuard guard(&depth_);
    if (depth_ > kMaxNestingDepth) return Error("expression nested too deeply");
    ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
    while (IsName("if")) {
      const int line = Peek().line;
      ++pos_;
      auto conditional = MakeExpr(ExprKind::kConditional, line);
      ASSIGN_OR_RETURN(ExprPtr condition, ParseOr());
      ExprPtr otherwise;
      if (IsName("else")) {
        ++pos_;
        ASSIGN_OR_RETURN(otherwise, ParseExpression());
      }
      conditional->args.push_back(std::move(condition));
      conditional->args.push_back(std::move(expr));
      conditional->args.push_back(std::move(otherwise));
      expr = std::move(conditional);
    }
    return expr;
  }

  absl::StatusOr<ExprPtr> ParseOr() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
    while (IsName("or")) {
      ASSIGN_OR_RETURN(left, Binary("or", std::move(left), &Parser::ParseAnd));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseAnd() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
    while (IsName("and")) {
      ASSIGN_OR_RETURN(left, Binary("and", std::move(left), &Parser::ParseNot));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (!IsName("not")) return ParseCompare();
    DepthGuard guard(&depth_);
    if (depth_ > kMaxNestingDepth) return Error("expression nested too deeply");
    auto expr = MakeExpr(ExprKind::kUnary, Peek().line);
    ++pos_;
    expr->name = "not";
    ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
    expr->args.push_back(std::move(operand));
    return expr;
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    const int line = Peek().line;
    ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
    ExprPtr compare;
    while (true) {
      std::string op;
      if (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp("<=") || IsOp(">") || IsOp(">=") ||
          IsName("in")) {
        op = Peek().text;
        ++pos_;
      } else if (IsName("not") && tokens_[pos_ + 1].type == Token::Type::kName &&
                 tokens_[pos_ + 1].text == "in") {
        op = "notin";
        pos_ += 2;
      } else {
        break;
      }
      if (!compare) {
        compare = MakeExpr(ExprKind::kCompare, line);
        compare->args.push_back(std::move(first));
      }
      ASSIGN_OR_RETURN(ExprPtr operand, ParseMath1());
      compare->ops.push_back(op);
      compare->args.push_back(std::move(operand));
    }
    return compare ? std::move(compare) : std::move(first);
  }

  absl::StatusOr<ExprPtr> ParseMath1() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseConcat());
    while (IsOp("+") || IsOp("-")) {
      ASSIGN_OR_RETURN(left, Binary(Peek().text, std::move(left), &Parser::ParseConcat));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseConcat() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseMath2());
    while (IsOp("~")) {
      ASSIGN_OR_RETURN(left, Binary("~", std::move(left), &Parser::ParseMath2));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseMath2() {
    ASSIGN_OR_RETURN(ExprPtr left, ParsePow());
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      ASSIGN_OR_RETURN(left, Binary(Peek().text, std::move(left), &Parser::ParsePow));
    }
    return left;
  }

  // jinja2 evaluates "**" left to right (2 ** 3 ** 2 == 64), unlike Python.
  absl::StatusOr<ExprPtr> ParsePow() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseUnaryWithFilters());
    while (IsOp("**")) {
      ASSIGN_OR_RETURN(left, Binary("**", std::move(left), &Parser::ParseUnaryWithFilters));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> Binary(std::string op, ExprPtr left,
                                 absl::StatusOr<ExprPtr> (Parser::*parse_right)()) {
    auto expr = MakeExpr(ExprKind::kBinary, Peek().line);
    ++pos_;
    expr->name = std::move(op);
    ASSIGN_OR_RETURN(ExprPtr right, (this->*parse_right)());
    expr->args.push_back(std::move(left));
    expr->args.push_back(std::move(right));
    return expr;
  }

  absl::StatusOr<ExprPtr> ParseUnaryWithFilters() { return ParseUnary(true); }

  // "-x", then postfix (.a [i] (args)), then filters and tests when
  // `with_filters`: "-x|abs" is abs(-x), as in jinja2.
  absl::StatusOr<ExprPtr> ParseUnary(bool with_filters) {
    DepthGuard guard(&depth_);
    if (depth_ > kMaxNestingDepth) return Error("expression nested too deeply");
    ExprPtr expr;
    if (IsOp("-") || IsOp("+")) {
      expr = MakeExpr(ExprKind::kUnary, Peek().line);
      expr->name = Peek().text;
      ++pos_;
      ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(false));
      expr->args.push_back(std::move(operand));
    } else {
      ASSIGN_OR_RETURN(expr, ParsePrimary());
    }
    ASSIGN_OR_RETURN(expr, ParsePostfix(std::move(expr)));
    if (!with_filters) return expr;
    while (true) {
      if (IsOp("|")) {
        ++pos_;
        ASSIGN_OR_RETURN(expr, ParseFilter(std::move(expr)));
      } else if (IsName("is")) {
        ++pos_;
        ASSIGN_OR_RETURN(expr, ParseTest(std::move(expr)));
      } else if (IsOp("(")) {
        ASSIGN_OR_RETURN(expr, ParseCall(std::move(expr)));
      } else {
        return expr;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token& token = Peek();
    switch (token.type) {
      case Token::Type::kName:
        ++pos_;
        return NameOrConstant(token);
      case Token::Type::kString: {
        auto expr = MakeExpr(ExprKind::kLiteral, token.line);
        std::string text;
        while (Peek().type == Token::Type::kString) text += tokens_[pos_++].text;  // "a" "b"
        expr->literal = std::move(text);
        return expr;
      }
      case Token::Type::kInteger:
      case Token::Type::kFloat: {
        auto expr = MakeExpr(ExprKind::kLiteral, token.line);
        expr->literal = token.type == Token::Type::kInteger ? Value(token.integer) : Value(token.number);
        ++pos_;
        return expr;
      }
      case Token::Type::kOperator:
        if (token.text == "(") return ParseParenthesized();
        if (token.text == "[") return ParseSequence(ExprKind::kList, "]");
        if (token.text == "{") return ParseDict();
        break;
      default:
        break;
    }
    return Error("expected an expression, got " + Describe(token));
  }

  ExprPtr NameOrConstant(const Token& token) {
    auto expr = MakeExpr(ExprKind::kLiteral, token.line);
    const std::string& name = token.text;
    if (name == "true" || name == "True") {
      expr->literal = true;
    } else if (name == "false" || name == "False") {
      expr->literal = false;
    } else if (name == "none" || name == "None") {
      expr->literal = None{};
    } else {
      expr->kind = ExprKind::kName;
      expr->name = name;
    }
    return expr;
  }

  absl::StatusOr<ExprPtr> ParseParenthesized() {
    const int line = Peek().line;
    ++pos_;
    if (IsOp(")")) {
      ++pos_;
      return MakeExpr(ExprKind::kTuple, line);
    }
    ASSIGN_OR_RETURN(ExprPtr first, ParseExpression());
    if (!IsOp(",")) {
      RETURN_IF_ERROR(ExpectOp(")"));
      return first;
    }
    auto tuple = MakeExpr(ExprKind::kTuple, line);
    tuple->args.push_back(std::move(first));
    while (IsOp(",")) {
      ++pos_;
      if (IsOp(")")) break;
      ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
      tuple->args.push_back(std::move(item));
    }
    RETURN_IF_ERROR(ExpectOp(")"));
    return tuple;
  }

  absl::StatusOr<ExprPtr> ParseSequence(ExprKind kind, std::string_view close) {
    auto expr = MakeExpr(kind, Peek().line);
    ++pos_;
    while (!IsOp(close)) {
      ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
      expr->args.push_back(std::move(item));
      if (!IsOp(",")) break;
      ++pos_;
    }
    RETURN_IF_ERROR(ExpectOp(close));
    return expr;
  }

  absl::StatusOr<ExprPtr> ParseDict() {
    auto expr = MakeExpr(ExprKind::kDict, Peek().line);
    ++pos_;
    while (!IsOp("}")) {
      ASSIGN_OR_RETURN(ExprPtr key, ParseExpression());
      RETURN_IF_ERROR(ExpectOp(":"));
      ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
      expr->args.push_back(std::move(key));
      expr->args.push_back(std::move(value));
      if (!IsOp(",")) break;
      ++pos_;
    }
    RETURN_IF_ERROR(ExpectOp("}"));
    return expr;
  }

  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr expr) {
    while (true) {
      if (IsOp(".")) {
        ++pos_;
        const Token& token = Peek();
        if (token.type == Token::Type::kInteger) {  // x.0 is x[0]
          auto item = MakeExpr(ExprKind::kGetItem, token.line);
          auto index = MakeExpr(ExprKind::kLiteral, token.line);
          index->literal = token.integer;
          item->args.push_back(std::move(expr));
          item->args.push_back(std::move(index));
          expr = std::move(item);
          ++pos_;
          continue;
        }
        auto attr = MakeExpr(ExprKind::kGetAttr, token.line);
        ASSIGN_OR_RETURN(attr->name, ExpectName("an attribute name"));
        attr->args.push_back(std::move(expr));
        expr = std::move(attr);
      } else if (IsOp("[")) {
        ASSIGN_OR_RETURN(expr, ParseSubscript(std::move(expr)));
      } else if (IsOp("(")) {
        ASSIGN_OR_RETURN(expr, ParseCall(std::move(expr)));
      } else {
        return expr;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr target) {
    const int line = Peek().line;
    ++pos_;
    ExprPtr parts[3];
    int part = 0;
    bool is_slice = false;
    while (true) {
      if (!IsOp(":") && !IsOp("]")) {
        ASSIGN_OR_RETURN(parts[part], ParseExpression());
      }
      if (!IsOp(":") || part == 2) break;
      ++pos_;
      ++part;
      is_slice = true;
    }
    RETURN_IF_ERROR(ExpectOp("]"));
    auto expr = MakeExpr(is_slice ? ExprKind::kSlice : ExprKind::kGetItem, line);
    if (!is_slice && !parts[0]) return TemplateError(line, "empty subscript '[]'");
    expr->args.push_back(std::move(target));
    expr->args.push_back(std::move(parts[0]));
    if (is_slice) {
      expr->args.push_back(std::move(parts[1]));
      expr->args.push_back(std::move(parts[2]));
    }
    return expr;
  }

  absl::StatusOr<ExprPtr> ParseCall(ExprPtr callee) {
    auto call = MakeExpr(ExprKind::kCall, Peek().line);
    call->args.push_back(std::move(callee));
    RETURN_IF_ERROR(ParseCallArgs(call.get()));
    return call;
  }

  // "(1, x, key=value)" into expr->args (after what is there) and kwargs.
  absl::Status ParseCallArgs(Expr* expr) {
    RETURN_IF_ERROR(ExpectOp("("));
    while (!IsOp(")")) {
      if (IsOp("*") || IsOp("**")) return Error("'*' and '**' arguments are not supported");
      if (Peek().type == Token::Type::kName && tokens_[pos_ + 1].type == Token::Type::kOperator &&
          tokens_[pos_ + 1].text == "=") {
        std::string name = Peek().text;
        pos_ += 2;
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
        expr->kwargs.emplace_back(std::move(name), std::move(value));
      } else {
        if (!expr->kwargs.empty()) return Error("positional argument after keyword argument");
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
        expr->args.push_back(std::move(value));
      }
      if (!IsOp(",")) break;
      ++pos_;
    }
    return ExpectOp(")");
  }

  // "name" or "name(args)" after "|"; `input` is null in filter blocks.
  absl::StatusOr<ExprPtr> ParseFilter(ExprPtr input) {
    auto filter = MakeExpr(ExprKind::kFilter, Peek().line);
    ASSIGN_OR_RETURN(filter->name, ExpectName("a filter name"));
    filter->args.push_back(std::move(input));
    if (IsOp("(")) RETURN_IF_ERROR(ParseCallArgs(filter.get()));
    return filter;
  }

  // After "is": "[not] name", "name(args)" or "name arg" (x is divisibleby 3).
  absl::StatusOr<ExprPtr> ParseTest(ExprPtr input) {
    auto test = MakeExpr(ExprKind::kTest, Peek().line);
    if (IsName("not")) {
      ++pos_;
      test->negated = true;
    }
    ASSIGN_OR_RETURN(test->name, ExpectName("a test name"));
    test->args.push_back(std::move(input));
    if (IsOp("(")) {
      RETURN_IF_ERROR(ParseCallArgs(test.get()));
      return test;
    }
    const Token& next = Peek();
    const bool starts_argument =
        next.type == Token::Type::kString || next.type == Token::Type::kInteger ||
        next.type == Token::Type::kFloat || IsOp("[") || IsOp("{") ||
        (next.type == Token::Type::kName && !IsName("else") && !IsName("or") && !IsName("and") &&
         !IsName("if") && !IsName("is") && !IsName("in") && !IsName("not"));
    if (starts_argument) {
      ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
      ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
      test->args.push_back(std::move(arg));
    }
    return test;
  }

  // ---- token helpers ----

  const Token& Peek() const { return tokens_[pos_]; }
  bool IsOp(std::string_view op) const {
    return Peek().type == Token::Type::kOperator && Peek().text == op;
  }
  bool IsName(std::string_view name) const {
    return Peek().type == Token::Type::kName && Peek().text == name;
  }

  absl::Status Error(std::string_view what) const { return TemplateError(Peek().line, what); }

  absl::Status Expect(Token::Type type, std::string_view what) {
    if (Peek().type != type) {
      return Error(absl::StrCat("expected ", std::string(what), ", got ", Describe(Peek())));
    }
    ++pos_;
    return absl::OkStatus();
  }
  absl::Status ExpectBlockEnd() { return Expect(Token::Type::kBlockEnd, "'%}'"); }
  absl::Status ExpectOp(std::string_view op) {
    if (!IsOp(op)) return Error(absl::StrCat("expected '", std::string(op), "', got ", Describe(Peek())));
    ++pos_;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName(std::string_view what) {
    if (Peek().type != Token::Type::kName) {
      return Error(absl::StrCat("expected ", std::string(what), ", got ", Describe(Peek())));
    }
    return tokens_[pos_++].text;
  }

  std::vector<Token> tokens_;  // ends with kEnd, which is never consumed
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::string end_tag_;  // the end tag that ended the last ParseBody
};

}  // namespace

absl::StatusOr<Body> ParseTemplate(std::string_view source) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(source));
  return Parser(std::move(tokens)).ParseAll();
}

}  // namespace kestrel::chat

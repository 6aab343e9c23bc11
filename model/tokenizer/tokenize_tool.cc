#include "model/tokenizer/tokenize_tool.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/json_lines.h"
#include "common/status_macros.h"
#include "model/tokenizer/json_util.h"

namespace kestrel::tokenizer {
namespace {

std::string Dump(const Json& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

absl::StatusOr<std::string> EncodeLine(const Tokenizer& tokenizer, const Json& input,
                                       const TokenizeToolOptions& options) {
  ASSIGN_OR_RETURN(std::string text, GetString(input, "text", "input line"));
  EncodeOptions encode;
  encode.parse_special_tokens = !options.plain_special_tokens;
  encode.add_special_tokens = false;
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer.Encode(text, encode));
  encode.add_special_tokens = true;
  ASSIGN_OR_RETURN(std::vector<int32_t> ids_with_special, tokenizer.Encode(text, encode));
  ASSIGN_OR_RETURN(std::string decoded, tokenizer.Decode(ids, /*skip_special_tokens=*/false));
  Json out = Json::object();
  out["ids"] = ids;
  out["ids_with_special"] = ids_with_special;
  out["decoded"] = std::move(decoded);
  return Dump(out);
}

absl::StatusOr<std::string> DecodeLine(const Tokenizer& tokenizer, const Json& input,
                                       const TokenizeToolOptions& options) {
  ASSIGN_OR_RETURN(const Json* list, GetArray(input, "ids", "input line"));
  std::vector<int32_t> ids;
  ids.reserve(list->size());
  for (const Json& id : *list) {
    if (!id.is_number_integer() || id.get<int64_t>() < INT32_MIN || id.get<int64_t>() > INT32_MAX) {
      return absl::InvalidArgumentError(
          Concat("input line: ids must be integers, got ", Describe(id)));
    }
    ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
  }
  ASSIGN_OR_RETURN(std::string text, tokenizer.Decode(ids, options.skip_special_tokens));
  Json out = Json::object();
  out["text"] = std::move(text);
  return Dump(out);
}

}  // namespace

absl::StatusOr<std::string> ProcessToolLine(const Tokenizer& tokenizer, std::string_view line,
                                            const TokenizeToolOptions& options) {
  ASSIGN_OR_RETURN(const Json input, ParseJson(line, "input line"));
  if (!input.is_object()) {
    return absl::InvalidArgumentError(
        Concat("input line must be a JSON object, got ", Describe(input)));
  }
  return options.decode ? DecodeLine(tokenizer, input, options)
                        : EncodeLine(tokenizer, input, options);
}

size_t RunTokenizeTool(const Tokenizer& tokenizer, std::istream& in, std::ostream& out,
                       const TokenizeToolOptions& options) {
  return RunJsonLines(in, out, [&](const std::string& line) {
    return ProcessToolLine(tokenizer, line, options);
  });
}

}  // namespace kestrel::tokenizer

// Reads OpenAI request bodies into engine parameters; see openai_protocol.h.
#include "server/http/openai_protocol.h"

#include <cmath>
#include <optional>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/sampler.h"
#include "server/request_convert.h"

namespace kestrel::server::http {
namespace {

using Json = nlohmann::ordered_json;

constexpr char kParamPayload[] = "kestrel.dev/openai-param";
constexpr char kCodePayload[] = "kestrel.dev/openai-code";

// Completions' max_tokens when the request has none (OpenAI's default).
constexpr int kDefaultCompletionMaxTokens = 16;
// Most samples per prompt, and most choices per request.
constexpr int kMaxN = 128;
constexpr int kMaxChoices = 1024;

// A value for an error message: its JSON, cut short.
std::string Show(const Json& value) {
  std::string text = Dump(value);
  if (text.size() > 80) text = absl::StrCat(text.substr(0, 77), "...");
  return text;
}

absl::Status WrongType(absl::string_view param, absl::string_view expected, const Json& value) {
  return InvalidParam(param, absl::StrCat(param, " must be ", expected, ", got ", Show(value)));
}

absl::Status OutOfRange(absl::string_view param, absl::string_view rule, const Json& value) {
  return InvalidParam(param, absl::StrCat(param, " must be ", rule, ", got ", Show(value)));
}

// The field `key` of `body`; nullptr when absent or null (OpenAI treats an
// explicit null as "use the default").
const Json* Field(const Json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<std::optional<double>> Number(const Json& body, const char* key) {
  const Json* value = Field(body, key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_number()) return WrongType(key, "a number", *value);
  const double number = value->get<double>();
  if (!std::isfinite(number)) return WrongType(key, "a finite number", *value);
  return number;
}

absl::StatusOr<std::optional<int64_t>> Integer(const Json& body, const char* key) {
  const Json* value = Field(body, key);
  if (value == nullptr) return std::nullopt;
  if (value->is_number_unsigned()) {
    const uint64_t number = value->get<uint64_t>();
    if (number > static_cast<uint64_t>(INT64_MAX)) return WrongType(key, "a 64-bit integer", *value);
    return static_cast<int64_t>(number);
  }
  if (!value->is_number_integer()) return WrongType(key, "an integer", *value);
  return value->get<int64_t>();
}

absl::StatusOr<std::optional<bool>> Bool(const Json& body, const char* key) {
  const Json* value = Field(body, key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_boolean()) return WrongType(key, "a boolean", *value);
  return value->get<bool>();
}

absl::StatusOr<Json> ParseBody(absl::string_view body) {
  Json json;
  try {
    json = Json::parse(body);
  } catch (const Json::parse_error& e) {
    return InvalidParam("", absl::StrCat("request body is not valid JSON: ", e.what()));
  }
  if (!json.is_object()) {
    return InvalidParam("", absl::StrCat("request body must be a JSON object, got ", Show(json)));
  }
  return json;
}

absl::Status CheckModel(const Json& body, const ParseContext& context) {
  const Json* model = Field(body, "model");
  if (model == nullptr) return absl::OkStatus();
  if (!model->is_string()) return WrongType("model", "a string", *model);
  const std::string& name = model->get_ref<const std::string&>();
  if (!name.empty() && name != context.model_name) {
    return WithErrorCode(
        absl::NotFoundError(absl::StrCat("model \"", name, "\" does not exist; this server serves \"",
                                         context.model_name, "\" (GET /v1/models)")),
        "model_not_found");
  }
  return absl::OkStatus();
}

absl::Status ParseStop(const Json& body, engine::GenerateParams& params) {
  const Json* stop = Field(body, "stop");
  if (stop == nullptr) return absl::OkStatus();
  if (stop->is_string()) {
    if (stop->get_ref<const std::string&>().empty()) return OutOfRange("stop", "non-empty", *stop);
    params.stop.push_back(stop->get<std::string>());
    return absl::OkStatus();
  }
  if (!stop->is_array()) return WrongType("stop", "a string or an array of strings", *stop);
  for (size_t i = 0; i < stop->size(); ++i) {
    const Json& item = (*stop)[i];
    const std::string param = absl::StrCat("stop[", i, "]");
    if (!item.is_string()) return WrongType(param, "a string", item);
    if (item.get_ref<const std::string&>().empty()) return OutOfRange(param, "non-empty", item);
    params.stop.push_back(item.get<std::string>());
  }
  return absl::OkStatus();
}

absl::Status ParseLogitBias(const Json& body, const ParseContext& context,
                            model::SamplingParams& sampling) {
  const Json* bias = Field(body, "logit_bias");
  if (bias == nullptr) return absl::OkStatus();
  if (!bias->is_object()) return WrongType("logit_bias", "an object of token id -> bias", *bias);
  for (const auto& [key, value] : bias->items()) {
    const std::string param = absl::StrCat("logit_bias[\"", key, "\"]");
    int64_t token = 0;
    if (!absl::SimpleAtoi(key, &token) || token < 0 || token >= context.vocab_size) {
      return InvalidParam("logit_bias",
                          absl::StrCat("logit_bias key \"", key, "\" is not a token id in [0, ",
                                       context.vocab_size, ")"));
    }
    if (!value.is_number()) return WrongType(param, "a number", value);
    const double number = value.get<double>();
    if (!(number >= -100 && number <= 100)) return OutOfRange(param, "in [-100, 100]", value);
    sampling.logit_bias.emplace_back(static_cast<int32_t>(token), static_cast<float>(number));
  }
  std::sort(sampling.logit_bias.begin(), sampling.logit_bias.end());
  return absl::OkStatus();
}

// The fields both endpoints share: sampling, stopping, n, stream.
absl::Status ParseCommon(const Json& body, const ParseContext& context, OpenAiRequest& request) {
  RETURN_IF_ERROR(CheckModel(body, context));
  engine::GenerateParams& params = request.params;
  model::SamplingParams& sampling = params.sampling;
  sampling = context.sampling_defaults;

  ASSIGN_OR_RETURN(std::optional<double> temperature, Number(body, "temperature"));
  if (temperature) {
    if (*temperature < 0 || *temperature > 100) {
      return OutOfRange("temperature", "in [0, 100]", body["temperature"]);
    }
    sampling.temperature = static_cast<float>(*temperature);
  }
  ASSIGN_OR_RETURN(std::optional<double> top_p, Number(body, "top_p"));
  if (top_p) {
    if (!(*top_p > 0 && *top_p <= 1)) return OutOfRange("top_p", "in (0, 1]", body["top_p"]);
    sampling.top_p = static_cast<float>(*top_p);
  }
  ASSIGN_OR_RETURN(std::optional<int64_t> top_k, Integer(body, "top_k"));
  if (top_k) {
    // -1 and 0 both disable it (vLLM uses -1).
    if (*top_k < -1 || *top_k > INT32_MAX) return OutOfRange("top_k", ">= -1", body["top_k"]);
    sampling.top_k = *top_k < 0 ? 0 : static_cast<int32_t>(*top_k);
  }
  ASSIGN_OR_RETURN(std::optional<double> min_p, Number(body, "min_p"));
  if (min_p) {
    if (!(*min_p >= 0 && *min_p <= 1)) return OutOfRange("min_p", "in [0, 1]", body["min_p"]);
    sampling.min_p = static_cast<float>(*min_p);
  }
  for (const char* key : {"presence_penalty", "frequency_penalty"}) {
    ASSIGN_OR_RETURN(std::optional<double> penalty, Number(body, key));
    if (!penalty) continue;
    if (!(*penalty >= -2 && *penalty <= 2)) return OutOfRange(key, "in [-2, 2]", body[key]);
    (absl::string_view(key) == "presence_penalty" ? sampling.presence_penalty
                                                 : sampling.frequency_penalty) =
        static_cast<float>(*penalty);
  }
  ASSIGN_OR_RETURN(std::optional<double> repetition, Number(body, "repetition_penalty"));
  if (repetition) {
    if (!(*repetition > 0 && *repetition <= 10)) {
      return OutOfRange("repetition_penalty", "in (0, 10]", body["repetition_penalty"]);
    }
    sampling.repetition_penalty = static_cast<float>(*repetition);
  }
  RETURN_IF_ERROR(ParseLogitBias(body, context, sampling));
  ASSIGN_OR_RETURN(std::optional<int64_t> seed, Integer(body, "seed"));
  if (seed) sampling.seed = static_cast<uint64_t>(*seed);

  ASSIGN_OR_RETURN(std::optional<int64_t> n, Integer(body, "n"));
  if (n) {
    if (*n < 1 || *n > kMaxN) return OutOfRange("n", absl::StrCat("in [1, ", kMaxN, "]"), body["n"]);
    params.n = static_cast<int>(*n);
  }
  // Extension (vLLM has it per server only): speculative decoding per request.
  ASSIGN_OR_RETURN(std::optional<int64_t> spec, Integer(body, "num_speculative_tokens"));
  if (spec) {
    if (*spec < 0 || *spec > engine::kMaxSpeculativeTokens) {
      return OutOfRange("num_speculative_tokens",
                        absl::StrCat("in [0, ", engine::kMaxSpeculativeTokens, "]"),
                        body["num_speculative_tokens"]);
    }
    params.num_speculative_tokens = static_cast<int>(*spec);
  }
  ASSIGN_OR_RETURN(std::optional<int64_t> min_tokens, Integer(body, "min_tokens"));
  if (min_tokens) {
    if (*min_tokens < 0 || *min_tokens > INT32_MAX) {
      return OutOfRange("min_tokens", ">= 0", body["min_tokens"]);
    }
    params.min_tokens = static_cast<int>(*min_tokens);
  }
  ASSIGN_OR_RETURN(std::optional<bool> ignore_eos, Bool(body, "ignore_eos"));
  params.ignore_eos = ignore_eos.value_or(false);
  ASSIGN_OR_RETURN(std::optional<bool> include_stop, Bool(body, "include_stop_str_in_output"));
  params.include_stop_str_in_output = include_stop.value_or(false);
  ASSIGN_OR_RETURN(std::optional<bool> skip_special, Bool(body, "skip_special_tokens"));
  params.skip_special_tokens = skip_special.value_or(true);
  RETURN_IF_ERROR(ParseStop(body, params));
  if (const Json* ids = Field(body, "stop_token_ids")) {
    if (!ids->is_array()) return WrongType("stop_token_ids", "an array of token ids", *ids);
    for (size_t i = 0; i < ids->size(); ++i) {
      const Json& id = (*ids)[i];
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= context.vocab_size) {
        return OutOfRange(absl::StrCat("stop_token_ids[", i, "]"),
                          absl::StrCat("a token id in [0, ", context.vocab_size, ")"), id);
      }
      params.stop_token_ids.push_back(id.get<int32_t>());
    }
  }
  ASSIGN_OR_RETURN(std::optional<int64_t> priority, Integer(body, "priority"));
  if (priority) {
    if (*priority < INT32_MIN || *priority > INT32_MAX) {
      return OutOfRange("priority", "a 32-bit integer", body["priority"]);
    }
    params.priority = static_cast<int>(*priority);
  }

  ASSIGN_OR_RETURN(std::optional<bool> stream, Bool(body, "stream"));
  request.stream = stream.value_or(false);
  if (const Json* options = Field(body, "stream_options")) {
    if (!options->is_object()) return WrongType("stream_options", "an object", *options);
    auto include = options->find("include_usage");
    if (include != options->end() && !include->is_null()) {
      if (!include->is_boolean()) {
        return WrongType("stream_options.include_usage", "a boolean", *include);
      }
      request.include_usage = include->get<bool>();
    }
  }
  return absl::OkStatus();
}

// max_tokens (and chat's max_completion_tokens, which wins).
absl::Status ParseMaxTokens(const Json& body, const char* key, engine::GenerateParams& params) {
  ASSIGN_OR_RETURN(std::optional<int64_t> max_tokens, Integer(body, key));
  if (!max_tokens) return absl::OkStatus();
  if (*max_tokens < 1 || *max_tokens > INT32_MAX) return OutOfRange(key, ">= 1", body[key]);
  params.max_tokens = static_cast<int>(*max_tokens);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> TokenIds(const Json& array, absl::string_view param,
                                              const ParseContext& context) {
  if (array.empty()) {
    return InvalidParam(param, absl::StrCat(param, " must contain at least one token, got []"));
  }
  std::vector<int32_t> ids;
  ids.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    const Json& id = array[i];
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= context.vocab_size) {
      return OutOfRange(absl::StrCat(param, "[", i, "]"),
                        absl::StrCat("a token id in [0, ", context.vocab_size, ")"), id);
    }
    ids.push_back(id.get<int32_t>());
  }
  return ids;
}

absl::StatusOr<std::vector<int32_t>> TextPrompt(const Json& text, absl::string_view param,
                                                const ParseContext& context) {
  absl::StatusOr<std::vector<int32_t>> ids =
      EncodeUserText(*context.tokenizer, text.get_ref<const std::string&>(), true, param);
  if (!ids.ok()) return InvalidParam(param, ids.status().message());
  if (ids->empty()) return InvalidParam(param, absl::StrCat(param, " must not be empty"));
  return ids;
}

// The completions "prompt": every form OpenAI accepts.
absl::Status ParsePrompts(const Json& body, const ParseContext& context, OpenAiRequest& request) {
  const Json* prompt = Field(body, "prompt");
  constexpr char kForms[] =
      "a string, an array of strings, an array of token ids or an array of token-id arrays";
  if (prompt == nullptr) return InvalidParam("prompt", "prompt is required");
  std::vector<std::string> texts;
  if (prompt->is_string()) {
    ASSIGN_OR_RETURN(std::vector<int32_t> ids, TextPrompt(*prompt, "prompt", context));
    request.prompts.push_back(std::move(ids));
    texts.push_back(prompt->get<std::string>());
  } else if (prompt->is_array() && !prompt->empty() && (*prompt)[0].is_number()) {
    ASSIGN_OR_RETURN(std::vector<int32_t> ids, TokenIds(*prompt, "prompt", context));
    request.prompts.push_back(std::move(ids));
  } else if (prompt->is_array() && !prompt->empty()) {
    for (size_t i = 0; i < prompt->size(); ++i) {
      const Json& item = (*prompt)[i];
      const std::string param = absl::StrCat("prompt[", i, "]");
      if (item.is_string()) {
        ASSIGN_OR_RETURN(std::vector<int32_t> ids, TextPrompt(item, param, context));
        request.prompts.push_back(std::move(ids));
        texts.push_back(item.get<std::string>());
      } else if (item.is_array()) {
        ASSIGN_OR_RETURN(std::vector<int32_t> ids, TokenIds(item, param, context));
        request.prompts.push_back(std::move(ids));
      } else {
        return WrongType(param, "a string or an array of token ids", item);
      }
    }
  } else {
    return WrongType("prompt", kForms, *prompt);
  }
  if (request.echo) {
    for (size_t i = 0; i < request.prompts.size(); ++i) {
      if (i < texts.size() && texts.size() == request.prompts.size()) {
        request.echo_texts.push_back(texts[i]);
      } else {
        absl::StatusOr<std::string> text = context.tokenizer->Decode(request.prompts[i], false);
        request.echo_texts.push_back(text.ok() ? *text : "");
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status InvalidParam(absl::string_view param, absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  if (!param.empty()) status.SetPayload(kParamPayload, absl::Cord(param));
  return status;
}

absl::Status WithErrorCode(absl::Status status, absl::string_view code) {
  status.SetPayload(kCodePayload, absl::Cord(code));
  return status;
}

ApiError ToApiError(const absl::Status& status) {
  ApiError error;
  error.message = std::string(status.message());
  if (auto param = status.GetPayload(kParamPayload)) error.param = std::string(*param);
  if (auto code = status.GetPayload(kCodePayload)) error.code = std::string(*code);
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kAlreadyExists:
      error.http_status = 400;
      error.type = "invalid_request_error";
      break;
    case absl::StatusCode::kUnauthenticated:
      error.http_status = 401;
      error.type = "authentication_error";
      break;
    case absl::StatusCode::kPermissionDenied:
      error.http_status = 403;
      error.type = "permission_error";
      break;
    case absl::StatusCode::kNotFound:
      error.http_status = 404;
      error.type = "invalid_request_error";
      break;
    case absl::StatusCode::kResourceExhausted:
      error.http_status = 429;
      error.type = "rate_limit_error";
      break;
    case absl::StatusCode::kUnavailable:
      error.http_status = 503;
      error.type = "service_unavailable";
      break;
    case absl::StatusCode::kDeadlineExceeded:
      error.http_status = 504;
      error.type = "timeout";
      break;
    case absl::StatusCode::kCancelled:
      error.http_status = 499;
      error.type = "cancelled";
      break;
    default:
      error.http_status = 500;
      error.type = "server_error";
      break;
  }
  return error;
}

nlohmann::ordered_json ErrorJson(const ApiError& error) {
  Json body;
  body["message"] = error.message;
  body["type"] = error.type;
  body["param"] = error.param.empty() ? Json(nullptr) : Json(error.param);
  body["code"] = error.code.empty() ? Json(nullptr) : Json(error.code);
  return Json{{"error", std::move(body)}};
}

std::string Dump(const nlohmann::ordered_json& json) {
  return json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

absl::StatusOr<OpenAiRequest> ParseCompletionRequest(absl::string_view body,
                                                     const ParseContext& context) {
  ASSIGN_OR_RETURN(Json json, ParseBody(body));
  OpenAiRequest request;
  request.endpoint = Endpoint::kCompletions;
  RETURN_IF_ERROR(ParseCommon(json, context, request));
  request.params.max_tokens = kDefaultCompletionMaxTokens;
  RETURN_IF_ERROR(ParseMaxTokens(json, "max_tokens", request.params));
  ASSIGN_OR_RETURN(std::optional<bool> echo, Bool(json, "echo"));
  request.echo = echo.value_or(false);

  ASSIGN_OR_RETURN(std::optional<int64_t> logprobs, Integer(json, "logprobs"));
  if (logprobs) {
    if (*logprobs < 0 || *logprobs > model::kMaxTopLogprobs) {
      return OutOfRange("logprobs", absl::StrCat("in [0, ", model::kMaxTopLogprobs, "]"),
                        json["logprobs"]);
    }
    request.logprobs = true;
    request.top_logprobs = static_cast<int>(*logprobs);
  }
  if (request.echo && request.logprobs) {
    return InvalidParam("echo",
                        "echo with logprobs is not supported (it needs the prompt's logprobs)");
  }
  if (const Json* suffix = Field(json, "suffix");
      suffix != nullptr && !(suffix->is_string() && suffix->get_ref<const std::string&>().empty())) {
    return InvalidParam("suffix", absl::StrCat("suffix is not supported, got ", Show(*suffix)));
  }
  ASSIGN_OR_RETURN(std::optional<int64_t> best_of, Integer(json, "best_of"));
  if (best_of && *best_of != request.params.n) {
    return InvalidParam("best_of", absl::StrCat("best_of other than n is not supported, got ",
                                                *best_of, " with n = ", request.params.n));
  }
  RETURN_IF_ERROR(ParsePrompts(json, context, request));
  if (request.num_choices() > kMaxChoices) {
    return InvalidParam("n", absl::StrCat("prompts x n must be at most ", kMaxChoices, ", got ",
                                          request.prompts.size(), " x ", request.params.n));
  }
  request.params.sampling.logprobs = request.logprobs;
  request.params.sampling.top_logprobs = request.top_logprobs;
  return request;
}

absl::StatusOr<OpenAiRequest> ParseChatRequest(absl::string_view body, const ParseContext& context) {
  ASSIGN_OR_RETURN(Json json, ParseBody(body));
  OpenAiRequest request;
  request.endpoint = Endpoint::kChatCompletions;
  RETURN_IF_ERROR(ParseCommon(json, context, request));
  RETURN_IF_ERROR(ParseMaxTokens(json, "max_tokens", request.params));
  RETURN_IF_ERROR(ParseMaxTokens(json, "max_completion_tokens", request.params));

  ASSIGN_OR_RETURN(std::optional<bool> logprobs, Bool(json, "logprobs"));
  request.logprobs = logprobs.value_or(false);
  ASSIGN_OR_RETURN(std::optional<int64_t> top_logprobs, Integer(json, "top_logprobs"));
  if (top_logprobs) {
    if (*top_logprobs < 0 || *top_logprobs > model::kMaxTopLogprobs) {
      return OutOfRange("top_logprobs", absl::StrCat("in [0, ", model::kMaxTopLogprobs, "]"),
                        json["top_logprobs"]);
    }
    if (*top_logprobs > 0 && !request.logprobs) {
      return InvalidParam("top_logprobs", "top_logprobs requires logprobs to be true");
    }
    request.top_logprobs = static_cast<int>(*top_logprobs);
  }
  request.params.sampling.logprobs = request.logprobs;
  request.params.sampling.top_logprobs = request.top_logprobs;

  const Json* messages = Field(json, "messages");
  if (messages == nullptr) return InvalidParam("messages", "messages is required");
  if (!messages->is_array() || messages->empty()) {
    return WrongType("messages", "a non-empty array of messages", *messages);
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    const Json& message = (*messages)[i];
    const std::string param = absl::StrCat("messages[", i, "]");
    if (!message.is_object()) return WrongType(param, "an object", message);
    auto role = message.find("role");
    if (role == message.end() || !role->is_string()) {
      return WrongType(param + ".role", "a string", role == message.end() ? Json() : *role);
    }
  }
  const Json* tools = Field(json, "tools");
  if (tools != nullptr && !tools->is_array()) return WrongType("tools", "an array", *tools);
  ASSIGN_OR_RETURN(std::optional<bool> add_generation_prompt, Bool(json, "add_generation_prompt"));
  Json kwargs = Json::object();
  if (const Json* value = Field(json, "chat_template_kwargs")) {
    if (!value->is_object()) return WrongType("chat_template_kwargs", "an object", *value);
    kwargs = *value;
  }
  if (context.chat_renderer == nullptr) {
    return WithErrorCode(
        InvalidParam("messages",
                     absl::StrCat("chat completions are not available: model \"", context.model_name,
                                  "\" has no chat template (no chat_template.jinja, no chat_template "
                                  "in tokenizer_config.json); use /v1/completions")),
        "chat_template_unavailable");
  }
  // The path gRPC's chat prompts take too (server/chat_prompt.h).
  ChatInput input;
  input.messages = *messages;
  if (tools != nullptr) input.tools = *tools;
  input.add_generation_prompt = add_generation_prompt.value_or(true);
  input.template_kwargs = std::move(kwargs);
  absl::StatusOr<std::vector<int32_t>> ids =
      EncodeChat(context.chat_renderer, *context.tokenizer, std::move(input));
  if (!ids.ok()) return InvalidParam("messages", ids.status().message());
  request.prompts.push_back(std::move(*ids));
  return request;
}

}  // namespace kestrel::server::http

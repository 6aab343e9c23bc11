// OpenAI's JSON request bodies for /v1/completions and /v1/chat/completions,
// read into the engine's GenerateParams, and OpenAI's error shape. Pure
// functions: no sockets, no engine; validation errors name the field and the
// value ("top_p must be in (0, 1], got 1.5") and carry the field as the
// error's "param". Unknown fields are ignored, as OpenAI does.
#ifndef KESTREL_SERVER_HTTP_OPENAI_PROTOCOL_H_
#define KESTREL_SERVER_HTTP_OPENAI_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/request.h"
#include "model/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "server/chat_prompt.h"

namespace kestrel::server::http {

// ---------------------------------------------------------------------------
// Errors: {"error": {"message", "type", "param", "code"}} with an HTTP status.
// ---------------------------------------------------------------------------

struct ApiError {
  int http_status = 500;
  std::string type;     // "invalid_request_error", "authentication_error", ...
  std::string message;
  std::string param;    // the request field at fault; "" is null
  std::string code;     // machine-readable reason; "" is null
};

// INVALID_ARGUMENT whose message is `message` and whose "param" is `param`.
absl::Status InvalidParam(absl::string_view param, absl::string_view message);
// A status with an OpenAI error code (e.g. "model_not_found") attached.
absl::Status WithErrorCode(absl::Status status, absl::string_view code);

// The one mapping from absl::Status to HTTP: INVALID_ARGUMENT 400,
// UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404,
// FAILED_PRECONDITION 400, RESOURCE_EXHAUSTED 429 (the engine's queue is
// full), UNAVAILABLE 503 (draining), DEADLINE_EXCEEDED 504, CANCELLED 499
// (nginx's "client closed request"), anything else 500.
ApiError ToApiError(const absl::Status& status);
nlohmann::ordered_json ErrorJson(const ApiError& error);

// nlohmann's dump, with invalid UTF-8 (a lone byte token's text) replaced
// instead of throwing.
std::string Dump(const nlohmann::ordered_json& json);

// ---------------------------------------------------------------------------
// Requests.
// ---------------------------------------------------------------------------

enum class Endpoint { kCompletions, kChatCompletions };

struct OpenAiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  // One engine request per prompt (a completions batch has several; chat
  // has one). Choice `prompt * n + sample` is sample `sample` of prompt
  // `prompt`, as OpenAI numbers them.
  std::vector<std::vector<int32_t>> prompts;
  // Completions' echo: each prompt's text (echo_texts) is put before its
  // choices' text.
  bool echo = false;
  std::vector<std::string> echo_texts;
  // Shared by every prompt; prompt_ids and request_id are left empty.
  engine::GenerateParams params;
  bool stream = false;
  // stream_options.include_usage: a last chunk with the usage.
  bool include_usage = false;
  // Completions: `logprobs` = N gives tokens, token_logprobs, top_logprobs
  // (N alternatives plus the chosen token) and text_offset. Chat: logprobs
  // = true gives logprobs.content[], with top_logprobs alternatives each.
  bool logprobs = false;
  int top_logprobs = 0;

  int num_choices() const { return static_cast<int>(prompts.size()) * params.n; }
};

struct ParseContext {
  const tokenizer::Tokenizer* tokenizer = nullptr;  // not owned
  // The served model's name: "model" must be it (or empty / absent).
  std::string model_name;
  // Token ids in prompts must be below this.
  int64_t vocab_size = 0;
  // Null: the model has no chat template; chat requests are refused (400).
  const ChatRenderer* chat_renderer = nullptr;  // not owned
  // Values of the sampling fields a request leaves out (the model's
  // generation_config.json defaults).
  model::SamplingParams sampling_defaults;
};

// POST /v1/completions. The prompt is a string, an array of strings, an
// array of token ids, or an array of token-id arrays; text is tokenized
// with the tokenizer's BOS, special-token text staying plain text.
absl::StatusOr<OpenAiRequest> ParseCompletionRequest(absl::string_view body,
                                                     const ParseContext& context);

// POST /v1/chat/completions: messages rendered by context.chat_renderer,
// tokenized without added special tokens and with special-token text
// recognised (the template writes them).
absl::StatusOr<OpenAiRequest> ParseChatRequest(absl::string_view body, const ParseContext& context);

}  // namespace kestrel::server::http

#endif  // KESTREL_SERVER_HTTP_OPENAI_PROTOCOL_H_

// OpenAI's response objects for one /v1/completions or /v1/chat/completions
// request, built from the engine's events: Server-Sent Events chunks when
// streaming, one JSON body otherwise. Streamed chunks concatenate to the
// same text as the non-streamed body.
#ifndef KESTREL_SERVER_HTTP_OPENAI_RESPONSE_H_
#define KESTREL_SERVER_HTTP_OPENAI_RESPONSE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "engine/request.h"
#include "model/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "server/http/openai_protocol.h"

namespace kestrel::server::http {

// The end of every stream.
inline constexpr char kSseDone[] = "data: [DONE]\n\n";

// "data: <json>\n\n"
std::string SseEvent(const nlohmann::ordered_json& json);

// Not thread-safe: one per request, used by one thread (the event loop).
//
//   ResponseBuilder builder(request, "cmpl-1", created, "demo", &tokenizer);
//   streaming:  out += builder.Tokens(choice, event) ... builder.Finish(choice, event)
//               ... builder.Usage() (with include_usage) ... kSseDone
//   otherwise:  builder.Tokens(...) ... builder.Finish(...) ... builder.Body()
class ResponseBuilder {
 public:
  // `request` and `tokenizer` must outlive the builder.
  ResponseBuilder(const OpenAiRequest& request, std::string id, int64_t created,
                  std::string model, const tokenizer::Tokenizer* tokenizer);

  // Records `event` for choice `choice` (prompt * n + sample). Streaming:
  // returns its SSE chunk ("" when it carries nothing to send).
  std::string Tokens(int choice, const engine::TokenEvent& event);
  // Records a sample's successful end (finish_reason, usage of prompt
  // `prompt`). Streaming: returns its chunk.
  std::string Finish(int choice, int prompt, const engine::FinishEvent& event);
  // Streaming with include_usage: the last chunk (no choices, the usage).
  std::string Usage() const;
  // Not streaming: the whole response body.
  std::string Body() const;

  int prompt_tokens() const;
  int completion_tokens() const { return completion_tokens_; }

 private:
  struct Choice {
    std::string text;
    std::string finish_reason;
    bool started = false;  // streaming: first chunk (echo, chat role) sent
    // Completions logprobs.
    nlohmann::ordered_json tokens = nlohmann::ordered_json::array();
    nlohmann::ordered_json token_logprobs = nlohmann::ordered_json::array();
    nlohmann::ordered_json top_logprobs = nlohmann::ordered_json::array();
    nlohmann::ordered_json text_offset = nlohmann::ordered_json::array();
    int64_t offset = 0;  // bytes of text before the next token
    // Chat logprobs.content.
    nlohmann::ordered_json content = nlohmann::ordered_json::array();
  };

  bool chat() const { return request_.endpoint == Endpoint::kChatCompletions; }
  // The chunk's envelope: id, object, created, model, choices=[choice].
  nlohmann::ordered_json Chunk(nlohmann::ordered_json choice) const;
  // Appends `event`'s logprobs to `choice` and returns the same entries
  // alone (the chunk's "logprobs"), or null when logprobs were not asked.
  nlohmann::ordered_json AddLogprobs(Choice& choice, const engine::TokenEvent& event);
  nlohmann::ordered_json UsageJson() const;

  // Constant after construction.
  const OpenAiRequest& request_;
  const std::string id_;
  const int64_t created_;
  const std::string model_;
  const tokenizer::Tokenizer* const tokenizer_;  // not owned

  std::vector<Choice> choices_;
  std::vector<int> prompt_tokens_;  // per prompt
  int completion_tokens_ = 0;
};

}  // namespace kestrel::server::http

#endif  // KESTREL_SERVER_HTTP_OPENAI_RESPONSE_H_

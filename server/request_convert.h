// Translates kestrel.v1 messages to the engine's transport-neutral types and
// back. Validation of ranges lives here and in the engine (which owns the
// limits that depend on the model); errors name the field and value.
#ifndef KESTREL_SERVER_REQUEST_CONVERT_H_
#define KESTREL_SERVER_REQUEST_CONVERT_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/request.h"
#include "kestrel/v1/generate.pb.h"
#include "model/tokenizer/tokenizer.h"
#include "server/chat_prompt.h"

namespace kestrel::server {

// Transport-neutral pieces shared by the gRPC service and the HTTP front end
// (server/http).

// Token ids of a client's text prompt. Special tokens written in the text
// are tokenized as plain text, so clients cannot inject control tokens;
// `add_special_tokens` applies the tokenizer's post-processor (BOS).
// INVALID_ARGUMENT names `field` (e.g. "text", "prompt[2]").
absl::StatusOr<std::vector<int32_t>> EncodeUserText(const tokenizer::Tokenizer& tokenizer,
                                                    std::string_view text, bool add_special_tokens,
                                                    absl::string_view field);

// The text of one token as logprobs report it (special tokens included);
// empty when the tokenizer cannot decode it.
std::string TokenText(const tokenizer::Tokenizer& tokenizer, int32_t token);

// What converting a request needs of the served model.
struct RequestContext {
  const tokenizer::Tokenizer* tokenizer = nullptr;  // not owned
  // Renders chat prompts; null: the model has no chat template
  // (FAILED_PRECONDITION). Not owned.
  const ChatRenderer* chat_renderer = nullptr;
  // The values of the sampling fields a request leaves unset: the model's
  // generation_config.json defaults, else SamplingParams' own.
  model::SamplingParams sampling_defaults;
};

// Builds engine parameters from `request`: tokenizes a text prompt (special
// tokens written in user text are treated as plain text, so clients cannot
// inject control tokens) or renders a chat prompt (EncodeChat), applies the
// defaults (context.sampling_defaults, then the documented ones), and sets
// the deadline. INVALID_ARGUMENT names the offending field.
absl::StatusOr<engine::GenerateParams> ToGenerateParams(const kestrel::v1::GenerateRequest& request,
                                                        const RequestContext& context,
                                                        absl::Time deadline);

kestrel::v1::FinishReason ToProto(engine::FinishReason reason);

// Fills a TokenChunk from an engine event (token text of logprobs via
// `tokenizer`); `want_ids` / `want_text` follow the request's output options.
void ToProto(const engine::TokenEvent& event, const tokenizer::Tokenizer& tokenizer, bool want_ids,
             bool want_text, kestrel::v1::TokenChunk* chunk);

void ToProto(const engine::FinishEvent& event, kestrel::v1::Finished* finished);

}  // namespace kestrel::server

#endif  // KESTREL_SERVER_REQUEST_CONVERT_H_

#include "server/request_convert.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kestrel::server {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view rule, double value) {
  return absl::InvalidArgumentError(absl::StrCat(field, " must be ", rule, ", got ", value));
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> EncodeUserText(const tokenizer::Tokenizer& tokenizer,
                                                    std::string_view text, bool add_special_tokens,
                                                    absl::string_view field) {
  tokenizer::EncodeOptions options;
  options.add_special_tokens = add_special_tokens;
  options.parse_special_tokens = false;
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, options);
  if (!ids.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", ids.status().message()));
  }
  return ids;
}

std::string TokenText(const tokenizer::Tokenizer& tokenizer, int32_t token) {
  absl::StatusOr<std::string> text = tokenizer.Decode({&token, 1}, false);
  return text.ok() ? std::move(*text) : std::string();
}

absl::StatusOr<engine::GenerateParams> ToGenerateParams(const kestrel::v1::GenerateRequest& request,
                                                        const RequestContext& context,
                                                        absl::Time deadline) {
  const tokenizer::Tokenizer& tokenizer = *context.tokenizer;
  engine::GenerateParams p;
  p.request_id = request.request_id();
  switch (request.prompt_case()) {
    case kestrel::v1::GenerateRequest::kText: {
      if (request.text().empty()) {
        return absl::InvalidArgumentError("text must not be empty");
      }
      ASSIGN_OR_RETURN(
          p.prompt_ids,
          EncodeUserText(tokenizer, request.text(),
                         request.has_add_special_tokens() ? request.add_special_tokens() : true,
                         "text"));
      break;
    }
    case kestrel::v1::GenerateRequest::kTokenIds:
      p.prompt_ids.assign(request.token_ids().ids().begin(), request.token_ids().ids().end());
      if (p.prompt_ids.empty()) {
        return absl::InvalidArgumentError("token_ids.ids must contain at least one token, got 0");
      }
      break;
    case kestrel::v1::GenerateRequest::kChat: {
      ASSIGN_OR_RETURN(ChatInput input, ChatInputFromProto(request.chat()));
      absl::StatusOr<std::vector<int32_t>> ids = EncodeChat(context.chat_renderer, tokenizer, std::move(input));
      if (!ids.ok()) {
        return absl::Status(ids.status().code(), absl::StrCat("chat: ", ids.status().message()));
      }
      p.prompt_ids = std::move(*ids);
      break;
    }
    case kestrel::v1::GenerateRequest::PROMPT_NOT_SET:
      return absl::InvalidArgumentError("prompt is missing: set text, token_ids or chat");
  }

  const kestrel::v1::SamplingParams& s = request.sampling();
  model::SamplingParams& sampling = p.sampling;
  sampling = context.sampling_defaults;
  if (s.has_temperature()) {
    if (!std::isfinite(s.temperature())) return Invalid("sampling.temperature", "finite", s.temperature());
    sampling.temperature = s.temperature();
  }
  if (s.has_top_k()) {
    if (s.top_k() < 0) return Invalid("sampling.top_k", ">= 0", s.top_k());
    sampling.top_k = s.top_k();
  }
  if (s.has_top_p()) sampling.top_p = s.top_p();
  if (s.has_min_p()) sampling.min_p = s.min_p();
  if (s.has_repetition_penalty()) sampling.repetition_penalty = s.repetition_penalty();
  sampling.presence_penalty = s.presence_penalty();
  sampling.frequency_penalty = s.frequency_penalty();
  for (const auto& [token, bias] : s.logit_bias()) sampling.logit_bias.emplace_back(token, bias);
  std::sort(sampling.logit_bias.begin(), sampling.logit_bias.end());
  if (s.has_seed()) sampling.seed = s.seed();
  if (s.has_n()) p.n = s.n();
  if (s.has_num_speculative_tokens()) p.num_speculative_tokens = s.num_speculative_tokens();

  const kestrel::v1::OutputOptions& o = request.output();
  sampling.logprobs = o.logprobs() || o.top_logprobs() > 0;
  sampling.top_logprobs = o.top_logprobs();
  p.skip_special_tokens = o.has_skip_special_tokens() ? o.skip_special_tokens() : true;

  const kestrel::v1::StoppingCriteria& stop = request.stopping();
  if (stop.has_max_tokens()) p.max_tokens = stop.max_tokens();
  p.min_tokens = stop.min_tokens();
  p.stop.assign(stop.stop().begin(), stop.stop().end());
  p.stop_token_ids.assign(stop.stop_token_ids().begin(), stop.stop_token_ids().end());
  p.ignore_eos = stop.ignore_eos();
  p.include_stop_str_in_output = stop.include_stop_str_in_output();

  p.priority = request.priority();
  if (request.cache_salt().size() > 256) {
    return Invalid("cache_salt length", "at most 256 bytes", request.cache_salt().size());
  }
  p.cache_salt = request.cache_salt();
  p.deadline = deadline;
  return p;
}

kestrel::v1::FinishReason ToProto(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kLength:
      return kestrel::v1::FINISH_REASON_LENGTH;
    case engine::FinishReason::kStopToken:
    case engine::FinishReason::kStopString:
      return kestrel::v1::FINISH_REASON_STOP;
    case engine::FinishReason::kEos:
      return kestrel::v1::FINISH_REASON_EOS;
    case engine::FinishReason::kAborted:
    case engine::FinishReason::kDeadline:
      return kestrel::v1::FINISH_REASON_CANCELLED;
    case engine::FinishReason::kError:
      return kestrel::v1::FINISH_REASON_ERROR;
  }
  return kestrel::v1::FINISH_REASON_UNSPECIFIED;  // unreachable: every enumerator is handled
}

namespace {

void FillLogprob(const tokenizer::Tokenizer& tokenizer, int32_t token, float logprob,
                 kestrel::v1::TokenLogprob* out) {
  out->set_token_id(token);
  out->set_token(TokenText(tokenizer, token));
  out->set_logprob(logprob);
}

}  // namespace

void ToProto(const engine::TokenEvent& event, const tokenizer::Tokenizer& tokenizer, bool want_ids,
             bool want_text, kestrel::v1::TokenChunk* chunk) {
  chunk->set_index(event.index);
  if (want_ids) chunk->mutable_token_ids()->Add(event.token_ids.begin(), event.token_ids.end());
  if (want_text) chunk->set_text(event.text);
  for (const model::SampledToken& sampled : event.logprobs) {
    kestrel::v1::PositionLogprobs* position = chunk->add_logprobs();
    FillLogprob(tokenizer, sampled.token, sampled.logprob, position->mutable_chosen());
    for (const model::TokenLogprob& alt : sampled.top_logprobs) {
      FillLogprob(tokenizer, alt.token, alt.logprob, position->add_top());
    }
  }
}

void ToProto(const engine::FinishEvent& event, kestrel::v1::Finished* finished) {
  finished->set_index(event.index);
  finished->set_reason(ToProto(event.reason));
  if (event.stop_string.has_value()) finished->set_stop_string(*event.stop_string);
  if (event.stop_token_id.has_value()) finished->set_stop_token_id(*event.stop_token_id);
  finished->mutable_usage()->set_prompt_tokens(event.usage.prompt_tokens);
  finished->mutable_usage()->set_cached_prompt_tokens(event.usage.cached_prompt_tokens);
  finished->mutable_usage()->set_completion_tokens(event.usage.completion_tokens);
  finished->mutable_timings()->set_queue_seconds(absl::ToDoubleSeconds(event.timings.queue));
  finished->mutable_timings()->set_time_to_first_token_seconds(
      absl::ToDoubleSeconds(event.timings.time_to_first_token));
  finished->mutable_timings()->set_total_seconds(absl::ToDoubleSeconds(event.timings.total));
}

}  // namespace kestrel::server

// Builds OpenAI response JSON from engine events; see openai_response.h.
#include "server/http/openai_response.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/request_convert.h"

namespace kestrel::server::http {
namespace {

using Json = nlohmann::ordered_json;

const char* OpenAiFinishReason(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kLength:
      return "length";
    case engine::FinishReason::kEos:
    case engine::FinishReason::kStopToken:
    case engine::FinishReason::kStopString:
      return "stop";
    case engine::FinishReason::kAborted:
    case engine::FinishReason::kDeadline:
      return "abort";
    case engine::FinishReason::kError:
      return "error";
  }
  return "error";  // unreachable: every enumerator is handled
}

Json Bytes(const std::string& text) {
  Json bytes = Json::array();
  for (unsigned char c : text) bytes.push_back(static_cast<int>(c));
  return bytes;
}

}  // namespace

std::string SseEvent(const nlohmann::ordered_json& json) {
  return absl::StrCat("data: ", Dump(json), "\n\n");
}

ResponseBuilder::ResponseBuilder(const OpenAiRequest& request, std::string id, int64_t created,
                                 std::string model, const tokenizer::Tokenizer* tokenizer)
    : request_(request),
      id_(std::move(id)),
      created_(created),
      model_(std::move(model)),
      tokenizer_(tokenizer),
      choices_(request.num_choices()),
      prompt_tokens_(request.prompts.size(), 0) {
  for (int c = 0; c < request.num_choices(); ++c) {
    if (!request.echo_texts.empty()) {
      const std::string& echo = request.echo_texts[c / request.params.n];
      choices_[c].text = echo;
      choices_[c].offset = static_cast<int64_t>(echo.size());
    }
  }
}

Json ResponseBuilder::Chunk(Json choice) const {
  Json chunk;
  chunk["id"] = id_;
  chunk["object"] = chat() ? "chat.completion.chunk" : "text_completion";
  chunk["created"] = created_;
  chunk["model"] = model_;
  chunk["choices"] = Json::array({std::move(choice)});
  if (request_.include_usage) chunk["usage"] = nullptr;
  return chunk;
}

Json ResponseBuilder::AddLogprobs(Choice& choice, const engine::TokenEvent& event) {
  if (!request_.logprobs) return nullptr;
  if (chat()) {
    Json content = Json::array();
    for (const model::SampledToken& sampled : event.logprobs) {
      const std::string token = TokenText(*tokenizer_, sampled.token);
      Json top = Json::array();
      for (const model::TokenLogprob& alt : sampled.top_logprobs) {
        if (static_cast<int>(top.size()) >= request_.top_logprobs) break;
        const std::string alt_text = TokenText(*tokenizer_, alt.token);
        top.push_back({{"token", alt_text}, {"logprob", alt.logprob}, {"bytes", Bytes(alt_text)}});
      }
      Json entry = {{"token", token},
                    {"logprob", sampled.logprob},
                    {"bytes", Bytes(token)},
                    {"top_logprobs", std::move(top)}};
      choice.content.push_back(entry);
      content.push_back(std::move(entry));
    }
    return Json{{"content", std::move(content)}};
  }
  Json tokens = Json::array(), token_logprobs = Json::array(), top_logprobs = Json::array(),
       text_offset = Json::array();
  for (const model::SampledToken& sampled : event.logprobs) {
    const std::string token = TokenText(*tokenizer_, sampled.token);
    // OpenAI: the N most likely tokens, plus the chosen one.
    Json top = Json::object();
    for (const model::TokenLogprob& alt : sampled.top_logprobs) {
      if (static_cast<int>(top.size()) >= request_.top_logprobs) break;
      top[TokenText(*tokenizer_, alt.token)] = alt.logprob;
    }
    top[token] = sampled.logprob;
    tokens.push_back(token);
    token_logprobs.push_back(sampled.logprob);
    top_logprobs.push_back(std::move(top));
    text_offset.push_back(choice.offset);
    choice.offset += static_cast<int64_t>(token.size());
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    choice.tokens.push_back(tokens[i]);
    choice.token_logprobs.push_back(token_logprobs[i]);
    choice.top_logprobs.push_back(top_logprobs[i]);
    choice.text_offset.push_back(text_offset[i]);
  }
  return Json{{"tokens", std::move(tokens)},
              {"token_logprobs", std::move(token_logprobs)},
              {"top_logprobs", std::move(top_logprobs)},
              {"text_offset", std::move(text_offset)}};
}

std::string ResponseBuilder::Tokens(int choice_index, const engine::TokenEvent& event) {
  Choice& choice = choices_[choice_index];
  Json logprobs = AddLogprobs(choice, event);
  std::string delta = event.text;
  if (!choice.started && !request_.echo_texts.empty()) {
    delta = absl::StrCat(request_.echo_texts[choice_index / request_.params.n], delta);
  }
  choice.text += event.text;  // an echo is already at the front (constructor)
  if (!request_.stream) {
    choice.started = true;
    return "";
  }
  if (delta.empty() && logprobs.is_null() && choice.started) return "";
  Json out;
  out["index"] = choice_index;
  if (chat()) {
    Json delta_json = Json::object();
    if (!choice.started) delta_json["role"] = "assistant";
    delta_json["content"] = delta;
    out["delta"] = std::move(delta_json);
  } else {
    out["text"] = delta;
  }
  out["logprobs"] = std::move(logprobs);
  out["finish_reason"] = nullptr;
  choice.started = true;
  return SseEvent(Chunk(std::move(out)));
}

std::string ResponseBuilder::Finish(int choice_index, int prompt, const engine::FinishEvent& event) {
  Choice& choice = choices_[choice_index];
  choice.finish_reason = OpenAiFinishReason(event.reason);
  prompt_tokens_[prompt] = event.usage.prompt_tokens;
  completion_tokens_ += event.usage.completion_tokens;
  if (!request_.stream) return "";
  std::string out;
  if (!choice.started) {
    // A sample that produced no text still opens with its role / echo.
    out = Tokens(choice_index, engine::TokenEvent{});
  }
  Json last;
  last["index"] = choice_index;
  if (chat()) {
    last["delta"] = Json::object();
  } else {
    last["text"] = "";
  }
  last["logprobs"] = nullptr;
  last["finish_reason"] = choice.finish_reason;
  return absl::StrCat(out, SseEvent(Chunk(std::move(last))));
}

int ResponseBuilder::prompt_tokens() const {
  int total = 0;
  for (int tokens : prompt_tokens_) total += tokens;
  return total;
}

Json ResponseBuilder::UsageJson() const {
  return Json{{"prompt_tokens", prompt_tokens()},
              {"completion_tokens", completion_tokens_},
              {"total_tokens", prompt_tokens() + completion_tokens_}};
}

std::string ResponseBuilder::Usage() const {
  Json chunk;
  chunk["id"] = id_;
  chunk["object"] = chat() ? "chat.completion.chunk" : "text_completion";
  chunk["created"] = created_;
  chunk["model"] = model_;
  chunk["choices"] = Json::array();
  chunk["usage"] = UsageJson();
  return SseEvent(chunk);
}

std::string ResponseBuilder::Body() const {
  Json body;
  body["id"] = id_;
  body["object"] = chat() ? "chat.completion" : "text_completion";
  body["created"] = created_;
  body["model"] = model_;
  Json choices = Json::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& choice = choices_[i];
    Json out;
    out["index"] = i;
    Json logprobs = nullptr;
    if (request_.logprobs && chat()) {
      logprobs = Json{{"content", choice.content}};
    } else if (request_.logprobs) {
      logprobs = Json{{"tokens", choice.tokens},
                      {"token_logprobs", choice.token_logprobs},
                      {"top_logprobs", choice.top_logprobs},
                      {"text_offset", choice.text_offset}};
    }
    if (chat()) {
      out["message"] = Json{{"role", "assistant"}, {"content", choice.text}};
    } else {
      out["text"] = choice.text;
    }
    out["logprobs"] = std::move(logprobs);
    out["finish_reason"] = choice.finish_reason;
    choices.push_back(std::move(out));
  }
  body["choices"] = std::move(choices);
  body["usage"] = UsageJson();
  return Dump(body);
}

}  // namespace kestrel::server::http

// Engine events -> OpenAI responses: chunk and body shapes, choice
// numbering, usage, echo, logprobs for both endpoints.
#include "server/http/openai_response.h"

#include <catch2/catch.hpp>

#include "absl/strings/str_split.h"
#include "model/synthetic.h"

namespace kestrel::server::http {
namespace {

using Json = nlohmann::ordered_json;

const tokenizer::Tokenizer& ByteTokenizer() {
  static const tokenizer::Tokenizer* tokenizer = [] {
    auto t = tokenizer::Tokenizer::FromJson(model::SyntheticTokenizerJson(300), "", {});
    REQUIRE(t.ok());
    return t->release();
  }();
  return *tokenizer;
}

engine::TokenEvent Tokens(int index, std::vector<int32_t> ids, std::string text,
                          bool logprobs = false) {
  engine::TokenEvent event;
  event.index = index;
  event.token_ids = ids;
  event.text = std::move(text);
  if (logprobs) {
    for (int32_t id : ids) {
      model::SampledToken sampled;
      sampled.token = id;
      sampled.logprob = -0.5f;
      sampled.top_logprobs = {{id, -0.5f}, {'z', -1.5f}, {'y', -2.5f}};
      event.logprobs.push_back(sampled);
    }
  }
  return event;
}

engine::FinishEvent Finish(int index, engine::FinishReason reason, int prompt_tokens,
                           int completion_tokens) {
  engine::FinishEvent event;
  event.index = index;
  event.reason = reason;
  event.usage.prompt_tokens = prompt_tokens;
  event.usage.completion_tokens = completion_tokens;
  return event;
}

// The JSON payloads of an SSE text.
std::vector<Json> Events(const std::string& sse) {
  std::vector<Json> out;
  for (absl::string_view block : absl::StrSplit(sse, "\n\n", absl::SkipEmpty())) {
    REQUIRE(block.substr(0, 6) == "data: ");
    out.push_back(Json::parse(block.substr(6)));
  }
  return out;
}

OpenAiRequest Request(Endpoint endpoint, int prompts, int n) {
  OpenAiRequest request;
  request.endpoint = endpoint;
  request.prompts.assign(prompts, {1, 2});
  request.params.n = n;
  return request;
}

TEST_CASE("completions: non-streamed body with two prompts x n = 2") {
  OpenAiRequest request = Request(Endpoint::kCompletions, 2, 2);
  ResponseBuilder builder(request, "cmpl-1", 1700000000, "demo", &ByteTokenizer());
  CHECK(builder.Tokens(3, Tokens(1, {'h'}, "h")).empty());
  builder.Tokens(3, Tokens(1, {'i'}, "i"));
  builder.Tokens(0, Tokens(0, {'a'}, "a"));
  for (int c = 0; c < 4; ++c) {
    builder.Finish(c, c / 2, Finish(c % 2, c == 3 ? engine::FinishReason::kStopString
                                                   : engine::FinishReason::kLength, 2, c == 3 ? 2 : 1));
  }
  Json body = Json::parse(builder.Body());
  CHECK(body["id"] == "cmpl-1");
  CHECK(body["object"] == "text_completion");
  CHECK(body["created"] == 1700000000);
  CHECK(body["model"] == "demo");
  REQUIRE(body["choices"].size() == 4);
  CHECK(body["choices"][0] == Json::parse(R"({"index":0,"text":"a","logprobs":null,"finish_reason":"length"})"));
  CHECK(body["choices"][3]["text"] == "hi");
  CHECK(body["choices"][3]["finish_reason"] == "stop");
  // Each prompt's tokens count once, whatever n.
  CHECK(body["usage"] == Json::parse(R"({"prompt_tokens":4,"completion_tokens":5,"total_tokens":9})"));
}

TEST_CASE("completions: stream chunks, the finish chunk and the usage chunk") {
  OpenAiRequest request = Request(Endpoint::kCompletions, 1, 1);
  request.stream = true;
  request.include_usage = true;
  ResponseBuilder builder(request, "cmpl-2", 5, "demo", &ByteTokenizer());
  std::string sse = builder.Tokens(0, Tokens(0, {'h', 'i'}, "hi"));
  sse += builder.Tokens(0, Tokens(0, {}, ""));  // nothing to say: no chunk
  sse += builder.Finish(0, 0, Finish(0, engine::FinishReason::kEos, 2, 2));
  sse += builder.Usage();
  std::vector<Json> events = Events(sse);
  REQUIRE(events.size() == 3);
  CHECK(events[0] == Json::parse(R"({"id":"cmpl-2","object":"text_completion","created":5,"model":"demo",
      "choices":[{"index":0,"text":"hi","logprobs":null,"finish_reason":null}],"usage":null})"));
  CHECK(events[1]["choices"][0] ==
        Json::parse(R"({"index":0,"text":"","logprobs":null,"finish_reason":"stop"})"));
  CHECK(events[2]["choices"] == Json::array());
  CHECK(events[2]["usage"] == Json::parse(R"({"prompt_tokens":2,"completion_tokens":2,"total_tokens":4})"));
}

TEST_CASE("completions: echo puts the prompt first, streamed or not") {
  OpenAiRequest request = Request(Endpoint::kCompletions, 1, 1);
  request.echo = true;
  request.echo_texts = {"Say: "};
  ResponseBuilder body(request, "c", 0, "demo", &ByteTokenizer());
  body.Tokens(0, Tokens(0, {'o'}, "ok"));
  body.Finish(0, 0, Finish(0, engine::FinishReason::kLength, 5, 1));
  CHECK(Json::parse(body.Body())["choices"][0]["text"] == "Say: ok");
  request.stream = true;
  ResponseBuilder stream(request, "c", 0, "demo", &ByteTokenizer());
  std::string sse = stream.Tokens(0, Tokens(0, {'o'}, "ok"));
  sse += stream.Tokens(0, Tokens(0, {'!'}, "!"));
  std::vector<Json> events = Events(sse);
  CHECK(events[0]["choices"][0]["text"] == "Say: ok");
  CHECK(events[1]["choices"][0]["text"] == "!");
}

TEST_CASE("completions: logprobs with tokens, token_logprobs, top_logprobs, text_offset") {
  OpenAiRequest request = Request(Endpoint::kCompletions, 1, 1);
  request.logprobs = true;
  request.top_logprobs = 2;
  ResponseBuilder builder(request, "c", 0, "demo", &ByteTokenizer());
  builder.Tokens(0, Tokens(0, {'a', 'b'}, "ab", true));
  builder.Finish(0, 0, Finish(0, engine::FinishReason::kLength, 2, 2));
  Json logprobs = Json::parse(builder.Body())["choices"][0]["logprobs"];
  CHECK(logprobs["tokens"] == Json{"a", "b"});
  CHECK(logprobs["token_logprobs"] == Json{-0.5, -0.5});
  CHECK(logprobs["text_offset"] == Json{0, 1});
  // The two most likely, plus the chosen token.
  CHECK(logprobs["top_logprobs"][0] == Json::parse(R"({"a":-0.5,"z":-1.5})"));
}

TEST_CASE("chat: role first, content deltas, logprobs.content with bytes") {
  OpenAiRequest request = Request(Endpoint::kChatCompletions, 1, 2);
  request.stream = true;
  request.logprobs = true;
  request.top_logprobs = 1;
  ResponseBuilder builder(request, "chatcmpl-1", 0, "demo", &ByteTokenizer());
  std::string sse = builder.Tokens(1, Tokens(1, {'h'}, "h", true));
  sse += builder.Tokens(1, Tokens(1, {'i'}, "i"));
  sse += builder.Finish(1, 0, Finish(1, engine::FinishReason::kLength, 2, 2));
  sse += builder.Finish(0, 0, Finish(0, engine::FinishReason::kLength, 2, 0));
  std::vector<Json> events = Events(sse);
  REQUIRE(events.size() == 5);
  CHECK(events[0]["object"] == "chat.completion.chunk");
  CHECK(events[0]["choices"][0]["index"] == 1);
  CHECK(events[0]["choices"][0]["delta"] == Json::parse(R"({"role":"assistant","content":"h"})"));
  CHECK(events[0]["choices"][0]["logprobs"] == Json::parse(R"({"content":[{"token":"h","logprob":-0.5,
      "bytes":[104],"top_logprobs":[{"token":"h","logprob":-0.5,"bytes":[104]}]}]})"));
  CHECK(events[1]["choices"][0]["delta"] == Json::parse(R"({"content":"i"})"));
  CHECK(events[2]["choices"][0]["finish_reason"] == "length");
  CHECK(events[2]["choices"][0]["delta"] == Json::object());
  // A sample without any text still opens with its role.
  CHECK(events[3]["choices"][0]["delta"] == Json::parse(R"({"role":"assistant","content":""})"));
  CHECK(events[4]["choices"][0]["index"] == 0);

  request.stream = false;
  ResponseBuilder body(request, "chatcmpl-2", 0, "demo", &ByteTokenizer());
  body.Tokens(0, Tokens(0, {'o', 'k'}, "ok", true));
  body.Finish(0, 0, Finish(0, engine::FinishReason::kStopToken, 3, 2));
  body.Finish(1, 0, Finish(1, engine::FinishReason::kLength, 3, 0));
  Json json = Json::parse(body.Body());
  CHECK(json["object"] == "chat.completion");
  CHECK(json["choices"][0]["message"] == Json::parse(R"({"role":"assistant","content":"ok"})"));
  CHECK(json["choices"][0]["finish_reason"] == "stop");
  CHECK(json["choices"][0]["logprobs"]["content"].size() == 2);
  CHECK(json["usage"]["total_tokens"] == 5);
}

}  // namespace
}  // namespace kestrel::server::http

// OpenAI request bodies -> engine parameters: every field, every error
// (HTTP status, the field as "param", the value in the message).
#include "server/http/openai_protocol.h"

#include <catch2/catch.hpp>

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

// "role: content" lines, then "assistant:" when asked.
class LinesRenderer final : public ChatRenderer {
 public:
  absl::StatusOr<std::string> Render(const ChatInput& input) const override {
    last_tools = input.tools;
    last_kwargs = input.template_kwargs;
    std::string text;
    for (const Json& message : input.messages) {
      if (!message.contains("content") || !message["content"].is_string()) {
        return absl::InvalidArgumentError("content must be a string");
      }
      text += message["role"].get<std::string>() + ": " + message["content"].get<std::string>() + "\n";
    }
    if (input.add_generation_prompt) text += "assistant:";
    return text;
  }
  mutable Json last_tools;
  mutable Json last_kwargs;
};

ParseContext Context(const ChatRenderer* renderer = nullptr) {
  ParseContext context;
  context.tokenizer = &ByteTokenizer();
  context.model_name = "demo";
  context.vocab_size = 300;
  context.chat_renderer = renderer;
  return context;
}

absl::StatusOr<OpenAiRequest> Completion(const Json& body) {
  return ParseCompletionRequest(body.dump(), Context());
}

// The error a body gets: status, param and message.
ApiError CompletionError(const Json& body) {
  absl::StatusOr<OpenAiRequest> request = Completion(body);
  REQUIRE_FALSE(request.ok());
  return ToApiError(request.status());
}

TEST_CASE("completions: defaults") {
  auto r = Completion({{"model", "demo"}, {"prompt", "hi"}});
  REQUIRE(r.ok());
  CHECK(r->endpoint == Endpoint::kCompletions);
  REQUIRE(r->prompts.size() == 1);
  CHECK(r->prompts[0] == std::vector<int32_t>{'h', 'i'});
  CHECK(r->params.max_tokens == 16);  // OpenAI's default for completions
  CHECK(r->params.n == 1);
  CHECK(r->params.sampling.temperature == 1.0f);
  CHECK(r->params.sampling.top_p == 1.0f);
  CHECK_FALSE(r->params.sampling.seed.has_value());
  CHECK_FALSE(r->params.sampling.logprobs);
  CHECK_FALSE(r->stream);
  CHECK_FALSE(r->include_usage);
  CHECK_FALSE(r->echo);
  CHECK(r->params.stop.empty());
  CHECK(r->num_choices() == 1);
}

TEST_CASE("completions: every field reaches the engine parameters") {
  Json body = {{"model", "demo"},
               {"prompt", "hi"},
               {"max_tokens", 7},
               {"temperature", 0.5},
               {"top_p", 0.9},
               {"top_k", 40},
               {"min_p", 0.05},
               {"presence_penalty", 0.5},
               {"frequency_penalty", -0.5},
               {"repetition_penalty", 1.1},
               {"logit_bias", {{"65", 5}, {"10", -100}}},
               {"seed", 1234},
               {"n", 3},
               {"stop", {"\n", "END"}},
               {"stop_token_ids", {257}},
               {"min_tokens", 2},
               {"num_speculative_tokens", 5},
               {"ignore_eos", true},
               {"include_stop_str_in_output", true},
               {"skip_special_tokens", false},
               {"priority", 2},
               {"logprobs", 3},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}},
               {"user", "ignored"},
               {"an_unknown_field", {1, 2}}};
  auto r = Completion(body);
  INFO(r.status());
  REQUIRE(r.ok());
  const engine::GenerateParams& p = r->params;
  CHECK(p.max_tokens == 7);
  CHECK(p.sampling.temperature == 0.5f);
  CHECK(p.sampling.top_p == 0.9f);
  CHECK(p.sampling.top_k == 40);
  CHECK(p.sampling.min_p == 0.05f);
  CHECK(p.sampling.presence_penalty == 0.5f);
  CHECK(p.sampling.frequency_penalty == -0.5f);
  CHECK(p.sampling.repetition_penalty == 1.1f);
  CHECK(p.sampling.logit_bias == std::vector<std::pair<int32_t, float>>{{10, -100.0f}, {65, 5.0f}});
  CHECK(p.sampling.seed == 1234u);
  CHECK(p.n == 3);
  CHECK(p.stop == std::vector<std::string>{"\n", "END"});
  CHECK(p.stop_token_ids == std::vector<int32_t>{257});
  CHECK(p.min_tokens == 2);
  CHECK(p.num_speculative_tokens == 5);
  CHECK(p.ignore_eos);
  CHECK(p.include_stop_str_in_output);
  CHECK_FALSE(p.skip_special_tokens);
  CHECK(p.priority == 2);
  CHECK(p.sampling.logprobs);
  CHECK(p.sampling.top_logprobs == 3);
  CHECK(r->logprobs);
  CHECK(r->top_logprobs == 3);
  CHECK(r->stream);
  CHECK(r->include_usage);
  CHECK(r->num_choices() == 3);
}

TEST_CASE("completions: prompts as text, token ids and batches") {
  SECTION("token ids") {
    auto r = Completion({{"prompt", {5, 6, 7}}});
    REQUIRE(r.ok());
    REQUIRE(r->prompts.size() == 1);
    CHECK(r->prompts[0] == std::vector<int32_t>{5, 6, 7});
  }
  SECTION("a batch of texts, n = 2: choices are prompt x n") {
    auto r = Completion({{"prompt", {"a", "bc"}}, {"n", 2}});
    REQUIRE(r.ok());
    REQUIRE(r->prompts.size() == 2);
    CHECK(r->prompts[1] == std::vector<int32_t>{'b', 'c'});
    CHECK(r->num_choices() == 4);
  }
  SECTION("a batch of token arrays") {
    auto r = Completion({{"prompt", {{1, 2}, {3}}}});
    REQUIRE(r.ok());
    CHECK(r->prompts == std::vector<std::vector<int32_t>>{{1, 2}, {3}});
  }
  SECTION("special-token text stays text") {
    auto r = Completion({{"prompt", "</s>"}});
    REQUIRE(r.ok());
    CHECK(r->prompts[0].size() == 4);
  }
  SECTION("echo keeps each prompt's text") {
    auto r = Completion({{"prompt", {"a", "bc"}}, {"echo", true}});
    REQUIRE(r.ok());
    CHECK(r->echo_texts == std::vector<std::string>{"a", "bc"});
    auto ids = Completion({{"prompt", {104, 105}}, {"echo", true}});
    REQUIRE(ids.ok());
    CHECK(ids->echo_texts == std::vector<std::string>{"hi"});
  }
  SECTION("a single stop string; nulls mean defaults; an empty model means the served one") {
    auto r = Completion({{"model", ""}, {"prompt", "x"}, {"stop", "\n\n"}, {"temperature", nullptr},
                         {"max_tokens", nullptr}});
    REQUIRE(r.ok());
    CHECK(r->params.stop == std::vector<std::string>{"\n\n"});
    CHECK(r->params.max_tokens == 16);
    CHECK(r->params.sampling.temperature == 1.0f);
  }
  SECTION("top_k -1 disables it (vLLM's spelling)") {
    auto r = Completion({{"prompt", "x"}, {"top_k", -1}});
    REQUIRE(r.ok());
    CHECK(r->params.sampling.top_k == 0);
  }
}

TEST_CASE("completions: bad input is 400 naming the field and the value") {
  struct Case {
    Json body;
    std::string param;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{{"prompt", "x"}, {"max_tokens", -1}}, "max_tokens", "max_tokens must be >= 1, got -1"},
      {{{"prompt", "x"}, {"max_tokens", 0}}, "max_tokens", "max_tokens must be >= 1, got 0"},
      {{{"prompt", "x"}, {"max_tokens", "10"}}, "max_tokens", "max_tokens must be an integer, got \"10\""},
      {{{"prompt", "x"}, {"max_tokens", 1.5}}, "max_tokens", "max_tokens must be an integer, got 1.5"},
      {{{"prompt", "x"}, {"temperature", "hot"}}, "temperature", "temperature must be a number, got \"hot\""},
      {{{"prompt", "x"}, {"temperature", -0.5}}, "temperature", "temperature must be in [0, 100], got -0.5"},
      {{{"prompt", "x"}, {"top_p", 1.5}}, "top_p", "top_p must be in (0, 1], got 1.5"},
      {{{"prompt", "x"}, {"top_p", 0}}, "top_p", "top_p must be in (0, 1], got 0"},
      {{{"prompt", "x"}, {"top_k", -2}}, "top_k", "top_k must be >= -1, got -2"},
      {{{"prompt", "x"}, {"min_p", 2}}, "min_p", "min_p must be in [0, 1], got 2"},
      {{{"prompt", "x"}, {"presence_penalty", 3}}, "presence_penalty", "presence_penalty must be in [-2, 2], got 3"},
      {{{"prompt", "x"}, {"frequency_penalty", -2.5}}, "frequency_penalty", "frequency_penalty must be in [-2, 2], got -2.5"},
      {{{"prompt", "x"}, {"repetition_penalty", 0}}, "repetition_penalty", "repetition_penalty must be in (0, 10], got 0"},
      {{{"prompt", "x"}, {"n", 0}}, "n", "n must be in [1, 128], got 0"},
      {{{"prompt", "x"}, {"n", true}}, "n", "n must be an integer, got true"},
      {{{"prompt", "x"}, {"seed", "1"}}, "seed", "seed must be an integer, got \"1\""},
      {{{"prompt", "x"}, {"stop", 5}}, "stop", "stop must be a string or an array of strings, got 5"},
      {{{"prompt", "x"}, {"stop", {"a", 1}}}, "stop[1]", "stop[1] must be a string, got 1"},
      {{{"prompt", "x"}, {"stop", ""}}, "stop", "stop must be non-empty, got \"\""},
      {{{"prompt", "x"}, {"logit_bias", {{"abc", 1}}}}, "logit_bias", "logit_bias key \"abc\" is not a token id in [0, 300)"},
      {{{"prompt", "x"}, {"logit_bias", {{"5", 101}}}}, "logit_bias[\"5\"]", "logit_bias[\"5\"] must be in [-100, 100], got 101"},
      {{{"prompt", "x"}, {"logit_bias", {1, 2}}}, "logit_bias", "logit_bias must be an object of token id -> bias, got [1,2]"},
      {{{"prompt", "x"}, {"logprobs", 21}}, "logprobs", "logprobs must be in [0, 20], got 21"},
      {{{"prompt", "x"}, {"logprobs", true}}, "logprobs", "logprobs must be an integer, got true"},
      {{{"prompt", "x"}, {"min_tokens", -1}}, "min_tokens", "min_tokens must be >= 0, got -1"},
      {{{"prompt", "x"}, {"num_speculative_tokens", 17}}, "num_speculative_tokens", "num_speculative_tokens must be in [0, 16], got 17"},
      {{{"prompt", "x"}, {"ignore_eos", "yes"}}, "ignore_eos", "ignore_eos must be a boolean, got \"yes\""},
      {{{"prompt", "x"}, {"stream", 1}}, "stream", "stream must be a boolean, got 1"},
      {{{"prompt", "x"}, {"stream_options", {{"include_usage", "y"}}}}, "stream_options.include_usage", "stream_options.include_usage must be a boolean, got \"y\""},
      {{{"prompt", "x"}, {"echo", true}, {"logprobs", 1}}, "echo", "echo with logprobs is not supported (it needs the prompt's logprobs)"},
      {{{"prompt", "x"}, {"suffix", "after"}}, "suffix", "suffix is not supported, got \"after\""},
      {{{"prompt", "x"}, {"best_of", 3}}, "best_of", "best_of other than n is not supported, got 3 with n = 1"},
      {{{"prompt", "x"}, {"stop_token_ids", {300}}}, "stop_token_ids[0]", "stop_token_ids[0] must be a token id in [0, 300), got 300"},
      {{{"prompt", "x"}, {"model", 7}}, "model", "model must be a string, got 7"},
      {Json::object(), "prompt", "prompt is required"},
      {{{"prompt", 5}}, "prompt", "prompt must be a string, an array of strings, an array of token ids or an array of token-id arrays, got 5"},
      {{{"prompt", Json::array()}}, "prompt", "prompt must be a string, an array of strings, an array of token ids or an array of token-id arrays, got []"},
      {{{"prompt", {1, -1}}}, "prompt[1]", "prompt[1] must be a token id in [0, 300), got -1"},
      {{{"prompt", {1, 300}}}, "prompt[1]", "prompt[1] must be a token id in [0, 300), got 300"},
      {{{"prompt", {"a", 5}}}, "prompt[1]", "prompt[1] must be a string or an array of token ids, got 5"},
      {{{"prompt", {{1}, Json::array()}}}, "prompt[1]", "prompt[1] must contain at least one token, got []"},
      {{{"prompt", ""}}, "prompt", "prompt must not be empty"},
  };
  for (const Case& c : cases) {
    INFO(c.body.dump());
    ApiError error = CompletionError(c.body);
    CHECK(error.http_status == 400);
    CHECK(error.type == "invalid_request_error");
    CHECK(error.param == c.param);
    CHECK(error.message == c.message);
  }
}

TEST_CASE("malformed JSON and non-object bodies are 400") {
  auto r = ParseCompletionRequest("{\"prompt\": ", Context());
  REQUIRE_FALSE(r.ok());
  ApiError error = ToApiError(r.status());
  CHECK(error.http_status == 400);
  CHECK(error.message.find("request body is not valid JSON") == 0);
  auto list = ParseCompletionRequest("[1, 2]", Context());
  REQUIRE_FALSE(list.ok());
  CHECK(ToApiError(list.status()).message == "request body must be a JSON object, got [1,2]");
}

TEST_CASE("fields a request leaves out take the model's sampling defaults") {
  ParseContext context = Context();
  context.sampling_defaults.temperature = 0.7f;
  context.sampling_defaults.top_k = 20;
  context.sampling_defaults.top_p = 0.8f;
  context.sampling_defaults.repetition_penalty = 1.05f;
  auto plain = ParseCompletionRequest(Json{{"prompt", "x"}}.dump(), context);
  REQUIRE(plain.ok());
  CHECK(plain->params.sampling.temperature == 0.7f);
  CHECK(plain->params.sampling.top_k == 20);
  CHECK(plain->params.sampling.top_p == 0.8f);
  CHECK(plain->params.sampling.repetition_penalty == 1.05f);
  Json set = {{"prompt", "x"}, {"temperature", 0}, {"top_k", -1}, {"top_p", 1}, {"repetition_penalty", 1}};
  auto overridden = ParseCompletionRequest(set.dump(), context);
  REQUIRE(overridden.ok());
  CHECK(overridden->params.sampling.temperature == 0.0f);
  CHECK(overridden->params.sampling.top_k == 0);
  CHECK(overridden->params.sampling.top_p == 1.0f);
  CHECK(overridden->params.sampling.repetition_penalty == 1.0f);
}

TEST_CASE("an unknown model is 404 model_not_found") {
  ApiError error = CompletionError({{"model", "gpt-9"}, {"prompt", "x"}});
  CHECK(error.http_status == 404);
  CHECK(error.code == "model_not_found");
  CHECK(error.message.find("\"gpt-9\"") != std::string::npos);
}

TEST_CASE("chat: messages are rendered and tokenized with special tokens recognised") {
  LinesRenderer renderer;
  Json body = {{"model", "demo"},
               {"messages", {{{"role", "user"}, {"content", "hi</s>"}}}},
               {"max_completion_tokens", 9},
               {"max_tokens", 3},
               {"logprobs", true},
               {"top_logprobs", 2},
               {"tools", {{{"type", "function"}}}},
               {"chat_template_kwargs", {{"enable_thinking", false}}}};
  auto r = ParseChatRequest(body.dump(), Context(&renderer));
  INFO(r.status());
  REQUIRE(r.ok());
  CHECK(r->endpoint == Endpoint::kChatCompletions);
  // "user: hi" + the </s> special token (257) + "\nassistant:".
  std::vector<int32_t> expected;
  for (char c : std::string("user: hi")) expected.push_back(static_cast<unsigned char>(c));
  expected.push_back(257);
  for (char c : std::string("\nassistant:")) expected.push_back(static_cast<unsigned char>(c));
  CHECK(r->prompts[0] == expected);
  CHECK(r->params.max_tokens == 9);  // max_completion_tokens wins
  CHECK(r->params.sampling.logprobs);
  CHECK(r->params.sampling.top_logprobs == 2);
  CHECK(renderer.last_tools.is_array());
  CHECK(renderer.last_kwargs == Json{{"enable_thinking", false}});

  Json plain = {{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"add_generation_prompt", false}};
  auto no_prompt = ParseChatRequest(plain.dump(), Context(&renderer));
  REQUIRE(no_prompt.ok());
  CHECK(no_prompt->prompts[0].back() == '\n');
  CHECK_FALSE(no_prompt->params.max_tokens.has_value());  // chat: up to the context length
  CHECK(renderer.last_tools.is_null());
  CHECK(renderer.last_kwargs == Json::object());
}

TEST_CASE("chat: errors") {
  LinesRenderer renderer;
  auto error = [&](const Json& body, const ChatRenderer* r) {
    auto parsed = ParseChatRequest(body.dump(), Context(r));
    REQUIRE_FALSE(parsed.ok());
    return ToApiError(parsed.status());
  };
  const Json user = {{{"role", "user"}, {"content", "x"}}};
  ApiError missing = error(Json::object(), &renderer);
  CHECK(missing.message == "messages is required");
  CHECK(error({{"messages", Json::array()}}, &renderer).message ==
        "messages must be a non-empty array of messages, got []");
  CHECK(error({{"messages", {1}}}, &renderer).message == "messages[0] must be an object, got 1");
  CHECK(error({{"messages", {{{"content", "x"}}}}}, &renderer).message ==
        "messages[0].role must be a string, got null");
  CHECK(error({{"messages", user}, {"top_logprobs", 2}}, &renderer).message ==
        "top_logprobs requires logprobs to be true");
  CHECK(error({{"messages", user}, {"max_completion_tokens", -5}}, &renderer).message ==
        "max_completion_tokens must be >= 1, got -5");
  CHECK(error({{"messages", user}, {"chat_template_kwargs", 3}}, &renderer).message ==
        "chat_template_kwargs must be an object, got 3");
  ApiError rejected = error({{"messages", {{{"role", "user"}, {"content", nullptr}}}}}, &renderer);
  CHECK(rejected.http_status == 400);
  CHECK(rejected.message == "chat template: content must be a string");
  const Json image = {{{"role", "user"},
                       {"content", {{{"type", "image_url"}, {"image_url", {{"url", "x"}}}}}}}};
  CHECK(error({{"messages", image}}, &renderer).message ==
        "messages[0].content[0].type: only \"text\" parts are supported, got \"image_url\"");
  ApiError no_template = error({{"messages", user}}, nullptr);
  CHECK(no_template.http_status == 400);
  CHECK(no_template.code == "chat_template_unavailable");
}

TEST_CASE("status to HTTP mapping and the error shape") {
  CHECK(ToApiError(absl::ResourceExhaustedError("full")).http_status == 429);
  CHECK(ToApiError(absl::UnavailableError("draining")).http_status == 503);
  CHECK(ToApiError(absl::UnauthenticatedError("key")).http_status == 401);
  CHECK(ToApiError(absl::NotFoundError("x")).http_status == 404);
  CHECK(ToApiError(absl::CancelledError("x")).http_status == 499);
  CHECK(ToApiError(absl::DeadlineExceededError("x")).http_status == 504);
  CHECK(ToApiError(absl::InternalError("x")).http_status == 500);
  Json shape = ErrorJson(ToApiError(InvalidParam("top_p", "top_p must be ...")));
  CHECK(shape == Json::parse(R"({"error": {"message": "top_p must be ...",
      "type": "invalid_request_error", "param": "top_p", "code": null}})"));
}

}  // namespace
}  // namespace kestrel::server::http

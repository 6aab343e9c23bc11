#include "server/request_convert.h"

#include <catch2/catch.hpp>

#include "model/synthetic.h"

namespace kestrel::server {
namespace {

const tokenizer::Tokenizer& ByteTokenizer() {
  static const tokenizer::Tokenizer* tokenizer = [] {
    auto t = tokenizer::Tokenizer::FromJson(model::SyntheticTokenizerJson(258), "", {});
    REQUIRE(t.ok());
    return t->release();
  }();
  return *tokenizer;
}

RequestContext Context(const ChatRenderer* chat_renderer = nullptr) {
  RequestContext context;
  context.tokenizer = &ByteTokenizer();
  context.chat_renderer = chat_renderer;
  return context;
}

TEST_CASE("a text prompt is tokenized with special-token text kept as plain text") {
  kestrel::v1::GenerateRequest request;
  request.set_text("hi</s>");
  auto p = ToGenerateParams(request, Context(), absl::InfiniteFuture());
  REQUIRE(p.ok());
  // Six bytes, not "hi" + the </s> control token.
  CHECK(p->prompt_ids == std::vector<int32_t>{'h', 'i', '<', '/', 's', '>'});
}

TEST_CASE("defaults follow the API documentation") {
  kestrel::v1::GenerateRequest request;
  request.mutable_token_ids()->add_ids(5);
  auto p = ToGenerateParams(request, Context(), absl::InfiniteFuture());
  REQUIRE(p.ok());
  CHECK(p->sampling.temperature == 1.0f);
  CHECK(p->sampling.top_p == 1.0f);
  CHECK(p->sampling.repetition_penalty == 1.0f);
  CHECK_FALSE(p->sampling.seed.has_value());
  CHECK(p->n == 1);
  CHECK_FALSE(p->max_tokens.has_value());
  CHECK(p->skip_special_tokens);
  CHECK_FALSE(p->sampling.logprobs);
}

TEST_CASE("every field is carried over") {
  kestrel::v1::GenerateRequest request;
  request.set_request_id("abc");
  request.mutable_token_ids()->add_ids(5);
  auto* s = request.mutable_sampling();
  s->set_temperature(0.5f);
  s->set_top_k(40);
  s->set_top_p(0.9f);
  s->set_min_p(0.05f);
  s->set_repetition_penalty(1.1f);
  s->set_presence_penalty(0.5f);
  s->set_frequency_penalty(-0.5f);
  (*s->mutable_logit_bias())[7] = 2.5f;
  s->set_seed(42);
  s->set_n(2);
  s->set_num_speculative_tokens(3);
  auto* stop = request.mutable_stopping();
  stop->set_max_tokens(9);
  stop->set_min_tokens(2);
  stop->add_stop("END");
  stop->add_stop_token_ids(3);
  stop->set_ignore_eos(true);
  request.mutable_output()->set_top_logprobs(3);
  request.set_priority(4);
  request.set_cache_salt("tenant");
  const absl::Time deadline = absl::Now() + absl::Seconds(3);
  auto p = ToGenerateParams(request, Context(), deadline);
  REQUIRE(p.ok());
  CHECK(p->request_id == "abc");
  CHECK(p->sampling.temperature == 0.5f);
  CHECK(p->sampling.top_k == 40);
  CHECK(p->sampling.top_p == 0.9f);
  CHECK(p->sampling.min_p == 0.05f);
  CHECK(p->sampling.repetition_penalty == 1.1f);
  CHECK(p->sampling.presence_penalty == 0.5f);
  CHECK(p->sampling.frequency_penalty == -0.5f);
  REQUIRE(p->sampling.logit_bias.size() == 1);
  CHECK(p->sampling.logit_bias[0] == std::pair<int32_t, float>(7, 2.5f));
  CHECK(p->sampling.seed == 42u);
  CHECK(p->n == 2);
  CHECK(p->num_speculative_tokens == 3);
  CHECK(p->max_tokens == 9);
  CHECK(p->min_tokens == 2);
  CHECK(p->stop == std::vector<std::string>{"END"});
  CHECK(p->stop_token_ids == std::vector<int32_t>{3});
  CHECK(p->ignore_eos);
  CHECK(p->sampling.logprobs);
  CHECK(p->sampling.top_logprobs == 3);
  CHECK(p->priority == 4);
  CHECK(p->cache_salt == "tenant");
  CHECK(p->deadline == deadline);
}

TEST_CASE("malformed prompts are refused naming the field") {
  kestrel::v1::GenerateRequest none;
  auto p = ToGenerateParams(none, Context(), absl::InfiniteFuture());
  CHECK(p.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(p.status().message()), Catch::Contains("prompt is missing"));

  kestrel::v1::GenerateRequest empty_ids;
  empty_ids.mutable_token_ids();
  p = ToGenerateParams(empty_ids, Context(), absl::InfiniteFuture());
  CHECK_THAT(std::string(p.status().message()), Catch::Contains("token_ids.ids"));

  kestrel::v1::GenerateRequest bad_utf8;
  bad_utf8.set_text("\xff\xfe");
  p = ToGenerateParams(bad_utf8, Context(), absl::InfiniteFuture());
  CHECK(p.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(p.status().message()), Catch::StartsWith("text"));

  kestrel::v1::GenerateRequest bad_k;
  bad_k.set_text("x");
  bad_k.mutable_sampling()->set_top_k(-3);
  p = ToGenerateParams(bad_k, Context(), absl::InfiniteFuture());
  CHECK_THAT(std::string(p.status().message()), Catch::Contains("sampling.top_k must be >= 0, got -3"));
}

TEST_CASE("unset sampling fields take the model's defaults, set ones override them") {
  RequestContext context = Context();
  context.sampling_defaults.temperature = 0.6f;
  context.sampling_defaults.top_p = 0.9f;
  context.sampling_defaults.top_k = 20;
  context.sampling_defaults.min_p = 0.05f;
  context.sampling_defaults.repetition_penalty = 1.05f;
  kestrel::v1::GenerateRequest request;
  request.mutable_token_ids()->add_ids(5);
  auto p = ToGenerateParams(request, context, absl::InfiniteFuture());
  REQUIRE(p.ok());
  CHECK(p->sampling.temperature == 0.6f);
  CHECK(p->sampling.top_p == 0.9f);
  CHECK(p->sampling.top_k == 20);
  CHECK(p->sampling.min_p == 0.05f);
  CHECK(p->sampling.repetition_penalty == 1.05f);

  // Explicit values win, including the ones that disable a filter.
  kestrel::v1::SamplingParams* s = request.mutable_sampling();
  s->set_temperature(0);
  s->set_top_p(1);
  s->set_top_k(0);
  s->set_min_p(0);
  s->set_repetition_penalty(1);
  p = ToGenerateParams(request, context, absl::InfiniteFuture());
  REQUIRE(p.ok());
  CHECK(p->sampling.temperature == 0.0f);
  CHECK(p->sampling.top_p == 1.0f);
  CHECK(p->sampling.top_k == 0);
  CHECK(p->sampling.min_p == 0.0f);
  CHECK(p->sampling.repetition_penalty == 1.0f);
}

TEST_CASE("a chat prompt is rendered by the model's template, special tokens parsed") {
  chat::SpecialTokens special;
  special.tokens["bos_token"] = "<s>";
  auto chat_template = chat::ChatTemplate::Create(
      "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
      "{% if add_generation_prompt %}assistant:{% endif %}",
      special);
  REQUIRE(chat_template.ok());
  const TemplateChatRenderer renderer(std::move(*chat_template));
  kestrel::v1::GenerateRequest request;
  auto* message = request.mutable_chat()->add_messages();
  message->set_role("user");
  message->set_content("hi</s>");
  request.set_add_special_tokens(true);  // does not apply: the template writes BOS
  const RequestContext with_template = Context(&renderer);
  auto p = ToGenerateParams(request, with_template, absl::InfiniteFuture());
  REQUIRE(p.ok());
  std::vector<int32_t> expected = {256};  // <s>, written by the template
  for (char c : std::string("user: hi")) expected.push_back(c);
  expected.push_back(257);  // </s> in a message is parsed, as transformers does
  for (char c : std::string("\nassistant:")) expected.push_back(c);
  CHECK(p->prompt_ids == expected);

  // A model without a template refuses chat prompts; errors name the field.
  p = ToGenerateParams(request, Context(), absl::InfiniteFuture());
  CHECK(p.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(p.status().message()), Catch::StartsWith("chat: the model has no chat template"));
  request.mutable_chat()->set_tools_json("not json");
  p = ToGenerateParams(request, with_template, absl::InfiniteFuture());
  CHECK(p.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(p.status().message()), Catch::StartsWith("chat.tools_json: not valid JSON"));
  request.mutable_chat()->clear_tools_json();
  request.mutable_chat()->clear_messages();
  p = ToGenerateParams(request, with_template, absl::InfiniteFuture());
  CHECK(p.status().message() == "chat.messages must hold at least one message, got 0");
}

}  // namespace
}  // namespace kestrel::server

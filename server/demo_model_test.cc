// The quick start, checked: kestrel-server with its default --model=demo
// (stories260K, embedded in the binary; no shared data needed) answers a
// greedy "Once upon a time" with llama2.c's own continuation, and the
// `kestrel` command line prints an English story that ends by itself.
#include <cctype>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <grpcpp/client_context.h>

#include "kestrel/v1/kestrel.grpc.pb.h"
#include "model/demo/stories260K_golden.h"
#include "server/test_server.h"
#include "testing/subprocess.h"

namespace kestrel::server {
namespace {

using namespace std::chrono_literals;
namespace golden = ::kestrel::model::demo;

// What a user notices first: every character is printable ASCII or a
// newline, and the text is words (letters, with punctuation around them).
// `text` is the prompt and its continuation, so that the continuation's
// leading comma belongs to a word.
void CheckEnglishText(const std::string& text) {
  INFO("text: " << text);
  int letters = 0;
  for (unsigned char c : text) {
    INFO("character " << static_cast<int>(c));
    CHECK(((c >= 0x20 && c < 0x7f) || c == '\n'));
    if (std::isalpha(c)) ++letters;
  }
  CHECK(letters > static_cast<int>(text.size()) * 2 / 3);
  std::vector<std::string> words;
  std::string word;
  for (char c : text + " ") {
    if (c == ' ' || c == '\n') {
      if (!word.empty()) words.push_back(word);
      word.clear();
    } else {
      word += c;
    }
  }
  CHECK(words.size() > 20);
  for (const std::string& w : words) {
    INFO("word: " << w);
    int alpha = 0;
    for (char c : w) alpha += std::isalpha(static_cast<unsigned char>(c)) ? 1 : 0;
    CHECK(alpha > 0);
  }
}

TEST_CASE("the default --model=demo tells llama2.c's stories260K story") {
  // No --model: what scripts/serve starts.
  std::optional<TestServer> server = TestServer::Start({"--threads=2"});
  REQUIRE(server.has_value());
  auto stub = kestrel::v1::Kestrel::NewStub(server->Channel());

  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    kestrel::v1::GetServerInfoResponse info;
    REQUIRE(stub->GetServerInfo(&context, {}, &info).ok());
    CHECK(info.config().at("model") == "demo");
  }
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    kestrel::v1::ModelInfo info;
    REQUIRE(stub->GetModelInfo(&context, {}, &info).ok());
    CHECK(info.name() == "stories260K-demo");
    CHECK(info.vocab_size() == 512);
    CHECK(info.context_length() == 512);
    CHECK(info.bos_token_id() == 1);
    // </s>, and BOS: where the model starts its next story.
    CHECK(std::vector<int32_t>(info.eos_token_ids().begin(), info.eos_token_ids().end()) ==
          std::vector<int32_t>{2, 1});
  }

  SECTION("a greedy request is llama2.c's continuation, token for token") {
    kestrel::v1::GenerateRequest request;
    request.set_text(golden::kGoldenPrompt);
    request.mutable_sampling()->set_temperature(0.0f);
    request.mutable_stopping()->set_max_tokens(static_cast<int>(golden::kGoldenOutputIds.size()));
    request.mutable_output()->set_echo_prompt(true);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 60s);
    kestrel::v1::CompleteResponse response;
    grpc::Status status = stub->Complete(&context, request, &response);
    INFO(status.error_message());
    REQUIRE(status.ok());
    CHECK(std::vector<int32_t>(response.prompt().token_ids().begin(),
                               response.prompt().token_ids().end()) == golden::kGoldenPromptIds);
    REQUIRE(response.completions_size() == 1);
    const kestrel::v1::Completion& completion = response.completions(0);
    CHECK(std::vector<int32_t>(completion.token_ids().begin(), completion.token_ids().end()) ==
          golden::kGoldenOutputIds);
    CHECK(completion.text() == golden::kGoldenOutputText);
    CheckEnglishText(golden::kGoldenPrompt + completion.text());
  }

  SECTION("`kestrel generate` prints a whole story, which ends by itself") {
    auto run = ::kestrel::testing::RunAndCapture(
        {::kestrel::testing::RunfilePath("client/kestrel").string(), "generate",
         "--address=" + server->Address(), "--temperature=0", golden::kGoldenPrompt},
        120s);
    REQUIRE(run.has_value());
    INFO("stdout: " << run->out << "\nstderr: " << run->err);
    CHECK(run->exit_status == 0);
    // It starts as llama2.c's continuation does, and stops at the end of
    // the story (EOS), well before the context is full.
    CHECK(run->out.rfind(golden::kGoldenOutputText, 0) == 0);
    CHECK(run->err.find("FINISH_REASON_EOS") != std::string::npos);
    REQUIRE(run->out.size() >= 2);
    CHECK(run->out.back() == '\n');
    const char last = run->out[run->out.size() - 2];
    CHECK((last == '.' || last == '!' || last == '"'));
    CheckEnglishText(golden::kGoldenPrompt + run->out);
  }
}

}  // namespace
}  // namespace kestrel::server

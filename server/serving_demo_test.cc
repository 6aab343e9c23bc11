// The serving path on the built-in random model (--model=random: no shared
// data needed, and a fixed shape the cases rely on: vocab 320, context 1024,
// no early EOS under ignore_eos): invalid requests, Abort, n > 1, queue
// limits, and drain on SIGTERM. The real demo model has its own test
// (demo_model_test).
#include <atomic>
#include <csignal>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <grpcpp/client_context.h>

#include "grpc/health/v1/health.grpc.pb.h"
#include "kestrel/v1/kestrel.grpc.pb.h"
#include "server/test_server.h"

namespace kestrel::server {
namespace {

using namespace std::chrono_literals;
using kestrel::v1::GenerateRequest;
using kestrel::v1::GenerateResponse;

struct StreamResult {
  grpc::Status status;
  int tokens = 0;
  std::vector<kestrel::v1::Finished> finished;
};

StreamResult Generate(kestrel::v1::Kestrel::Stub& stub, const GenerateRequest& request,
                      std::atomic<int>* started = nullptr, bool wait_for_ready = true) {
  StreamResult result;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 60s);
  // Many clients connect at once on a loaded machine: a failed connection
  // attempt is retried until the deadline, as a patient client would.
  context.set_wait_for_ready(wait_for_ready);
  auto reader = stub.Generate(&context, request);
  GenerateResponse response;
  bool counted = false;
  while (reader->Read(&response)) {
    if (response.has_chunk()) {
      result.tokens += response.chunk().token_ids_size();
      if (!counted && started != nullptr) {
        started->fetch_add(1);
        counted = true;
      }
    }
    if (response.has_finished()) result.finished.push_back(response.finished());
  }
  result.status = reader->Finish();
  return result;
}

GenerateRequest Ids(std::vector<int32_t> ids, int max_tokens) {
  GenerateRequest request;
  for (int32_t id : ids) request.mutable_token_ids()->add_ids(id);
  request.mutable_stopping()->set_max_tokens(max_tokens);
  request.mutable_stopping()->set_ignore_eos(true);
  return request;
}

TestServer StartRandom(std::vector<std::string> args = {}) {
  args.push_back("--model=random");
  std::optional<TestServer> server = TestServer::Start(args);
  REQUIRE(server.has_value());
  return std::move(*server);
}

TEST_CASE("invalid requests get INVALID_ARGUMENT naming the field, and the server keeps serving") {
  TestServer server = StartRandom({"--max-request-bytes=65536"});
  auto stub = kestrel::v1::Kestrel::NewStub(server.Channel());
  struct Case {
    std::string name;
    std::function<void(GenerateRequest&)> edit;
    grpc::StatusCode code;
    std::string message;
  };
  using SC = grpc::StatusCode;
  const std::vector<Case> cases = {
      {"no prompt", [](GenerateRequest& r) { r.clear_token_ids(); }, SC::INVALID_ARGUMENT, "prompt is missing"},
      {"empty text", [](GenerateRequest& r) { r.set_text(""); }, SC::INVALID_ARGUMENT, "text must not be empty"},
      {"empty ids", [](GenerateRequest& r) { r.mutable_token_ids()->clear_ids(); }, SC::INVALID_ARGUMENT, "token_ids.ids"},
      {"negative id", [](GenerateRequest& r) { r.mutable_token_ids()->set_ids(0, -1); }, SC::INVALID_ARGUMENT, "token_ids[0] = -1"},
      {"id beyond vocab", [](GenerateRequest& r) { r.mutable_token_ids()->set_ids(1, 320); }, SC::INVALID_ARGUMENT, "token_ids[1] = 320"},
      {"prompt too long", [](GenerateRequest& r) { for (int i = 0; i < 1100; ++i) r.mutable_token_ids()->add_ids(5); }, SC::INVALID_ARGUMENT, "context length"},
      {"negative stop token", [](GenerateRequest& r) { r.mutable_stopping()->add_stop_token_ids(-7); }, SC::INVALID_ARGUMENT, "stop_token_ids[0] = -7"},
      {"max_tokens 0", [](GenerateRequest& r) { r.mutable_stopping()->set_max_tokens(0); }, SC::INVALID_ARGUMENT, "max_tokens must be >= 1, got 0"},
      {"max_tokens beyond context", [](GenerateRequest& r) { r.mutable_stopping()->set_max_tokens(5000); }, SC::INVALID_ARGUMENT, "max_tokens = 5000"},
      {"min_tokens > max_tokens", [](GenerateRequest& r) { r.mutable_stopping()->set_min_tokens(50); }, SC::INVALID_ARGUMENT, "min_tokens"},
      {"temperature negative", [](GenerateRequest& r) { r.mutable_sampling()->set_temperature(-0.5f); }, SC::INVALID_ARGUMENT, "temperature"},
      {"temperature NaN", [](GenerateRequest& r) { r.mutable_sampling()->set_temperature(std::nanf("")); }, SC::INVALID_ARGUMENT, "temperature"},
      {"top_p zero", [](GenerateRequest& r) { r.mutable_sampling()->set_top_p(0.0f); }, SC::INVALID_ARGUMENT, "top_p"},
      {"top_p above 1", [](GenerateRequest& r) { r.mutable_sampling()->set_top_p(1.5f); }, SC::INVALID_ARGUMENT, "top_p"},
      {"top_k negative", [](GenerateRequest& r) { r.mutable_sampling()->set_top_k(-2); }, SC::INVALID_ARGUMENT, "top_k"},
      {"min_p above 1", [](GenerateRequest& r) { r.mutable_sampling()->set_min_p(2.0f); }, SC::INVALID_ARGUMENT, "min_p"},
      {"repetition_penalty 0", [](GenerateRequest& r) { r.mutable_sampling()->set_repetition_penalty(0.0f); }, SC::INVALID_ARGUMENT, "repetition_penalty"},
      {"presence_penalty 3", [](GenerateRequest& r) { r.mutable_sampling()->set_presence_penalty(3.0f); }, SC::INVALID_ARGUMENT, "presence_penalty"},
      {"frequency_penalty -3", [](GenerateRequest& r) { r.mutable_sampling()->set_frequency_penalty(-3.0f); }, SC::INVALID_ARGUMENT, "frequency_penalty"},
      {"logit_bias token", [](GenerateRequest& r) { (*r.mutable_sampling()->mutable_logit_bias())[9999] = 1.0f; }, SC::INVALID_ARGUMENT, "logit_bias"},
      {"logit_bias value", [](GenerateRequest& r) { (*r.mutable_sampling()->mutable_logit_bias())[5] = 500.0f; }, SC::INVALID_ARGUMENT, "logit_bias"},
      {"n zero", [](GenerateRequest& r) { r.mutable_sampling()->set_n(0); }, SC::INVALID_ARGUMENT, "sampling.n"},
      {"n too many", [](GenerateRequest& r) { r.mutable_sampling()->set_n(100000); }, SC::INVALID_ARGUMENT, "sampling.n"},
      {"top_logprobs 50", [](GenerateRequest& r) { r.mutable_output()->set_top_logprobs(50); }, SC::INVALID_ARGUMENT, "top_logprobs"},
      {"empty stop string", [](GenerateRequest& r) { r.mutable_stopping()->add_stop(""); }, SC::INVALID_ARGUMENT, "stopping.stop[0]"},
      {"too many stop strings", [](GenerateRequest& r) { for (int i = 0; i < 17; ++i) r.mutable_stopping()->add_stop("s" + std::to_string(i)); }, SC::INVALID_ARGUMENT, "stopping.stop has 17"},
      {"stop token beyond vocab", [](GenerateRequest& r) { r.mutable_stopping()->add_stop_token_ids(4000); }, SC::INVALID_ARGUMENT, "stop_token_ids[0] = 4000"},
      {"long request id", [](GenerateRequest& r) { r.set_request_id(std::string(300, 'x')); }, SC::INVALID_ARGUMENT, "request_id"},
      {"long cache salt", [](GenerateRequest& r) { r.set_cache_salt(std::string(300, 'x')); }, SC::INVALID_ARGUMENT, "cache_salt"},
      {"message too large", [](GenerateRequest& r) { r.set_text(std::string(100000, 'a')); }, SC::RESOURCE_EXHAUSTED, ""},
  };
  REQUIRE(cases.size() >= 25);
  for (const Case& c : cases) {
    INFO(c.name);
    GenerateRequest request = Ids({10, 20, 30}, 8);
    c.edit(request);
    StreamResult streamed = Generate(*stub, request);
    CHECK(streamed.status.error_code() == c.code);
    CHECK_THAT(streamed.status.error_message(), Catch::Contains(c.message));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 30s);
    kestrel::v1::CompleteResponse complete;
    grpc::Status unary = stub->Complete(&context, request, &complete);
    CHECK(unary.error_code() == c.code);
    // Still serving everyone else.
    StreamResult ok = Generate(*stub, Ids({1, 2, 3}, 2));
    CHECK(ok.status.ok());
    CHECK(ok.tokens == 2);
  }
  {
    grpc::ClientContext context;
    kestrel::v1::DetokenizeRequest request;
    request.add_token_ids(7);
    request.add_token_ids(99999);
    kestrel::v1::DetokenizeResponse response;
    grpc::Status status = stub->Detokenize(&context, request, &response);
    CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(status.error_message(), Catch::Contains("token_ids[1] = 99999"));
  }
  {
    grpc::ClientContext context;
    kestrel::v1::AbortResponse response;
    grpc::Status status = stub->Abort(&context, {}, &response);
    CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  CHECK(server.process->Running());
}

TEST_CASE("Abort ends a request by id; n > 1 streams one finish per sample") {
  TestServer server = StartRandom();
  auto stub = kestrel::v1::Kestrel::NewStub(server.Channel());
  GenerateRequest request = Ids({5, 6, 7}, 1000);
  request.set_request_id("to-abort");
  std::atomic<int> started{0};
  StreamResult aborted;
  std::thread t([&] { aborted = Generate(*kestrel::v1::Kestrel::NewStub(server.Channel()), request, &started); });
  while (started.load() == 0) std::this_thread::sleep_for(1ms);
  grpc::ClientContext context;
  kestrel::v1::AbortRequest abort;
  abort.set_request_id("to-abort");
  kestrel::v1::AbortResponse response;
  REQUIRE(stub->Abort(&context, abort, &response).ok());
  CHECK(response.found());
  t.join();
  CHECK(aborted.status.error_code() == grpc::StatusCode::CANCELLED);
  CHECK(aborted.tokens < 1000);

  grpc::ClientContext again;
  REQUIRE(stub->Abort(&again, abort, &response).ok());
  CHECK_FALSE(response.found());

  // Greedy samples of one prompt share its KV blocks copy-on-write; each
  // must still continue exactly as a lone greedy request (a wrong block copy
  // would make the samples diverge). 21 prompt tokens end mid-block. The
  // random model attends almost uniformly, so this catches a lost V copy; the
  // stories260K test (serving_test) also catches a lost K copy.
  std::vector<int32_t> prompt;
  for (int i = 0; i < 21; ++i) prompt.push_back(40 + i);
  GenerateRequest single = Ids(prompt, 20);
  single.mutable_sampling()->set_temperature(0.0f);
  // The pair runs first: had the lone request run before, its freed blocks
  // would still hold this prompt's KV and hide a missing copy.
  GenerateRequest pair = single;
  pair.mutable_sampling()->set_n(2);
  kestrel::v1::CompleteResponse pair_response;
  {
    grpc::ClientContext context;
    REQUIRE(stub->Complete(&context, pair, &pair_response).ok());
    REQUIRE(pair_response.completions_size() == 2);
  }
  std::vector<int32_t> alone;
  {
    grpc::ClientContext context;
    kestrel::v1::CompleteResponse response;
    REQUIRE(stub->Complete(&context, single, &response).ok());
    alone.assign(response.completions(0).token_ids().begin(), response.completions(0).token_ids().end());
  }
  for (int i = 0; i < 2; ++i) {
    INFO("sample " << i);
    CHECK(std::vector<int32_t>(pair_response.completions(i).token_ids().begin(),
                               pair_response.completions(i).token_ids().end()) == alone);
  }

  GenerateRequest n3 = Ids({9, 8, 7, 6}, 12);
  n3.mutable_sampling()->set_n(3);
  n3.mutable_sampling()->set_seed(5);
  StreamResult three = Generate(*stub, n3);
  REQUIRE(three.status.ok());
  CHECK(three.finished.size() == 3);
  CHECK(three.tokens == 36);
}

TEST_CASE("a full queue answers RESOURCE_EXHAUSTED") {
  TestServer server = StartRandom({"--max-num-seqs=1", "--max-num-batched-tokens=16",
                                 "--max-queued-requests=2"});
  std::vector<StreamResult> results(12);
  std::vector<std::thread> threads;
  for (int i = 0; i < 12; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Generate(*kestrel::v1::Kestrel::NewStub(server.Channel()), Ids({1, 2, 3, i}, 200));
    });
  }
  for (std::thread& t : threads) t.join();
  int ok = 0, exhausted = 0;
  for (const StreamResult& r : results) {
    if (r.status.ok()) ++ok;
    if (r.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++exhausted;
      CHECK_THAT(r.status.error_message(), Catch::Contains("--max-queued-requests=2"));
    }
  }
  CHECK(ok >= 1);
  CHECK(exhausted >= 1);
  CHECK(ok + exhausted == 12);
}

TEST_CASE("SIGTERM drains: active streams complete, new requests get UNAVAILABLE, exit 0") {
  TestServer server = StartRandom({"--drain-timeout=60s"});
  std::atomic<int> started{0};
  std::vector<StreamResult> results(16);
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Generate(*kestrel::v1::Kestrel::NewStub(server.Channel()), Ids({3, 4, 5, i}, 400), &started);
    });
  }
  while (started.load() < 16) std::this_thread::sleep_for(1ms);
  // A load balancer's view: a health Watch opened before the signal.
  auto health_stub = grpc::health::v1::Health::NewStub(server.Channel());
  grpc::ClientContext watch_context;
  watch_context.set_deadline(std::chrono::system_clock::now() + 60s);
  auto watch = health_stub->Watch(&watch_context, {});
  grpc::health::v1::HealthCheckResponse health;
  REQUIRE(watch->Read(&health));
  CHECK(health.status() == grpc::health::v1::HealthCheckResponse::SERVING);
  REQUIRE(server.process->Signal(SIGTERM));
  // During the drain: health says NOT_SERVING and new work is refused (the
  // listener is closed, so a proxy retries the connection elsewhere).
  const bool not_serving =
      watch->Read(&health) && health.status() == grpc::health::v1::HealthCheckResponse::NOT_SERVING;
  bool refused = false;
  auto late_stub = kestrel::v1::Kestrel::NewStub(server.Channel());
  for (int i = 0; i < 200 && !refused; ++i) {
    // Fail fast: the server may be gone once the drain completes.
    StreamResult late = Generate(*late_stub, Ids({1}, 2), nullptr, /*wait_for_ready=*/false);
    if (late.status.error_code() == grpc::StatusCode::UNAVAILABLE) refused = true;
    std::this_thread::sleep_for(5ms);
  }
  watch_context.TryCancel();
  watch->Finish();
  CHECK(refused);
  CHECK(not_serving);
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < 16; ++i) {
    INFO("stream " << i << ": " << results[i].status.error_message());
    CHECK(results[i].status.ok());
    CHECK(results[i].tokens == 400);
  }
  std::optional<int> exit_status = server.process->WaitForExit(60s);
  INFO("log:\n" << server.Log());
  REQUIRE(exit_status.has_value());
  CHECK(*exit_status == 0);
}

TEST_CASE("past the drain timeout the remaining streams end UNAVAILABLE and the server exits 0") {
  TestServer server = StartRandom({"--drain-timeout=100ms", "--max-num-seqs=2"});
  std::atomic<int> started{0};
  std::vector<StreamResult> results(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Generate(*kestrel::v1::Kestrel::NewStub(server.Channel()), Ids({3, 4, 5, i}, 1000), &started);
    });
  }
  while (started.load() < 2) std::this_thread::sleep_for(1ms);
  REQUIRE(server.process->Signal(SIGTERM));
  for (std::thread& t : threads) t.join();
  int unavailable = 0;
  for (const StreamResult& r : results) {
    if (r.status.error_code() == grpc::StatusCode::UNAVAILABLE) ++unavailable;
  }
  CHECK(unavailable >= 2);
  std::optional<int> exit_status = server.process->WaitForExit(60s);
  REQUIRE(exit_status.has_value());
  CHECK(*exit_status == 0);
}

}  // namespace
}  // namespace kestrel::server

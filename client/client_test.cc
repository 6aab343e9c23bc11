// Tests of the client library against the scripted fake server.
#include "client/client.h"

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "client/fake_kestrel_server.h"

// Under --config=tsan: gRPC's callback completion queue starts "nexting"
// threads inside libgpr that ThreadSanitizer at times reports as leaked at
// exit (gRPC joins them when its last server is released, which TSan does
// not always see, since Debian's gRPC is not instrumented). Our own
// threads are still checked: only leaks created inside libgpr are
// suppressed. TSan reads this hook on start-up; other builds ignore it.
extern "C" const char* __tsan_default_suppressions() { return "thread:libgpr.so\n"; }

namespace kestrel::client {
namespace {

namespace v1 = ::kestrel::v1;
using testing::FakeFault;
using testing::FakeKestrelServer;

// absl::Notification's interface over std::mutex, which TSan sees through
// (Debian's Abseil is not built with TSan).
class Latch {
 public:
  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    notified_ = true;
    cv_.notify_all();
  }
  bool HasBeenNotified() {
    std::lock_guard<std::mutex> lock(mu_);
    return notified_;
  }
  bool WaitForNotificationWithTimeout(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [this] { return notified_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool notified_ = false;
};

// Options with a few fields set (designated initializers would trip
// -Wmissing-field-initializers).
template <typename T, typename F>
T With(F set) {
  T options;
  set(options);
  return options;
}

std::unique_ptr<FakeKestrelServer> StartFake(FakeKestrelServer::Options options = {}) {
  auto fake = FakeKestrelServer::Create(options);
  REQUIRE(fake.ok());
  return std::move(fake).value();
}

std::unique_ptr<Client> Connect(const std::string& address, ClientOptions options = {}) {
  options.address = address;
  options.initial_backoff = absl::Milliseconds(5);
  auto client = Client::Create(options);
  REQUIRE(client.ok());
  return std::move(client).value();
}

// Polls (up to 10 s) until the fake has ended every Generate call it got.
bool WaitUntilAllFinished(const FakeKestrelServer& fake) {
  for (int i = 0; i < 1000; ++i) {
    std::vector<testing::FakeCallRecord> calls = fake.generate_calls();
    if (std::all_of(calls.begin(), calls.end(), [](const auto& call) { return call.finished; })) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

v1::GenerateRequest Request(int max_tokens) {
  v1::GenerateRequest request;
  request.set_text("Once upon a time");
  request.mutable_stopping()->set_max_tokens(max_tokens);
  return request;
}

TEST_CASE("Generate streams every chunk in order, then Finished") {
  FakeKestrelServer::Options options;
  options.ttft = absl::Milliseconds(5);
  options.itl = absl::Milliseconds(2);
  options.required_api_key = "secret";
  auto fake = StartFake(options);
  auto client =
      Connect(fake->address(), With<ClientOptions>([](auto& o) { o.api_key = "secret"; }));

  std::string text;
  std::vector<int> ids;
  int finished = 0;
  absl::Status status = client->Generate(Request(6), [&](const v1::GenerateResponse& event) {
    if (event.has_chunk()) {
      text += event.chunk().text();
      for (int id : event.chunk().token_ids()) ids.push_back(id);
    }
    if (event.has_finished()) {
      ++finished;
      CHECK(event.finished().reason() == v1::FINISH_REASON_LENGTH);
      CHECK(event.finished().usage().completion_tokens() == 6);
    }
    return true;
  });
  REQUIRE(status.ok());
  CHECK(text == " Once upon a time Once upon");
  CHECK(ids == std::vector<int>{1000, 1001, 1002, 1003, 1004, 1005});
  CHECK(finished == 1);
  REQUIRE(fake->generate_calls().size() == 1);
  CHECK(fake->generate_calls()[0].authorization == "Bearer secret");
}

TEST_CASE("A wrong API key is UNAUTHENTICATED, and the message names the method") {
  FakeKestrelServer::Options options;
  options.required_api_key = "secret";
  auto fake = StartFake(options);
  auto client = Connect(fake->address(), With<ClientOptions>([](auto& o) { o.api_key = "wrong"; }));
  absl::Status status = client->Generate(Request(2), [](const auto&) { return true; });
  CHECK(status.code() == absl::StatusCode::kUnauthenticated);
  CHECK(status.message().find("Generate to 127.0.0.1:") != std::string::npos);
  auto tokens = client->Tokenize(v1::TokenizeRequest());
  CHECK(tokens.status().code() == absl::StatusCode::kUnauthenticated);
}

TEST_CASE("Returning false from the event callback cancels the stream") {
  FakeKestrelServer::Options options;
  options.ttft = absl::Milliseconds(5);
  options.itl = absl::Milliseconds(5);
  auto fake = StartFake(options);
  auto client = Connect(fake->address());
  int chunks = 0;
  absl::Status status = client->Generate(Request(1000), [&](const v1::GenerateResponse& event) {
    if (event.has_chunk()) ++chunks;
    return chunks < 2;
  });
  CHECK(status.code() == absl::StatusCode::kCancelled);
  CHECK(chunks == 2);
  // The server side sees the cancel: its call ends, marked cancelled.
  REQUIRE(WaitUntilAllFinished(*fake));
  CHECK(fake->active_streams() == 0);
  REQUIRE(fake->generate_calls().size() == 1);
  CHECK(fake->generate_calls()[0].cancelled);
}

TEST_CASE("Cancel from another thread ends a stream; done runs once") {
  FakeKestrelServer::Options options;
  options.ttft = absl::Milliseconds(1);
  options.itl = absl::Milliseconds(5);
  auto fake = StartFake(options);
  auto client = Connect(fake->address());
  Latch first_chunk;
  std::atomic<int> done_calls{0};
  auto stream = client->StartGenerate(
      Request(100000),
      [&](const v1::GenerateResponse&) {
        if (!first_chunk.HasBeenNotified()) first_chunk.Notify();
        return true;
      },
      [&](const absl::Status& status) {
        CHECK(status.code() == absl::StatusCode::kCancelled);
        done_calls.fetch_add(1);
      });
  REQUIRE(first_chunk.WaitForNotificationWithTimeout(absl::Seconds(10)));
  CHECK_FALSE(stream->Done());
  std::thread([&] { stream->Cancel(); }).join();
  CHECK(stream->Wait().code() == absl::StatusCode::kCancelled);
  CHECK(stream->Done());
  CHECK(done_calls.load() == 1);
}

TEST_CASE("Destroying a running stream cancels it") {
  auto fake = StartFake(With<FakeKestrelServer::Options>([](auto& o) {
    o.ttft = absl::Milliseconds(1);
    o.itl = absl::Milliseconds(5);
  }));
  auto client = Connect(fake->address());
  Latch first_chunk;
  auto stream = client->StartGenerate(Request(100000), [&](const auto&) {
    if (!first_chunk.HasBeenNotified()) first_chunk.Notify();
    return true;
  });
  REQUIRE(first_chunk.WaitForNotificationWithTimeout(absl::Seconds(10)));
  stream.reset();
  REQUIRE(WaitUntilAllFinished(*fake));
  REQUIRE(fake->generate_calls().size() == 1);
  CHECK(fake->generate_calls()[0].cancelled);
}

TEST_CASE("A per-call deadline ends a call to a server that stopped answering") {
  auto fake = StartFake();
  fake->SetHanging(true);
  auto client = Connect(fake->address());
  const absl::Time start = absl::Now();
  absl::Status status = client->Generate(Request(4), [](const auto&) { return true; },
                                         {.timeout = absl::Milliseconds(200)});
  CHECK(status.code() == absl::StatusCode::kDeadlineExceeded);
  auto info = client->GetModelInfo({.timeout = absl::Milliseconds(200)});
  CHECK(info.status().code() == absl::StatusCode::kDeadlineExceeded);
  auto complete = client->Complete(Request(4), {.timeout = absl::Milliseconds(200)});
  CHECK(complete.status().code() == absl::StatusCode::kDeadlineExceeded);
  // Three calls of 200 ms each; generous bound for a loaded machine.
  CHECK(absl::Now() - start < absl::Seconds(5));
  // Health still answers: the process is alive.
  auto health = client->Health();
  REQUIRE(health.ok());
  CHECK(*health == grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_CASE("Server errors come back with their status code") {
  FakeKestrelServer::Options options;
  options.ttft = absl::Milliseconds(1);
  options.itl = absl::Milliseconds(1);
  options.fault = [](int index, const v1::GenerateRequest&) -> std::optional<FakeFault> {
    if (index == 0) return FakeFault{{grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full"}, 0};
    if (index == 1) return FakeFault{{grpc::StatusCode::INTERNAL, "boom"}, 2};
    return std::nullopt;
  };
  auto fake = StartFake(options);
  auto client = Connect(fake->address());
  int chunks = 0;
  auto count = [&](const v1::GenerateResponse& event) {
    chunks += event.has_chunk();
    return true;
  };
  absl::Status first = client->Generate(Request(4), count);
  CHECK(first.code() == absl::StatusCode::kResourceExhausted);
  CHECK(first.message().find("queue full") != std::string::npos);
  CHECK(chunks == 0);
  CHECK(client->Generate(Request(4), count).code() == absl::StatusCode::kInternal);
  CHECK(chunks == 2);
  CHECK(client->Generate(Request(4), count).ok());
}

TEST_CASE("Idempotent calls retry UNAVAILABLE; Generate does not") {
  SECTION("Tokenize succeeds on the third attempt") {
    auto fake =
        StartFake(With<FakeKestrelServer::Options>([](auto& o) { o.unavailable_unary_calls = 2; }));
    auto client =
        Connect(fake->address(), With<ClientOptions>([](auto& o) { o.max_attempts = 3; }));
    v1::TokenizeRequest request;
    request.set_text("ab");
    auto tokens = client->Tokenize(request);
    REQUIRE(tokens.ok());
    CHECK(std::vector<int>(tokens->token_ids().begin(), tokens->token_ids().end()) ==
          std::vector<int>{1, 'a' + 3, 'b' + 3});
    CHECK(fake->unary_calls() == 3);
  }
  SECTION("attempts run out") {
    auto fake =
        StartFake(With<FakeKestrelServer::Options>([](auto& o) { o.unavailable_unary_calls = 5; }));
    auto client =
        Connect(fake->address(), With<ClientOptions>([](auto& o) { o.max_attempts = 2; }));
    auto info = client->GetServerInfo();
    CHECK(info.status().code() == absl::StatusCode::kUnavailable);
    CHECK(info.status().message().find("after 2 attempts") != std::string::npos);
    CHECK(fake->unary_calls() == 2);
  }
  SECTION("Generate and Complete are tried once") {
    FakeKestrelServer::Options options;
    options.fault = [](int, const v1::GenerateRequest&) -> std::optional<FakeFault> {
      return FakeFault{{grpc::StatusCode::UNAVAILABLE, "draining"}, 0};
    };
    auto fake = StartFake(options);
    auto client =
        Connect(fake->address(), With<ClientOptions>([](auto& o) { o.max_attempts = 5; }));
    CHECK(client->Generate(Request(2), [](const auto&) { return true; }).code() ==
          absl::StatusCode::kUnavailable);
    CHECK(client->Complete(Request(2)).status().code() == absl::StatusCode::kUnavailable);
    CHECK(fake->generate_calls().size() == 1);
    CHECK(fake->complete_calls() == 1);
  }
}

TEST_CASE("The small calls return the server's answers") {
  auto fake = StartFake(With<FakeKestrelServer::Options>([](auto& o) {
    o.ttft = absl::Milliseconds(1);
    o.itl = absl::Milliseconds(20);
  }));
  auto client = Connect(fake->address());

  v1::DetokenizeRequest detokenize;
  for (int id : {1, 'h' + 3, 'i' + 3}) detokenize.add_token_ids(id);
  auto text = client->Detokenize(detokenize);
  REQUIRE(text.ok());
  CHECK(text->text() == "hi");

  auto model = client->GetModelInfo();
  REQUIRE(model.ok());
  CHECK(model->name() == "fake-model");
  CHECK(model->context_length() == 2048);

  auto server = client->GetServerInfo();
  REQUIRE(server.ok());
  CHECK(server->version() == "fake");

  auto complete = client->Complete(Request(3));
  REQUIRE(complete.ok());
  REQUIRE(complete->completions_size() == 1);
  CHECK(complete->completions(0).text() == " Once upon a");

  // Abort finds a running stream by id; the stream ends CANCELLED (reason).
  v1::GenerateRequest long_request = Request(100000);
  long_request.set_request_id("abort-me");
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  Latch started;
  auto stream = client->StartGenerate(long_request, [&](const v1::GenerateResponse& event) {
    if (!started.HasBeenNotified()) started.Notify();
    if (event.has_finished()) reason = event.finished().reason();
    return true;
  });
  REQUIRE(started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  auto aborted = client->Abort("abort-me");
  REQUIRE(aborted.ok());
  CHECK(aborted->found());
  CHECK(stream->Wait().ok());
  CHECK(reason == v1::FINISH_REASON_CANCELLED);
  auto missing = client->Abort("no-such-request");
  REQUIRE(missing.ok());
  CHECK_FALSE(missing->found());
}

TEST_CASE("An unreachable server is UNAVAILABLE at once") {
  std::string address;
  {
    auto fake = StartFake();
    address = fake->address();
  }  // Now nothing listens there.
  auto client = Connect(address, With<ClientOptions>([](auto& o) { o.max_attempts = 1; }));
  const absl::Time start = absl::Now();
  CHECK(client->Health().status().code() == absl::StatusCode::kUnavailable);
  CHECK(client->Generate(Request(1), [](const auto&) { return true; }).code() ==
        absl::StatusCode::kUnavailable);
  CHECK(absl::Now() - start < absl::Seconds(10));
}

TEST_CASE("Invalid options are rejected by Create") {
  CHECK(Client::Create(With<ClientOptions>([](auto& o) { o.address = ""; })).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(Client::Create(With<ClientOptions>([](auto& o) { o.max_attempts = 0; })).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(Client::Create(With<ClientOptions>([](auto& o) { o.tls_root_certs_pem = "x"; }))
            .status()
            .code() == absl::StatusCode::kInvalidArgument);
  CHECK(Client::Create(With<ClientOptions>([](auto& o) {
          o.use_tls = true;
          o.tls_cert_chain_pem = "x";
        }))
            .status()
            .code() == absl::StatusCode::kInvalidArgument);
  CHECK(Client::Create(With<ClientOptions>([](auto& o) { o.use_tls = true; })).ok());
}

TEST_CASE("Many threads share one client") {
  auto fake = StartFake(With<FakeKestrelServer::Options>([](auto& o) {
    o.ttft = absl::Milliseconds(2);
    o.itl = absl::Milliseconds(1);
  }));
  auto client = Connect(fake->address());
  std::atomic<int> tokens{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 3; ++i) {
        absl::Status status = client->Generate(Request(5), [&](const v1::GenerateResponse& e) {
          tokens.fetch_add(e.has_chunk() ? e.chunk().token_ids_size() : 0);
          return true;
        });
        if (!status.ok()) failures.fetch_add(1);
        if (!client->GetModelInfo().ok()) failures.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(failures.load() == 0);
  CHECK(tokens.load() == 6 * 3 * 5);
}

}  // namespace
}  // namespace kestrel::client

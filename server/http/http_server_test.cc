// The HTTP front end in process, over real sockets, on the random built-in
// model: the OpenAI endpoints streamed and not, n, logprobs, stop strings,
// usage and metrics, every error status, a 100 MB body, a client that goes
// away and one that never reads (its request cancelled, its KV blocks
// back), API keys, HTTPS, queue limits and drain.
#include "server/http/http_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>

#include "engine/metrics.h"
#include "server/http/http_test_client.h"
#include "server/model_loader.h"
#include "server/tls_testutil.h"

KESTREL_TSAN_SUPPRESS_GRPC_TLS_RACES()

namespace kestrel::server::http {
namespace {

using Json = nlohmann::ordered_json;
using testing::Fetch;
using testing::FetchOptions;
using testing::FetchResult;
using testing::StreamedText;
using testing::WaitFor;

// "role: content" lines, then "assistant:": a stand-in for the model's
// Jinja template (the HTTP layer must not care which renders).
class LinesRenderer final : public ChatRenderer {
 public:
  absl::StatusOr<std::string> Render(const ChatInput& input) const override {
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
};

struct ServerSetup {
  engine::EngineOptions engine;
  HttpServerOptions http;
  bool chat = true;
};

// The random built-in model (a byte tokenizer, so prompt sizes are exact), an
// engine and an HTTP server on a free loopback port.
class Fixture {
 public:
  explicit Fixture(ServerSetup setup = {}) {
    ModelLoadOptions load;
    load.model = "random";
    load.threads = 1;
    load.kv_cache_bytes = 32ull << 20;
    absl::StatusOr<LoadedModel> loaded = LoadModel(load);
    REQUIRE(loaded.ok());
    model_ = std::move(*loaded);
    registry_ = std::make_shared<prometheus::Registry>();
    metrics_ = std::make_unique<engine::EngineMetrics>(*registry_, "demo");
    setup.engine.eos_token_ids = model_.eos_token_ids;
    auto engine = engine::Engine::Create(setup.engine, std::move(model_.executor),
                                         model_.tokenizer.get(), metrics_.get());
    REQUIRE(engine.ok());
    engine_ = std::move(*engine);
    setup.http.listen_address = "127.0.0.1:0";
    setup.http.model_name = "demo";
    setup.http.registry = registry_;
    if (setup.chat) setup.http.chat_renderer = &renderer_;
    auto server = HttpServer::Create(std::move(setup.http), engine_.get(), model_.tokenizer.get());
    INFO(server.status());
    REQUIRE(server.ok());
    server_ = std::move(*server);
    server_->SetServing(true);
  }

  std::string Url(const std::string& path, const std::string& scheme = "http") const {
    return scheme + "://127.0.0.1:" + std::to_string(server_->port()) + path;
  }
  FetchResult Post(const std::string& path, const Json& body, FetchOptions options = {}) const {
    options.body = body.dump();
    return Fetch(Url(path), options);
  }
  FetchResult Get(const std::string& path, FetchOptions options = {}) const {
    options.method = "GET";
    return Fetch(Url(path), options);
  }

  // Every KV block free, nothing running or waiting, every response done.
  bool Idle() const {
    return WaitFor(
        [&] {
          const engine::EngineLoad load = engine_->load();
          return load.active_requests == 0 && load.kv_blocks_free == load.kv_blocks_total &&
                 server_->open_calls() == 0;
        },
        30);
  }

  HttpServer& server() { return *server_; }
  engine::Engine& engine() { return *engine_; }

 private:
  LinesRenderer renderer_;
  LoadedModel model_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<engine::EngineMetrics> metrics_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<HttpServer> server_;
};

// The sum of every sample of counter `name` whose labels contain `labels`.
double Counter(const std::string& metrics, const std::string& name, const std::string& labels = "") {
  double total = 0;
  std::istringstream lines(metrics);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(name + "{", 0) != 0 && line.rfind(name + " ", 0) != 0) continue;
    if (!labels.empty() && line.find(labels) == std::string::npos) continue;
    total += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return total;
}

Json Completion(int max_tokens, Json extra = Json::object()) {
  Json body = {{"model", "demo"}, {"prompt", "Once upon a time"}, {"max_tokens", max_tokens},
               {"temperature", 0}, {"ignore_eos", true}};
  for (auto& [key, value] : extra.items()) body[key] = value;
  return body;
}

Json Chat(int max_tokens, Json extra = Json::object()) {
  Json body = {{"model", "demo"},
               {"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}},
               {"max_completion_tokens", max_tokens},
               {"temperature", 0},
               {"ignore_eos", true}};
  for (auto& [key, value] : extra.items()) body[key] = value;
  return body;
}

int RssMiB() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoi(line.substr(6)) / 1024;
  }
  return -1;
}

TEST_CASE("OpenAI endpoints over HTTP on the demo model") {
  Fixture f;

  SECTION("health, models, metrics") {
    FetchResult health = f.Get("/health");
    CHECK(health.status == 200);
    CHECK(health.Json()["status"] == "serving");
    FetchResult models = f.Get("/v1/models");
    CHECK(models.status == 200);
    CHECK(models.Json()["object"] == "list");
    CHECK(models.Json()["data"][0]["id"] == "demo");
    CHECK(f.Get("/v1/models/demo").Json()["id"] == "demo");
    CHECK(f.Get("/v1/models/gpt-4").status == 404);
    FetchResult metrics = f.Get("/metrics");
    CHECK(metrics.status == 200);
    CHECK(metrics.body.find("kestrel_kv_blocks") != std::string::npos);
    CHECK(metrics.body.find("kestrel_http_requests_total{code=\"200\",path=\"/health\"}") !=
          std::string::npos);
  }

  SECTION("streamed text equals the non-streamed text; usage matches the engine's counters") {
    const std::string before = f.Get("/metrics").body;
    FetchResult whole = f.Post("/v1/completions", Completion(24));
    REQUIRE(whole.status == 200);
    Json body = whole.Json();
    CHECK(body["object"] == "text_completion");
    REQUIRE(body["choices"].size() == 1);
    CHECK(body["choices"][0]["finish_reason"] == "length");
    CHECK(body["usage"]["completion_tokens"] == 24);
    const int prompt_tokens = body["usage"]["prompt_tokens"];
    CHECK(prompt_tokens > 0);

    FetchResult stream = f.Post("/v1/completions",
                                Completion(24, {{"stream", true},
                                                {"stream_options", {{"include_usage", true}}}}));
    REQUIRE(stream.status == 200);
    CHECK(stream.content_type == "text/event-stream");
    CHECK(stream.done);
    CHECK(StreamedText(stream, 0) == body["choices"][0]["text"].get<std::string>());
    const Json& last = stream.events.back();
    CHECK(last["choices"].empty());
    CHECK(last["usage"] == body["usage"]);
    // Every chunk but the last carries "usage": null.
    CHECK(stream.events.front()["usage"].is_null());

    const std::string after = f.Get("/metrics").body;
    CHECK(Counter(after, "kestrel_prompt_tokens_total") - Counter(before, "kestrel_prompt_tokens_total") ==
          2 * prompt_tokens);
    CHECK(Counter(after, "kestrel_generation_tokens_total") -
              Counter(before, "kestrel_generation_tokens_total") ==
          48);
  }

  SECTION("a seeded sample is the same streamed or not; n = 2 gives two choices") {
    const Json seeded = Completion(20, {{"temperature", 1.0}, {"top_p", 0.9}, {"seed", 77}, {"n", 2}});
    FetchResult whole = f.Post("/v1/completions", seeded);
    REQUIRE(whole.status == 200);
    Json body = whole.Json();
    REQUIRE(body["choices"].size() == 2);
    CHECK(body["choices"][0]["index"] == 0);
    CHECK(body["choices"][1]["index"] == 1);
    Json streamed = seeded;
    streamed["stream"] = true;
    FetchResult stream = f.Post("/v1/completions", streamed);
    REQUIRE(stream.status == 200);
    for (int i = 0; i < 2; ++i) {
      CHECK(StreamedText(stream, i) == body["choices"][i]["text"].get<std::string>());
    }
    CHECK(body["usage"]["completion_tokens"] == 40);
  }

  SECTION("a batch of prompts: choices numbered prompt x n, prompt tokens counted once each") {
    Json batch = Completion(5, {{"prompt", {"abc", {1, 2, 3, 4}}}, {"n", 2}});
    FetchResult result = f.Post("/v1/completions", batch);
    REQUIRE(result.status == 200);
    Json body = result.Json();
    REQUIRE(body["choices"].size() == 4);
    for (int i = 0; i < 4; ++i) CHECK(body["choices"][i]["index"] == i);
    // Greedy: both samples of a prompt agree.
    CHECK(body["choices"][0]["text"] == body["choices"][1]["text"]);
    CHECK(body["choices"][2]["text"] == body["choices"][3]["text"]);
    CHECK(body["usage"]["completion_tokens"] == 20);
    CHECK(body["usage"]["prompt_tokens"] == 3 + 4);
  }

  SECTION("logprobs: completions and chat shapes") {
    FetchResult result = f.Post("/v1/completions", Completion(6, {{"logprobs", 2}}));
    REQUIRE(result.status == 200);
    Json logprobs = result.Json()["choices"][0]["logprobs"];
    REQUIRE(logprobs["tokens"].size() == 6);
    CHECK(logprobs["token_logprobs"].size() == 6);
    CHECK(logprobs["text_offset"][0] == 0);
    for (const Json& top : logprobs["top_logprobs"]) {
      CHECK(top.size() >= 1);
      CHECK(top.size() <= 3);
    }
    // Greedy: the chosen token is the most likely one.
    for (size_t i = 0; i < 6; ++i) {
      for (const auto& [token, logprob] : logprobs["top_logprobs"][i].items()) {
        CHECK(logprob.get<double>() <= logprobs["token_logprobs"][i].get<double>() + 1e-6);
      }
    }
    FetchResult chat = f.Post("/v1/chat/completions", Chat(4, {{"logprobs", true}, {"top_logprobs", 3}}));
    REQUIRE(chat.status == 200);
    Json content = chat.Json()["choices"][0]["logprobs"]["content"];
    REQUIRE(content.size() == 4);
    CHECK(content[0]["top_logprobs"].size() == 3);
    CHECK(content[0]["bytes"].is_array());
    CHECK(content[0]["logprob"].get<double>() <= 0);
  }

  SECTION("stop strings end the text before the stop, finish_reason stop") {
    FetchResult free_run = f.Post("/v1/completions", Completion(40));
    REQUIRE(free_run.status == 200);
    const std::string text = free_run.Json()["choices"][0]["text"];
    // A printable ASCII character that occurs after the start of the text.
    size_t pos = std::string::npos;
    for (size_t i = 2; i < text.size(); ++i) {
      if (text[i] >= 'a' && text[i] <= 'z') {
        pos = i;
        break;
      }
    }
    if (pos == std::string::npos) {
      WARN("the demo model's greedy text has no letter to stop at: " << Json(text).dump());
      return;
    }
    const std::string stop(1, text[pos]);
    const std::string expected = text.substr(0, text.find(stop));
    FetchResult stopped = f.Post("/v1/completions", Completion(40, {{"stop", {stop, "never"}}}));
    REQUIRE(stopped.status == 200);
    CHECK(stopped.Json()["choices"][0]["text"] == expected);
    CHECK(stopped.Json()["choices"][0]["finish_reason"] == "stop");
    FetchResult streamed = f.Post("/v1/completions", Completion(40, {{"stop", stop}, {"stream", true}}));
    CHECK(StreamedText(streamed, 0) == expected);
  }

  SECTION("chat: role, content, streamed equals non-streamed, n = 2") {
    FetchResult whole = f.Post("/v1/chat/completions", Chat(12, {{"n", 2}}));
    REQUIRE(whole.status == 200);
    Json body = whole.Json();
    CHECK(body["object"] == "chat.completion");
    REQUIRE(body["choices"].size() == 2);
    CHECK(body["choices"][0]["message"]["role"] == "assistant");
    FetchResult stream = f.Post("/v1/chat/completions", Chat(12, {{"n", 2}, {"stream", true}}));
    REQUIRE(stream.status == 200);
    CHECK(stream.events[0]["object"] == "chat.completion.chunk");
    CHECK(stream.events[0]["choices"][0]["delta"]["role"] == "assistant");
    for (int i = 0; i < 2; ++i) {
      CHECK(StreamedText(stream, i) == body["choices"][i]["message"]["content"].get<std::string>());
    }
  }

  SECTION("bad requests: status, OpenAI error shape, the field and value named") {
    FetchOptions malformed;
    malformed.body = "{\"prompt\": [1, 2";
    FetchResult r = Fetch(f.Url("/v1/completions"), malformed);
    CHECK(r.status == 400);
    CHECK(r.Json()["error"]["type"] == "invalid_request_error");
    CHECK(r.Json()["error"]["message"].get<std::string>().find("not valid JSON") != std::string::npos);

    r = f.Post("/v1/completions", Completion(-3));
    CHECK(r.status == 400);
    CHECK(r.Json()["error"]["param"] == "max_tokens");
    CHECK(r.Json()["error"]["message"] == "max_tokens must be >= 1, got -3");
    r = f.Post("/v1/completions", Completion(3, {{"temperature", "warm"}}));
    CHECK(r.status == 400);
    CHECK(r.Json()["error"]["message"] == "temperature must be a number, got \"warm\"");
    r = f.Post("/v1/completions", Completion(3, {{"model", "gpt-9"}}));
    CHECK(r.status == 404);
    CHECK(r.Json()["error"]["code"] == "model_not_found");
    // Unknown fields are ignored, like OpenAI.
    r = f.Post("/v1/completions", Completion(3, {{"frobnicate", {1, 2}}, {"user", "me"}}));
    CHECK(r.status == 200);
    r = f.Get("/v1/completions");
    CHECK(r.status == 405);
    CHECK(r.Json()["error"]["code"] == "method_not_allowed");
    r = f.Get("/v2/everything");
    CHECK(r.status == 404);
    CHECK(r.Json()["error"].contains("message"));
  }

  SECTION("a 100 MB body is answered 413 in the JSON error shape, without being buffered") {
    const int rss_before = RssMiB();
    FetchOptions big;
    big.upload_bytes = 100ll << 20;
    FetchResult r = Fetch(f.Url("/v1/completions"), big);
    INFO(r.curl_error);
    CHECK(r.status == 413);
    CHECK(r.Json()["error"]["code"] == "request_too_large");
    CHECK(r.Json()["error"]["message"].get<std::string>().find("--http-max-body-bytes") !=
          std::string::npos);
#ifndef __SANITIZE_ADDRESS__
    // (AddressSanitizer's quarantine keeps every freed read buffer resident,
    // so the bound holds only without it.)
    CHECK(RssMiB() - rss_before < 40);
#else
    (void)rss_before;
#endif
    // Still serving.
    CHECK(f.Post("/v1/completions", Completion(2)).status == 200);
  }

  SECTION("a client that disconnects mid-stream: request cancelled, KV blocks back") {
    const std::string before = f.Get("/metrics").body;
    FetchOptions leave;
    leave.stop_after_events = 3;
    FetchResult r = f.Post("/v1/completions", Completion(900, {{"stream", true}}), leave);
    CHECK(r.events.size() == 3);
    CHECK(f.Idle());
    const std::string after = f.Get("/metrics").body;
    CHECK(Counter(after, "kestrel_requests_total", "finish_reason=\"cancelled\"") -
              Counter(before, "kestrel_requests_total", "finish_reason=\"cancelled\"") ==
          1);
    CHECK(Counter(after, "kestrel_generation_tokens_total") -
              Counter(before, "kestrel_generation_tokens_total") <
          900);
    CHECK(f.Post("/v1/completions", Completion(2)).status == 200);
  }

  SECTION("a client that gives up on a non-streamed request: cancelled too") {
    const std::string before = f.Get("/metrics").body;
    FetchOptions impatient;
    impatient.timeout_ms = 100;
    FetchResult r = f.Post("/v1/completions", Completion(900), impatient);
    CHECK(r.status == 0);  // no answer before the client left
    CHECK(f.Idle());
    const std::string after = f.Get("/metrics").body;
    CHECK(Counter(after, "kestrel_requests_total", "finish_reason=\"cancelled\"") -
              Counter(before, "kestrel_requests_total", "finish_reason=\"cancelled\"") ==
          1);
  }

  SECTION("concurrent streams and requests all complete") {
    std::vector<FetchResult> results(24);
    std::vector<std::thread> threads;
    for (int i = 0; i < 24; ++i) {
      threads.emplace_back([&, i] {
        Json body = i % 3 == 0 ? Chat(10 + i, {{"stream", i % 2 == 0}})
                               : Completion(10 + i, {{"stream", i % 2 == 0}, {"seed", i}});
        results[i] = f.Post(i % 3 == 0 ? "/v1/chat/completions" : "/v1/completions", body);
      });
    }
    for (std::thread& t : threads) t.join();
    for (int i = 0; i < 24; ++i) {
      INFO("request " << i);
      CHECK(results[i].status == 200);
      if (i % 2 == 0) CHECK(results[i].done);
    }
    CHECK(f.Idle());
  }
}

TEST_CASE("a client that never reads: bounded buffering, then the request is cancelled") {
  ServerSetup setup;
  setup.http.max_buffered_events = 8;
  Fixture f(setup);
  // 16 samples x 1000 tokens x ~2 KB of logprobs: far more than the
  // kernel's socket buffers hold.
  Json body = Completion(1000, {{"stream", true}, {"logprobs", 20}, {"prompt", "x"}, {"n", 16}});
  const std::string payload = body.dump();
  const std::string request = "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
                              "Content-Type: application/json\r\nContent-Length: " +
                              std::to_string(payload.size()) + "\r\n\r\n" + payload;
  const int fd = testing::SendAndNeverRead(f.server().port(), request);
  REQUIRE(fd >= 0);
  // The server stops taking events once the socket is full, the stream's
  // queue reaches 8 events, and the request is cancelled and its
  // connection closed.
  CHECK(WaitFor(
      [&] {
        return Counter(f.Get("/metrics").body, "kestrel_requests_total",
                       "finish_reason=\"cancelled\"") == 1;
      },
      30));
  CHECK(f.Idle());
  CHECK(testing::PeerClosed(fd));
  close(fd);
  CHECK(f.Post("/v1/completions", Completion(2)).status == 200);
}

TEST_CASE("API keys: 401 without a valid key, /health open") {
  auto keys = ApiKeys::FromLines({"test-key-0123456789abcdef"}, "test keys");
  REQUIRE(keys.ok());
  ServerSetup setup;
  setup.http.api_keys = std::make_shared<const ApiKeys>(*keys);
  Fixture f(setup);
  FetchResult none = f.Post("/v1/completions", Completion(2));
  CHECK(none.status == 401);
  CHECK(none.Json()["error"]["type"] == "authentication_error");
  FetchOptions wrong;
  wrong.api_key = "test-key-0123456789abcdeX";
  CHECK(f.Post("/v1/completions", Completion(2), wrong).status == 401);
  CHECK(f.Get("/v1/models", wrong).status == 401);
  FetchOptions right;
  right.api_key = "test-key-0123456789abcdef";
  CHECK(f.Post("/v1/completions", Completion(2), right).status == 200);
  CHECK(f.Get("/metrics", right).status == 200);
  CHECK(f.Get("/health").status == 200);
}

TEST_CASE("a full queue answers 429; a draining server 503 while streams in flight finish") {
  ServerSetup setup;
  setup.engine.max_num_seqs = 1;
  setup.engine.max_queued_requests = 1;
  Fixture f(setup);
  // One runs, one waits; the next is refused.
  std::vector<FetchResult> long_runs(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      long_runs[i] = f.Post("/v1/completions", Completion(1000, {{"stream", true}, {"prompt", "x"}}));
    });
    REQUIRE(WaitFor([&] { return f.engine().load().active_requests == i + 1; }, 30));
  }
  FetchResult refused = f.Post("/v1/completions", Completion(2));
  CHECK(refused.status == 429);
  CHECK(refused.Json()["error"]["type"] == "rate_limit_error");

  f.server().SetServing(false);
  CHECK(f.Get("/health").status == 503);
  FetchResult draining = f.Post("/v1/completions", Completion(2));
  CHECK(draining.status == 503);
  for (std::thread& t : threads) t.join();
  for (const FetchResult& r : long_runs) {
    CHECK(r.status == 200);
    CHECK(r.done);
  }
  f.server().Shutdown(absl::Seconds(5));
  CHECK(f.server().open_calls() == 0);
}

TEST_CASE("without a chat renderer, chat completions answer 400") {
  ServerSetup setup;
  setup.chat = false;
  Fixture f(setup);
  FetchResult r = f.Post("/v1/chat/completions", Chat(2));
  CHECK(r.status == 400);
  CHECK(r.Json()["error"]["code"] == "chat_template_unavailable");
}

TEST_CASE("HTTPS with the gRPC TLS files") {
  std::optional<server::testing::TestPki> pki = server::testing::MakeTestPkiOrSkip();
  if (!pki) return;
  ServerSetup setup;
  setup.http.tls.cert_file = pki->server_cert.string();
  setup.http.tls.key_file = pki->server_key.string();
  Fixture f(setup);
  FetchOptions options;
  options.ca_file = pki->ca_cert.string();
  options.body = Completion(3, {{"stream", true}}).dump();
  FetchResult r = Fetch(f.Url("/v1/completions", "https"), options);
  INFO(r.curl_error);
  CHECK(r.status == 200);
  CHECK(r.done);
  // Plain HTTP on the TLS port gets no HTTP answer.
  CHECK(f.Get("/health").status != 200);
  // A bad key file is a clear startup error naming the flag.
  ServerSetup bad;
  bad.http.tls.cert_file = pki->server_cert.string();
  bad.http.tls.key_file = pki->other_client_key.string();
  ModelLoadOptions load;
  absl::StatusOr<LoadedModel> model = LoadModel(load);
  REQUIRE(model.ok());
  auto engine = engine::Engine::Create({}, std::move(model->executor), model->tokenizer.get(), nullptr);
  REQUIRE(engine.ok());
  bad.http.listen_address = "127.0.0.1:0";
  auto server = HttpServer::Create(bad.http, engine->get(), model->tokenizer.get());
  REQUIRE_FALSE(server.ok());
  CHECK(server.status().message().find("--tls-key-file") != std::string::npos);
}

TEST_CASE("a malformed address or a busy port is a clear error") {
  ModelLoadOptions load;
  absl::StatusOr<LoadedModel> model = LoadModel(load);
  REQUIRE(model.ok());
  auto engine = engine::Engine::Create({}, std::move(model->executor), model->tokenizer.get(), nullptr);
  REQUIRE(engine.ok());
  HttpServerOptions options;
  options.listen_address = "localhost";
  auto bad = HttpServer::Create(options, engine->get(), model->tokenizer.get());
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("--http-listen") != std::string::npos);
  options.listen_address = "127.0.0.1:0";
  auto first = HttpServer::Create(options, engine->get(), model->tokenizer.get());
  REQUIRE(first.ok());
  options.listen_address = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = HttpServer::Create(options, engine->get(), model->tokenizer.get());
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace kestrel::server::http

// The serving path end to end: the real kestrel-server binary on the real
// stories260K model, driven over gRPC. Golden output, concurrency, seeds,
// cancellation, deadlines, invalid requests, slow readers and drain.
#include <atomic>
#include <csignal>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <grpcpp/client_context.h>

#include "grpc/health/v1/health.grpc.pb.h"
#include "kestrel/v1/kestrel.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "server/test_server.h"
#include "testing/shared_data.h"

namespace kestrel::server {
namespace {

using namespace std::chrono_literals;
using kestrel::v1::GenerateRequest;
using kestrel::v1::GenerateResponse;

struct Golden {
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> output_ids;
  std::string output_text;
};

Golden LoadGolden(const std::filesystem::path& model_dir) {
  std::ifstream in(model_dir / "golden/greedy.json");
  nlohmann::json j = nlohmann::json::parse(in);
  Golden g;
  g.prompt = j["prompt"];
  g.prompt_ids = j["prompt_ids"].get<std::vector<int32_t>>();
  g.output_ids = j["greedy"]["output_ids"].get<std::vector<int32_t>>();
  g.output_text = j["greedy"]["output_text"];
  return g;
}

struct StreamResult {
  grpc::Status status;
  std::vector<int32_t> ids;
  std::string text;
  std::vector<kestrel::v1::Finished> finished;
  std::vector<int32_t> echoed_prompt;
  int chunks = 0;
};

// Runs one Generate stream. `cancel_after_chunks` > 0 cancels the call after
// that many chunks; `read_delay` waits before the first read (a client that
// stops reading for a while).
StreamResult Generate(kestrel::v1::Kestrel::Stub& stub, const GenerateRequest& request,
                      int cancel_after_chunks = 0,
                      std::chrono::milliseconds deadline = std::chrono::milliseconds(60000),
                      std::chrono::milliseconds read_delay = std::chrono::milliseconds(0)) {
  StreamResult result;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + deadline);
  // Many clients connect at once on a loaded machine: a failed connection
  // attempt is retried until the deadline, as a patient client would.
  context.set_wait_for_ready(true);
  auto reader = stub.Generate(&context, request);
  GenerateResponse response;
  if (read_delay.count() > 0) std::this_thread::sleep_for(read_delay);
  while (true) {
    if (!reader->Read(&response)) break;
    if (response.has_prompt()) {
      result.echoed_prompt.assign(response.prompt().token_ids().begin(),
                                  response.prompt().token_ids().end());
    } else if (response.has_chunk()) {
      ++result.chunks;
      result.ids.insert(result.ids.end(), response.chunk().token_ids().begin(),
                        response.chunk().token_ids().end());
      result.text += response.chunk().text();
      if (cancel_after_chunks > 0 && result.chunks == cancel_after_chunks) context.TryCancel();
    } else if (response.has_finished()) {
      result.finished.push_back(response.finished());
    }
  }
  result.status = reader->Finish();
  return result;
}

GenerateRequest GreedyText(const std::string& text, int max_tokens) {
  GenerateRequest request;
  request.set_text(text);
  request.mutable_sampling()->set_temperature(0.0f);
  request.mutable_stopping()->set_max_tokens(max_tokens);
  return request;
}

GenerateRequest Long(int salt, int max_tokens) {
  GenerateRequest request;
  for (int i = 0; i < 8 + salt % 20; ++i) request.mutable_token_ids()->add_ids(3 + (i * 37 + salt) % 500);
  request.mutable_stopping()->set_max_tokens(max_tokens);
  request.mutable_stopping()->set_ignore_eos(true);
  request.mutable_sampling()->set_seed(static_cast<uint64_t>(salt));
  return request;
}

kestrel::v1::ServerLoad Load(kestrel::v1::Kestrel::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  kestrel::v1::GetServerInfoResponse info;
  REQUIRE(stub.GetServerInfo(&context, {}, &info).ok());
  return info.load();
}

// Polls until every KV block is free and nothing runs.
bool AllBlocksReturned(kestrel::v1::Kestrel::Stub& stub) {
  for (int i = 0; i < 200; ++i) {
    kestrel::v1::ServerLoad load = Load(stub);
    if (load.running_requests() == 0 && load.waiting_requests() == 0 &&
        load.kv_blocks_free() == load.kv_blocks_total()) {
      return true;
    }
    std::this_thread::sleep_for(50ms);
  }
  kestrel::v1::ServerLoad load = Load(stub);
  UNSCOPED_INFO("running " << load.running_requests() << " waiting " << load.waiting_requests()
                           << " free " << load.kv_blocks_free() << "/" << load.kv_blocks_total());
  return false;
}

// The value of an unlabelled-but-for-model series line "name{...} value".
double MetricValue(const std::string& text, const std::string& series_prefix) {
  size_t pos = 0;
  while ((pos = text.find(series_prefix, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      size_t end = text.find('\n', pos);
      std::string line = text.substr(pos, end - pos);
      return std::stod(line.substr(line.rfind(' ') + 1));
    }
    ++pos;
  }
  return -1;
}

TEST_CASE("serving stories260K over gRPC") {
  KESTREL_SHARED_PATH_OR_SKIP(model_dir, "models/stories260K");
  const Golden golden = LoadGolden(model_dir);
  std::optional<TestServer> server =
      TestServer::Start({"--model=" + model_dir.string(), "--max-queued-requests=256",
                         "--threads=2", "--request-log=json"});
  REQUIRE(server.has_value());
  auto stub = kestrel::v1::Kestrel::NewStub(server->Channel());

  SECTION("greedy streaming reproduces the golden ids and text") {
    GenerateRequest request = GreedyText(golden.prompt, static_cast<int>(golden.output_ids.size()));
    request.mutable_output()->set_echo_prompt(true);
    StreamResult r = Generate(*stub, request);
    INFO(r.status.error_message());
    REQUIRE(r.status.ok());
    CHECK(r.echoed_prompt == golden.prompt_ids);
    CHECK(r.ids == golden.output_ids);
    CHECK(r.text == golden.output_text);
    REQUIRE(r.finished.size() == 1);
    CHECK(r.finished[0].reason() == kestrel::v1::FINISH_REASON_LENGTH);
    CHECK(r.finished[0].usage().prompt_tokens() == static_cast<int>(golden.prompt_ids.size()));
    CHECK(r.finished[0].usage().completion_tokens() == static_cast<int>(golden.output_ids.size()));
    CHECK(r.chunks == static_cast<int>(golden.output_ids.size()));

    // Complete answers the same, and a second identical prompt hits the
    // prefix cache for nothing (5 tokens < one block) but stays exact.
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 60s);
    kestrel::v1::CompleteResponse complete;
    REQUIRE(stub->Complete(&context, request, &complete).ok());
    REQUIRE(complete.completions_size() == 1);
    CHECK(std::vector<int32_t>(complete.completions(0).token_ids().begin(),
                               complete.completions(0).token_ids().end()) == golden.output_ids);
    CHECK(complete.completions(0).text() == golden.output_text);
    CHECK(std::vector<int32_t>(complete.prompt().token_ids().begin(),
                               complete.prompt().token_ids().end()) == golden.prompt_ids);

    // Two greedy samples share the prompt's partial KV block copy-on-write;
    // both must still be the golden continuation.
    GenerateRequest pair = request;
    pair.mutable_sampling()->set_n(2);
    grpc::ClientContext pair_context;
    pair_context.set_deadline(std::chrono::system_clock::now() + 60s);
    kestrel::v1::CompleteResponse two;
    REQUIRE(stub->Complete(&pair_context, pair, &two).ok());
    REQUIRE(two.completions_size() == 2);
    for (int i = 0; i < 2; ++i) {
      INFO("sample " << i);
      CHECK(std::vector<int32_t>(two.completions(i).token_ids().begin(),
                                 two.completions(i).token_ids().end()) == golden.output_ids);
    }

    kestrel::v1::TokenizeRequest tokenize;
    tokenize.set_text(golden.prompt);
    kestrel::v1::TokenizeResponse tokens;
    grpc::ClientContext tokenize_context;
    REQUIRE(stub->Tokenize(&tokenize_context, tokenize, &tokens).ok());
    CHECK(std::vector<int32_t>(tokens.token_ids().begin(), tokens.token_ids().end()) == golden.prompt_ids);
  }

  SECTION("64 concurrent streams with mixed settings; golden and seeded requests stay exact") {
    GenerateRequest seeded = GreedyText(golden.prompt, 40);
    seeded.mutable_sampling()->set_temperature(0.8f);
    seeded.mutable_sampling()->set_top_p(0.9f);
    seeded.mutable_sampling()->set_seed(777);
    StreamResult seeded_alone = Generate(*stub, seeded);
    REQUIRE(seeded_alone.status.ok());

    std::vector<StreamResult> results(64);
    std::vector<std::thread> threads;
    for (int i = 0; i < 64; ++i) {
      threads.emplace_back([&, i] {
        auto own = kestrel::v1::Kestrel::NewStub(server->Channel());
        GenerateRequest request;
        if (i == 0) {
          request = GreedyText(golden.prompt, static_cast<int>(golden.output_ids.size()));
        } else if (i == 1) {
          request = seeded;
        } else {
          request = Long(i, 5 + (i * 13) % 120);
          request.mutable_sampling()->set_temperature(i % 3 == 0 ? 0.0f : 1.0f);
          if (i % 4 == 0) request.mutable_sampling()->set_top_k(20);
          if (i % 5 == 0) request.mutable_sampling()->set_repetition_penalty(1.2f);
          if (i % 7 == 0) request.mutable_output()->set_top_logprobs(3);
          request.set_priority(i % 3);
        }
        results[i] = Generate(*own, request);
      });
    }
    for (std::thread& t : threads) t.join();
    for (int i = 0; i < 64; ++i) {
      INFO("request " << i << ": " << results[i].status.error_message());
      CHECK(results[i].status.ok());
      CHECK(results[i].finished.size() == 1);
    }
    CHECK(results[0].ids == golden.output_ids);
    CHECK(results[0].text == golden.output_text);
    CHECK(results[1].ids == seeded_alone.ids);
    CHECK(results[1].text == seeded_alone.text);
    CHECK(AllBlocksReturned(*stub));
  }

  SECTION("cancelling 20 of 40 streams returns their blocks; the rest complete") {
    std::vector<StreamResult> results(40);
    std::vector<std::thread> threads;
    std::mt19937 rng(11);
    std::vector<int> cancel_after(40, 0);
    for (int i = 0; i < 40; i += 2) cancel_after[i] = 1 + static_cast<int>(rng() % 30);
    for (int i = 0; i < 40; ++i) {
      threads.emplace_back([&, i] {
        auto own = kestrel::v1::Kestrel::NewStub(server->Channel());
        results[i] = Generate(*own, Long(i, 300), cancel_after[i]);
      });
    }
    for (std::thread& t : threads) t.join();
    for (int i = 0; i < 40; ++i) {
      INFO("request " << i << ": " << results[i].status.error_message());
      if (cancel_after[i] > 0) {
        CHECK(results[i].status.error_code() == grpc::StatusCode::CANCELLED);
        CHECK(results[i].ids.size() < 300);
      } else {
        CHECK(results[i].status.ok());
        CHECK(results[i].ids.size() == 300);
      }
    }
    CHECK(AllBlocksReturned(*stub));
    const std::string metrics = server->ScrapeMetrics();
    CHECK(MetricValue(metrics, "kestrel_kv_blocks{model=\"stories260K\",state=\"used\"}") == 0);
  }

  SECTION("deadlines stop the work with DEADLINE_EXCEEDED and return the blocks") {
    std::vector<StreamResult> results(10);
    std::vector<std::thread> threads;
    for (int i = 0; i < 10; ++i) {
      threads.emplace_back([&, i] {
        auto own = kestrel::v1::Kestrel::NewStub(server->Channel());
        GenerateRequest request = Long(i, 480);
        results[i] = Generate(*own, request, 0, std::chrono::milliseconds(30 + 10 * i));
      });
    }
    for (std::thread& t : threads) t.join();
    int exceeded = 0;
    for (const StreamResult& r : results) {
      if (r.status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) ++exceeded;
    }
    CHECK(exceeded >= 8);  // a very fast machine may finish a short one
    CHECK(AllBlocksReturned(*stub));
  }

  SECTION("a client that stops reading is cancelled with RESOURCE_EXHAUSTED") {
    // A separate server with a tiny stream buffer.
    std::optional<TestServer> small = TestServer::Start(
        {"--model=" + model_dir.string(), "--max-stream-buffer-events=8", "--threads=2"});
    REQUIRE(small.has_value());
    // A client whose HTTP/2 receive window stays small, so the server's
    // writes stall as soon as the client stops reading.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
    auto small_stub = kestrel::v1::Kestrel::NewStub(small->Channel(args));
    GenerateRequest request = Long(3, 480);
    request.mutable_output()->set_top_logprobs(20);  // big events fill flow control fast
    StreamResult r = Generate(*small_stub, request, 0, std::chrono::milliseconds(60000),
                              std::chrono::milliseconds(4000));
    INFO(r.status.error_message());
    CHECK(r.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK(r.status.error_message().find("not reading") != std::string::npos);
    CHECK(AllBlocksReturned(*small_stub));
    // Still serving.
    StreamResult after = Generate(*small_stub, GreedyText(golden.prompt, 5));
    CHECK(after.status.ok());
  }
}

}  // namespace
}  // namespace kestrel::server

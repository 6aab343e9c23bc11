// The runner and the gRPC backend against the fake server: latency
// accounting compared with the fake's own record of when it sent each
// token, errors by status, warm-up, arrival rate, concurrency limit, and
// bounded runs against a server that stops answering.
#include "benchmarks/bench_runner.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <condition_variable>
#include <iostream>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "benchmarks/bench_grpc_backend.h"
#include "client/fake_kestrel_server.h"

// Under --config=tsan: gRPC's callback completion queue starts "nexting"
// threads inside libgpr that ThreadSanitizer at times reports as leaked at
// exit (gRPC joins them when its last server is released, which TSan does
// not always see, since Debian's gRPC is not instrumented). Our own
// threads are still checked: only leaks created inside libgpr are
// suppressed. TSan reads this hook on start-up; other builds ignore it.
extern "C" const char* __tsan_default_suppressions() { return "thread:libgpr.so\n"; }

namespace kestrel::bench {
namespace {

namespace v1 = ::kestrel::v1;
using client::testing::FakeCallRecord;
using client::testing::FakeFault;
using client::testing::FakeKestrelServer;

std::unique_ptr<FakeKestrelServer> StartFake(FakeKestrelServer::Options options) {
  auto fake = FakeKestrelServer::Create(options);
  REQUIRE(fake.ok());
  return std::move(fake).value();
}

std::unique_ptr<GrpcBackend> Connect(const FakeKestrelServer& fake) {
  GrpcBackendOptions options;
  options.client.address = fake.address();
  auto backend = GrpcBackend::Create(options);
  REQUIRE(backend.ok());
  return std::move(backend).value();
}

std::unique_ptr<Workload> Synthetic(int input, int output) {
  SyntheticOptions options;
  options.input_length = *LengthDistribution::Parse(std::to_string(input));
  options.output_length = *LengthDistribution::Parse(std::to_string(output));
  options.ignore_eos = true;
  auto workload = SyntheticWorkload::Create(options);
  REQUIRE(workload.ok());
  return std::move(workload).value();
}

// Counts requests in flight around another backend.
class CountingBackend final : public Backend {
 public:
  explicit CountingBackend(Backend* inner) : inner_(inner) {}
  absl::Status Probe(absl::Duration timeout) override { return inner_->Probe(timeout); }
  void Start(const BenchRequest& request, absl::Time deadline, DoneCallback done) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      max_in_flight_ = std::max(max_in_flight_, ++in_flight_);
    }
    inner_->Start(request, deadline, [this, done = std::move(done)](RequestRecord record) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        --in_flight_;
      }
      done(std::move(record));
    });
  }
  void CancelAll() override { inner_->CancelAll(); }
  int max_in_flight() {
    std::unique_lock<std::mutex> lock(mu_);
    return max_in_flight_;
  }

 private:
  Backend* const inner_;  // Not owned.
  std::mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int max_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

double Mean(const std::vector<double>& values) {
  double sum = 0;
  for (double value : values) sum += value;
  return values.empty() ? 0 : sum / static_cast<double>(values.size());
}

// Within `relative` of the truth, plus `absolute_ms` for what the network
// and the scheduler add on a loaded machine.
void CheckClose(const char* what, double measured_ms, double truth_ms, double relative,
                double absolute_ms) {
  INFO(what << ": measured " << measured_ms << " ms, truth " << truth_ms << " ms");
  CHECK(std::abs(measured_ms - truth_ms) <= relative * truth_ms + absolute_ms);
}

TEST_CASE("TTFT, ITL, TPOT and throughput match the fake server's schedule") {
  FakeKestrelServer::Options options;
  // A TTFT long enough that the few milliseconds a loaded machine adds to
  // delivery stay within the relative tolerance.
  options.ttft = absl::Milliseconds(200);
  options.itl = absl::Milliseconds(20);
  auto fake = StartFake(options);
  auto backend = Connect(*fake);
  auto workload = Synthetic(16, 10);
  RunOptions run;
  run.num_requests = 8;
  run.max_concurrency = 4;
  // Connection set-up is not the server's latency (and is slow under the
  // sanitizers): one warm-up request pays it, as in a real benchmark.
  run.warmup_requests = 1;
  auto result = RunBenchmark(run, *workload, *backend);
  REQUIRE(result.ok());
  REQUIRE(result->records.size() == 8);
  Summary summary = Summarize(result->records, result->duration_s, {});
  REQUIRE(summary.completed == 8);
  CHECK(summary.output_tokens == 80);
  CHECK(summary.input_tokens == 8 * 16);

  // The truth: what the fake recorded on its side of the connection.
  std::vector<FakeCallRecord> calls = fake->generate_calls();
  REQUIRE(calls.size() == 9);
  calls.erase(calls.begin());  // The warm-up request.
  std::vector<double> ttft, itl;
  absl::Time first = absl::InfiniteFuture(), last = absl::InfinitePast();
  for (const FakeCallRecord& call : calls) {
    REQUIRE(call.token_times.size() == 10);
    CHECK(call.request.stopping().ignore_eos());
    CHECK(call.request.token_ids().ids_size() == 16);
    ttft.push_back(absl::ToDoubleMilliseconds(call.token_times[0] - call.arrived));
    for (size_t i = 1; i < call.token_times.size(); ++i) {
      itl.push_back(absl::ToDoubleMilliseconds(call.token_times[i] - call.token_times[i - 1]));
    }
    first = std::min(first, call.arrived);
    last = std::max(last, call.token_times.back());
  }
  const double truth_duration_s = absl::ToDoubleSeconds(last - first);
  const double truth_throughput = 80 / truth_duration_s;
  std::cout << "accounting: TTFT mean " << summary.ttft.mean_ms << " ms (fake " << Mean(ttft)
            << "), ITL mean " << summary.itl.mean_ms << " ms (fake " << Mean(itl) << "), TPOT mean "
            << summary.tpot.mean_ms << " ms, output throughput " << summary.output_token_throughput
            << " tok/s (fake " << truth_throughput << "), duration " << result->duration_s
            << " s (fake " << truth_duration_s << ")\n";
  CheckClose("TTFT mean", summary.ttft.mean_ms, Mean(ttft), 0.05, 5);
  CheckClose("ITL mean", summary.itl.mean_ms, Mean(itl), 0.05, 2);
  // Every request's TPOT is its mean gap.
  CheckClose("TPOT mean", summary.tpot.mean_ms, Mean(itl), 0.05, 2);
  CHECK(summary.itl.count == 8 * 9);
  CheckClose("output token throughput", summary.output_token_throughput, truth_throughput, 0.05, 0);
  // And against the nominal schedule, loosely (the fake may run late).
  CheckClose("TTFT vs nominal", summary.ttft.median_ms, 200, 0.25, 0);
  CheckClose("ITL vs nominal", summary.itl.median_ms, 20, 0.25, 0);
}

TEST_CASE("Errors are counted by status and left out of the latencies") {
  FakeKestrelServer::Options options;
  options.ttft = absl::Milliseconds(5);
  options.itl = absl::Milliseconds(2);
  options.fault = [](int index, const v1::GenerateRequest&) -> std::optional<FakeFault> {
    if (index % 5 == 1) return FakeFault{{grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full"}, 0};
    if (index % 5 == 3) return FakeFault{{grpc::StatusCode::INTERNAL, "boom"}, 2};
    return std::nullopt;
  };
  auto fake = StartFake(options);
  auto backend = Connect(*fake);
  auto workload = Synthetic(4, 5);
  RunOptions run;
  run.num_requests = 10;
  run.max_concurrency = 1;  // Server-side arrival order = issue order.
  auto result = RunBenchmark(run, *workload, *backend);
  REQUIRE(result.ok());
  Summary summary = Summarize(result->records, result->duration_s, {});
  CHECK(summary.completed == 6);
  CHECK(summary.errors_by_status ==
        std::map<std::string, int64_t>{{"INTERNAL", 2}, {"RESOURCE_EXHAUSTED", 2}});
  CHECK(summary.output_tokens == 6 * 5);
  CHECK(summary.ttft.count == 6);
  CHECK(result->records[1].status == "RESOURCE_EXHAUSTED");
  CHECK(result->records[1].error.find("queue full") != std::string::npos);
  CHECK(result->records[3].status == "INTERNAL");
}

TEST_CASE("Warm-up requests run first and are not reported") {
  auto fake = StartFake({.ttft = absl::Milliseconds(2),
                         .itl = absl::Milliseconds(1),
                         .default_output_tokens = 8,
                         .token_texts = {"x"},
                         .fault = nullptr,
                         .unavailable_unary_calls = 0,
                         .required_api_key = ""});
  auto backend = Connect(*fake);
  auto workload = Synthetic(4, 3);
  RunOptions run;
  run.num_requests = 5;
  run.warmup_requests = 3;
  auto result = RunBenchmark(run, *workload, *backend);
  REQUIRE(result.ok());
  CHECK(result->records.size() == 5);
  CHECK(result->records.front().index == 0);
  CHECK(fake->generate_calls().size() == 8);
}

TEST_CASE("Arrivals follow the rate; max concurrency is never exceeded") {
  FakeKestrelServer::Options options;
  options.ttft = absl::Milliseconds(30);
  options.itl = absl::Milliseconds(10);
  auto fake = StartFake(options);
  auto grpc = Connect(*fake);
  SECTION("constant rate") {
    auto workload = Synthetic(4, 2);
    RunOptions run;
    run.num_requests = 10;
    run.request_rate = 20;
    run.arrivals = ArrivalProcess::Kind::kConstant;
    auto result = RunBenchmark(run, *workload, *grpc);
    REQUIRE(result.ok());
    REQUIRE(result->records.size() == 10);
    for (const RequestRecord& record : result->records) {
      INFO("request " << record.index << " issued at " << record.start_s);
      CHECK(record.start_s >= 0.05 * static_cast<double>(record.index) - 0.001);
      CHECK(record.start_s <= 0.05 * static_cast<double>(record.index) + 0.25);
    }
  }
  SECTION("concurrency limit") {
    CountingBackend counting(grpc.get());
    auto workload = Synthetic(4, 4);
    RunOptions run;
    run.num_requests = 9;
    run.max_concurrency = 3;
    auto result = RunBenchmark(run, *workload, counting);
    REQUIRE(result.ok());
    CHECK(result->records.size() == 9);
    CHECK(counting.max_in_flight() == 3);
    // Three waves of at least 30 + 3 * 10 ms.
    CHECK(result->duration_s >= 3 * 0.060);
  }
}

TEST_CASE("A bounded run ends on time against a server that stops answering") {
  auto fake = StartFake({});
  fake->SetHanging(true);
  auto backend = Connect(*fake);
  SECTION("--duration with a drain timeout") {
    auto workload = Synthetic(4, 4);
    RunOptions run;
    run.request_rate = 20;
    run.duration = absl::Milliseconds(500);
    run.drain_timeout = absl::Milliseconds(300);
    run.request_timeout = absl::Seconds(60);
    const absl::Time start = absl::Now();
    auto result = RunBenchmark(run, *workload, *backend);
    const absl::Duration took = absl::Now() - start;
    REQUIRE(result.ok());
    std::cout << "hanging server, --duration=500ms --drain-timeout=300ms: ended after " << took
              << " with " << result->records.size() << " requests\n";
    CHECK(took < absl::Seconds(4));
    CHECK(result->records.size() >= 3);
    Summary summary = Summarize(result->records, result->duration_s, {});
    CHECK(summary.completed == 0);
    // Deadlines; a request whose answer is later still is cancelled.
    int64_t failed = 0;
    for (const auto& [status, count] : summary.errors_by_status) {
      CHECK((status == "DEADLINE_EXCEEDED" || status == "CANCELLED"));
      failed += count;
    }
    CHECK(failed == static_cast<int64_t>(result->records.size()));
  }
  SECTION("--num-requests with per-request deadlines") {
    auto workload = Synthetic(4, 4);
    RunOptions run;
    run.num_requests = 4;
    run.max_concurrency = 2;
    run.request_timeout = absl::Milliseconds(200);
    const absl::Time start = absl::Now();
    auto result = RunBenchmark(run, *workload, *backend);
    REQUIRE(result.ok());
    CHECK(absl::Now() - start < absl::Seconds(3));
    CHECK(result->records.size() == 4);
    for (const RequestRecord& record : result->records) CHECK(record.status == "DEADLINE_EXCEEDED");
  }
}

TEST_CASE("Invalid run options are rejected") {
  auto fake = StartFake({});
  auto backend = Connect(*fake);
  auto workload = Synthetic(4, 4);
  RunOptions run;  // Neither a count nor a duration.
  CHECK(RunBenchmark(run, *workload, *backend).status().code() ==
        absl::StatusCode::kInvalidArgument);
  run.num_requests = 1;
  run.request_rate = -1;
  CHECK_FALSE(RunBenchmark(run, *workload, *backend).ok());
}

}  // namespace
}  // namespace kestrel::bench

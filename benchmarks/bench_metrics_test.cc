// Tests of the summary figures on hand-computed records.
#include "benchmarks/bench_metrics.h"

#include <catch2/catch.hpp>

namespace kestrel::bench {
namespace {

using Catch::Detail::Approx;

RequestRecord Ok(double ttft, std::vector<double> itl, int64_t input) {
  RequestRecord record;
  record.ok = true;
  record.ttft_s = ttft;
  record.itl_s = itl;
  record.e2e_s = ttft;
  for (double gap : itl) record.e2e_s += gap;
  record.input_tokens = input;
  record.output_tokens = static_cast<int64_t>(itl.size()) + 1;
  return record;
}

RequestRecord Failed(const std::string& status) {
  RequestRecord record;
  record.ok = false;
  record.status = status;
  record.output_tokens = 3;  // Tokens of failed requests do not count.
  return record;
}

TEST_CASE("Percentiles interpolate like numpy") {
  LatencyStats stats = ComputeStats({0.004, 0.001, 0.003, 0.002, 0.010});
  CHECK(stats.count == 5);
  CHECK(stats.mean_ms == Approx(4.0));
  CHECK(stats.median_ms == Approx(3.0));
  // numpy.percentile([1,2,3,4,10], 90) = 7.6; 99 -> 9.76.
  CHECK(stats.p90_ms == Approx(7.6));
  CHECK(stats.p99_ms == Approx(9.76));
  CHECK(stats.max_ms == Approx(10.0));
  CHECK(ComputeStats({}).count == 0);
  CHECK(ComputeStats({0.5}).p99_ms == Approx(500));
}

TEST_CASE("Summarize: throughput, TPOT, ITL, errors and goodput") {
  std::vector<RequestRecord> records = {
      Ok(0.100, {0.010, 0.010, 0.010}, 10),  // e2e 0.130, tpot 10 ms
      Ok(0.300, {0.050, 0.050}, 20),         // e2e 0.400, tpot 50 ms
      Ok(0.050, {}, 5),                      // one token: no TPOT
      Failed("UNAVAILABLE"),
      Failed("UNAVAILABLE"),
      Failed("RESOURCE_EXHAUSTED"),
  };
  Summary summary = Summarize(records, 2.0, {.ttft_ms = 200, .tpot_ms = 20});
  CHECK(summary.requests == 6);
  CHECK(summary.completed == 3);
  CHECK(summary.failed == 3);
  CHECK(summary.errors_by_status ==
        std::map<std::string, int64_t>{{"RESOURCE_EXHAUSTED", 1}, {"UNAVAILABLE", 2}});
  CHECK(summary.input_tokens == 35);
  CHECK(summary.output_tokens == 4 + 3 + 1);
  CHECK(summary.request_throughput == Approx(1.5));
  CHECK(summary.input_token_throughput == Approx(17.5));
  CHECK(summary.output_token_throughput == Approx(4.0));
  CHECK(summary.total_token_throughput == Approx(21.5));
  CHECK(summary.ttft.count == 3);
  CHECK(summary.ttft.median_ms == Approx(100));
  CHECK(summary.tpot.count == 2);
  CHECK(summary.tpot.mean_ms == Approx(30));
  CHECK(summary.itl.count == 5);
  CHECK(summary.itl.max_ms == Approx(50));
  CHECK(summary.e2e.max_ms == Approx(400));
  // Requests 0 and 2 meet both objectives; request 1 misses both.
  REQUIRE(summary.goodput.has_value());
  CHECK(summary.good_requests == 2);
  CHECK(*summary.goodput == Approx(1.0));

  CHECK_FALSE(Summarize(records, 2.0, {}).goodput.has_value());
}

TEST_CASE("The table and the JSON carry every figure") {
  Summary summary = Summarize({Ok(0.1, {0.01}, 4), Failed("DEADLINE_EXCEEDED")}, 1.0,
                              {.ttft_ms = 500, .tpot_ms = std::nullopt});
  const std::string table = FormatTable(summary, "test");
  for (const char* needle : {"Request throughput", "Input token throughput",
                             "Output token throughput", "Total token throughput", "Goodput",
                             "DEADLINE_EXCEEDED:", "TTFT", "TPOT", "ITL", "E2E", "p99"}) {
    INFO(needle);
    CHECK(table.find(needle) != std::string::npos);
  }
  nlohmann::json json = SummaryToJson(summary);
  CHECK(json["errors_by_status"]["DEADLINE_EXCEEDED"] == 1);
  CHECK(json["ttft"]["p99_ms"].get<double>() == Approx(100));
  CHECK(json["goodput"].get<double>() == Approx(1.0));
  CHECK(RecordToJson(Ok(0.1, {0.01}, 4))["itl_s"].size() == 1);
}

}  // namespace
}  // namespace kestrel::bench

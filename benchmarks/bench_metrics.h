// kestrel-bench's accounting: what is measured per request, and the summary
// figures (throughput, TTFT, TPOT, ITL, E2E percentiles, errors, goodput)
// computed from those records. docs/benchmarks.md defines each figure.
#ifndef KESTREL_BENCHMARKS_BENCH_METRICS_H_
#define KESTREL_BENCHMARKS_BENCH_METRICS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace kestrel::bench {

// One request as the client saw it. Times are seconds.
struct RequestRecord {
  int64_t index = 0;   // Issue order within the run.
  double start_s = 0;  // Issue time, from the start of the measured run.
  bool ok = false;     // Ended normally (every token received).
  // "OK", a gRPC code name ("UNAVAILABLE"), "HTTP 503", or a finish
  // reason that is an error ("FINISH_REASON_ERROR").
  std::string status = "OK";
  std::string error;   // The error message, empty when ok.
  double ttft_s = -1;  // Issue to first token; < 0 when none arrived.
  // Gaps between successive streamed chunks (one token each on Kestrel).
  std::vector<double> itl_s;
  double e2e_s = 0;           // Issue to the end of the stream.
  int64_t input_tokens = 0;   // The server's count when it reports one.
  int64_t output_tokens = 0;  // Likewise; else the tokens streamed.
};

// Distribution of one latency, in milliseconds. Percentiles interpolate
// linearly between order statistics (numpy's default).
struct LatencyStats {
  int64_t count = 0;
  double mean_ms = 0;
  double median_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
};

// `values_s` in seconds; all zero when empty.
LatencyStats ComputeStats(std::vector<double> values_s);

// Service-level objectives for goodput; unset ones are not checked.
struct SloOptions {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
};

struct Summary {
  double duration_s = 0;  // Measured run: first issue to last end.
  int64_t requests = 0;   // Measured requests issued.
  int64_t completed = 0;  // ...of which ended ok.
  int64_t failed = 0;
  std::map<std::string, int64_t> errors_by_status;
  // Tokens of completed requests.
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  double request_throughput = 0;  // Completed requests / duration.
  double input_token_throughput = 0;
  double output_token_throughput = 0;
  double total_token_throughput = 0;
  LatencyStats ttft;  // Completed requests.
  // Per completed request with >= 2 output tokens:
  // (e2e - ttft) / (output_tokens - 1).
  LatencyStats tpot;
  LatencyStats itl;  // Every gap of every completed request.
  LatencyStats e2e;  // Completed requests.
  // Completed requests meeting every SLO set, per second of duration;
  // unset without SLOs. A request with one output token has no TPOT and
  // meets the TPOT objective.
  std::optional<double> goodput;
  int64_t good_requests = 0;
};

Summary Summarize(const std::vector<RequestRecord>& records, double duration_s,
                  const SloOptions& slo);

// A fixed-width table for a terminal, headed by `title`.
std::string FormatTable(const Summary& summary, const std::string& title);

// Machine-readable summary (field names in snake_case, latencies in ms).
nlohmann::json SummaryToJson(const Summary& summary);
nlohmann::json RecordToJson(const RequestRecord& record);

}  // namespace kestrel::bench

#endif  // KESTREL_BENCHMARKS_BENCH_METRICS_H_

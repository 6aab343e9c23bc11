// Summary statistics over request records.
#include "benchmarks/bench_metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kestrel::bench {
namespace {

// Linear interpolation between the closest ranks (numpy's default).
// REQUIRES: `sorted` is non-empty and sorted ascending.
double Percentile(const std::vector<double>& sorted, double p) {
  const double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, sorted.size() - 1);
  return sorted[below] + (rank - static_cast<double>(below)) * (sorted[above] - sorted[below]);
}

nlohmann::json StatsToJson(const LatencyStats& stats) {
  return {{"count", stats.count},   {"mean_ms", stats.mean_ms}, {"median_ms", stats.median_ms},
          {"p90_ms", stats.p90_ms}, {"p99_ms", stats.p99_ms},   {"max_ms", stats.max_ms}};
}

}  // namespace

LatencyStats ComputeStats(std::vector<double> values_s) {
  LatencyStats stats;
  if (values_s.empty()) return stats;
  std::sort(values_s.begin(), values_s.end());
  stats.count = static_cast<int64_t>(values_s.size());
  stats.mean_ms = 1e3 * std::accumulate(values_s.begin(), values_s.end(), 0.0) /
                  static_cast<double>(values_s.size());
  stats.median_ms = 1e3 * Percentile(values_s, 50);
  stats.p90_ms = 1e3 * Percentile(values_s, 90);
  stats.p99_ms = 1e3 * Percentile(values_s, 99);
  stats.max_ms = 1e3 * values_s.back();
  return stats;
}

Summary Summarize(const std::vector<RequestRecord>& records, double duration_s,
                  const SloOptions& slo) {
  Summary summary;
  summary.duration_s = duration_s;
  summary.requests = static_cast<int64_t>(records.size());
  std::vector<double> ttft, tpot, itl, e2e;
  for (const RequestRecord& record : records) {
    if (!record.ok) {
      ++summary.failed;
      ++summary.errors_by_status[record.status];
      continue;
    }
    ++summary.completed;
    summary.input_tokens += record.input_tokens;
    summary.output_tokens += record.output_tokens;
    if (record.ttft_s >= 0) ttft.push_back(record.ttft_s);
    e2e.push_back(record.e2e_s);
    itl.insert(itl.end(), record.itl_s.begin(), record.itl_s.end());
    std::optional<double> request_tpot;
    if (record.output_tokens >= 2 && record.ttft_s >= 0) {
      request_tpot = (record.e2e_s - record.ttft_s) / static_cast<double>(record.output_tokens - 1);
      tpot.push_back(*request_tpot);
    }
    const bool ttft_ok =
        !slo.ttft_ms.has_value() || (record.ttft_s >= 0 && record.ttft_s * 1e3 <= *slo.ttft_ms);
    const bool tpot_ok = !slo.tpot_ms.has_value() || !request_tpot.has_value() ||
                         *request_tpot * 1e3 <= *slo.tpot_ms;
    if (ttft_ok && tpot_ok) ++summary.good_requests;
  }
  if (duration_s > 0) {
    summary.request_throughput = static_cast<double>(summary.completed) / duration_s;
    summary.input_token_throughput = static_cast<double>(summary.input_tokens) / duration_s;
    summary.output_token_throughput = static_cast<double>(summary.output_tokens) / duration_s;
    summary.total_token_throughput =
        summary.input_token_throughput + summary.output_token_throughput;
    if (slo.ttft_ms.has_value() || slo.tpot_ms.has_value()) {
      summary.goodput = static_cast<double>(summary.good_requests) / duration_s;
    }
  }
  summary.ttft = ComputeStats(std::move(ttft));
  summary.tpot = ComputeStats(std::move(tpot));
  summary.itl = ComputeStats(std::move(itl));
  summary.e2e = ComputeStats(std::move(e2e));
  return summary;
}

std::string FormatTable(const Summary& s, const std::string& title) {
  std::string out = absl::StrFormat("============ %s ============\n", title);
  auto line = [&](const std::string& name, const std::string& value) {
    absl::StrAppendFormat(&out, "%-34s %s\n", name, value);
  };
  line("Duration (s):", absl::StrFormat("%.2f", s.duration_s));
  line("Requests issued:", absl::StrCat(s.requests));
  line("Requests completed:", absl::StrCat(s.completed));
  line("Requests failed:", absl::StrCat(s.failed));
  for (const auto& [status, count] : s.errors_by_status)
    line("  " + status + ":", absl::StrCat(count));
  line("Input tokens:", absl::StrCat(s.input_tokens));
  line("Output tokens:", absl::StrCat(s.output_tokens));
  line("Request throughput (req/s):", absl::StrFormat("%.2f", s.request_throughput));
  line("Input token throughput (tok/s):", absl::StrFormat("%.2f", s.input_token_throughput));
  line("Output token throughput (tok/s):", absl::StrFormat("%.2f", s.output_token_throughput));
  line("Total token throughput (tok/s):", absl::StrFormat("%.2f", s.total_token_throughput));
  if (s.goodput.has_value()) {
    line("Goodput (req/s):",
         absl::StrFormat("%.2f (%d requests met the SLOs)", *s.goodput, s.good_requests));
  }
  absl::StrAppendFormat(&out, "%-18s %10s %10s %10s %10s %10s %8s\n", "Latency (ms)", "mean",
                        "median", "p90", "p99", "max", "count");
  auto row = [&](const std::string& name, const LatencyStats& stats) {
    absl::StrAppendFormat(&out, "%-18s %10.2f %10.2f %10.2f %10.2f %10.2f %8d\n", name,
                          stats.mean_ms, stats.median_ms, stats.p90_ms, stats.p99_ms, stats.max_ms,
                          stats.count);
  };
  row("TTFT", s.ttft);
  row("TPOT", s.tpot);
  row("ITL", s.itl);
  row("E2E", s.e2e);
  return out;
}

nlohmann::json SummaryToJson(const Summary& s) {
  nlohmann::json json = {
      {"duration_s", s.duration_s},
      {"requests", s.requests},
      {"completed", s.completed},
      {"failed", s.failed},
      {"errors_by_status", s.errors_by_status},
      {"input_tokens", s.input_tokens},
      {"output_tokens", s.output_tokens},
      {"request_throughput", s.request_throughput},
      {"input_token_throughput", s.input_token_throughput},
      {"output_token_throughput", s.output_token_throughput},
      {"total_token_throughput", s.total_token_throughput},
      {"ttft", StatsToJson(s.ttft)},
      {"tpot", StatsToJson(s.tpot)},
      {"itl", StatsToJson(s.itl)},
      {"e2e", StatsToJson(s.e2e)},
      {"good_requests", s.good_requests},
  };
  json["goodput"] = s.goodput.has_value() ? nlohmann::json(*s.goodput) : nlohmann::json(nullptr);
  return json;
}

nlohmann::json RecordToJson(const RequestRecord& r) {
  return {{"index", r.index},
          {"start_s", r.start_s},
          {"ok", r.ok},
          {"status", r.status},
          {"error", r.error},
          {"ttft_s", r.ttft_s},
          {"itl_s", r.itl_s},
          {"e2e_s", r.e2e_s},
          {"input_tokens", r.input_tokens},
          {"output_tokens", r.output_tokens}};
}

}  // namespace kestrel::bench

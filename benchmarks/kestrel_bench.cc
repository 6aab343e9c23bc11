// kestrel-bench: the serving load generator. Drives a Kestrel server (gRPC)
// or any OpenAI-compatible HTTP server with a synthetic or dataset workload
// and reports throughput, TTFT, TPOT, ITL and E2E latency (see
// docs/benchmarks.md). Exit codes: 0 ok, 1 local error (output files, plot),
// 2 usage, 3 server unreachable, 4 every measured request failed.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "benchmarks/bench_grpc_backend.h"
#include "benchmarks/bench_metrics.h"
#include "benchmarks/bench_openai_backend.h"
#include "benchmarks/bench_runner.h"
#include "benchmarks/bench_workload.h"
#include "client/cli_flags.h"
#include "client/client.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

// Target.
ABSL_FLAG(std::string, backend, "kestrel", "kestrel (gRPC API) or openai (HTTP /v1/completions).");
ABSL_FLAG(std::string, address, "localhost:50051", "kestrel backend: server address.");
ABSL_FLAG(std::string, base_url, "http://localhost:8000", "openai backend: server URL.");
ABSL_FLAG(std::string, model, "", "openai backend: the model name to send.");
ABSL_FLAG(std::string, api_key, "", "API key (default $KESTREL_API_KEY).");
ABSL_FLAG(bool, tls, false, "kestrel backend: connect with TLS.");
ABSL_FLAG(std::string, tls_roots, "", "kestrel backend: PEM file of root certificates.");
ABSL_FLAG(absl::Duration, probe_timeout, absl::Seconds(5),
          "How long to wait for the server to answer before the run.");

// Load shape.
ABSL_FLAG(double, request_rate, std::numeric_limits<double>::infinity(),
          "Mean requests per second; inf sends them all at once.");
ABSL_FLAG(std::string, arrivals, "poisson", "poisson (gamma with --burstiness) or constant.");
ABSL_FLAG(double, burstiness, 1.0, "Gamma shape of the arrival gaps: 1 Poisson, <1 burstier.");
ABSL_FLAG(int, max_concurrency, 0, "Most requests in flight; 0: no limit.");
ABSL_FLAG(int64_t, num_requests, 200, "Measured requests; 0: as many as --duration allows.");
ABSL_FLAG(absl::Duration, duration, absl::ZeroDuration(),
          "Issue requests for at most this long (0: no limit).");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(10),
          "With --duration: how long requests in flight at its end may finish.");
ABSL_FLAG(absl::Duration, request_timeout, absl::Seconds(60), "Deadline of each request.");
ABSL_FLAG(int, warmup_requests, 0, "Requests run first and left out of the results.");
ABSL_FLAG(uint64_t, seed, 0, "Seed of the workload and arrival randomness.");
ABSL_FLAG(std::string, sweep, "",
          "Comma-separated request rates (inf allowed): one run each, one JSON each, and a plot.");
ABSL_FLAG(std::string, sweep_dir, "kestrel-bench-sweep", "Where --sweep writes its files.");

// Workload.
ABSL_FLAG(std::string, dataset, "",
          "JSONL file: {\"prompt\": \"...\", \"output_tokens\": N} per line (N optional).");
ABSL_FLAG(std::string, input_len, "fixed:128",
          "Synthetic prompt tokens: N, fixed:N, uniform:MIN:MAX or normal:MEAN:STDDEV.");
ABSL_FLAG(std::string, output_len, "fixed:128", "Output tokens (max_tokens), same forms.");
ABSL_FLAG(double, shared_prefix_fraction, 0.0,
          "Fraction of each synthetic prompt shared by all requests, [0, 1].");
ABSL_FLAG(int, vocab_size, 0,
          "Synthetic token ids are drawn below this; 0: the model's (kestrel) or 256.");
ABSL_FLAG(bool, ignore_eos, false, "Generate exactly max_tokens (servers compared equally).");
ABSL_FLAG(float, temperature, 0.0, "Sampling temperature; unset: the server's default.");

// Report.
ABSL_FLAG(double, slo_ttft_ms, 0, "Goodput objective for TTFT in ms (0: none).");
ABSL_FLAG(double, slo_tpot_ms, 0, "Goodput objective for TPOT in ms (0: none).");
ABSL_FLAG(std::string, json_out, "", "Write the results as JSON to this file.");
ABSL_FLAG(bool, save_requests, false, "Include every request's record in the JSON.");
ABSL_FLAG(std::string, label, "", "Title of the report.");

namespace kestrel::bench {
namespace {

constexpr char kUsageText[] = R"(Usage: kestrel-bench [flags]

Load-tests a Kestrel server (--backend=kestrel, gRPC) or an OpenAI-compatible
server (--backend=openai, /v1/completions) and reports request and token
throughput, TTFT, TPOT, ITL and E2E latency, errors and goodput.

Examples:
  kestrel-bench --address=localhost:50051 --num-requests=200 --max-concurrency=16
  kestrel-bench --request-rate=4 --duration=60s --input-len=uniform:64:512 --ignore-eos
  kestrel-bench --dataset=prompts.jsonl --sweep=1,2,4,8,inf --sweep-dir=out

Exit codes: 0 ok, 1 local error, 2 usage, 3 server unreachable,
4 every measured request failed.

Flags:
)";

enum ExitCode { kOk = 0, kLocalError = 1, kUsage = 2, kUnreachable = 3, kAllFailed = 4 };

std::string ApiKey() {
  std::string key = absl::GetFlag(FLAGS_api_key);
  if (key.empty()) {
    if (const char* env = std::getenv("KESTREL_API_KEY")) key = env;
  }
  return key;
}

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const client::CommandLine& line,
                                                     int* model_vocab_size) {
  std::optional<float> temperature;
  if (line.specified.count("temperature")) temperature = absl::GetFlag(FLAGS_temperature);
  const std::string backend = absl::GetFlag(FLAGS_backend);
  if (backend == "kestrel") {
    GrpcBackendOptions options;
    options.client.address = absl::GetFlag(FLAGS_address);
    options.client.api_key = ApiKey();
    options.client.use_tls = absl::GetFlag(FLAGS_tls);
    if (!absl::GetFlag(FLAGS_tls_roots).empty()) {
      ASSIGN_OR_RETURN(options.client.tls_root_certs_pem, ReadFileToString(absl::GetFlag(FLAGS_tls_roots)));
    }
    options.temperature = temperature;
    // The model's vocabulary bounds synthetic token ids; a server that does
    // not answer GetModelInfo leaves the default.
    absl::StatusOr<std::unique_ptr<client::Client>> info_client =
        client::Client::Create(options.client);
    const bool need_vocab =
        absl::GetFlag(FLAGS_vocab_size) == 0 && absl::GetFlag(FLAGS_dataset).empty();
    if (need_vocab && info_client.ok()) {
      auto model = (*info_client)->GetModelInfo({.timeout = absl::GetFlag(FLAGS_probe_timeout)});
      if (model.ok() && model->vocab_size() > 3) *model_vocab_size = model->vocab_size();
    }
    ASSIGN_OR_RETURN(std::unique_ptr<GrpcBackend> grpc, GrpcBackend::Create(options));
    return std::unique_ptr<Backend>(std::move(grpc));
  }
  if (backend == "openai") {
    OpenAiBackendOptions options;
    options.base_url = absl::GetFlag(FLAGS_base_url);
    options.model = absl::GetFlag(FLAGS_model);
    options.api_key = ApiKey();
    options.temperature = temperature;
    ASSIGN_OR_RETURN(std::unique_ptr<OpenAiBackend> openai, OpenAiBackend::Create(options));
    return std::unique_ptr<Backend>(std::move(openai));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--backend must be kestrel or openai, got '", backend, "'"));
}

absl::StatusOr<std::unique_ptr<Workload>> MakeWorkload(int vocab_size) {
  if (!absl::GetFlag(FLAGS_dataset).empty()) {
    DatasetOptions options;
    options.path = absl::GetFlag(FLAGS_dataset);
    options.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
    ASSIGN_OR_RETURN(LengthDistribution output,
                     LengthDistribution::Parse(absl::GetFlag(FLAGS_output_len)));
    options.default_output_tokens = output.Max();
    ASSIGN_OR_RETURN(std::unique_ptr<DatasetWorkload> dataset, DatasetWorkload::Create(options));
    return std::unique_ptr<Workload>(std::move(dataset));
  }
  SyntheticOptions options;
  ASSIGN_OR_RETURN(options.input_length, LengthDistribution::Parse(absl::GetFlag(FLAGS_input_len)));
  ASSIGN_OR_RETURN(options.output_length,
                   LengthDistribution::Parse(absl::GetFlag(FLAGS_output_len)));
  options.shared_prefix_fraction = absl::GetFlag(FLAGS_shared_prefix_fraction);
  options.vocab_size = vocab_size;
  options.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  options.seed = absl::GetFlag(FLAGS_seed);
  ASSIGN_OR_RETURN(std::unique_ptr<SyntheticWorkload> synthetic,
                   SyntheticWorkload::Create(options));
  return std::unique_ptr<Workload>(std::move(synthetic));
}

absl::StatusOr<RunOptions> RunOptionsFromFlags(double rate) {
  RunOptions options;
  options.request_rate = rate;
  const std::string arrivals = absl::GetFlag(FLAGS_arrivals);
  if (arrivals == "poisson") {
    options.arrivals = ArrivalProcess::Kind::kPoisson;
  } else if (arrivals == "constant") {
    options.arrivals = ArrivalProcess::Kind::kConstant;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--arrivals must be poisson or constant, got '", arrivals, "'"));
  }
  options.burstiness = absl::GetFlag(FLAGS_burstiness);
  options.max_concurrency = absl::GetFlag(FLAGS_max_concurrency);
  options.num_requests = absl::GetFlag(FLAGS_num_requests);
  options.duration = absl::GetFlag(FLAGS_duration);
  options.drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  options.request_timeout = absl::GetFlag(FLAGS_request_timeout);
  options.warmup_requests = absl::GetFlag(FLAGS_warmup_requests);
  options.seed = absl::GetFlag(FLAGS_seed);
  if (options.warmup_requests < 0)
    return absl::InvalidArgumentError("--warmup-requests must be >= 0");
  if (options.num_requests < 0 || options.max_concurrency < 0) {
    return absl::InvalidArgumentError("--num-requests and --max-concurrency must be >= 0");
  }
  if (options.num_requests == 0 && options.duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "set a number of requests or a duration (--num-requests, --duration)");
  }
  if (options.request_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--request-timeout must be positive");
  }
  if (options.drain_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--drain-timeout must be >= 0");
  }
  // Validates the arrival flags now rather than in the middle of a sweep.
  RETURN_IF_ERROR(
      ArrivalProcess::Create(rate, options.arrivals, options.burstiness, options.seed).status());
  return options;
}

std::string RateName(double rate) { return std::isinf(rate) ? "inf" : absl::StrFormat("%g", rate); }

nlohmann::json ConfigJson(double rate) {
  return {{"backend", absl::GetFlag(FLAGS_backend)},
          {"target", absl::GetFlag(FLAGS_backend) == "openai" ? absl::GetFlag(FLAGS_base_url)
                                                              : absl::GetFlag(FLAGS_address)},
          {"request_rate", RateName(rate)},
          {"arrivals", absl::GetFlag(FLAGS_arrivals)},
          {"burstiness", absl::GetFlag(FLAGS_burstiness)},
          {"max_concurrency", absl::GetFlag(FLAGS_max_concurrency)},
          {"num_requests", absl::GetFlag(FLAGS_num_requests)},
          {"duration_s", absl::ToDoubleSeconds(absl::GetFlag(FLAGS_duration))},
          {"warmup_requests", absl::GetFlag(FLAGS_warmup_requests)},
          {"dataset", absl::GetFlag(FLAGS_dataset)},
          {"input_len", absl::GetFlag(FLAGS_input_len)},
          {"output_len", absl::GetFlag(FLAGS_output_len)},
          {"shared_prefix_fraction", absl::GetFlag(FLAGS_shared_prefix_fraction)},
          {"ignore_eos", absl::GetFlag(FLAGS_ignore_eos)},
          {"seed", absl::GetFlag(FLAGS_seed)}};
}

absl::Status WriteJson(const std::string& path, const nlohmann::json& json) {
  std::ofstream file(path);
  file << json.dump(2) << "\n";
  file.close();
  if (!file) return absl::InternalError(absl::StrCat("cannot write '", path, "'"));
  return absl::OkStatus();
}

// Writes the sweep's table and gnuplot script and runs gnuplot for a PNG of
// latency percentiles against output token throughput.
absl::Status Plot(const std::filesystem::path& dir, const std::vector<double>& rates,
                  const std::vector<Summary>& summaries) {
  std::ofstream data(dir / "sweep.dat");
  data << "# rate req_per_s out_tok_per_s ttft_p50 ttft_p90 ttft_p99 tpot_p50 tpot_p99 itl_p99 "
          "e2e_p50 e2e_p99 (ms)\n";
  for (size_t i = 0; i < summaries.size(); ++i) {
    const Summary& s = summaries[i];
    data << absl::StrFormat("%s %.4f %.4f %.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f\n",
                            RateName(rates[i]), s.request_throughput, s.output_token_throughput,
                            s.ttft.median_ms, s.ttft.p90_ms, s.ttft.p99_ms, s.tpot.median_ms,
                            s.tpot.p99_ms, s.itl.p99_ms, s.e2e.median_ms, s.e2e.p99_ms);
  }
  data.close();
  std::ofstream script(dir / "sweep.gp");
  script << "set terminal pngcairo size 1400,500 noenhanced\n"
         << "set output 'sweep.png'\n"
         << "set multiplot layout 1,2 title 'kestrel-bench sweep: latency vs throughput'\n"
         << "set grid\nset key top left\nset xlabel 'output tokens/s'\nset ylabel 'ms'\n"
         << "set title 'Time to first token'\n"
         << "plot 'sweep.dat' using 3:4 with linespoints title 'TTFT p50', "
            "'' using 3:5 with linespoints title 'TTFT p90', "
            "'' using 3:6 with linespoints title 'TTFT p99', "
            "'' using 3:6:1 with labels offset 0,1 notitle\n"
         << "set title 'Time per output token'\n"
         << "plot 'sweep.dat' using 3:7 with linespoints title 'TPOT p50', "
            "'' using 3:8 with linespoints title 'TPOT p99', "
            "'' using 3:9 with linespoints title 'ITL p99'\n"
         << "unset multiplot\n";
  script.close();
  if (!data || !script) return absl::InternalError(absl::StrCat("cannot write to ", dir.string()));
  const std::string command =
      absl::StrCat("cd '", dir.string(), "' && gnuplot sweep.gp 2> gnuplot.log");
  if (std::system(command.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat("gnuplot failed (see ", (dir / "gnuplot.log").string(),
                     "); is it installed? (Debian package gnuplot-nox, scripts/setup)"));
  }
  return absl::OkStatus();
}

// One run at `rate`: prints the table, returns the summary and its JSON.
absl::StatusOr<std::pair<Summary, nlohmann::json>> RunOnce(double rate, Backend& backend,
                                                           int vocab_size) {
  ASSIGN_OR_RETURN(RunOptions options, RunOptionsFromFlags(rate));
  ASSIGN_OR_RETURN(std::unique_ptr<Workload> workload, MakeWorkload(vocab_size));
  ASSIGN_OR_RETURN(RunResult result, RunBenchmark(options, *workload, backend));
  SloOptions slo;
  if (absl::GetFlag(FLAGS_slo_ttft_ms) > 0) slo.ttft_ms = absl::GetFlag(FLAGS_slo_ttft_ms);
  if (absl::GetFlag(FLAGS_slo_tpot_ms) > 0) slo.tpot_ms = absl::GetFlag(FLAGS_slo_tpot_ms);
  Summary summary = Summarize(result.records, result.duration_s, slo);
  std::string title =
      absl::GetFlag(FLAGS_label).empty() ? "kestrel-bench" : absl::GetFlag(FLAGS_label);
  std::cout << FormatTable(summary, absl::StrCat(title, " (request rate ", RateName(rate), ")"))
            << std::flush;
  if (result.cancelled_at_end) {
    std::cerr << "kestrel-bench: requests still running after the drain timeout were cancelled\n";
  }
  nlohmann::json json = {{"config", ConfigJson(rate)},
                         {"summary", SummaryToJson(summary)},
                         {"cancelled_at_end", result.cancelled_at_end},
                         {"finished_at", absl::FormatTime(absl::Now(), absl::UTCTimeZone())}};
  if (absl::GetFlag(FLAGS_save_requests)) {
    nlohmann::json records = nlohmann::json::array();
    for (const RequestRecord& record : result.records) records.push_back(RecordToJson(record));
    json["requests"] = std::move(records);
  }
  for (const RequestRecord& record : result.records) {
    if (!record.ok) {
      json["first_error"] = {{"status", record.status}, {"message", record.error}};
      break;
    }
  }
  return std::make_pair(std::move(summary), std::move(json));
}

int Main(int argc, char** argv) {
  absl::StatusOr<client::CommandLine> line = client::ParseFlags(argc, argv);
  auto usage_error = [](absl::string_view message) {
    std::cerr << "kestrel-bench: " << message << "\nRun 'kestrel-bench --help' for usage.\n";
    return kUsage;
  };
  if (!line.ok()) return usage_error(line.status().message());
  if (line->help) {
    std::cout << kUsageText << client::FlagHelp("benchmarks/kestrel_bench");
    return kOk;
  }
  if (!line->positional.empty()) {
    return usage_error(absl::StrCat("unexpected argument '", line->positional[0], "'"));
  }
  std::vector<double> rates;
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_sweep), ',', absl::SkipEmpty())) {
    double rate;
    if (!absl::SimpleAtod(part, &rate) || !(rate > 0)) {
      return usage_error(absl::StrCat("--sweep: '", part, "' is not a positive rate"));
    }
    rates.push_back(rate);
  }
  const bool sweep = !rates.empty();
  if (!sweep) rates.push_back(absl::GetFlag(FLAGS_request_rate));
  // Check every flag before touching the network.
  for (double rate : rates) {
    if (absl::Status status = RunOptionsFromFlags(rate).status(); !status.ok()) {
      return usage_error(status.message());
    }
  }
  int vocab_size = 256;
  if (absl::GetFlag(FLAGS_vocab_size) > 0) vocab_size = absl::GetFlag(FLAGS_vocab_size);
  int model_vocab_size = 0;
  absl::StatusOr<std::unique_ptr<Backend>> backend = MakeBackend(*line, &model_vocab_size);
  if (!backend.ok()) return usage_error(backend.status().message());
  if (absl::GetFlag(FLAGS_vocab_size) == 0 && model_vocab_size > 0) vocab_size = model_vocab_size;
  // The workload's own errors (unreadable dataset, bad line) are usage
  // errors too, and are reported before the server is contacted.
  if (absl::Status status = MakeWorkload(vocab_size).status(); !status.ok()) {
    return usage_error(status.message());
  }
  if (absl::Status status = (*backend)->Probe(absl::GetFlag(FLAGS_probe_timeout)); !status.ok()) {
    std::cerr << "kestrel-bench: the server does not answer: " << status.message() << "\n";
    return kUnreachable;
  }

  std::filesystem::path sweep_dir = absl::GetFlag(FLAGS_sweep_dir);
  if (sweep) {
    std::error_code error;
    std::filesystem::create_directories(sweep_dir, error);
    if (error) {
      std::cerr << "kestrel-bench: cannot create " << sweep_dir << ": " << error.message() << "\n";
      return kLocalError;
    }
  }
  std::vector<Summary> summaries;
  bool any_completed = false;
  for (double rate : rates) {
    auto run = RunOnce(rate, **backend, vocab_size);
    if (!run.ok()) return usage_error(run.status().message());
    auto& [summary, json] = *run;
    any_completed |= summary.completed > 0;
    if (sweep) {
      const std::string path =
          (sweep_dir / absl::StrCat("rate_", RateName(rate), ".json")).string();
      if (absl::Status status = WriteJson(path, json); !status.ok()) {
        std::cerr << "kestrel-bench: " << status.message() << "\n";
        return kLocalError;
      }
    }
    if (!absl::GetFlag(FLAGS_json_out).empty()) {
      if (absl::Status status = WriteJson(absl::GetFlag(FLAGS_json_out), json); !status.ok()) {
        std::cerr << "kestrel-bench: " << status.message() << "\n";
        return kLocalError;
      }
    }
    summaries.push_back(summary);
  }
  if (sweep) {
    if (absl::Status status = Plot(sweep_dir, rates, summaries); !status.ok()) {
      std::cerr << "kestrel-bench: " << status.message() << "\n";
      return kLocalError;
    }
    std::cout << "Sweep results and plot in " << sweep_dir.string() << "/\n";
  }
  if (!any_completed) {
    std::cerr << "kestrel-bench: every measured request failed\n";
    return kAllFailed;
  }
  return kOk;
}

}  // namespace
}  // namespace kestrel::bench

int main(int argc, char** argv) { return kestrel::bench::Main(argc, argv); }

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
#include "client/client.h"
#include "client/connection_flags.h"
#include "common/flags.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace kestrel::bench {
namespace {

constexpr char kDescription[] = R"(Load-tests a Kestrel server (--backend=kestrel, gRPC) or an OpenAI-compatible
server (--backend=openai, /v1/completions) and reports request and token
throughput, TTFT, TPOT, ITL and E2E latency, errors and goodput
(docs/benchmarks.md).

Examples:
  kestrel-bench --address=localhost:50051 --num-requests=200 --max-concurrency=16
  kestrel-bench --request-rate=4 --duration=60s --input-len=uniform:64:512 --ignore-eos
  kestrel-bench --dataset=prompts.jsonl --sweep=1,2,4,8,inf --sweep-dir=out

Exit codes: 0 ok, 1 local error, 2 usage, 3 server unreachable,
4 every measured request failed.)";

// The command line; initial values are the defaults.
struct Flags {
  std::string backend = "kestrel";
  client::ConnectionFlags connection;
  std::string base_url = "http://localhost:8000";
  std::string model_name;
  absl::Duration probe_timeout = absl::Seconds(5);

  double request_rate = std::numeric_limits<double>::infinity();
  std::string arrivals = "poisson";
  double burstiness = 1.0;
  int32_t max_concurrency = 0;
  int64_t num_requests = 200;
  absl::Duration duration = absl::ZeroDuration();
  absl::Duration drain_timeout = absl::Seconds(10);
  absl::Duration request_timeout = absl::Seconds(60);
  int32_t warmup_requests = 0;
  uint64_t seed = 0;
  std::string sweep;
  std::string sweep_dir = "kestrel-bench-sweep";

  std::string dataset;
  std::string input_len = "fixed:128";
  std::string output_len = "fixed:128";
  double shared_prefix_fraction = 0.0;
  int32_t vocab_size = 0;
  bool ignore_eos = false;
  float temperature = 0.0f;

  double slo_ttft_ms = 0;
  double slo_tpot_ms = 0;
  std::string json_out;
  bool save_requests = false;
  std::string label;
};

void DeclareFlags(FlagSet& flags, Flags& f) {
  flags.Section("Target");
  flags.Add("backend", &f.backend, "", "kestrel: the gRPC API; openai: HTTP /v1/completions")
      .Choices({"kestrel", "openai"});
  client::AddConnectionFlags(flags, &f.connection);  // --backend=kestrel; --api-key both
  flags.Add("base-url", &f.base_url, "URL", "openai backend: server URL");
  flags.Add("model-name", &f.model_name, "NAME", "openai backend: the model name to send");
  flags.Add("probe-timeout", &f.probe_timeout, "DURATION",
            "How long to wait for the server to answer before the run");

  flags.Section("Load shape");
  flags.Add("request-rate", &f.request_rate, "RPS",
            "Mean requests per second; inf sends them all at once");
  flags.Add("arrivals", &f.arrivals, "", "Arrival process (poisson: gamma with --burstiness)")
      .Choices({"poisson", "constant"});
  flags.Add("burstiness", &f.burstiness, "SHAPE",
            "Gamma shape of the arrival gaps: 1 Poisson, <1 burstier");
  flags.Add("max-concurrency", &f.max_concurrency, "N", "Most requests in flight; 0: no limit");
  flags.Add("num-requests", &f.num_requests, "N",
            "Measured requests; 0: as many as --duration allows");
  flags.Add("duration", &f.duration, "DURATION", "Issue requests for at most this long (0: no limit)");
  flags.Add("drain-timeout", &f.drain_timeout, "DURATION",
            "With --duration: how long requests in flight at its end may finish");
  flags.Add("request-timeout", &f.request_timeout, "DURATION", "Deadline of each request");
  flags.Add("warmup-requests", &f.warmup_requests, "N",
            "Requests run first and left out of the results");
  flags.Add("seed", &f.seed, "N", "Seed of the workload and arrival randomness");
  flags.Add("sweep", &f.sweep, "RPS,...",
            "Request rates (inf allowed): one run each, one JSON each, and a plot");
  flags.Add("sweep-dir", &f.sweep_dir, "DIR", "Where --sweep writes its files");

  flags.Section("Workload");
  flags.Add("dataset", &f.dataset, "JSONL",
            "File of {\"prompt\": \"...\", \"output_tokens\": N} lines (N optional)");
  flags.Add("input-len", &f.input_len, "DIST",
            "Synthetic prompt tokens: N, fixed:N, uniform:MIN:MAX or normal:MEAN:STDDEV");
  flags.Add("output-len", &f.output_len, "DIST", "Output tokens (max_tokens), same forms");
  flags.Add("shared-prefix-fraction", &f.shared_prefix_fraction, "F",
            "Fraction of each synthetic prompt shared by all requests, [0, 1]");
  flags.Add("vocab-size", &f.vocab_size, "N",
            "Synthetic token ids are drawn below this; 0: the model's (kestrel) or 256");
  flags.Add("ignore-eos", &f.ignore_eos, "Generate exactly max_tokens (servers compared equally)");
  flags.Add("temperature", &f.temperature, "T", "Sampling temperature")
      .DefaultText("the server's");

  flags.Section("Report");
  flags.Add("slo-ttft-ms", &f.slo_ttft_ms, "MS", "Goodput objective for TTFT (0: none)");
  flags.Add("slo-tpot-ms", &f.slo_tpot_ms, "MS", "Goodput objective for TPOT (0: none)");
  flags.Add("json-out", &f.json_out, "PATH", "Write the results as JSON to this file");
  flags.Add("save-requests", &f.save_requests, "Include every request's record in the JSON");
  flags.Add("label", &f.label, "TITLE", "Title of the report");
}

enum ExitCode { kOk = 0, kLocalError = 1, kUsage = 2, kUnreachable = 3, kAllFailed = 4 };

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const Flags& f, const ParsedArgs& args,
                                                     int* model_vocab_size) {
  std::optional<float> temperature;
  if (args.Given("temperature")) temperature = f.temperature;
  ASSIGN_OR_RETURN(client::ClientOptions client_options, client::ToClientOptions(f.connection));
  if (f.backend == "kestrel") {
    GrpcBackendOptions options;
    options.client = client_options;
    options.temperature = temperature;
    // The model's vocabulary bounds synthetic token ids; a server that does
    // not answer GetModelInfo leaves the default.
    absl::StatusOr<std::unique_ptr<client::Client>> info_client =
        client::Client::Create(options.client);
    const bool need_vocab =
        f.vocab_size == 0 && f.dataset.empty();
    if (need_vocab && info_client.ok()) {
      auto model = (*info_client)->GetModelInfo({.timeout = f.probe_timeout});
      if (model.ok() && model->vocab_size() > 3) *model_vocab_size = model->vocab_size();
    }
    ASSIGN_OR_RETURN(std::unique_ptr<GrpcBackend> grpc, GrpcBackend::Create(options));
    return std::unique_ptr<Backend>(std::move(grpc));
  }
  if (f.backend == "openai") {
    OpenAiBackendOptions options;
    options.base_url = f.base_url;
    options.model = f.model_name;
    options.api_key = client_options.api_key;
    options.temperature = temperature;
    ASSIGN_OR_RETURN(std::unique_ptr<OpenAiBackend> openai, OpenAiBackend::Create(options));
    return std::unique_ptr<Backend>(std::move(openai));
  }
  return absl::InvalidArgumentError(absl::StrCat("--backend: unknown backend '", f.backend, "'"));
}

absl::StatusOr<std::unique_ptr<Workload>> MakeWorkload(const Flags& f, int vocab_size) {
  if (!f.dataset.empty()) {
    DatasetOptions options;
    options.path = f.dataset;
    options.ignore_eos = f.ignore_eos;
    ASSIGN_OR_RETURN(LengthDistribution output,
                     LengthDistribution::Parse(f.output_len));
    options.default_output_tokens = output.Max();
    ASSIGN_OR_RETURN(std::unique_ptr<DatasetWorkload> dataset, DatasetWorkload::Create(options));
    return std::unique_ptr<Workload>(std::move(dataset));
  }
  SyntheticOptions options;
  ASSIGN_OR_RETURN(options.input_length, LengthDistribution::Parse(f.input_len));
  ASSIGN_OR_RETURN(options.output_length,
                   LengthDistribution::Parse(f.output_len));
  options.shared_prefix_fraction = f.shared_prefix_fraction;
  options.vocab_size = vocab_size;
  options.ignore_eos = f.ignore_eos;
  options.seed = f.seed;
  ASSIGN_OR_RETURN(std::unique_ptr<SyntheticWorkload> synthetic,
                   SyntheticWorkload::Create(options));
  return std::unique_ptr<Workload>(std::move(synthetic));
}

absl::StatusOr<RunOptions> RunOptionsFromFlags(const Flags& f, double rate) {
  RunOptions options;
  options.request_rate = rate;
  const std::string arrivals = f.arrivals;
  if (arrivals == "poisson") {
    options.arrivals = ArrivalProcess::Kind::kPoisson;
  } else if (arrivals == "constant") {
    options.arrivals = ArrivalProcess::Kind::kConstant;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--arrivals must be poisson or constant, got '", arrivals, "'"));
  }
  options.burstiness = f.burstiness;
  options.max_concurrency = f.max_concurrency;
  options.num_requests = f.num_requests;
  options.duration = f.duration;
  options.drain_timeout = f.drain_timeout;
  options.request_timeout = f.request_timeout;
  options.warmup_requests = f.warmup_requests;
  options.seed = f.seed;
  if (options.warmup_requests < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--warmup-requests: must be >= 0, got ", options.warmup_requests));
  }
  if (options.num_requests < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--num-requests: must be >= 0, got ", options.num_requests));
  }
  if (options.max_concurrency < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-concurrency: must be >= 0, got ", options.max_concurrency));
  }
  if (options.num_requests == 0 && options.duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "set a number of requests or a duration (--num-requests, --duration)");
  }
  if (options.request_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--request-timeout: must be positive, got ",
                                                   absl::FormatDuration(options.request_timeout)));
  }
  if (options.drain_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--drain-timeout: must be >= 0, got ",
                                                   absl::FormatDuration(options.drain_timeout)));
  }
  // Validates the arrival flags now rather than in the middle of a sweep.
  RETURN_IF_ERROR(
      ArrivalProcess::Create(rate, options.arrivals, options.burstiness, options.seed).status());
  return options;
}

std::string RateName(double rate) { return std::isinf(rate) ? "inf" : absl::StrFormat("%g", rate); }

nlohmann::json ConfigJson(const Flags& f, double rate) {
  return {{"backend", f.backend},
          {"target", f.backend == "openai" ? f.base_url
                                                              : f.connection.address},
          {"request_rate", RateName(rate)},
          {"arrivals", f.arrivals},
          {"burstiness", f.burstiness},
          {"max_concurrency", f.max_concurrency},
          {"num_requests", f.num_requests},
          {"duration_s", absl::ToDoubleSeconds(f.duration)},
          {"warmup_requests", f.warmup_requests},
          {"dataset", f.dataset},
          {"input_len", f.input_len},
          {"output_len", f.output_len},
          {"shared_prefix_fraction", f.shared_prefix_fraction},
          {"ignore_eos", f.ignore_eos},
          {"seed", f.seed}};
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
absl::StatusOr<std::pair<Summary, nlohmann::json>> RunOnce(const Flags& f, double rate,
                                                           Backend& backend, int vocab_size) {
  ASSIGN_OR_RETURN(RunOptions options, RunOptionsFromFlags(f, rate));
  ASSIGN_OR_RETURN(std::unique_ptr<Workload> workload, MakeWorkload(f, vocab_size));
  ASSIGN_OR_RETURN(RunResult result, RunBenchmark(options, *workload, backend));
  SloOptions slo;
  if (f.slo_ttft_ms > 0) slo.ttft_ms = f.slo_ttft_ms;
  if (f.slo_tpot_ms > 0) slo.tpot_ms = f.slo_tpot_ms;
  Summary summary = Summarize(result.records, result.duration_s, slo);
  std::string title =
      f.label.empty() ? "kestrel-bench" : f.label;
  std::cout << FormatTable(summary, absl::StrCat(title, " (request rate ", RateName(rate), ")"))
            << std::flush;
  if (result.cancelled_at_end) {
    std::cerr << "kestrel-bench: requests still running after the drain timeout were cancelled\n";
  }
  nlohmann::json json = {{"config", ConfigJson(f, rate)},
                         {"summary", SummaryToJson(summary)},
                         {"cancelled_at_end", result.cancelled_at_end},
                         {"finished_at", absl::FormatTime(absl::Now(), absl::UTCTimeZone())}};
  if (f.save_requests) {
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
  Flags f;
  FlagSet flags("kestrel-bench", "", kDescription);
  DeclareFlags(flags, f);
  const ParsedArgs args = flags.ParseOrExit(argc, argv);
  auto usage_error = [&](absl::string_view message) {
    return flags.UsageError(std::string(message));
  };
  if (!args.positional.empty()) {
    return usage_error(absl::StrCat("unexpected argument '", args.positional[0], "' (see --help)"));
  }
  std::vector<double> rates;
  for (absl::string_view part :
       absl::StrSplit(f.sweep, ',', absl::SkipEmpty())) {
    double rate;
    if (!absl::SimpleAtod(part, &rate) || !(rate > 0)) {
      return usage_error(absl::StrCat("--sweep: '", part, "' is not a positive rate"));
    }
    rates.push_back(rate);
  }
  const bool sweep = !rates.empty();
  if (!sweep) rates.push_back(f.request_rate);
  // Check every flag before touching the network.
  for (double rate : rates) {
    if (absl::Status status = RunOptionsFromFlags(f, rate).status(); !status.ok()) {
      return usage_error(status.message());
    }
  }
  int vocab_size = 256;
  if (f.vocab_size > 0) vocab_size = f.vocab_size;
  int model_vocab_size = 0;
  absl::StatusOr<std::unique_ptr<Backend>> backend = MakeBackend(f, args, &model_vocab_size);
  if (!backend.ok()) return usage_error(backend.status().message());
  if (f.vocab_size == 0 && model_vocab_size > 0) vocab_size = model_vocab_size;
  // The workload's own errors (unreadable dataset, bad line) are usage
  // errors too, and are reported before the server is contacted.
  if (absl::Status status = MakeWorkload(f, vocab_size).status(); !status.ok()) {
    return usage_error(status.message());
  }
  if (absl::Status status = (*backend)->Probe(f.probe_timeout); !status.ok()) {
    std::cerr << "kestrel-bench: the server does not answer: " << status.message() << "\n";
    return kUnreachable;
  }

  std::filesystem::path sweep_dir = f.sweep_dir;
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
    auto run = RunOnce(f, rate, **backend, vocab_size);
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
    if (!f.json_out.empty()) {
      if (absl::Status status = WriteJson(f.json_out, json); !status.ok()) {
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

// kestrel-server: the Kestrel inference server process.
//
// Startup: flags -> model (built-in demo or a Hugging Face directory) ->
// engine -> gRPC server (health NOT_SERVING) -> warm-up request -> SERVING.
// SIGTERM/SIGINT: health NOT_SERVING, new requests UNAVAILABLE, in-flight
// requests finish for up to --drain_timeout, the rest end UNAVAILABLE, exit 0.
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/debugging/failure_signal_handler.h"
#include "absl/debugging/symbolize.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "engine/metrics.h"
#include "prometheus/registry.h"
#include "server/auth.h"
#include "server/kestrel_service.h"
#include "server/metrics_exposer.h"
#include "server/model_loader.h"
#include "server/server.h"
#include "server/shutdown_signals.h"
#include "server/tls.h"
#include "server/version.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "gRPC listen address, host:port (port 0 picks one)");
ABSL_FLAG(std::string, port_file, "",
          "If set, write the bound gRPC port to this file once serving (for scripts and tests)");
ABSL_FLAG(std::string, metrics_address, "0.0.0.0:9400",
          "Prometheus /metrics listen address, host:port; empty disables it");
ABSL_FLAG(std::string, metrics_port_file, "", "If set, write the bound metrics port to this file");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(30),
          "On SIGTERM/SIGINT, how long in-flight requests may run before they are cancelled");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off");
ABSL_FLAG(std::string, request_log, "text",
          "One line per finished request: text, json or off");
ABSL_FLAG(int, max_request_bytes, 4 << 20, "Largest gRPC request message accepted, in bytes");
ABSL_FLAG(int, max_stream_buffer_events, 4096,
          "Events buffered for a Generate stream whose client is not reading; past it the "
          "request is cancelled with RESOURCE_EXHAUSTED");

ABSL_FLAG(std::string, model, "demo",
          "\"demo\" (built-in random-weight Llama, no files) or a Hugging Face model directory");
ABSL_FLAG(std::string, model_name, "", "Name reported to clients and in metrics");
ABSL_FLAG(int, num_threads, 0, "Threads for the CPU kernels; 0 = one per CPU");
ABSL_FLAG(int64_t, kv_cache_mib, 256, "Memory for the paged KV cache, MiB");
ABSL_FLAG(int, max_model_len, 0, "Longest prompt plus output; 0 = the model's context length");
ABSL_FLAG(bool, mmap_weights, false,
          "Map the checkpoint instead of loading it into anonymous memory (faster start, "
          "slower decode)");

ABSL_FLAG(bool, bf16_dot, true,
          "BF16 checkpoints: AVX-512 BF16 dot products (activations rounded to bf16); about "
          "1.6x faster prefill. false = widen weights to F32 and multiply exactly");
ABSL_FLAG(std::string, kv_cache_dtype, "auto",
          "KV cache element type: auto (BF16 for BF16 checkpoints, else F32), f32 or bf16 (half "
          "the bytes: twice the tokens in --kv_cache_mib)");
ABSL_FLAG(int, max_num_batched_tokens, 2048, "Token budget of one engine step");
ABSL_FLAG(int, max_num_seqs, 256, "Most sequences running at once");
ABSL_FLAG(int, max_queued_requests, 1024,
          "Requests waiting to start beyond which new ones get RESOURCE_EXHAUSTED; 0 = unbounded");
ABSL_FLAG(bool, enable_prefix_caching, true, "Reuse KV blocks of shared prompt prefixes");
ABSL_FLAG(std::string, scheduling_policy, "priority", "fcfs or priority");

ABSL_FLAG(std::string, tls_cert_file, "", "PEM server certificate chain; enables TLS");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)");
ABSL_FLAG(std::string, api_keys_file, "",
          "File with one API key per line; every RPC except health then needs "
          "'authorization: Bearer <key>' (requires TLS)");

namespace kestrel::server {
namespace {

absl::Status WritePortFile(const std::string& path, int port) {
  if (path.empty()) return absl::OkStatus();
  // Write then rename, so a reader never sees a half-written file.
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp) << port << "\n";
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write port file ", path));
  }
  return absl::OkStatus();
}

// A sink that only waits for the end of the warm-up request.
class WarmupSink final : public engine::RequestSink {
 public:
  void OnTokens(engine::TokenEvent) override {}
  void OnFinish(engine::FinishEvent event) override {
    {
      std::lock_guard lock(mu_);
      status_ = event.status;
      done_ = true;
    }
    cv_.notify_all();
  }
  absl::Status Wait(absl::Duration timeout) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [this] { return done_; })) {
      return absl::DeadlineExceededError("warm-up request did not finish");
    }
    return status_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;     // guarded by mu_
  absl::Status status_;  // guarded by mu_
};

// Runs one short greedy request through the whole engine before the server
// reports SERVING, so the first user request does not pay for first-touch
// page faults and thread start-up.
absl::Status WarmUp(engine::Engine& engine) {
  engine::GenerateParams params;
  params.request_id = "warmup";
  params.prompt_ids = {1, 2, 3, 4};
  params.sampling.temperature = 0.0f;
  params.max_tokens = 2;
  params.ignore_eos = true;
  auto sink = std::make_shared<WarmupSink>();
  absl::StatusOr<uint64_t> handle = engine.Submit(params, sink);
  if (!handle.ok()) return handle.status();
  return sink->Wait(absl::Minutes(5));
}

absl::StatusOr<engine::RequestLogFormat> ParseRequestLog(const std::string& value) {
  if (value == "text") return engine::RequestLogFormat::kText;
  if (value == "json") return engine::RequestLogFormat::kJson;
  if (value == "off") return engine::RequestLogFormat::kOff;
  return absl::InvalidArgumentError(
      absl::StrCat("--request_log must be text, json or off, got '", value, "'"));
}

int Run() {
  const std::string level_name = absl::GetFlag(FLAGS_log_level);
  spdlog::level::level_enum level = spdlog::level::from_str(level_name);
  if (level == spdlog::level::off && level_name != "off") {
    spdlog::error("--log_level must be trace, debug, info, warn, error or off, got '{}'", level_name);
    return 2;
  }
  spdlog::set_level(level);
  absl::StatusOr<engine::RequestLogFormat> request_log = ParseRequestLog(absl::GetFlag(FLAGS_request_log));
  if (!request_log.ok()) {
    spdlog::error("{}", std::string(request_log.status().message()));
    return 2;
  }
  const std::string policy = absl::GetFlag(FLAGS_scheduling_policy);
  if (policy != "fcfs" && policy != "priority") {
    spdlog::error("--scheduling_policy must be fcfs or priority, got '{}'", policy);
    return 2;
  }
  if (absl::GetFlag(FLAGS_kv_cache_mib) <= 0) {
    spdlog::error("--kv_cache_mib must be positive, got {}", absl::GetFlag(FLAGS_kv_cache_mib));
    return 2;
  }
  const absl::StatusOr<model::KvCacheDType> kv_dtype =
      model::ParseKvCacheDType(absl::GetFlag(FLAGS_kv_cache_dtype));
  if (!kv_dtype.ok()) {
    spdlog::error("--{}", std::string(kv_dtype.status().message()));
    return 2;
  }

  // Before any thread starts, so only the watcher sees the signals.
  ShutdownSignals signals;

  ModelLoadOptions load;
  load.model = absl::GetFlag(FLAGS_model);
  load.model_name = absl::GetFlag(FLAGS_model_name);
  load.num_threads = absl::GetFlag(FLAGS_num_threads);
  load.kv_cache_bytes = static_cast<uint64_t>(absl::GetFlag(FLAGS_kv_cache_mib)) << 20;
  load.max_model_len = absl::GetFlag(FLAGS_max_model_len);
  load.mmap_weights = absl::GetFlag(FLAGS_mmap_weights);
  load.bf16_dot = absl::GetFlag(FLAGS_bf16_dot);
  load.kv_cache_dtype = *kv_dtype;
  const absl::Time load_start = absl::Now();
  absl::StatusOr<LoadedModel> model = LoadModel(load);
  if (!model.ok()) {
    spdlog::error("cannot load --model={}: {}", load.model, model.status().ToString());
    return 1;
  }
  spdlog::info("loaded model {} ({}, {} parameters, {}, context {}, {} KV cache) in {}",
               model->info.name(), model->info.architecture(), model->info.num_parameters(),
               model->info.dtype(), model->info.context_length(), model->kv_cache_dtype,
               absl::FormatDuration(absl::Now() - load_start));

  auto registry = std::make_shared<prometheus::Registry>();
  engine::EngineMetrics metrics(*registry, model->info.name());
  std::unique_ptr<MetricsExposer> exposer;
  if (const std::string address = absl::GetFlag(FLAGS_metrics_address); !address.empty()) {
    absl::StatusOr<std::unique_ptr<MetricsExposer>> created = MetricsExposer::Create(address, registry);
    if (!created.ok()) {
      spdlog::error("{}", std::string(created.status().message()));
      return 1;
    }
    exposer = std::move(*created);
    spdlog::info("metrics on http://{}/metrics (port {})", address, exposer->port());
    if (absl::Status s = WritePortFile(absl::GetFlag(FLAGS_metrics_port_file), exposer->port()); !s.ok()) {
      spdlog::error("{}", std::string(s.message()));
      return 1;
    }
  }

  engine::Engine::Options engine_options;
  engine_options.max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  engine_options.max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs);
  engine_options.max_queued_requests = absl::GetFlag(FLAGS_max_queued_requests);
  engine_options.enable_prefix_caching = absl::GetFlag(FLAGS_enable_prefix_caching);
  engine_options.policy = policy == "fcfs" ? scheduler::SchedulingPolicy::kFcfs
                                           : scheduler::SchedulingPolicy::kPriority;
  engine_options.eos_token_ids = model->eos_token_ids;
  engine_options.request_log = *request_log;
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = engine::Engine::Create(
      engine_options, std::move(model->executor), model->tokenizer.get(), &metrics);
  if (!engine.ok()) {
    spdlog::error("cannot start the engine: {}", engine.status().ToString());
    return 1;
  }

  KestrelServiceOptions service_options;
  service_options.listen_address = absl::GetFlag(FLAGS_listen);
  service_options.model_info = model->info;
  service_options.max_buffered_events = absl::GetFlag(FLAGS_max_stream_buffer_events);
  if (service_options.max_buffered_events < 1) {
    spdlog::error("--max_stream_buffer_events must be >= 1, got {}", service_options.max_buffered_events);
    return 2;
  }
  service_options.config = {
      {"model", load.model},
      {"max_model_len", std::to_string((*engine)->max_model_len())},
      {"kv_cache_mib", std::to_string(absl::GetFlag(FLAGS_kv_cache_mib))},
      {"kv_cache_dtype", model->kv_cache_dtype},
      {"max_num_batched_tokens", std::to_string(engine_options.max_num_batched_tokens)},
      {"max_num_seqs", std::to_string(engine_options.max_num_seqs)},
      {"max_queued_requests", std::to_string(engine_options.max_queued_requests)},
      {"enable_prefix_caching", engine_options.enable_prefix_caching ? "true" : "false"},
      {"scheduling_policy", policy},
      {"tls", absl::GetFlag(FLAGS_tls_cert_file).empty() ? "off" : "on"},
      {"api_keys", absl::GetFlag(FLAGS_api_keys_file).empty() ? "off" : "on"},
  };
  KestrelService service(service_options, engine->get(), model->tokenizer.get());

  ServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.max_receive_message_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  TlsOptions tls;
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  std::shared_ptr<grpc::AuthMetadataProcessor> auth;
  if (const std::string keys_file = absl::GetFlag(FLAGS_api_keys_file); !keys_file.empty()) {
    absl::StatusOr<ApiKeys> keys = ApiKeys::LoadFile(keys_file);
    if (!keys.ok()) {
      spdlog::error("{}", std::string(keys.status().message()));
      return 1;
    }
    spdlog::info("API keys required ({} loaded from --api_keys_file)", keys->size());
    auth = std::make_shared<ApiKeyAuthProcessor>(std::move(*keys));
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeListeningCredentials(tls, auth);
  if (!credentials.ok()) {
    spdlog::error("{}", std::string(credentials.status().message()));
    return 1;
  }
  options.credentials = *credentials;
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(std::move(options), &service);
  if (!server.ok()) {
    spdlog::error("kestrel-server: {}", std::string(server.status().message()));
    return 1;
  }

  if (absl::Status warm = WarmUp(**engine); !warm.ok()) {
    spdlog::error("warm-up failed: {}", warm.ToString());
    return 1;
  }
  (*server)->SetServing(true);
  spdlog::info("kestrel-server {} serving {} on {} (port {})", kVersion, model->info.name(),
               absl::GetFlag(FLAGS_listen), (*server)->port());
  if (absl::Status s = WritePortFile(absl::GetFlag(FLAGS_port_file), (*server)->port()); !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 1;
  }

  const absl::Duration drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  Server* raw_server = server->get();
  engine::Engine* raw_engine = engine->get();
  signals.Watch([&, raw_server, raw_engine, drain_timeout](int signal_number) {
    spdlog::info("received {}, draining for up to {}",
                 signal_number == SIGTERM ? "SIGTERM" : "SIGINT", absl::FormatDuration(drain_timeout));
    raw_server->SetServing(false);
    service.set_draining();
    raw_engine->StopAccepting();
    if (!raw_engine->WaitUntilIdle(drain_timeout)) {
      spdlog::warn("drain timeout: cancelling {} requests still running",
                   raw_engine->load().active_requests);
      raw_engine->CancelAll(absl::UnavailableError("server shutting down: drain timeout reached"));
      raw_engine->WaitUntilIdle(absl::Seconds(10));
    }
    // Every stream has its final status queued; give gRPC a moment to send.
    raw_server->Shutdown(absl::Seconds(5));
  });
  (*server)->Wait();
  // Wait() returns once gRPC has shut down, possibly while the watcher is
  // still returning from Shutdown(); everything it uses must outlive it.
  signals.Stop();
  spdlog::info("kestrel-server stopped");
  spdlog::shutdown();
  return 0;
}

}  // namespace
}  // namespace kestrel::server

int main(int argc, char** argv) {
  // A crash prints the faulting thread's symbolized stack to stderr (the
  // log), so a field failure leaves something to debug.
  absl::InitializeSymbolizer(argv[0]);
  absl::InstallFailureSignalHandler(absl::FailureSignalHandlerOptions());
  absl::SetProgramUsageMessage(
      "Kestrel LLM inference server.\n  kestrel-server --model=demo --listen=0.0.0.0:50051");
  absl::ParseCommandLine(argc, argv);
  return kestrel::server::Run();
}

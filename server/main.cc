// kestrel-server: the Kestrel inference server process.
//
// Startup: flags -> model (built-in demo/random, or a Hugging Face directory) ->
// engine -> gRPC server (health NOT_SERVING) -> warm-up request -> SERVING.
// SIGTERM/SIGINT: health NOT_SERVING, new requests UNAVAILABLE (or, with
// --drain-goaway, the listener closes and clients get GOAWAY), in-flight
// requests finish for up to --drain-timeout, the rest end UNAVAILABLE, exit 0.
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <string>

#include "absl/debugging/failure_signal_handler.h"
#include "absl/debugging/symbolize.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "engine/engine.h"
#include "engine/metrics.h"
#include "prometheus/registry.h"
#include "server/auth.h"
#include "server/http/http_server.h"
#include "server/kestrel_service.h"
#include "server/metrics_exposer.h"
#include "server/model_flags.h"
#include "server/model_loader.h"
#include "server/server.h"
#include "server/shutdown_signals.h"
#include "server/tls.h"
#include "server/version.h"
#include "spdlog/spdlog.h"

namespace kestrel::server {
namespace {

// The command line; initial values are the defaults.
struct Flags {
  std::string listen = "0.0.0.0:50051";
  std::string port_file;
  std::string metrics_address = "0.0.0.0:9400";
  std::string metrics_port_file;
  absl::Duration drain_timeout = absl::Seconds(30);
  bool drain_goaway = false;
  std::string log_level = "info";
  std::string request_log = "text";
  int32_t max_request_bytes = 4 << 20;
  int32_t max_stream_buffer_events = 4096;
  std::string http_listen;
  std::string http_port_file;
  int64_t http_max_body_bytes = 8 << 20;

  std::string model = "demo";
  std::string model_name;
  ModelFlags placement;
  std::string generation_config = "auto";

  int32_t max_num_batched_tokens = 2048;
  int32_t max_num_seqs = 256;
  int32_t max_queued_requests = 1024;
  bool enable_prefix_caching = true;
  std::string scheduling_policy = "priority";
  SpeculativeFlags speculative;

  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  std::string api_keys_file;
};

void DeclareFlags(FlagSet& flags, Flags& f) {
  flags.Section("Serving");
  flags.Add("listen", &f.listen, "HOST:PORT", "gRPC listen address (port 0 picks one)");
  flags.Add("port-file", &f.port_file, "PATH",
            "Write the bound gRPC port here once serving (for scripts and tests)");
  flags.Add("metrics-address", &f.metrics_address, "HOST:PORT",
            "Prometheus /metrics listen address; empty disables it");
  flags.Add("metrics-port-file", &f.metrics_port_file, "PATH",
            "Write the bound metrics port here");
  flags.Add("drain-timeout", &f.drain_timeout, "DURATION",
            "On SIGTERM/SIGINT, how long in-flight requests may run before they are cancelled");
  flags.Add("drain-goaway", &f.drain_goaway,
            "On SIGTERM/SIGINT, close the listener and send GOAWAY at once, so a proxy that "
            "opens a connection per request (nginx grpc_pass) retries new requests elsewhere; "
            "off: new calls get UNAVAILABLE until the drain ends (docs/operations.md)");
  flags.Add("log-level", &f.log_level, "", "Log verbosity")
      .Choices({"trace", "debug", "info", "warn", "error", "off"});
  flags.Add("request-log", &f.request_log, "", "One line per finished request")
      .Choices({"text", "json", "off"});
  flags.Add("max-request-bytes", &f.max_request_bytes, "BYTES",
            "Largest gRPC request message accepted");
  flags.Add("max-stream-buffer-events", &f.max_stream_buffer_events, "N",
            "Events buffered for a stream whose client is not reading; past it the request is "
            "cancelled (RESOURCE_EXHAUSTED)");

  flags.Add("http-listen", &f.http_listen, "HOST:PORT",
            "OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, "
            "/health, /metrics; docs/http.md) on this address, numeric host; empty disables it")
      .DefaultText("off");
  flags.Add("http-port-file", &f.http_port_file, "PATH",
            "Write the bound HTTP port here once serving");
  flags.Add("http-max-body-bytes", &f.http_max_body_bytes, "BYTES",
            "Largest HTTP request body; larger ones get 413 without being buffered");

  flags.Section("Model");
  flags.Add("model", &f.model, "DIR|demo|random",
            "A Hugging Face model directory; demo: the built-in stories260K, which tells short "
            "stories (llama2.c, MIT); random: a built-in random-weight Llama (nonsense, for tests)");
  flags.Add("model-name", &f.model_name, "NAME", "Name reported to clients and in metrics")
      .DefaultText("the model's");
  DeclareModelFlags(flags, f.placement);
  flags.Add("generation-config", &f.generation_config, "",
            "auto: the sampling fields a request leaves unset take the model's "
            "generation_config.json defaults (temperature, top_k, top_p, min_p, "
            "repetition_penalty), as vLLM does; none: the API's own defaults. Its eos_token_id "
            "always stops generation")
      .Choices({"auto", "none"});

  flags.Section("Engine");
  flags.Add("max-num-batched-tokens", &f.max_num_batched_tokens, "N",
            "Token budget of one engine step");
  flags.Add("max-num-seqs", &f.max_num_seqs, "N", "Most sequences running at once");
  flags.Add("max-queued-requests", &f.max_queued_requests, "N",
            "Waiting requests beyond which new ones get RESOURCE_EXHAUSTED; 0 = unbounded");
  flags.Add("enable-prefix-caching", &f.enable_prefix_caching,
            "Reuse KV blocks of shared prompt prefixes");
  flags.Add("scheduling-policy", &f.scheduling_policy, "", "Which waiting request runs first")
      .Choices({"fcfs", "priority"});
  DeclareSpeculativeFlags(flags, f.speculative);

  flags.Section("Security (docs/security.md)");
  flags.Add("tls-cert-file", &f.tls_cert_file, "PEM",
            "Server certificate chain; enables TLS");
  flags.Add("tls-key-file", &f.tls_key_file, "PEM", "Private key of --tls-cert-file");
  flags.Add("tls-client-ca-file", &f.tls_client_ca_file, "PEM",
            "CA bundle; clients must present a certificate it signed (mutual TLS)");
  flags.Add("api-keys-file", &f.api_keys_file, "PATH",
            "One API key per line; every RPC but health then needs 'authorization: Bearer "
            "<key>' (requires TLS)");
}

// Range checks the parser cannot make; an error names the flag.
std::string CheckFlags(const Flags& f) {
  auto at_least = [](const char* name, int64_t value, int64_t min) {
    return value >= min ? std::string()
                        : absl::StrCat("--", name, ": must be >= ", min, ", got ", value);
  };
  for (const std::string& error : {
           at_least("max-request-bytes", f.max_request_bytes, 1),
           at_least("max-stream-buffer-events", f.max_stream_buffer_events, 1),
           at_least("http-max-body-bytes", f.http_max_body_bytes, 1),
           at_least("max-num-batched-tokens", f.max_num_batched_tokens, 1),
           at_least("max-num-seqs", f.max_num_seqs, 1),
           at_least("max-queued-requests", f.max_queued_requests, 0),
       }) {
    if (!error.empty()) return error;
  }
  if (f.drain_timeout < absl::ZeroDuration()) {
    return absl::StrCat("--drain-timeout: must be >= 0, got ", absl::FormatDuration(f.drain_timeout));
  }
  if (std::string e = CheckModelFlags(f.placement); !e.empty()) return e;
  if (std::string e = CheckSpeculativeFlags(f.speculative); !e.empty()) return e;
  return "";
}


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
  if (absl::Status status = sink->Wait(absl::Minutes(5)); !status.ok()) return status;
  // The sink hears of the finish inside the engine step, before the step
  // frees the request's KV blocks and publishes the load: wait for that, so
  // a client's first GetServerInfo after SERVING sees an idle server. (On a
  // loaded machine the loop thread can lag the port file by milliseconds.)
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (engine::EngineLoad load = engine.load();
       (load.running_requests > 0 || load.kv_blocks_free < load.kv_blocks_total) &&
       absl::Now() < deadline;
       load = engine.load()) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  return absl::OkStatus();
}

engine::RequestLogFormat RequestLogFormatFor(const std::string& value) {
  if (value == "json") return engine::RequestLogFormat::kJson;
  if (value == "off") return engine::RequestLogFormat::kOff;
  return engine::RequestLogFormat::kText;
}

// Serves until SIGTERM/SIGINT; returns the exit code.
// REQUIRES: CheckFlags(f) is empty.
int Run(const Flags& f) {
  spdlog::set_level(spdlog::level::from_str(f.log_level));
  const std::string& policy = f.scheduling_policy;

  // Before any thread starts, so only the watcher sees the signals.
  ShutdownSignals signals;

  ModelLoadOptions load;
  load.model = f.model;
  load.model_name = f.model_name;
  ApplyModelFlags(f.placement, load);
  load.use_generation_config_defaults = f.generation_config == "auto";
  const absl::Time load_start = absl::Now();
  absl::StatusOr<LoadedModel> model = LoadModel(load);
  if (!model.ok()) {
    spdlog::error("cannot load --model={}: {}", load.model, model.status().ToString());
    return 1;
  }
  spdlog::info("loaded model {} ({}, {} parameters, {}{}, context {}, {} KV cache) on {} in {}",
               model->info.name(), model->info.architecture(), model->info.num_parameters(),
               model->info.dtype(),
               model->quantization == "none" ? "" : ", linear weights " + model->quantization,
               model->info.context_length(), model->kv_cache_dtype,
               model->backend, absl::FormatDuration(absl::Now() - load_start));
  if (load.model == "demo") {
    spdlog::info("the demo model is stories260K by Andrej Karpathy (llama2.c, MIT licence, "
                 "trained on TinyStories), built into this binary");
  }
  spdlog::info("sampling defaults from generation_config.json: {}; stop tokens: {}",
               model->sampling_defaults_source, absl::StrJoin(model->eos_token_ids, ", "));
  spdlog::info("{}", model->chat_renderer != nullptr
                         ? "chat prompts (gRPC chat, /v1/chat/completions) use the model's chat template"
                         : "the model has no chat template: chat prompts are refused, text prompts work");

  auto registry = std::make_shared<prometheus::Registry>();
  engine::EngineMetrics metrics(*registry, model->info.name());
  std::unique_ptr<MetricsExposer> exposer;
  if (const std::string address = f.metrics_address; !address.empty()) {
    absl::StatusOr<std::unique_ptr<MetricsExposer>> created = MetricsExposer::Create(address, registry);
    if (!created.ok()) {
      spdlog::error("{}", std::string(created.status().message()));
      return 1;
    }
    exposer = std::move(*created);
    spdlog::info("metrics on http://{}/metrics (port {})", address, exposer->port());
    if (absl::Status s = WritePortFile(f.metrics_port_file, exposer->port()); !s.ok()) {
      spdlog::error("{}", std::string(s.message()));
      return 1;
    }
  }

  engine::Engine::Options engine_options;
  engine_options.max_num_batched_tokens = f.max_num_batched_tokens;
  engine_options.max_num_seqs = f.max_num_seqs;
  engine_options.max_queued_requests = f.max_queued_requests;
  engine_options.enable_prefix_caching = f.enable_prefix_caching;
  engine_options.policy = policy == "fcfs" ? scheduler::SchedulingPolicy::kFcfs
                                           : scheduler::SchedulingPolicy::kPriority;
  engine_options.eos_token_ids = model->eos_token_ids;
  ApplySpeculativeFlags(f.speculative, engine_options);
  engine_options.request_log = RequestLogFormatFor(f.request_log);
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = engine::Engine::Create(
      engine_options, std::move(model->executor), model->tokenizer.get(), &metrics);
  if (!engine.ok()) {
    spdlog::error("cannot start the engine: {}", engine.status().ToString());
    return 1;
  }

  KestrelServiceOptions service_options;
  service_options.listen_address = f.listen;
  service_options.model_info = model->info;
  service_options.max_buffered_events = f.max_stream_buffer_events;
  service_options.chat_renderer = model->chat_renderer.get();
  service_options.sampling_defaults = model->sampling_defaults;
  service_options.config = {
      {"model", load.model},
      {"max_model_len", std::to_string((*engine)->max_model_len())},
      {"kv_cache_mib", std::to_string(f.placement.kv_cache_mib)},
      {"kv_cache_dtype", model->kv_cache_dtype},
      {"quantization", model->quantization},
      {"device", f.placement.device},
      {"tensor_parallel_size", std::to_string(f.placement.tensor_parallel_size)},
      {"backend", model->backend},
      {"max_num_batched_tokens", std::to_string(engine_options.max_num_batched_tokens)},
      {"max_num_seqs", std::to_string(engine_options.max_num_seqs)},
      {"max_queued_requests", std::to_string(engine_options.max_queued_requests)},
      {"enable_prefix_caching", engine_options.enable_prefix_caching ? "true" : "false"},
      {"scheduling_policy", policy},
      {"speculative_ngram_tokens", std::to_string(f.speculative.ngram_tokens)},
      {"tls", f.tls_cert_file.empty() ? "off" : "on"},
      {"api_keys", f.api_keys_file.empty() ? "off" : "on"},
      {"http_listen", f.http_listen.empty() ? "off" : f.http_listen},
      {"generation_config", f.generation_config},
      {"sampling_defaults", model->sampling_defaults_source},
  };
  KestrelService service(service_options, engine->get(), model->tokenizer.get());

  ServerOptions options;
  options.listen_address = f.listen;
  options.max_receive_message_bytes = f.max_request_bytes;
  TlsOptions tls;
  tls.cert_file = f.tls_cert_file;
  tls.key_file = f.tls_key_file;
  tls.client_ca_file = f.tls_client_ca_file;
  std::shared_ptr<grpc::AuthMetadataProcessor> auth;
  std::shared_ptr<const ApiKeys> api_keys;
  if (const std::string keys_file = f.api_keys_file; !keys_file.empty()) {
    absl::StatusOr<ApiKeys> keys = ApiKeys::LoadFile(keys_file);
    if (!keys.ok()) {
      spdlog::error("{}", std::string(keys.status().message()));
      return 1;
    }
    spdlog::info("API keys required ({} loaded from --api-keys-file)", keys->size());
    api_keys = std::make_shared<const ApiKeys>(*keys);
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

  // The OpenAI-compatible HTTP front end: the same engine, API keys, TLS
  // files and metrics registry as gRPC.
  std::unique_ptr<http::HttpServer> http_server;
  if (!f.http_listen.empty()) {
    http::HttpServerOptions http_options;
    http_options.listen_address = f.http_listen;
    http_options.model_name = model->info.name();
    http_options.max_body_bytes = f.http_max_body_bytes;
    http_options.max_buffered_events = f.max_stream_buffer_events;
    http_options.api_keys = api_keys;
    http_options.tls = tls;
    http_options.registry = registry;
    http_options.chat_renderer = model->chat_renderer.get();
    http_options.sampling_defaults = model->sampling_defaults;
    absl::StatusOr<std::unique_ptr<http::HttpServer>> created =
        http::HttpServer::Create(std::move(http_options), engine->get(), model->tokenizer.get());
    if (!created.ok()) {
      spdlog::error("kestrel-server: {}", std::string(created.status().message()));
      return 1;
    }
    http_server = std::move(*created);
  }

  if (absl::Status warm = WarmUp(**engine); !warm.ok()) {
    spdlog::error("warm-up failed: {}", warm.ToString());
    return 1;
  }
  (*server)->SetServing(true);
  spdlog::info("kestrel-server {} serving {} on {} (port {})", kVersion, model->info.name(),
               f.listen, (*server)->port());
  if (http_server != nullptr) {
    http_server->SetServing(true);
    spdlog::info("OpenAI-compatible HTTP API on {}://{} (port {})", tls.enabled() ? "https" : "http",
                 f.http_listen, http_server->port());
    if (absl::Status s = WritePortFile(f.http_port_file, http_server->port()); !s.ok()) {
      spdlog::error("{}", std::string(s.message()));
      return 1;
    }
  }
  if (absl::Status s = WritePortFile(f.port_file, (*server)->port()); !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 1;
  }

  const absl::Duration drain_timeout = f.drain_timeout;
  Server* raw_server = server->get();
  engine::Engine* raw_engine = engine->get();
  const bool drain_goaway = f.drain_goaway;
  http::HttpServer* raw_http = http_server.get();
  signals.Watch([&, raw_server, raw_engine, raw_http, drain_timeout, drain_goaway](int signal_number) {
    spdlog::info("received {}, draining for up to {}",
                 signal_number == SIGTERM ? "SIGTERM" : "SIGINT", absl::FormatDuration(drain_timeout));
    // /health answers 503 and new generation requests get 503; streams in
    // flight go on.
    if (raw_http != nullptr) raw_http->SetServing(false);
    if (drain_goaway) {
      // Close the listener and send GOAWAY first: a proxy (nginx grpc_pass)
      // then gets a refused connection and retries on another replica, where
      // a call answered UNAVAILABLE by a draining service would be lost.
      // Calls already accepted run on; gRPC cancels what is left after
      // drain_timeout plus the 5 s below, should the engine not get there.
      // Off by default: each connection then closes the moment its last
      // stream ends, and a client on a long-lived connection (the test
      // clients here, about 1 drain in 16) can lose that stream's trailers
      // to a reset ("Broken pipe").
      raw_server->BeginShutdown(drain_timeout + absl::Seconds(5));
    } else {
      raw_server->SetServing(false);
    }
    service.set_draining();
    raw_engine->StopAccepting();
    if (!raw_engine->WaitUntilIdle(drain_timeout)) {
      spdlog::warn("drain timeout: cancelling {} requests still running",
                   raw_engine->load().active_requests);
      raw_engine->CancelAll(absl::UnavailableError("server shutting down: drain timeout reached"));
      raw_engine->WaitUntilIdle(absl::Seconds(10));
    }
    // Every stream has its final status queued; give gRPC and HTTP a moment
    // to send.
    if (raw_http != nullptr) raw_http->Shutdown(absl::Seconds(5));
    if (drain_goaway) {
      raw_server->FinishShutdown(absl::Seconds(5));
    } else {
      raw_server->Shutdown(absl::Seconds(5));
    }
  });
  (*server)->Wait();
  // Wait() returns once gRPC has shut down, possibly while the watcher is
  // still returning from Shutdown(); everything it uses must outlive it.
  signals.Stop();
  spdlog::info("kestrel-server stopped");
  // Flush, not spdlog::shutdown(): the engine's loop thread may still be
  // writing the last request's log line after WaitUntilIdle() saw it finish
  // (it runs until `engine` is destroyed below), and logging through a
  // dropped default logger crashes.
  spdlog::default_logger()->flush();
  return 0;
}

}  // namespace
}  // namespace kestrel::server

int main(int argc, char** argv) {
  // A crash prints the faulting thread's symbolized stack to stderr (the
  // log), so a field failure leaves something to debug.
  absl::InitializeSymbolizer(argv[0]);
  absl::InstallFailureSignalHandler(absl::FailureSignalHandlerOptions());
  kestrel::server::Flags flags_values;
  kestrel::FlagSet flags("kestrel-server", "",
                         "The Kestrel LLM inference server (docs/operations.md).\n"
                         "  kestrel-server --model=demo --listen=0.0.0.0:50051\n"
                         "Exit codes: 0 stopped cleanly (SIGTERM/SIGINT), 1 runtime error (model, "
                         "ports, TLS files), 2 usage.");
  kestrel::server::DeclareFlags(flags, flags_values);
  const kestrel::ParsedArgs args = flags.ParseOrExit(argc, argv);
  if (!args.positional.empty()) {
    return flags.UsageError(absl::StrCat("unexpected argument '", args.positional[0], "' (see --help)"));
  }
  if (const std::string error = kestrel::server::CheckFlags(flags_values); !error.empty()) {
    return flags.UsageError(error);
  }
  return kestrel::server::Run(flags_values);
}

// A stand-in for kestrel-server's metrics side, for the end-to-end test with
// a real Prometheus: serves EngineMetrics on a free port, writes the port to
// --port-file, and keeps recording a steady, known traffic pattern (every
// request: 30 ms to first token, 1 ms queue, 0.5 s end to end) until SIGTERM
// or SIGINT, or --max-seconds as a backstop.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "engine/metrics.h"
#include "server/metrics_exposer.h"

int main(int argc, char** argv) {
  std::string address = "127.0.0.1:0";
  std::string port_file;
  double max_seconds = 120;
  kestrel::FlagSet flags("metrics_exposer_testbin", "",
                         "Serves EngineMetrics with a known traffic pattern, for the Prometheus "
                         "test.");
  flags.Add("metrics-address", &address, "HOST:PORT", "Listen address of /metrics");
  flags.Add("port-file", &port_file, "PATH", "Write the bound port here");
  flags.Add("max-seconds", &max_seconds, "S", "Exit after this long at the latest");
  flags.ParseOrExit(argc, argv);

  // Block the stop signals before any thread starts so only sigtimedwait
  // below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto registry = std::make_shared<prometheus::Registry>();
  kestrel::engine::EngineMetrics metrics(*registry, "demo");
  auto exposer = kestrel::server::MetricsExposer::Create(address, registry);
  if (!exposer.ok()) {
    std::cerr << exposer.status() << "\n";
    return 1;
  }
  if (!port_file.empty()) {
    // Written then renamed, so a reader never sees a partial number.
    const std::string tmp = port_file + ".tmp";
    std::ofstream(tmp) << (*exposer)->port() << "\n";
    std::filesystem::rename(tmp, port_file);
  }
  std::cerr << "serving metrics on port " << (*exposer)->port() << "\n";

  const absl::Time deadline = absl::Now() + absl::Seconds(max_seconds);
  const timespec tick = {0, 50 * 1000 * 1000};  // one request every 50 ms
  while (absl::Now() < deadline) {
    if (sigtimedwait(&stop_signals, nullptr, &tick) > 0) break;
    kestrel::engine::RequestSample request;
    request.status = "ok";
    request.finish_reason = "stop";
    request.prompt_tokens = 12;
    request.generation_tokens = 40;
    request.queue_time = absl::Milliseconds(1);
    request.time_to_first_token = absl::Milliseconds(30);
    request.end_to_end = absl::Milliseconds(500);
    metrics.RecordRequest(request);
    metrics.RecordStep(kestrel::engine::StepSample{
        .duration = absl::Milliseconds(8), .num_sequences = 4, .num_decode_tokens = 4});
    metrics.RecordInterTokenLatency(absl::Milliseconds(12));
    metrics.RecordLoad(kestrel::engine::LoadSample{
        .running_requests = 4, .kv_blocks_total = 64, .kv_blocks_free = 48});
  }
  return 0;
}

// kestrel-server: the Kestrel inference server process.
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/time.h"
#include "server/server.h"
#include "server/shutdown_signals.h"
#include "server/version.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "gRPC listen address, host:port (port 0 picks one)");
ABSL_FLAG(std::string, port_file, "",
          "If set, write the bound port to this file once serving (for scripts and tests)");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(30),
          "On SIGTERM/SIGINT, how long in-flight calls may run before they are cancelled");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off");
ABSL_FLAG(int, max_request_bytes, 4 << 20, "Largest gRPC request message accepted, in bytes");

namespace kestrel::server {
namespace {

int Run() {
  const std::string level_name = absl::GetFlag(FLAGS_log_level);
  spdlog::level::level_enum level = spdlog::level::from_str(level_name);
  if (level == spdlog::level::off && level_name != "off") {
    spdlog::error("--log_level must be trace, debug, info, warn, error or off, got '{}'", level_name);
    return 2;
  }
  spdlog::set_level(level);

  // Before gRPC starts any thread, so only the watcher sees the signals.
  ShutdownSignals signals;

  ServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.max_receive_message_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(options);
  if (!server.ok()) {
    spdlog::error("kestrel-server: {}", server.status().ToString());
    return 1;
  }
  spdlog::info("kestrel-server {} serving on {} (port {})", kVersion, options.listen_address,
               (*server)->port());

  if (const std::string port_file = absl::GetFlag(FLAGS_port_file); !port_file.empty()) {
    // Write then rename, so a reader never sees a half-written file.
    const std::string tmp = port_file + ".tmp";
    std::ofstream(tmp) << (*server)->port() << "\n";
    if (std::rename(tmp.c_str(), port_file.c_str()) != 0) {
      spdlog::error("cannot write --port_file {}", port_file);
      return 1;
    }
  }

  const absl::Duration drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  Server* raw_server = server->get();
  signals.Watch([raw_server, drain_timeout](int signal_number) {
    spdlog::info("received {}, draining for up to {}",
                 signal_number == SIGTERM ? "SIGTERM" : "SIGINT", absl::FormatDuration(drain_timeout));
    raw_server->Shutdown(drain_timeout);
  });
  (*server)->Wait();
  // Wait() returns once gRPC has shut down, possibly while the watcher is
  // still returning from Shutdown(); the server must outlive it.
  signals.Stop();
  spdlog::info("kestrel-server stopped");
  spdlog::shutdown();
  return 0;
}

}  // namespace
}  // namespace kestrel::server

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Kestrel LLM inference server. Flags: --listen, --port_file, ...");
  absl::ParseCommandLine(argc, argv);
  return kestrel::server::Run();
}

// Serves a Prometheus registry over HTTP at /metrics (prometheus-cpp's
// civetweb-based Exposer) on --metrics-address, separate from the gRPC port
// so scrapers need neither gRPC nor the API key.
#ifndef KESTREL_SERVER_METRICS_EXPOSER_H_
#define KESTREL_SERVER_METRICS_EXPOSER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace kestrel::server {

// A listening /metrics endpoint. Thread-safe: constant after Create();
// scrapes are served by the exposer's own threads while the registry's
// metrics are updated concurrently (prometheus-cpp metrics are atomic).
// Destroying it stops the HTTP server and closes the port; that takes up to
// ~2 s (civetweb's master thread polls its listening socket in 2 s quanta),
// so a draining server should destroy it last or alongside other waits.
//
//   ASSIGN_OR_RETURN(auto exposer, MetricsExposer::Create("0.0.0.0:9090", registry));
//   spdlog::info("metrics on port {}", exposer->port());
class MetricsExposer {
 public:
  // Starts serving `registry` at http://`address`/metrics. `address` is
  // host:port (IPv6 hosts in brackets: "[::1]:9090"); port 0 picks a free
  // port (see port()). Errors name the --metrics-address flag and the value:
  // INVALID_ARGUMENT for a malformed address or a null registry, UNAVAILABLE
  // when the address cannot be bound (in use, not a local address).
  static absl::StatusOr<std::unique_ptr<MetricsExposer>> Create(
      const std::string& address, std::shared_ptr<prometheus::Registry> registry);

  ~MetricsExposer();
  MetricsExposer(const MetricsExposer&) = delete;
  MetricsExposer& operator=(const MetricsExposer&) = delete;

  // The port actually bound (differs from the configured one when that was 0).
  int port() const { return port_; }

 private:
  MetricsExposer(std::shared_ptr<prometheus::Registry> registry,
                 std::unique_ptr<prometheus::Exposer> exposer, int port);

  // Constant after construction. The exposer holds only a weak_ptr to the
  // registry; keeping it here makes the registry outlive the HTTP server.
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_;
};

}  // namespace kestrel::server

#endif  // KESTREL_SERVER_METRICS_EXPOSER_H_

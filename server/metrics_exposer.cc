// MetricsExposer: validates --metrics-address, starts prometheus::Exposer
// and turns its exceptions into absl::Status.
#include "server/metrics_exposer.h"

#include <exception>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kestrel::server {
namespace {

// Checks the host:port shape ourselves: civetweb's listening_ports syntax is
// richer (a bare port, comma-separated lists, 's'/'r' suffixes for TLS and
// redirects), and an address it half-understands would fail later with a
// vaguer message or listen somewhere unexpected.
absl::Status ValidateAddress(absl::string_view address) {
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-address must be host:port (port 0 picks a free one), got \"",
                     address, "\": ", why));
  };
  if (address.empty()) return invalid("empty");
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return invalid("no port");
  const absl::string_view host = address.substr(0, colon);
  const absl::string_view port = address.substr(colon + 1);
  if (host.empty()) return invalid("no host (use 0.0.0.0 for every interface)");
  if (host.find(':') != absl::string_view::npos &&
      !(host.size() > 2 && host.front() == '[' && host.back() == ']')) {
    return invalid("an IPv6 host must be in brackets, e.g. [::1]:9090");
  }
  for (char c : host) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) || c == ',') {
      return invalid("the host contains a space or a comma");
    }
  }
  int port_number = 0;
  if (port.empty() || !absl::c_all_of(port, [](char c) { return absl::ascii_isdigit(c); }) ||
      !absl::SimpleAtoi(port, &port_number) || port_number > 65535) {
    return invalid("the port must be a number in [0, 65535]");
  }
  return absl::OkStatus();
}

}  // namespace

MetricsExposer::MetricsExposer(std::shared_ptr<prometheus::Registry> registry,
                               std::unique_ptr<prometheus::Exposer> exposer, int port)
    : registry_(std::move(registry)), exposer_(std::move(exposer)), port_(port) {}

MetricsExposer::~MetricsExposer() = default;

absl::StatusOr<std::unique_ptr<MetricsExposer>> MetricsExposer::Create(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry) {
  if (registry == nullptr) {
    return absl::InvalidArgumentError("MetricsExposer::Create: registry must not be null");
  }
  if (absl::Status status = ValidateAddress(address); !status.ok()) return status;

  // civetweb options. Two worker threads serve scrapes (one Prometheus plus
  // a human with curl); a client that stalls mid-request is dropped after
  // 10 s instead of holding a worker forever.
  std::vector<std::string> options = {"listening_ports",    address, "num_threads", "2",
                                      "request_timeout_ms", "10000"};
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // prometheus::Exposer throws (CivetException, a std::runtime_error) when
    // civetweb cannot start, e.g. the port is in use; no exception may leave
    // this function.
    exposer = std::make_unique<prometheus::Exposer>(std::move(options));
    exposer->RegisterCollectable(registry, "/metrics");
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on --metrics-address=", address,
                     " (address in use or not local?): ", e.what()));
  }
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty() || ports.front() <= 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot serve metrics on --metrics-address=", address, ": no listening port after start"));
  }
  return std::unique_ptr<MetricsExposer>(
      new MetricsExposer(std::move(registry), std::move(exposer), ports.front()));
}

}  // namespace kestrel::server

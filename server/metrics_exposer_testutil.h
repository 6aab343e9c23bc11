// Test helpers for the metrics endpoint: a plain HTTP/1.0 GET over a real
// socket (no HTTP library, so the test sees exactly what a scraper sees) and
// a free loopback port for child servers.
#ifndef KESTREL_SERVER_METRICS_EXPOSER_TESTUTIL_H_
#define KESTREL_SERVER_METRICS_EXPOSER_TESTUTIL_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kestrel::server::testing {

struct HttpResponse {
  int status_code = 0;
  // Header names lower-cased.
  std::map<std::string, std::string> headers;
  std::string body;
};

// GET http://127.0.0.1:`port``target` (target includes the query string,
// already percent-encoded) with HTTP/1.0 and Connection: close, reading until
// the server closes. Every socket operation is bounded by `timeout`.
// Chunked responses are not decoded (HTTP/1.0 servers do not send them).
absl::StatusOr<HttpResponse> HttpGet(int port, const std::string& target,
                                     absl::Duration timeout = absl::Seconds(10));

// Percent-encodes `text` for a URL query value.
std::string UrlEncode(const std::string& text);

// A loopback TCP port that was free a moment ago (bound to port 0, then
// closed), for servers that cannot report the port they picked.
int PickFreePort();

}  // namespace kestrel::server::testing

#endif  // KESTREL_SERVER_METRICS_EXPOSER_TESTUTIL_H_

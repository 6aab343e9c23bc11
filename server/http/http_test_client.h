// A small HTTP client for the HTTP front end's tests: libcurl requests with
// Server-Sent Events parsed, and raw sockets for misbehaving clients.
#ifndef KESTREL_SERVER_HTTP_HTTP_TEST_CLIENT_H_
#define KESTREL_SERVER_HTTP_HTTP_TEST_CLIENT_H_

#include <functional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace kestrel::server::http::testing {

struct FetchOptions {
  std::string method = "POST";
  std::string body;
  // Sent as `Authorization: Bearer <api_key>` when not empty.
  std::string api_key;
  // HTTPS: the CA that signed the server's certificate.
  std::string ca_file;
  // > 0: close the connection after this many SSE events (a client that
  // goes away mid-stream).
  int stop_after_events = 0;
  // > 0: give up (and close the connection) after this long.
  long timeout_ms = 120000;
  // Uploads this many bytes of '{' (a large body made on the fly, never held).
  long long upload_bytes = 0;
};

struct FetchResult {
  int curl_code = 0;  // CURLE_OK = 0
  std::string curl_error;
  long status = 0;
  std::string content_type;
  std::string body;
  // Streaming: every "data:" payload but [DONE], parsed; `done` once [DONE]
  // came.
  std::vector<nlohmann::ordered_json> events;
  bool done = false;

  nlohmann::ordered_json Json() const;
};

FetchResult Fetch(const std::string& url, const FetchOptions& options = {});

// Concatenated text of choice `index` of a completions (text) or chat
// (delta.content) stream.
std::string StreamedText(const FetchResult& result, int index);

// Sends `request` (raw bytes) on a new connection whose receive buffer is
// tiny, and never reads. Returns the socket (close it when done), or -1.
int SendAndNeverRead(int port, const std::string& request);

// True when the peer has closed `fd` (a read returns 0 or an error after
// draining what is there).
bool PeerClosed(int fd);

// Polls `condition` every 20 ms for up to `seconds`.
bool WaitFor(const std::function<bool()>& condition, double seconds);

}  // namespace kestrel::server::http::testing

#endif  // KESTREL_SERVER_HTTP_HTTP_TEST_CLIENT_H_

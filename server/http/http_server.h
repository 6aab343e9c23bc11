// The OpenAI-compatible HTTP front end: POST /v1/completions and
// /v1/chat/completions (JSON or Server-Sent Events), GET /v1/models,
// /health and /metrics, on libevent's evhttp. See docs/http.md.
//
// Handlers stay thin: validate and convert (openai_protocol.h), submit to
// the engine, format its events (openai_response.h), map statuses. No
// scheduling or model logic lives here.
#ifndef KESTREL_SERVER_HTTP_HTTP_SERVER_H_
#define KESTREL_SERVER_HTTP_HTTP_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "model/tokenizer/tokenizer.h"
#include "prometheus/registry.h"
#include "server/auth.h"
#include "server/chat_prompt.h"
#include "server/tls.h"

namespace kestrel::server::http {

struct HttpServerOptions {
  // host:port with a numeric host ("0.0.0.0:8000", "[::1]:8000"); port 0
  // picks a free port (see HttpServer::port()).
  std::string listen_address = "0.0.0.0:8000";
  // The model's name: listed by /v1/models; a request naming another
  // model gets 404.
  std::string model_name;
  // Largest request body accepted; a larger one is answered 413 (its bytes
  // are read and discarded, never buffered).
  int64_t max_body_bytes = 8 << 20;
  // Events buffered for one stream whose client is not reading; past it the
  // connection is closed and the request cancelled.
  int max_buffered_events = 4096;
  // API keys (server/auth.h); null: none needed. With keys, every path but
  // /health needs `Authorization: Bearer <key>`.
  std::shared_ptr<const ApiKeys> api_keys;
  // TLS (server/tls.h); enabled: the port speaks HTTPS only (mutual TLS
  // with a client CA).
  TlsOptions tls;
  // Served at /metrics (the same registry as --metrics-address) and where
  // kestrel_http_requests_total is registered; may be null (/metrics 404).
  std::shared_ptr<prometheus::Registry> registry;
  // Renders chat messages to prompt text; null: the model has no chat
  // template and /v1/chat/completions answers 400. Not owned; must outlive
  // the server.
  const ChatRenderer* chat_renderer = nullptr;
  // Values of the sampling fields a request leaves out (the model's
  // generation_config.json defaults).
  model::SamplingParams sampling_defaults;
};

class HttpServerImpl;

// A running HTTP front end: one event-loop thread serves every connection
// (thousands of open SSE streams need no thread each). Engine events are
// handed to the loop through a per-request queue and a wake-up event, so
// the engine thread never blocks on a client.
//
// Thread-safe: SetServing and Shutdown may be called from any thread.
// `engine` and `tokenizer` (not owned) must outlive the server.
class HttpServer {
 public:
  // Binds and starts serving; /health answers 503 until SetServing(true).
  // Errors name the flag: a malformed address or TLS file
  // (INVALID_ARGUMENT), a port that cannot be bound (UNAVAILABLE).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Create(HttpServerOptions options,
                                                            engine::Engine* engine,
                                                            const tokenizer::Tokenizer* tokenizer);
  // Closes every connection (their engine requests are cancelled) and
  // stops the loop.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const;
  // /health: 200 when serving, 503 otherwise (starting, draining). While
  // not serving, generation requests get 503 too.
  void SetServing(bool serving);
  // The end of a drain: stops accepting connections, waits up to `grace`
  // for responses in flight to be written, then closes the rest and stops
  // the loop. Call once, after the engine has drained.
  void Shutdown(absl::Duration grace);
  // Requests whose response is not completely written yet (tests).
  int open_calls() const;

 private:
  explicit HttpServer(std::unique_ptr<HttpServerImpl> impl);
  std::unique_ptr<HttpServerImpl> impl_;
};

}  // namespace kestrel::server::http

#endif  // KESTREL_SERVER_HTTP_HTTP_SERVER_H_

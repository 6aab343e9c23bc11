// The HTTP front end on libevent's evhttp; see http_server.h.
//
// Threads: one event-loop thread owns every libevent object. The engine's
// step-loop thread only touches a request's Stream and the Mailbox
// (engine_events.h); it never waits for a client.
//
// A generation request's life (class Call, loop thread only):
//   handler: parse -> Engine::Submit per prompt (sinks feed the Stream) ->
//            watch the connection (closed -> cancel)
//   wake-up: take the Stream's events -> ResponseBuilder -> one write;
//            a stream whose socket buffer is full (client not reading) is
//            not drained, so its queue fills to max_buffered_events, and
//            then the connection is closed and the request cancelled
//   end:     the final write is queued; the Call is deleted when libevent
//            has written it (on_complete) or the connection closed.
#include "server/http/http_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <condition_variable>
#include <csignal>
#include <deque>
#include <functional>
#include <mutex>
#include <sstream>
#include <utility>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "prometheus/counter.h"
#include "prometheus/text_serializer.h"
#include "server/http/engine_events.h"
#include "server/http/openai_protocol.h"
#include "server/http/openai_response.h"
#include "spdlog/spdlog.h"

namespace kestrel::server::http {
namespace {

using Json = nlohmann::ordered_json;

// Bytes a connection may have unsent before a stream stops taking events
// from its queue (the queue then fills up to max_buffered_events).
constexpr size_t kOutputHighWater = 64 << 10;
// Bytes read ahead from a client while its response is being produced
// (reading stays on to notice a closed connection).
constexpr size_t kInputHighWater = 64 << 10;
constexpr int kListenBacklog = 4096;

// The body limit, for the 413 message of evhttp_send_error below.
std::atomic<int64_t> g_max_body_bytes{0};

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 499: return "Client Closed Request";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 500 ? "Bad Request" : "Internal Server Error";
  }
}

// Sends `body` as a complete response. REQUIRES: loop thread.
void SendBody(evhttp_request* req, int status, absl::string_view content_type, absl::string_view body) {
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", std::string(content_type).c_str());
  evbuffer* buf = evbuffer_new();
  evbuffer_add(buf, body.data(), body.size());
  evhttp_send_reply(req, status, ReasonPhrase(status), buf);
  evbuffer_free(buf);
}

void SendError(evhttp_request* req, const ApiError& error) {
  SendBody(req, error.http_status, "application/json", Dump(ErrorJson(error)));
}

ApiError MakeError(int status, std::string type, std::string message, std::string code = "") {
  ApiError error;
  error.http_status = status;
  error.type = std::move(type);
  error.message = std::move(message);
  error.code = std::move(code);
  return error;
}

// "1.2.3.4:80" or "[::1]:80"; port 0 allowed (evutil_parse_sockaddr_port
// refuses it).
bool ParseAddress(const std::string& address, sockaddr_storage& out, int& out_len) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = address.substr(0, colon);
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) return false;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    out_len = sizeof(sockaddr_in6);
    return evutil_inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &in6->sin6_addr) == 1;
  }
  auto* in4 = reinterpret_cast<sockaddr_in*>(&out);
  in4->sin_family = AF_INET;
  in4->sin_port = htons(static_cast<uint16_t>(port));
  out_len = sizeof(sockaddr_in);
  return evutil_inet_pton(AF_INET, host.c_str(), &in4->sin_addr) == 1;
}

std::string NewId(absl::string_view prefix) {
  thread_local absl::BitGen bitgen;
  return absl::StrCat(prefix, absl::Hex(absl::Uniform<uint64_t>(bitgen), absl::kZeroPad16));
}

}  // namespace

// ---------------------------------------------------------------------------
// The server (loop-thread state unless noted).
// ---------------------------------------------------------------------------

class HttpServerImpl {
 public:
  HttpServerImpl(HttpServerOptions options, engine::Engine* engine,
                 const tokenizer::Tokenizer* tokenizer);
  ~HttpServerImpl();

  absl::Status Start();
  void Shutdown(absl::Duration grace);
  void StopLoop();

  // Any thread.
  std::atomic<bool> serving{false};
  std::atomic<int> open_calls{0};
  int port = 0;

  // Loop thread (Call uses these).
  const HttpServerOptions& options() const { return options_; }
  engine::Engine* engine() const { return engine_; }
  const tokenizer::Tokenizer* tokenizer() const { return tokenizer_; }
  const std::shared_ptr<Mailbox>& mailbox() const { return mailbox_; }
  void Record(absl::string_view path, int status);
  void CallStarted() { open_calls.fetch_add(1); }
  void CallEnded();

 private:
  static void OnRequest(evhttp_request* req, void* self);
  static void OnWake(evutil_socket_t, short, void* self);
  static bufferevent* MakeTlsBufferevent(event_base* base, void* self);
  void Handle(evhttp_request* req);
  void HandleGenerate(evhttp_request* req, Endpoint endpoint, const std::string& path);
  // OK, or UNAUTHENTICATED naming what is wrong (never the key).
  absl::Status CheckApiKey(evhttp_request* req) const;
  absl::Status MakeTlsContext();

  // Constant after Start.
  const HttpServerOptions options_;
  engine::Engine* const engine_;                 // not owned
  const tokenizer::Tokenizer* const tokenizer_;  // not owned
  const int64_t created_;
  ParseContext parse_context_;
  prometheus::Family<prometheus::Counter>* requests_total_ = nullptr;  // owned by the registry
  event_base* base_ = nullptr;
  evhttp* http_ = nullptr;
  event* wake_ = nullptr;
  ssl_ctx_st* ssl_ctx_ = nullptr;
  std::shared_ptr<Mailbox> mailbox_;
  std::thread loop_;

  // Loop thread.
  evhttp_bound_socket* bound_ = nullptr;
  bool accepting_ = true;

  std::mutex calls_mu_;
  std::condition_variable calls_cv_;  // signalled when open_calls drops to 0
};

// One generation request. Loop thread only; deletes itself once its
// response is written or its connection closed.
class Call {
 public:
  Call(HttpServerImpl* server, evhttp_request* req, OpenAiRequest request, std::string id,
       std::string path)
      : server_(server),
        req_(req),
        conn_(evhttp_request_get_connection(req)),
        path_(std::move(path)),
        id_(std::move(id)),
        request_(std::move(request)),
        builder_(request_, id_, absl::ToUnixSeconds(absl::Now()), server->options().model_name,
                 server->tokenizer()),
        stream_(std::make_shared<Stream>()),
        samples_left_(request_.num_choices()) {
    server_->CallStarted();
    stream_->call = this;
  }

  // Submits every prompt and watches the connection; a refusal is answered
  // at once (and the Call ends as usual, when the answer is written).
  void Start() {
    Watch();
    for (size_t p = 0; p < request_.prompts.size(); ++p) {
      engine::GenerateParams params = request_.params;
      params.prompt_ids = std::move(request_.prompts[p]);
      params.request_id = request_.prompts.size() == 1 ? id_ : absl::StrCat(id_, "-", p);
      absl::StatusOr<uint64_t> handle = server_->engine()->Submit(
          std::move(params), std::make_shared<HttpSink>(stream_, server_->mailbox(), static_cast<int>(p),
                                                        server_->options().max_buffered_events));
      if (!handle.ok()) {
        EndWithError(ToApiError(handle.status()), "");
        return;
      }
      handles_.push_back(*handle);
    }
  }

  // The connection closing (client gone) ends the Call.
  void Watch() {
    evhttp_connection_set_closecb(conn_, &Call::OnClosed, this);
    // evhttp stops reading once a request is in; read on (without parsing:
    // no read callback, bounded read-ahead) so a client that goes away is
    // noticed while it waits, and its request cancelled.
    bufferevent* bev = evhttp_connection_get_bufferevent(conn_);
    bufferevent_data_cb read_cb, write_cb;
    bufferevent_event_cb event_cb;
    void* arg;
    bufferevent_getcb(bev, &read_cb, &write_cb, &event_cb, &arg);
    bufferevent_setcb(bev, nullptr, write_cb, event_cb, arg);
    bufferevent_setwatermark(bev, EV_READ, 0, kInputHighWater);
    bufferevent_enable(bev, EV_READ);
  }

  // The Stream has events (Mailbox wake-up) or the socket drained.
  void OnEngineEvents() {
    if (final_sent_) return;
    std::deque<QueuedEvent> events;
    bool overflow;
    {
      std::lock_guard lock(stream_->mu);
      overflow = stream_->overflow;
      if (!overflow && (!request_.stream || OutputPending() < kOutputHighWater)) {
        events.swap(stream_->events);
      }
    }
    if (overflow) {
      spdlog::warn("request {}: client is not reading the stream: more than {} events buffered; "
                   "request cancelled, connection closed",
                   id_, server_->options().max_buffered_events);
      CancelEngine();
      evhttp_connection_free(conn_);  // runs OnClosed, which deletes this
      return;
    }
    std::string out;
    for (QueuedEvent& queued : events) {
      if (auto* tokens = std::get_if<engine::TokenEvent>(&queued.event)) {
        out += builder_.Tokens(Choice(queued.prompt, tokens->index), *tokens);
        continue;
      }
      const auto& finish = std::get<engine::FinishEvent>(queued.event);
      if (!finish.status.ok()) {
        EndWithError(ToApiError(finish.status), std::move(out));
        return;
      }
      out += builder_.Finish(Choice(queued.prompt, finish.index), queued.prompt, finish);
      --samples_left_;
    }
    if (samples_left_ == 0) {
      Complete(std::move(out));
    } else if (!out.empty()) {
      SendChunk(out);
    }
  }

  static void OnWritten(evhttp_connection*, void* self) { static_cast<Call*>(self)->OnEngineEvents(); }

  // The connection closed (client gone, or the server closing it).
  static void OnClosed(evhttp_connection*, void* self) {
    auto* call = static_cast<Call*>(self);
    if (!call->final_sent_) {
      spdlog::debug("request {}: client closed the connection; cancelled", call->id_);
      call->CancelEngine();
      if (!call->headers_sent_) call->server_->Record(call->path_, 499);
    }
    // libevent detaches (and leaves to us) a request whose response had not
    // been completed; one still attached is freed with its connection.
    if (evhttp_request_get_connection(call->req_) == nullptr) evhttp_request_free(call->req_);
    call->Destroy();
  }

  // The final response has been written.
  static void OnComplete(evhttp_request*, void* self) {
    auto* call = static_cast<Call*>(self);
    evhttp_connection_set_closecb(call->conn_, nullptr, nullptr);
    call->Destroy();
  }

 private:
  int Choice(int prompt, int index) const { return prompt * request_.params.n + index; }

  size_t OutputPending() const {
    return evbuffer_get_length(bufferevent_get_output(evhttp_connection_get_bufferevent(conn_)));
  }

  void CancelEngine() {
    for (uint64_t handle : handles_) server_->engine()->Cancel(handle);
    handles_.clear();
  }

  void StartEventStream() {
    if (headers_sent_) return;
    headers_sent_ = true;
    evkeyvalq* headers = evhttp_request_get_output_headers(req_);
    evhttp_add_header(headers, "Content-Type", "text/event-stream");
    evhttp_add_header(headers, "Cache-Control", "no-cache");
    evhttp_add_header(headers, "X-Accel-Buffering", "no");
    evhttp_send_reply_start(req_, 200, "OK");
    server_->Record(path_, 200);
  }

  void SendChunk(absl::string_view text) {
    StartEventStream();
    evbuffer* buf = evbuffer_new();
    evbuffer_add(buf, text.data(), text.size());
    evhttp_send_reply_chunk_with_cb(req_, buf, &Call::OnWritten, this);
    evbuffer_free(buf);
  }

  // From here on the engine's events are dropped and the Call waits for
  // libevent to write its last bytes.
  void MarkFinal() {
    final_sent_ = true;
    {
      std::lock_guard lock(stream_->mu);
      stream_->closed = true;
      stream_->events.clear();
    }
    evhttp_request_set_on_complete_cb(req_, &Call::OnComplete, this);
  }

  void Complete(std::string out) {
    if (request_.stream) {
      if (request_.include_usage) out += builder_.Usage();
      out += kSseDone;
      SendChunk(out);
      MarkFinal();
      evhttp_send_reply_end(req_);
    } else {
      MarkFinal();
      server_->Record(path_, 200);
      SendBody(req_, 200, "application/json", builder_.Body());
    }
  }

  // Ends the response with `error`: its HTTP status when nothing was sent
  // yet, else an error event in the stream. Cancels what still runs.
  void EndWithError(const ApiError& error, std::string out) {
    CancelEngine();
    if (error.http_status >= 500) spdlog::warn("request {}: {}", id_, error.message);
    if (!headers_sent_) {
      MarkFinal();
      server_->Record(path_, error.http_status);
      SendError(req_, error);
      return;
    }
    out += SseEvent(ErrorJson(error));
    out += kSseDone;
    SendChunk(out);
    MarkFinal();
    evhttp_send_reply_end(req_);
  }

  void Destroy() {
    {
      std::lock_guard lock(stream_->mu);
      stream_->closed = true;
      stream_->events.clear();
    }
    stream_->call = nullptr;
    server_->CallEnded();
    delete this;
  }

  HttpServerImpl* const server_;  // not owned
  evhttp_request* const req_;     // owned by libevent (see OnClosed)
  evhttp_connection* const conn_;  // owned by libevent
  const std::string path_;
  const std::string id_;
  OpenAiRequest request_;
  ResponseBuilder builder_;  // refers to request_
  const std::shared_ptr<Stream> stream_;
  std::vector<uint64_t> handles_;  // engine requests still to cancel on failure
  int samples_left_;
  bool headers_sent_ = false;
  bool final_sent_ = false;
};

HttpServerImpl::HttpServerImpl(HttpServerOptions options, engine::Engine* engine,
                               const tokenizer::Tokenizer* tokenizer)
    : options_(std::move(options)),
      engine_(engine),
      tokenizer_(tokenizer),
      created_(absl::ToUnixSeconds(absl::Now())) {
  parse_context_.tokenizer = tokenizer_;
  parse_context_.model_name = options_.model_name;
  parse_context_.vocab_size = engine_->vocab_size();
  parse_context_.chat_renderer = options_.chat_renderer;
  parse_context_.sampling_defaults = options_.sampling_defaults;
}

absl::Status HttpServerImpl::MakeTlsContext() {
  const TlsOptions& tls = options_.tls;
  if (tls.cert_file.empty() || tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "HTTPS needs both --tls-cert-file and --tls-key-file");
  }
  ssl_ctx_ = SSL_CTX_new(TLS_server_method());
  if (ssl_ctx_ == nullptr) return absl::InternalError("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ssl_ctx_, TLS1_2_VERSION);
  auto openssl_error = [](absl::string_view what, const std::string& path) {
    char buffer[256] = {0};
    ERR_error_string_n(ERR_get_error(), buffer, sizeof(buffer));
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": ", buffer));
  };
  if (SSL_CTX_use_certificate_chain_file(ssl_ctx_, tls.cert_file.c_str()) != 1) {
    return openssl_error("--tls-cert-file", tls.cert_file);
  }
  if (SSL_CTX_use_PrivateKey_file(ssl_ctx_, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return openssl_error("--tls-key-file", tls.key_file);
  }
  if (SSL_CTX_check_private_key(ssl_ctx_) != 1) {
    return openssl_error("--tls-key-file does not match --tls-cert-file:", tls.key_file);
  }
  if (!tls.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ssl_ctx_, tls.client_ca_file.c_str(), nullptr) != 1) {
      return openssl_error("--tls-client-ca-file", tls.client_ca_file);
    }
    SSL_CTX_set_verify(ssl_ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return absl::OkStatus();
}

bufferevent* HttpServerImpl::MakeTlsBufferevent(event_base* base, void* self) {
  auto* server = static_cast<HttpServerImpl*>(self);
  bufferevent* bev = bufferevent_openssl_socket_new(base, -1, SSL_new(server->ssl_ctx_),
                                                    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
  // Clients commonly close without a TLS close_notify after the last byte.
  if (bev != nullptr) bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
  return bev;
}

absl::Status HttpServerImpl::Start() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Engine threads activate the wake-up event.
    evthread_use_pthreads();
    // libevent writes with writev/SSL_write, which raise SIGPIPE on a
    // connection the client has closed; the error return is handled.
    std::signal(SIGPIPE, SIG_IGN);
  });
  const std::string& address = options_.listen_address;
  sockaddr_storage addr{};
  int addr_len = 0;
  if (!ParseAddress(address, addr, addr_len)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--http-listen must be host:port with a numeric host (e.g. 0.0.0.0:8000, [::1]:8000; "
        "port 0 picks one), got \"",
        address, "\""));
  }
  if (options_.max_body_bytes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http-max-body-bytes must be >= 1, got ", options_.max_body_bytes));
  }
  if (options_.tls.enabled()) RETURN_IF_ERROR(MakeTlsContext());
  if (options_.registry != nullptr) {
    requests_total_ = &prometheus::BuildCounter()
                           .Name("kestrel_http_requests_total")
                           .Help("HTTP requests answered, by path and status code (499: the "
                                 "client went away)")
                           .Register(*options_.registry);
  }

  base_ = event_base_new();
  http_ = base_ != nullptr ? evhttp_new(base_) : nullptr;
  if (http_ == nullptr) return absl::InternalError("cannot create the libevent HTTP server");
  g_max_body_bytes.store(options_.max_body_bytes);
  evhttp_set_max_body_size(http_, options_.max_body_bytes);
  // A body over the limit is read and discarded before the 413, so the
  // client gets the answer instead of a reset connection.
  evhttp_set_flags(http_, EVHTTP_SERVER_LINGERING_CLOSE);
  evhttp_set_allowed_methods(http_, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                        EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                        EVHTTP_REQ_PATCH);
  evhttp_set_default_content_type(http_, "application/json");
  evhttp_set_gencb(http_, &HttpServerImpl::OnRequest, this);
  if (ssl_ctx_ != nullptr) evhttp_set_bevcb(http_, &HttpServerImpl::MakeTlsBufferevent, this);

  // Our own listener: evhttp_bind_socket's backlog of 128 drops connection
  // bursts (a thousand clients opening streams at once).
  evconnlistener* listener = evconnlistener_new_bind(
      base_, nullptr, nullptr, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
      kListenBacklog, reinterpret_cast<sockaddr*>(&addr), addr_len);
  if (listener == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on --http-listen=", address, ": ",
                                               evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR())));
  }
  bound_ = evhttp_bind_listener(http_, listener);
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  getsockname(evconnlistener_get_fd(listener), reinterpret_cast<sockaddr*>(&bound), &bound_len);
  port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                           : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  wake_ = event_new(base_, -1, 0, &HttpServerImpl::OnWake, this);
  mailbox_ = std::make_shared<Mailbox>(wake_);
  loop_ = std::thread([this] { event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY); });
  return absl::OkStatus();
}

HttpServerImpl::~HttpServerImpl() {
  StopLoop();
  if (mailbox_ != nullptr) mailbox_->Close();
  // Closes every connection: their Calls cancel their engine requests.
  if (http_ != nullptr) evhttp_free(http_);
  if (wake_ != nullptr) event_free(wake_);
  if (base_ != nullptr) event_base_free(base_);
  if (ssl_ctx_ != nullptr) SSL_CTX_free(ssl_ctx_);
}

void HttpServerImpl::StopLoop() {
  if (!loop_.joinable()) return;
  event_base* base = base_;
  mailbox_->Run([base] { event_base_loopbreak(base); });
  loop_.join();
}

void HttpServerImpl::Shutdown(absl::Duration grace) {
  if (!loop_.joinable()) return;
  mailbox_->Run([this] {
    accepting_ = false;
    if (bound_ != nullptr) evhttp_del_accept_socket(http_, bound_);
    bound_ = nullptr;
  });
  {
    std::unique_lock lock(calls_mu_);
    calls_cv_.wait_for(lock, absl::ToChronoNanoseconds(grace), [this] { return open_calls.load() == 0; });
  }
  if (const int left = open_calls.load(); left > 0) {
    spdlog::warn("HTTP shutdown: closing {} responses still in flight", left);
  }
  StopLoop();
}

void HttpServerImpl::CallEnded() {
  if (open_calls.fetch_sub(1) == 1) {
    std::lock_guard lock(calls_mu_);
    calls_cv_.notify_all();
  }
}

void HttpServerImpl::Record(absl::string_view path, int status) {
  if (requests_total_ == nullptr) return;
  requests_total_->Add({{"path", std::string(path)}, {"code", std::to_string(status)}}).Increment();
}

void HttpServerImpl::OnWake(evutil_socket_t, short, void* self) {
  auto* server = static_cast<HttpServerImpl*>(self);
  std::vector<std::shared_ptr<Stream>> streams;
  std::vector<std::function<void()>> tasks;
  server->mailbox_->Take(streams, tasks);
  for (const std::function<void()>& task : tasks) task();
  for (const std::shared_ptr<Stream>& stream : streams) {
    {
      std::lock_guard lock(stream->mu);
      stream->posted = false;
    }
    if (stream->call != nullptr) stream->call->OnEngineEvents();
  }
}

void HttpServerImpl::OnRequest(evhttp_request* req, void* self) {
  static_cast<HttpServerImpl*>(self)->Handle(req);
}

absl::Status HttpServerImpl::CheckApiKey(evhttp_request* req) const {
  if (options_.api_keys == nullptr) return absl::OkStatus();
  const char* header = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
  if (header == nullptr) {
    return absl::UnauthenticatedError(
        "missing API key: send the header 'Authorization: Bearer <key>'");
  }
  absl::string_view value = absl::StripAsciiWhitespace(header);
  if (!absl::StartsWithIgnoreCase(value, "bearer ")) {
    return absl::UnauthenticatedError("the Authorization header must be 'Bearer <key>'");
  }
  if (!options_.api_keys->Contains(absl::StripAsciiWhitespace(value.substr(7)))) {
    return absl::UnauthenticatedError("invalid API key");
  }
  return absl::OkStatus();
}

void HttpServerImpl::Handle(evhttp_request* req) {
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* raw_path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  std::string path = raw_path != nullptr ? raw_path : "";
  if (path.size() > 1 && path.back() == '/') path.pop_back();
  const evhttp_cmd_type method = evhttp_request_get_command(req);

  struct Route {
    const char* path;
    evhttp_cmd_type method;
  };
  static constexpr Route kRoutes[] = {
      {"/v1/completions", EVHTTP_REQ_POST}, {"/v1/chat/completions", EVHTTP_REQ_POST},
      {"/v1/models", EVHTTP_REQ_GET},       {"/health", EVHTTP_REQ_GET},
      {"/metrics", EVHTTP_REQ_GET},
  };
  const Route* route = nullptr;
  for (const Route& r : kRoutes) {
    if (path == r.path) route = &r;
  }
  const bool model_path = absl::StartsWith(path, "/v1/models/");
  const std::string label = route != nullptr ? route->path : model_path ? "/v1/models" : "other";
  auto reply_error = [&](const ApiError& error) {
    Record(label, error.http_status);
    if (error.http_status == 401) {
      evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
    }
    SendError(req, error);
  };

  if (path != "/health") {
    if (absl::Status auth = CheckApiKey(req); !auth.ok()) {
      reply_error(ToApiError(auth));
      return;
    }
  }
  if (route == nullptr && !model_path) {
    reply_error(MakeError(404, "invalid_request_error", absl::StrCat("no such path: ", path),
                          "not_found"));
    return;
  }
  const evhttp_cmd_type expected = route != nullptr ? route->method : EVHTTP_REQ_GET;
  if (method != expected) {
    const char* allowed = expected == EVHTTP_REQ_GET ? "GET" : "POST";
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allowed);
    reply_error(MakeError(405, "invalid_request_error",
                          absl::StrCat(path, " accepts only ", allowed), "method_not_allowed"));
    return;
  }

  if (path == "/health") {
    const bool up = serving.load() && accepting_;
    Record(label, up ? 200 : 503);
    SendBody(req, up ? 200 : 503, "application/json",
             up ? R"({"status":"serving"})" : R"({"status":"not serving"})");
  } else if (path == "/metrics") {
    if (options_.registry == nullptr) {
      reply_error(MakeError(404, "invalid_request_error", "metrics are not enabled", "not_found"));
      return;
    }
    std::ostringstream text;
    prometheus::TextSerializer().Serialize(text, options_.registry->Collect());
    Record(label, 200);
    SendBody(req, 200, "text/plain; version=0.0.4", text.str());
  } else if (path == "/v1/models" || model_path) {
    const Json model = {{"id", options_.model_name},
                        {"object", "model"},
                        {"created", created_},
                        {"owned_by", "kestrel"},
                        {"max_model_len", engine_->max_model_len()}};
    if (model_path) {
      if (path.substr(absl::string_view("/v1/models/").size()) != options_.model_name) {
        reply_error(MakeError(404, "invalid_request_error",
                              absl::StrCat("model \"", path.substr(11), "\" does not exist"),
                              "model_not_found"));
        return;
      }
      Record(label, 200);
      SendBody(req, 200, "application/json", Dump(model));
      return;
    }
    Record(label, 200);
    SendBody(req, 200, "application/json",
             Dump(Json{{"object", "list"}, {"data", Json::array({model})}}));
  } else {
    HandleGenerate(req,
                   path == "/v1/completions" ? Endpoint::kCompletions : Endpoint::kChatCompletions,
                   label);
  }
}

void HttpServerImpl::HandleGenerate(evhttp_request* req, Endpoint endpoint, const std::string& path) {
  auto reply_error = [&](const ApiError& error) {
    Record(path, error.http_status);
    SendError(req, error);
  };
  if (!serving.load() || !accepting_) {
    reply_error(MakeError(503, "service_unavailable",
                          "the server is not serving (starting up or draining)"));
    return;
  }
  evbuffer* input = evhttp_request_get_input_buffer(req);
  std::string body(evbuffer_get_length(input), '\0');
  evbuffer_copyout(input, body.data(), body.size());
  absl::StatusOr<OpenAiRequest> request = endpoint == Endpoint::kCompletions
                                              ? ParseCompletionRequest(body, parse_context_)
                                              : ParseChatRequest(body, parse_context_);
  if (!request.ok()) {
    reply_error(ToApiError(request.status()));
    return;
  }
  std::string id = NewId(endpoint == Endpoint::kCompletions ? "cmpl-" : "chatcmpl-");
  auto* call = new Call(this, req, std::move(*request), std::move(id), path);
  call->Start();
}

// ---------------------------------------------------------------------------
// HttpServer
// ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(
    HttpServerOptions options, engine::Engine* engine, const tokenizer::Tokenizer* tokenizer) {
  auto impl = std::make_unique<HttpServerImpl>(std::move(options), engine, tokenizer);
  if (absl::Status status = impl->Start(); !status.ok()) return status;
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<HttpServerImpl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() = default;
int HttpServer::port() const { return impl_->port; }
void HttpServer::SetServing(bool serving) { impl_->serving.store(serving); }
void HttpServer::Shutdown(absl::Duration grace) { impl_->Shutdown(grace); }
int HttpServer::open_calls() const { return impl_->open_calls.load(); }

}  // namespace kestrel::server::http

// libevent 2.1 answers what it rejects itself (a body over the size limit:
// 413; a request it cannot parse: 400) with evhttp_send_error, an HTML
// page, and has no hook to change it. Its calls go through the PLT, so this
// definition in the executable takes their place: every answer of the
// server, libevent's included, is OpenAI's JSON error. (http_test checks
// the 413 body; were the override ever bypassed it would fail.)
extern "C" void evhttp_send_error(struct evhttp_request* req, int error, const char* reason) {
  using kestrel::server::http::ApiError;
  ApiError api;
  api.http_status = error;
  api.type = "invalid_request_error";
  if (error == 413) {
    api.message = absl::StrCat("request body is larger than the server's limit of ",
                               kestrel::server::http::g_max_body_bytes.load(),
                               " bytes (--http-max-body-bytes)");
    api.code = "request_too_large";
  } else if (error == 400) {
    api.message = "malformed HTTP request";
  } else if (error == 501) {
    api.message = "HTTP method not supported";
    api.code = "method_not_allowed";
  } else {
    api.message = reason != nullptr ? reason : kestrel::server::http::ReasonPhrase(error);
  }
  // A request whose first line did not parse has no HTTP version yet.
  if (req->major == 0 && req->minor == 0) {
    req->major = 1;
    req->minor = 1;
  }
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_clear_headers(headers);
  // What is left of the request is not read: the connection must close.
  evhttp_add_header(headers, "Connection", "close");
  kestrel::server::http::SendError(req, api);
}

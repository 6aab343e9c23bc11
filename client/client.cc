// Implementation of the Kestrel client: the Generate stream is a gRPC
// callback reactor; unary calls are synchronous with a retry loop.
#include "client/client.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"

namespace kestrel::client {
namespace {

namespace v1 = ::kestrel::v1;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

}  // namespace

absl::Status FromGrpcStatus(const grpc::Status& status, const std::string& method,
                            const std::string& address) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(method, " to ", address, ": ", status.error_message()));
}

// Owns the call's context, request and response buffer. Shared by the
// GenerateStream handle and by itself while the call runs (self_), so that
// neither the handle's Cancel nor gRPC's last reaction can touch freed memory.
class GenerateStream::Reactor final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  Reactor(EventCallback on_event, DoneCallback on_done, std::string address)
      : on_event_(std::move(on_event)),
        on_done_(std::move(on_done)),
        address_(std::move(address)) {}

  // REQUIRES: called once, before any other method.
  void Start(v1::Kestrel::Stub* stub, std::unique_ptr<grpc::ClientContext> context,
             const v1::GenerateRequest& request, std::shared_ptr<Reactor> self) {
    self_ = std::move(self);
    context_ = std::move(context);
    request_ = request;
    stub->async()->Generate(context_.get(), &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void Cancel() {
    cancelled_.store(true);
    context_->TryCancel();
  }

  absl::Status Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [this] { return done_; });
    return status_;
  }

  bool Done() {
    std::unique_lock<std::mutex> lock(mu_);
    return done_;
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // The stream is over; OnDone follows.
    if (!cancelled_.load() && on_event_ && !on_event_(response_)) Cancel();
    // Keep reading even after a cancel so that gRPC can finish the call.
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& grpc_status) override {
    absl::Status status = FromGrpcStatus(grpc_status, "Generate", address_);
    if (cancelled_.load() && grpc_status.error_code() == grpc::StatusCode::CANCELLED) {
      status = absl::CancelledError("Generate cancelled by the client");
    }
    if (on_done_) on_done_(status);
    std::shared_ptr<Reactor> self;
    {
      std::unique_lock<std::mutex> lock(mu_);
      status_ = status;
      done_ = true;
      self = std::move(self_);
    }
    done_cv_.notify_all();
    // `self` may be the last reference: this object can be deleted on
    // return, which gRPC allows after OnDone.
  }

 private:
  // Constant after Start.
  const EventCallback on_event_;
  const DoneCallback on_done_;
  const std::string address_;
  std::unique_ptr<grpc::ClientContext> context_;
  v1::GenerateRequest request_;
  // Only touched by gRPC's reactions, which never run concurrently.
  v1::GenerateResponse response_;
  std::shared_ptr<Reactor> self_;

  std::atomic<bool> cancelled_{false};
  // std::mutex rather than absl::Mutex: TSan sees through the former
  // (Debian's Abseil is not built with TSan).
  std::mutex mu_;
  std::condition_variable done_cv_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

GenerateStream::GenerateStream(std::shared_ptr<Reactor> reactor) : reactor_(std::move(reactor)) {}

GenerateStream::~GenerateStream() {
  if (!reactor_->Done()) reactor_->Cancel();
  reactor_->Wait().IgnoreError();
}

void GenerateStream::Cancel() { reactor_->Cancel(); }
absl::Status GenerateStream::Wait() { return reactor_->Wait(); }
bool GenerateStream::Done() const { return reactor_->Done(); }

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const ClientOptions& options) {
  if (options.address.empty()) return absl::InvalidArgumentError("address must not be empty");
  if (options.max_attempts < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_attempts must be >= 1, got ", options.max_attempts));
  }
  if (options.backoff_multiplier < 1.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("backoff_multiplier must be >= 1, got ", options.backoff_multiplier));
  }
  if (options.default_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("default_timeout must be positive");
  }
  if (!options.use_tls &&
      (!options.tls_root_certs_pem.empty() || !options.tls_cert_chain_pem.empty() ||
       !options.tls_private_key_pem.empty())) {
    return absl::InvalidArgumentError("TLS certificates given but use_tls is false");
  }
  if (options.tls_cert_chain_pem.empty() != options.tls_private_key_pem.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate needs both tls_cert_chain_pem and tls_private_key_pem");
  }

  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.use_tls) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_root_certs_pem;
    ssl.pem_cert_chain = options.tls_cert_chain_pem;
    ssl.pem_private_key = options.tls_private_key_pem;
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  // Long completions with logprobs can exceed gRPC's 4 MiB default.
  args.SetMaxReceiveMessageSize(-1);
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.address, credentials, args);
  if (channel == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create a channel to '", options.address, "'"));
  }
  return std::unique_ptr<Client>(new Client(options, std::move(channel)));
}

Client::Client(const ClientOptions& options, std::shared_ptr<grpc::Channel> channel)
    : options_(options),
      channel_(std::move(channel)),
      stub_(v1::Kestrel::NewStub(channel_)),
      health_stub_(grpc::health::v1::Health::NewStub(channel_)) {}

absl::Time Client::Deadline(const CallOptions& call) const {
  return absl::Now() + call.timeout.value_or(options_.default_timeout);
}

std::unique_ptr<grpc::ClientContext> Client::NewContext(absl::Time deadline, bool with_key) const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (deadline != absl::InfiniteFuture()) context->set_deadline(absl::ToChronoTime(deadline));
  if (with_key && !options_.api_key.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", options_.api_key));
  }
  context->set_wait_for_ready(options_.wait_for_ready);
  return context;
}

absl::Status Client::CallWithRetries(
    const char* method, const CallOptions& call, bool with_key,
    const std::function<grpc::Status(grpc::ClientContext*)>& attempt) const {
  const absl::Time deadline = Deadline(call);
  absl::Duration backoff = options_.initial_backoff;
  absl::BitGen random;
  for (int attempts = 1;; ++attempts) {
    std::unique_ptr<grpc::ClientContext> context = NewContext(deadline, with_key);
    grpc::Status status = attempt(context.get());
    if (status.ok()) return absl::OkStatus();
    absl::Status error = FromGrpcStatus(status, method, options_.address);
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return error;
    if (attempts >= options_.max_attempts) {
      if (attempts == 1) return error;
      return absl::Status(error.code(),
                          absl::StrCat(error.message(), " (after ", attempts, " attempts)"));
    }
    // Full jitter spreads the retries of many clients after an outage.
    const absl::Duration sleep = absl::Uniform(random, 0.0, 1.0) * backoff;
    if (absl::Now() + sleep >= deadline) return error;
    absl::SleepFor(sleep);
    backoff = std::min(backoff * options_.backoff_multiplier, options_.max_backoff);
  }
}

std::unique_ptr<GenerateStream> Client::StartGenerate(const v1::GenerateRequest& request,
                                                      EventCallback on_event, DoneCallback on_done,
                                                      const CallOptions& call) {
  auto reactor = std::make_shared<GenerateStream::Reactor>(std::move(on_event), std::move(on_done),
                                                           options_.address);
  reactor->Start(stub_.get(), NewContext(Deadline(call), /*with_key=*/true), request, reactor);
  return std::make_unique<GenerateStream>(std::move(reactor));
}

absl::Status Client::Generate(const v1::GenerateRequest& request, EventCallback on_event,
                              const CallOptions& call) {
  return StartGenerate(request, std::move(on_event), nullptr, call)->Wait();
}

absl::StatusOr<v1::CompleteResponse> Client::Complete(const v1::GenerateRequest& request,
                                                      const CallOptions& call) {
  std::unique_ptr<grpc::ClientContext> context = NewContext(Deadline(call), true);
  v1::CompleteResponse response;
  grpc::Status status = stub_->Complete(context.get(), request, &response);
  if (!status.ok()) return FromGrpcStatus(status, "Complete", options_.address);
  return response;
}

absl::StatusOr<v1::TokenizeResponse> Client::Tokenize(const v1::TokenizeRequest& request,
                                                      const CallOptions& call) {
  v1::TokenizeResponse response;
  absl::Status status = CallWithRetries("Tokenize", call, true, [&](grpc::ClientContext* c) {
    return stub_->Tokenize(c, request, &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::DetokenizeResponse> Client::Detokenize(const v1::DetokenizeRequest& request,
                                                          const CallOptions& call) {
  v1::DetokenizeResponse response;
  absl::Status status = CallWithRetries("Detokenize", call, true, [&](grpc::ClientContext* c) {
    return stub_->Detokenize(c, request, &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::ModelInfo> Client::GetModelInfo(const CallOptions& call) {
  v1::ModelInfo response;
  absl::Status status = CallWithRetries("GetModelInfo", call, true, [&](grpc::ClientContext* c) {
    return stub_->GetModelInfo(c, v1::GetModelInfoRequest(), &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::GetServerInfoResponse> Client::GetServerInfo(const CallOptions& call) {
  v1::GetServerInfoResponse response;
  absl::Status status = CallWithRetries("GetServerInfo", call, true, [&](grpc::ClientContext* c) {
    return stub_->GetServerInfo(c, v1::GetServerInfoRequest(), &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::AbortResponse> Client::Abort(const std::string& request_id,
                                                const CallOptions& call) {
  v1::AbortRequest request;
  request.set_request_id(request_id);
  v1::AbortResponse response;
  absl::Status status = CallWithRetries("Abort", call, true, [&](grpc::ClientContext* c) {
    return stub_->Abort(c, request, &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<HealthCheckResponse::ServingStatus> Client::Health(const std::string& service,
                                                                  const CallOptions& call) {
  HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  absl::Status status = CallWithRetries("Health", call, false, [&](grpc::ClientContext* c) {
    return health_stub_->Check(c, request, &response);
  });
  if (!status.ok()) return status;
  return response.status();
}

}  // namespace kestrel::client

// The fake server's service: each Generate stream runs on its own thread,
// which sleeps to the token schedule and hands one write at a time to its
// gRPC reactor (the callback API allows one outstanding write).
#include "client/fake_kestrel_server.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kestrel::client::testing {
namespace {

namespace v1 = ::kestrel::v1;

std::string Authorization(const grpc::CallbackServerContext* context) {
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

int PromptTokens(const v1::GenerateRequest& request) {
  if (request.has_token_ids()) return request.token_ids().ids_size();
  return static_cast<int>(request.text().size()) + 1;
}

int OutputTokens(const v1::GenerateRequest& request, int fallback) {
  if (request.has_stopping() && request.stopping().has_max_tokens()) {
    return request.stopping().max_tokens();
  }
  return fallback;
}

// Answers nothing until the client gives up, as a stuck server would.
class HangingUnaryReactor final : public grpc::ServerUnaryReactor {
 public:
  void OnCancel() override { Finish(grpc::Status::CANCELLED); }
  void OnDone() override { delete this; }
};

}  // namespace

class FakeKestrelServer::GenerateWriter final
    : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateWriter(FakeKestrelServer* server, std::string authorization,
                 const v1::GenerateRequest& request)
      : server_(server), request_(request) {
    std::unique_lock<std::mutex> lock(server_->mu_);
    index_ = server_->call_index_++;
    record_index_ = static_cast<int>(server_->calls_.size());
    FakeCallRecord record;
    record.request = request;
    record.authorization = std::move(authorization);
    record.arrived = absl::Now();
    arrived_ = record.arrived;
    server_->calls_.push_back(std::move(record));
    server_->active_.push_back(this);
    ++server_->live_reactors_;
  }

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> lock(mu_);
    write_pending_ = false;
    write_ok_ = ok;
    cv_.notify_all();
  }

  void OnCancel() override {
    std::unique_lock<std::mutex> lock(mu_);
    cancelled_ = true;
    cv_.notify_all();
  }

  void OnDone() override {
    thread_.join();
    {
      std::unique_lock<std::mutex> lock(server_->mu_);
      FakeCallRecord& record = server_->calls_[record_index_];
      record.finished = true;
      std::unique_lock<std::mutex> self_lock(mu_);
      record.cancelled = cancelled_;
      --server_->live_reactors_;
      // Under the lock: once it is released the server may be destroyed.
      server_->live_cv_.notify_all();
    }
    delete this;
  }

  void Abort() {
    std::unique_lock<std::mutex> lock(mu_);
    aborted_ = true;
    cv_.notify_all();
  }
  const std::string& request_id() const { return request_.request_id(); }

 private:
  // Sleeps until `when` (or, while the server hangs, indefinitely). False
  // when the call was cancelled meanwhile.
  bool SleepUntil(absl::Time when) {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cancelled_ && !aborted_) {
      if (server_->hanging_.load()) {
        // Polls: nothing signals the end of a hang.
        cv_.wait_for(lock, std::chrono::milliseconds(10));
        continue;
      }
      if (absl::Now() >= when) return true;
      cv_.wait_until(lock, absl::ToChronoTime(when));
    }
    return !cancelled_;
  }

  // Writes one event and waits for gRPC to take it. False if the write failed.
  bool WriteAndWait(const v1::GenerateResponse& response) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      write_pending_ = true;
    }
    response_ = response;
    StartWrite(&response_);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !write_pending_; });
    return write_ok_;
  }

  void Run() {
    std::optional<FakeFault> fault;
    if (server_->options_.fault) fault = server_->options_.fault(index_, request_);
    const int tokens = OutputTokens(request_, server_->options_.default_output_tokens);
    const auto& texts = server_->options_.token_texts;
    for (int i = 0; i < tokens; ++i) {
      if (fault.has_value() && i == fault->after_tokens) return Finish(fault->status);
      if (!SleepUntil(arrived_ + server_->options_.ttft + i * server_->options_.itl)) {
        return Finish(grpc::Status::CANCELLED);
      }
      if (aborted()) return FinishAborted(i);
      v1::GenerateResponse response;
      response.set_request_id(request_.request_id());
      v1::TokenChunk* chunk = response.mutable_chunk();
      chunk->add_token_ids(1000 + i);
      chunk->set_text(texts.empty() ? "" : texts[i % texts.size()]);
      {
        std::unique_lock<std::mutex> lock(server_->mu_);
        server_->calls_[record_index_].token_times.push_back(absl::Now());
      }
      if (!WriteAndWait(response)) return Finish(grpc::Status::CANCELLED);
    }
    if (fault.has_value()) return Finish(fault->status);
    SendFinished(v1::FINISH_REASON_LENGTH, tokens);
  }

  bool aborted() {
    std::unique_lock<std::mutex> lock(mu_);
    return aborted_;
  }

  void FinishAborted(int tokens) { SendFinished(v1::FINISH_REASON_CANCELLED, tokens); }

  void SendFinished(v1::FinishReason reason, int tokens) {
    v1::GenerateResponse response;
    response.set_request_id(request_.request_id());
    v1::Finished* finished = response.mutable_finished();
    finished->set_reason(reason);
    finished->mutable_usage()->set_prompt_tokens(PromptTokens(request_));
    finished->mutable_usage()->set_completion_tokens(tokens);
    {
      // Leave the active list first so that Abort no longer finds it.
      std::unique_lock<std::mutex> lock(server_->mu_);
      std::erase(server_->active_, this);
    }
    if (!WriteAndWait(response)) return Finish(grpc::Status::CANCELLED);
    Finish(grpc::Status::OK);
  }

  void Finish(const grpc::Status& status) {
    {
      std::unique_lock<std::mutex> lock(server_->mu_);
      std::erase(server_->active_, this);
    }
    grpc::ServerWriteReactor<v1::GenerateResponse>::Finish(status);
  }

  FakeKestrelServer* const server_;  // Not owned.
  const v1::GenerateRequest request_;
  int index_ = 0;
  int record_index_ = 0;
  absl::Time arrived_;
  std::thread thread_;
  v1::GenerateResponse response_;  // Only the run thread writes it.

  // std::mutex rather than absl::Mutex: TSan sees through the former.
  std::mutex mu_;
  std::condition_variable cv_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
  bool write_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool write_ok_ ABSL_GUARDED_BY(mu_) = true;
};

class FakeKestrelServer::Service final : public v1::Kestrel::CallbackService {
 public:
  explicit Service(FakeKestrelServer* server) : server_(server) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override {
    if (!Authorized(context)) {
      // A reactor that finishes at once.
      class Rejected final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
       public:
        Rejected() { Finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad API key")); }
        void OnDone() override { delete this; }
      };
      return new Rejected();
    }
    auto* writer = new GenerateWriter(server_, Authorization(context), *request);
    writer->Start();
    return writer;
  }

  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* context,
                                     const v1::GenerateRequest* request,
                                     v1::CompleteResponse* response) override {
    server_->complete_calls_.fetch_add(1);
    if (!Authorized(context)) return Reject(context);
    if (server_->hanging()) return new HangingUnaryReactor();
    int index;
    {
      std::unique_lock<std::mutex> lock(server_->mu_);
      index = server_->call_index_++;
    }
    auto* reactor = context->DefaultReactor();
    std::optional<FakeFault> fault;
    if (server_->options_.fault) fault = server_->options_.fault(index, *request);
    if (fault.has_value()) {
      reactor->Finish(fault->status);
      return reactor;
    }
    const int tokens = OutputTokens(*request, server_->options_.default_output_tokens);
    response->set_request_id(request->request_id());
    v1::Completion* completion = response->add_completions();
    const auto& texts = server_->options_.token_texts;
    for (int i = 0; i < tokens; ++i) {
      completion->add_token_ids(1000 + i);
      if (!texts.empty()) completion->mutable_text()->append(texts[i % texts.size()]);
    }
    completion->mutable_finished()->set_reason(v1::FINISH_REASON_LENGTH);
    completion->mutable_finished()->mutable_usage()->set_prompt_tokens(PromptTokens(*request));
    completion->mutable_finished()->mutable_usage()->set_completion_tokens(tokens);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override {
    return Unary(context, [&] {
      if (!request->has_add_special_tokens() || request->add_special_tokens()) {
        response->add_token_ids(1);
      }
      for (unsigned char c : request->text()) response->add_token_ids(c + 3);
    });
  }

  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override {
    return Unary(context, [&] {
      for (int id : request->token_ids()) {
        if (id >= 3 && id < 259) response->mutable_text()->push_back(static_cast<char>(id - 3));
      }
    });
  }

  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* /*request*/,
                                         v1::ModelInfo* response) override {
    return Unary(context, [&] {
      response->set_name("fake-model");
      response->set_architecture("llama");
      response->set_context_length(2048);
      response->set_vocab_size(2048);
      response->set_dtype("F32");
      response->set_bos_token_id(1);
      response->add_eos_token_ids(2);
      response->set_num_parameters(260000);
      response->set_has_chat_template(server_->options_.has_chat_template);
    });
  }

  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* /*request*/,
                                          v1::GetServerInfoResponse* response) override {
    return Unary(context, [&] {
      response->set_version("fake");
      response->set_listen_address(server_->address_);
      response->mutable_load()->set_running_requests(server_->active_streams());
      (*response->mutable_config())["model"] = "fake-model";
    });
  }

  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const v1::AbortRequest* request,
                                  v1::AbortResponse* response) override {
    return Unary(context, [&] {
      std::unique_lock<std::mutex> lock(server_->mu_);
      for (GenerateWriter* writer : server_->active_) {
        if (writer->request_id() == request->request_id()) {
          writer->Abort();
          response->set_found(true);
        }
      }
    });
  }

 private:
  bool Authorized(grpc::CallbackServerContext* context) const {
    const std::string& key = server_->options_.required_api_key;
    return key.empty() || Authorization(context) == absl::StrCat("Bearer ", key);
  }

  grpc::ServerUnaryReactor* Reject(grpc::CallbackServerContext* context) {
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad API key"));
    return reactor;
  }

  // The common path of the small unary calls: count, authorize, fail the
  // first few UNAVAILABLE, hang on request, else answer with `fill`.
  template <typename Fill>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context, Fill fill) {
    const int call = server_->unary_calls_.fetch_add(1);
    if (!Authorized(context)) return Reject(context);
    if (server_->hanging()) return new HangingUnaryReactor();
    auto* reactor = context->DefaultReactor();
    if (call < server_->options_.unavailable_unary_calls) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake: try again"));
      return reactor;
    }
    fill();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  FakeKestrelServer* const server_;  // Not owned.
};

FakeKestrelServer::FakeKestrelServer(const Options& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<FakeKestrelServer>> FakeKestrelServer::Create(
    const Options& options) {
  std::unique_ptr<FakeKestrelServer> fake(new FakeKestrelServer(options));
  fake->service_ = std::make_unique<Service>(fake.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(fake->service_.get());
  fake->server_ = builder.BuildAndStart();
  if (fake->server_ == nullptr || port == 0) {
    return absl::InternalError("fake Kestrel server failed to start");
  }
  fake->address_ = absl::StrCat("127.0.0.1:", port);
  return fake;
}

FakeKestrelServer::~FakeKestrelServer() {
  // Calls still running (hanging ones included) are cancelled at once.
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  std::unique_lock<std::mutex> lock(mu_);
  live_cv_.wait(lock, [this] { return live_reactors_ == 0; });
}

std::vector<FakeCallRecord> FakeKestrelServer::generate_calls() const {
  std::unique_lock<std::mutex> lock(mu_);
  return calls_;
}

int FakeKestrelServer::active_streams() const {
  std::unique_lock<std::mutex> lock(mu_);
  return static_cast<int>(active_.size());
}

}  // namespace kestrel::client::testing

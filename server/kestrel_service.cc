#include "server/kestrel_service.h"

#include <deque>
#include <memory>
#include <optional>
#include <utility>
#include <variant>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include <mutex>
#include "common/status_macros.h"
#include "server/grpc_status.h"
#include "server/request_convert.h"
#include "server/version.h"

namespace kestrel::server {
namespace {

using kestrel::v1::GenerateResponse;

absl::Time DeadlineOf(const grpc::CallbackServerContext* context) {
  const auto deadline = context->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

// An id for a request that came without one: random, so ids from several
// replicas behind one load balancer do not collide in logs.
std::string NewRequestId() {
  thread_local absl::BitGen bitgen;
  return absl::StrCat("kst-", absl::Hex(absl::Uniform<uint64_t>(bitgen), absl::kZeroPad16));
}

grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

// What Generate and Complete both derive from a request before submitting it.
struct PreparedCall {
  engine::GenerateParams params;
  bool want_ids = true;
  bool want_text = true;
  // Set when output.echo_prompt.
  std::optional<kestrel::v1::PromptEcho> echo;
};

absl::StatusOr<PreparedCall> PrepareCall(const kestrel::v1::GenerateRequest& request,
                                         const RequestContext& request_context,
                                         const grpc::CallbackServerContext& context) {
  const tokenizer::Tokenizer& tokenizer = *request_context.tokenizer;
  PreparedCall call;
  ASSIGN_OR_RETURN(call.params, ToGenerateParams(request, request_context, DeadlineOf(&context)));
  if (call.params.request_id.empty()) call.params.request_id = NewRequestId();
  const kestrel::v1::OutputOptions& output = request.output();
  call.want_ids = !output.has_return_token_ids() || output.return_token_ids();
  call.want_text = !output.has_return_text() || output.return_text();
  if (output.echo_prompt()) {
    kestrel::v1::PromptEcho& echo = call.echo.emplace();
    echo.mutable_token_ids()->Add(call.params.prompt_ids.begin(), call.params.prompt_ids.end());
    absl::StatusOr<std::string> text = tokenizer.Decode(call.params.prompt_ids, false);
    if (text.ok()) echo.set_text(*text);
  }
  return call;
}

// Records a FinishEvent's error as the call's status (the first one wins).
// Returns true when the event says the request was refused before it
// started, which ends the call whatever `n` was.
bool RecordFinish(const engine::FinishEvent& event, std::optional<grpc::Status>* status) {
  if (!event.status.ok() && !status->has_value()) *status = ToGrpcStatus(event.status);
  return event.reason == engine::FinishReason::kError && !event.status.ok();
}

// ---------------------------------------------------------------------------
// Generate: a server stream fed by the engine's sink.
//
// The engine thread pushes events into StreamState's queue; one gRPC write
// is in flight at a time; when every sample has finished and the queue is
// empty the stream is finished with the request's status. A client that
// stops reading lets the queue grow to max_buffered_events, after which the
// request is cancelled and the stream ended with RESOURCE_EXHAUSTED, so a
// slow reader never holds KV blocks or blocks the engine.
// ---------------------------------------------------------------------------

class GenerateStream;

// The client cancelled: cancel the call's engine request if it has started
// (one that starts later sees context->IsCancelled() where its handle is
// set). State is StreamState or CompleteState.
template <typename State>
void CancelEngineRequest(State& state) {
  std::optional<uint64_t> handle;
  {
    std::lock_guard lock(state.mu);
    handle = state.handle;
  }
  if (handle) state.engine->Cancel(*handle);
}

struct StreamState {
  engine::Engine* engine = nullptr;             // not owned
  const tokenizer::Tokenizer* tokenizer = nullptr;  // not owned
  int max_buffered = 0;
  bool want_ids = true;
  bool want_text = true;
  std::string request_id;

  std::mutex mu;
  GenerateStream* reactor ABSL_GUARDED_BY(mu) = nullptr;
  std::deque<GenerateResponse> queue ABSL_GUARDED_BY(mu);  // front is being written
  bool writing ABSL_GUARDED_BY(mu) = false;
  bool finish_called ABSL_GUARDED_BY(mu) = false;
  bool done ABSL_GUARDED_BY(mu) = false;  // every sample finished
  bool abandon ABSL_GUARDED_BY(mu) = false;  // finish now, drop what is queued
  int samples ABSL_GUARDED_BY(mu) = 1;
  int finished ABSL_GUARDED_BY(mu) = 0;
  std::optional<grpc::Status> status ABSL_GUARDED_BY(mu);
  std::optional<uint64_t> handle ABSL_GUARDED_BY(mu);

  // What to do once the lock is released.
  struct Write {
    const GenerateResponse* message;
  };
  struct Finish {
    grpc::Status status;
  };
  using Action = std::variant<std::monostate, Write, Finish>;

  Action NextAction() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (finish_called || reactor == nullptr) return {};
    if (abandon || (done && queue.empty() && !writing)) {
      finish_called = true;
      return Finish{status.value_or(grpc::Status::OK)};
    }
    if (writing || queue.empty()) return {};
    writing = true;
    return Write{&queue.front()};
  }

  void Run(Action action);  // REQUIRES: mu not held
};

class GenerateStream final : public grpc::ServerWriteReactor<GenerateResponse> {
 public:
  explicit GenerateStream(std::shared_ptr<StreamState> state) : state_(std::move(state)) {
    std::lock_guard lock(state_->mu);
    state_->reactor = this;
  }

  void OnWriteDone(bool ok) override {
    StreamState::Action action;
    std::optional<uint64_t> cancel;
    {
      std::lock_guard lock(state_->mu);
      state_->writing = false;
      if (!state_->queue.empty()) state_->queue.pop_front();
      if (!ok && !state_->abandon) {
        // The stream broke (client gone): stop the work.
        state_->abandon = true;
        state_->status = grpc::Status(grpc::StatusCode::CANCELLED, "stream write failed");
        cancel = state_->handle;
      }
      action = state_->NextAction();
    }
    if (cancel) state_->engine->Cancel(*cancel);
    state_->Run(std::move(action));
  }

  void OnCancel() override { CancelEngineRequest(*state_); }

  void OnDone() override {
    {
      std::lock_guard lock(state_->mu);
      state_->reactor = nullptr;
    }
    delete this;
  }

 private:
  std::shared_ptr<StreamState> state_;
};

void StreamState::Run(Action action) {
  // The reactor stays alive until OnDone, which cannot come before the
  // Finish issued here; writes are only issued before Finish.
  GenerateStream* stream;
  {
    std::lock_guard lock(mu);
    stream = reactor;
  }
  if (stream == nullptr) return;
  if (auto* write = std::get_if<Write>(&action)) {
    stream->StartWrite(write->message);
  } else if (auto* finish = std::get_if<Finish>(&action)) {
    stream->Finish(finish->status);
  }
}

class StreamSink final : public engine::RequestSink {
 public:
  explicit StreamSink(std::shared_ptr<StreamState> state) : state_(std::move(state)) {}

  void OnTokens(engine::TokenEvent event) override {
    StreamState::Action action;
    std::optional<uint64_t> cancel;
    {
      std::lock_guard lock(state_->mu);
      if (state_->finish_called || state_->abandon) return;
      if (static_cast<int>(state_->queue.size()) >= state_->max_buffered) {
        state_->abandon = true;
        state_->status = grpc::Status(
            grpc::StatusCode::RESOURCE_EXHAUSTED,
            absl::StrCat("client is not reading the stream: more than ", state_->max_buffered,
                         " events buffered; request ", state_->request_id, " cancelled"));
        cancel = state_->handle;
      } else {
        GenerateResponse& response = state_->queue.emplace_back();
        response.set_request_id(state_->request_id);
        ToProto(event, *state_->tokenizer, state_->want_ids, state_->want_text,
                response.mutable_chunk());
      }
      action = state_->NextAction();
    }
    if (cancel) state_->engine->Cancel(*cancel);
    state_->Run(std::move(action));
  }

  void OnFinish(engine::FinishEvent event) override {
    StreamState::Action action;
    {
      std::lock_guard lock(state_->mu);
      const bool refused = RecordFinish(event, &state_->status);
      if (!state_->abandon && !refused) {
        GenerateResponse& response = state_->queue.emplace_back();
        response.set_request_id(state_->request_id);
        ToProto(event, response.mutable_finished());
      }
      ++state_->finished;
      if (refused || state_->finished >= state_->samples) state_->done = true;
      action = state_->NextAction();
    }
    state_->Run(std::move(action));
  }

 private:
  std::shared_ptr<StreamState> state_;
};

// ---------------------------------------------------------------------------
// Complete: the same request, collected into one response.
// ---------------------------------------------------------------------------

class CompleteCall;

struct CompleteState {
  engine::Engine* engine = nullptr;                 // not owned
  const tokenizer::Tokenizer* tokenizer = nullptr;  // not owned
  bool want_ids = true;
  bool want_text = true;

  std::mutex mu;
  CompleteCall* reactor ABSL_GUARDED_BY(mu) = nullptr;
  kestrel::v1::CompleteResponse* response ABSL_GUARDED_BY(mu) = nullptr;  // owned by gRPC
  int samples ABSL_GUARDED_BY(mu) = 1;
  int finished ABSL_GUARDED_BY(mu) = 0;
  bool finish_called ABSL_GUARDED_BY(mu) = false;
  std::optional<grpc::Status> status ABSL_GUARDED_BY(mu);
  std::optional<uint64_t> handle ABSL_GUARDED_BY(mu);
};

class CompleteCall final : public grpc::ServerUnaryReactor {
 public:
  explicit CompleteCall(std::shared_ptr<CompleteState> state) : state_(std::move(state)) {
    std::lock_guard lock(state_->mu);
    state_->reactor = this;
  }
  void OnCancel() override { CancelEngineRequest(*state_); }
  void OnDone() override {
    {
      std::lock_guard lock(state_->mu);
      state_->reactor = nullptr;
      state_->response = nullptr;
    }
    delete this;
  }

 private:
  std::shared_ptr<CompleteState> state_;
};

class CompleteSink final : public engine::RequestSink {
 public:
  explicit CompleteSink(std::shared_ptr<CompleteState> state) : state_(std::move(state)) {}

  void OnTokens(engine::TokenEvent event) override {
    std::lock_guard lock(state_->mu);
    if (state_->response == nullptr || state_->finish_called) return;
    kestrel::v1::Completion& completion = Completion(event.index);
    kestrel::v1::TokenChunk chunk;
    ToProto(event, *state_->tokenizer, state_->want_ids, state_->want_text, &chunk);
    completion.mutable_token_ids()->MergeFrom(chunk.token_ids());
    completion.mutable_text()->append(chunk.text());
    completion.mutable_logprobs()->MergeFrom(chunk.logprobs());
  }

  void OnFinish(engine::FinishEvent event) override {
    CompleteCall* reactor = nullptr;
    grpc::Status status;
    {
      std::lock_guard lock(state_->mu);
      if (state_->response == nullptr || state_->finish_called) return;
      const bool refused = RecordFinish(event, &state_->status);
      if (!refused) ToProto(event, Completion(event.index).mutable_finished());
      ++state_->finished;
      if (!refused && state_->finished < state_->samples) return;
      state_->finish_called = true;
      reactor = state_->reactor;
      status = state_->status.value_or(grpc::Status::OK);
    }
    if (reactor != nullptr) reactor->Finish(status);
  }

 private:
  kestrel::v1::Completion& Completion(int index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    auto* completions = state_->response->mutable_completions();
    while (completions->size() <= index) completions->Add()->set_index(completions->size() - 1);
    return *completions->Mutable(index);
  }

  std::shared_ptr<CompleteState> state_;
};

}  // namespace

KestrelService::KestrelService(KestrelServiceOptions options, engine::Engine* engine,
                               const tokenizer::Tokenizer* tokenizer)
    : options_(std::move(options)),
      engine_(engine),
      tokenizer_(tokenizer),
      request_context_{.tokenizer = tokenizer,
                       .chat_renderer = options_.chat_renderer,
                       .sampling_defaults = options_.sampling_defaults},
      start_time_(absl::Now()) {}

grpc::ServerWriteReactor<GenerateResponse>* KestrelService::Generate(
    grpc::CallbackServerContext* context, const kestrel::v1::GenerateRequest* request) {
  auto state = std::make_shared<StreamState>();
  state->engine = engine_;
  state->tokenizer = tokenizer_;
  state->max_buffered = options_.max_buffered_events;
  auto* stream = new GenerateStream(state);

  absl::StatusOr<PreparedCall> call = PrepareCall(*request, request_context_, *context);
  if (!call.ok()) {
    stream->Finish(ToGrpcStatus(call.status()));
    return stream;
  }
  state->want_ids = call->want_ids;
  state->want_text = call->want_text;
  state->request_id = call->params.request_id;
  {
    std::lock_guard lock(state->mu);
    state->samples = call->params.n;
    if (call->echo.has_value()) {
      GenerateResponse& echo = state->queue.emplace_back();
      echo.set_request_id(state->request_id);
      *echo.mutable_prompt() = std::move(*call->echo);
    }
  }
  absl::StatusOr<uint64_t> handle =
      engine_->Submit(std::move(call->params), std::make_shared<StreamSink>(state));
  StreamState::Action action;
  {
    std::lock_guard lock(state->mu);
    if (!handle.ok()) {
      state->queue.clear();
      state->status = ToGrpcStatus(handle.status());
      state->abandon = true;
    } else {
      state->handle = *handle;
    }
    action = state->NextAction();
  }
  // A cancel that arrived before the handle was known.
  if (handle.ok() && context->IsCancelled()) engine_->Cancel(*handle);
  state->Run(std::move(action));
  return stream;
}

grpc::ServerUnaryReactor* KestrelService::Complete(grpc::CallbackServerContext* context,
                                                   const kestrel::v1::GenerateRequest* request,
                                                   kestrel::v1::CompleteResponse* response) {
  absl::StatusOr<PreparedCall> prepared = PrepareCall(*request, request_context_, *context);
  if (!prepared.ok()) return FinishNow(context, ToGrpcStatus(prepared.status()));

  auto state = std::make_shared<CompleteState>();
  state->engine = engine_;
  state->tokenizer = tokenizer_;
  state->want_ids = prepared->want_ids;
  state->want_text = prepared->want_text;
  response->set_request_id(prepared->params.request_id);
  if (prepared->echo.has_value()) *response->mutable_prompt() = std::move(*prepared->echo);
  auto* call = new CompleteCall(state);
  {
    std::lock_guard lock(state->mu);
    state->response = response;
    state->samples = prepared->params.n;
  }
  absl::StatusOr<uint64_t> handle =
      engine_->Submit(std::move(prepared->params), std::make_shared<CompleteSink>(state));
  if (!handle.ok()) {
    {
      std::lock_guard lock(state->mu);
      state->finish_called = true;
    }
    call->Finish(ToGrpcStatus(handle.status()));
    return call;
  }
  {
    std::lock_guard lock(state->mu);
    state->handle = *handle;
  }
  if (context->IsCancelled()) engine_->Cancel(*handle);
  return call;
}

grpc::ServerUnaryReactor* KestrelService::Tokenize(grpc::CallbackServerContext* context,
                                                   const kestrel::v1::TokenizeRequest* request,
                                                   kestrel::v1::TokenizeResponse* response) {
  tokenizer::EncodeOptions options;
  options.add_special_tokens = request->has_add_special_tokens() ? request->add_special_tokens() : true;
  options.parse_special_tokens = false;
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(request->text(), options);
  if (!ids.ok()) {
    return FinishNow(context, ToGrpcStatus(absl::InvalidArgumentError(
                                  absl::StrCat("text: ", ids.status().message()))));
  }
  response->mutable_token_ids()->Add(ids->begin(), ids->end());
  return FinishNow(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* KestrelService::Detokenize(grpc::CallbackServerContext* context,
                                                     const kestrel::v1::DetokenizeRequest* request,
                                                     kestrel::v1::DetokenizeResponse* response) {
  const int64_t vocab = engine_->vocab_size();
  for (int i = 0; i < request->token_ids_size(); ++i) {
    const int32_t id = request->token_ids(i);
    if (id < 0 || id >= vocab) {
      return FinishNow(context, ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
                                    "token_ids[", i, "] = ", id, " is not in [0, ", vocab, ")"))));
    }
  }
  const bool skip = request->has_skip_special_tokens() ? request->skip_special_tokens() : true;
  std::vector<int32_t> ids(request->token_ids().begin(), request->token_ids().end());
  absl::StatusOr<std::string> text = tokenizer_->Decode(ids, skip);
  if (!text.ok()) return FinishNow(context, ToGrpcStatus(text.status()));
  response->set_text(std::move(*text));
  return FinishNow(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* KestrelService::GetModelInfo(
    grpc::CallbackServerContext* context, const kestrel::v1::GetModelInfoRequest* /*request*/,
    kestrel::v1::ModelInfo* response) {
  *response = options_.model_info;
  return FinishNow(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* KestrelService::GetServerInfo(
    grpc::CallbackServerContext* context, const kestrel::v1::GetServerInfoRequest* /*request*/,
    kestrel::v1::GetServerInfoResponse* response) {
  response->set_version(kVersion);
  response->set_listen_address(options_.listen_address);
  response->set_uptime_seconds(absl::ToDoubleSeconds(absl::Now() - start_time_));
  response->set_draining(draining_.load());
  const engine::EngineLoad load = engine_->load();
  kestrel::v1::ServerLoad* out = response->mutable_load();
  out->set_running_requests(load.running_requests);
  out->set_waiting_requests(load.waiting_requests);
  out->set_kv_blocks_total(load.kv_blocks_total);
  out->set_kv_blocks_free(load.kv_blocks_free);
  out->set_kv_blocks_cached(load.kv_blocks_cached);
  out->set_kv_block_size(load.kv_block_size);
  response->mutable_config()->insert(options_.config.begin(), options_.config.end());
  return FinishNow(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* KestrelService::Abort(grpc::CallbackServerContext* context,
                                                const kestrel::v1::AbortRequest* request,
                                                kestrel::v1::AbortResponse* response) {
  if (request->request_id().empty()) {
    return FinishNow(context, ToGrpcStatus(absl::InvalidArgumentError("request_id must not be empty")));
  }
  response->set_found(engine_->Abort(request->request_id()));
  return FinishNow(context, grpc::Status::OK);
}

}  // namespace kestrel::server

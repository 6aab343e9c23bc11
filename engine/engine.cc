#include "engine/engine.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kestrel::engine {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const Options& options,
                                                       std::unique_ptr<ModelExecutor> executor,
                                                       const tokenizer::Tokenizer* tokenizer,
                                                       EngineMetrics* metrics) {
  auto engine = std::unique_ptr<Engine>(new Engine(options, metrics));
  ASSIGN_OR_RETURN(engine->core_, EngineCore::Create(options, std::move(executor), tokenizer,
                                                     metrics, engine.get()));
  engine->vocab_size_ = engine->core_->vocab_size();
  engine->max_model_len_ = engine->core_->max_model_len();
  engine->PublishLoad();
  engine->loop_ = std::thread([raw = engine.get()] { raw->Loop(); });
  return engine;
}

Engine::Engine(const Options& options, EngineMetrics* metrics)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : RealClock::Get()),
      metrics_(metrics) {}

Engine::~Engine() {
  {
    std::unique_lock lock(mu_);
    accepting_ = false;
    stop_ = true;
  }
  work_cv_.notify_all();
  if (loop_.joinable()) loop_.join();
}

absl::StatusOr<uint64_t> Engine::Submit(GenerateParams params, std::shared_ptr<RequestSink> sink) {
  if (sink == nullptr) return absl::InvalidArgumentError("Submit needs a sink");
  RETURN_IF_ERROR(core_->Validate(params));
  std::unique_lock lock(mu_);
  if (!accepting_) return absl::UnavailableError("server is draining; not accepting new requests");
  if (options_.max_queued_requests > 0 && queued_ >= options_.max_queued_requests) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request queue is full (", queued_, " requests waiting; --max-queued-requests=",
        options_.max_queued_requests, "); retry later"));
  }
  const uint64_t handle = next_handle_++;
  if (params.request_id.empty()) params.request_id = absl::StrCat("req-", handle);
  if (!ids_.emplace(params.request_id, handle).second) {
    return absl::AlreadyExistsError(
        absl::StrCat("request_id '", params.request_id, "' is already active"));
  }
  ++queued_;
  intake_.push_back(Intake{handle, std::move(params), std::move(sink), clock_->Now()});
  lock.unlock();
  work_cv_.notify_one();
  return handle;
}

void Engine::Cancel(uint64_t handle) {
  {
    std::unique_lock lock(mu_);
    cancels_.push_back(CancelOrder{handle, absl::CancelledError("request cancelled by the client")});
  }
  work_cv_.notify_one();
}

bool Engine::Abort(const std::string& request_id) {
  std::unique_lock lock(mu_);
  auto it = ids_.find(request_id);
  if (it == ids_.end()) return false;
  cancels_.push_back(
      CancelOrder{it->second, absl::CancelledError("request aborted through the Abort RPC")});
  lock.unlock();
  work_cv_.notify_one();
  return true;
}

void Engine::StopAccepting() {
  std::unique_lock lock(mu_);
  accepting_ = false;
}

bool Engine::WaitUntilIdle(absl::Duration timeout) {
  std::unique_lock lock(mu_);
  return idle_cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [this] { return ids_.empty(); });
}

void Engine::CancelAll(const absl::Status& status) {
  {
    std::unique_lock lock(mu_);
    for (const auto& [id, handle] : ids_) cancels_.push_back(CancelOrder{handle, status});
  }
  work_cv_.notify_one();
}

EngineLoad Engine::load() const {
  std::unique_lock lock(mu_);
  return load_;
}

void Engine::OnDequeued(uint64_t) {
  std::unique_lock lock(mu_);
  --queued_;
}

void Engine::OnReleased(const std::string& request_id) {
  {
    std::unique_lock lock(mu_);
    ids_.erase(request_id);
  }
  idle_cv_.notify_all();
}

void Engine::PublishLoad() {
  EngineLoad load = core_->load();
  {
    std::unique_lock lock(mu_);
    load.active_requests = static_cast<int>(ids_.size());
    load_ = load;
  }
  if (metrics_ != nullptr) {
    LoadSample sample;
    sample.running_requests = load.running_requests;
    sample.waiting_requests = load.waiting_requests;
    sample.kv_blocks_total = load.kv_blocks_total;
    sample.kv_blocks_free = load.kv_blocks_free;
    sample.kv_blocks_cached = load.kv_blocks_cached;
    metrics_->RecordLoad(sample);
  }
}

void Engine::Loop() {
  while (true) {
    std::deque<Intake> intake;
    std::deque<CancelOrder> cancels;
    bool stopping;
    {
      std::unique_lock lock(mu_);
      // The core is this thread's own state; reading it here is safe.
      work_cv_.wait(lock, [this] {
        return stop_ || !intake_.empty() || !cancels_.empty() || core_->has_work();
      });
      if (stop_) {
        // Everything still active ends as the server goes away.
        for (const auto& [id, handle] : ids_) {
          cancels_.push_back(CancelOrder{handle, absl::UnavailableError("server is shutting down")});
        }
      }
      intake.swap(intake_);
      cancels.swap(cancels_);
      stopping = stop_;
    }
    for (Intake& in : intake) {
      core_->Add(in.handle, std::move(in.params), std::move(in.sink), in.arrival);
    }
    for (const CancelOrder& cancel : cancels) core_->Cancel(cancel.handle, cancel.status);
    if (stopping) {
      PublishLoad();
      return;
    }
    core_->Step(clock_->Now());
    PublishLoad();
  }
}

}  // namespace kestrel::engine

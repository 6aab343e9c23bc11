#include "engine/engine.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "engine/stop_strings.h"
#include "model/tokenizer/incremental_detokenizer.h"
#include "spdlog/spdlog.h"

namespace kestrel::engine {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
  }
  return "error";
}

namespace {

// "DEADLINE_EXCEEDED" -> "deadline_exceeded", for the metrics label.
std::string StatusLabel(const absl::Status& status) {
  std::string label = absl::StatusCodeToString(status.code());
  for (char& c : label) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return label;
}

}  // namespace

struct Engine::Sample {
  std::unique_ptr<model::RequestSampler> sampler;
  std::unique_ptr<tokenizer::IncrementalDetokenizer> detokenizer;
  std::unique_ptr<StopStringMatcher> stops;
  int num_tokens = 0;
  absl::Time last_token_time;
  bool finished = false;
  // This step's output, sent after Scheduler::Update.
  TokenEvent pending;
  std::optional<std::string> stop_string;
  int32_t last_token = -1;
};

struct Engine::Active {
  uint64_t handle = 0;
  GenerateParams params;
  std::shared_ptr<RequestSink> sink;
  absl::Time arrival;
  std::optional<absl::Time> first_scheduled;
  std::optional<absl::Time> first_token;
  int cached_prompt_tokens = 0;
  std::vector<Sample> samples;
  int num_finished = 0;
  // For the request's metrics sample: the first sample's outcome.
  std::optional<FinishReason> first_reason;
  absl::Status first_error;
};

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const Options& options,
                                                       std::unique_ptr<ModelExecutor> executor,
                                                       const tokenizer::Tokenizer* tokenizer,
                                                       EngineMetrics* metrics) {
  if (executor == nullptr) return absl::InvalidArgumentError("engine needs a model executor");
  if (tokenizer == nullptr) return absl::InvalidArgumentError("engine needs a tokenizer");
  if (options.max_queued_requests < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_queued_requests must be >= 0, got ", options.max_queued_requests));
  }
  for (int32_t eos : options.eos_token_ids) {
    if (eos < 0 || eos >= executor->vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("eos token id ", eos, " is not in [0, ",
                                                     executor->vocab_size(), ")"));
    }
  }
  scheduler::Scheduler::Options sched;
  sched.num_kv_blocks = executor->num_kv_blocks();
  sched.block_size = executor->block_size();
  sched.enable_prefix_caching = options.enable_prefix_caching;
  sched.max_num_batched_tokens = options.max_num_batched_tokens;
  sched.max_num_seqs = options.max_num_seqs;
  sched.max_model_len = executor->max_model_len();
  sched.policy = options.policy;
  sched.watermark = options.watermark;
  sched.enable_chunked_prefill = options.enable_chunked_prefill;
  ASSIGN_OR_RETURN(std::unique_ptr<scheduler::Scheduler> scheduler,
                   scheduler::Scheduler::Create(sched));
  auto engine = std::unique_ptr<Engine>(
      new Engine(options, std::move(executor), std::move(scheduler), tokenizer, metrics));
  engine->PublishLoad();
  engine->loop_ = std::thread([raw = engine.get()] { raw->Loop(); });
  return engine;
}

Engine::Engine(const Options& options, std::unique_ptr<ModelExecutor> executor,
               std::unique_ptr<scheduler::Scheduler> scheduler,
               const tokenizer::Tokenizer* tokenizer, EngineMetrics* metrics)
    : options_(options),
      executor_(std::move(executor)),
      tokenizer_(tokenizer),
      metrics_(metrics),
      vocab_size_(executor_->vocab_size()),
      max_model_len_(executor_->max_model_len()),
      scheduler_(std::move(scheduler)) {}

Engine::~Engine() {
  {
    std::unique_lock lock(mu_);
    accepting_ = false;
    stop_ = true;
  }
  work_cv_.notify_all();
  if (loop_.joinable()) loop_.join();
}

absl::Status Engine::Validate(const GenerateParams& p) const {
  if (p.request_id.size() > static_cast<size_t>(options_.max_request_id_bytes)) {
    return absl::InvalidArgumentError(absl::StrCat("request_id must be at most ",
                                                   options_.max_request_id_bytes, " bytes, got ",
                                                   p.request_id.size()));
  }
  const int prompt_len = static_cast<int>(p.prompt_ids.size());
  if (prompt_len == 0) {
    return absl::InvalidArgumentError("prompt must contain at least one token, got 0");
  }
  for (int i = 0; i < prompt_len; ++i) {
    if (p.prompt_ids[i] < 0 || p.prompt_ids[i] >= vocab_size_) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token_ids[", i, "] = ", p.prompt_ids[i],
                                                     " is not a token id in [0, ", vocab_size_, ")"));
    }
  }
  if (prompt_len >= max_model_len_) {
    return absl::InvalidArgumentError(absl::StrCat("prompt has ", prompt_len,
                                                   " tokens; the model's context length is ",
                                                   max_model_len_, " (prompt plus output)"));
  }
  if (p.max_tokens.has_value()) {
    if (*p.max_tokens < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("stopping.max_tokens must be >= 1, got ", *p.max_tokens));
    }
    if (prompt_len + *p.max_tokens > max_model_len_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "stopping.max_tokens = ", *p.max_tokens, " plus the prompt's ", prompt_len,
          " tokens exceeds the model's context length ", max_model_len_));
    }
  }
  const int max_tokens = p.max_tokens.value_or(max_model_len_ - prompt_len);
  if (p.min_tokens < 0 || p.min_tokens > max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("stopping.min_tokens must be in [0, ", max_tokens,
                                                   "], got ", p.min_tokens));
  }
  if (p.n < 1 || p.n > options_.max_num_seqs) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.n must be in [1, ", options_.max_num_seqs, "], got ", p.n));
  }
  if (p.stop.size() > static_cast<size_t>(options_.max_stop_strings)) {
    return absl::InvalidArgumentError(absl::StrCat("stopping.stop has ", p.stop.size(),
                                                   " strings; at most ",
                                                   options_.max_stop_strings, " are allowed"));
  }
  for (size_t i = 0; i < p.stop.size(); ++i) {
    if (p.stop[i].empty() || p.stop[i].size() > static_cast<size_t>(options_.max_stop_string_bytes)) {
      return absl::InvalidArgumentError(absl::StrCat("stopping.stop[", i, "] must have 1 to ",
                                                     options_.max_stop_string_bytes,
                                                     " bytes, got ", p.stop[i].size()));
    }
  }
  for (size_t i = 0; i < p.stop_token_ids.size(); ++i) {
    if (p.stop_token_ids[i] < 0 || p.stop_token_ids[i] >= vocab_size_) {
      return absl::InvalidArgumentError(absl::StrCat("stopping.stop_token_ids[", i, "] = ",
                                                     p.stop_token_ids[i], " is not in [0, ",
                                                     vocab_size_, ")"));
    }
  }
  return p.sampling.Validate(vocab_size_);
}

absl::StatusOr<uint64_t> Engine::Submit(GenerateParams params, std::shared_ptr<RequestSink> sink) {
  if (sink == nullptr) return absl::InvalidArgumentError("Submit needs a sink");
  RETURN_IF_ERROR(Validate(params));
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
  intake_.push_back(Intake{handle, std::move(params), std::move(sink), absl::Now()});
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

void Engine::PublishLoad() {
  const scheduler::BlockManager& blocks = scheduler_->block_manager();
  EngineLoad load;
  load.running_requests = scheduler_->num_running();
  load.waiting_requests = scheduler_->num_waiting();
  load.kv_blocks_total = blocks.num_blocks();
  load.kv_blocks_free = blocks.num_free_blocks();
  load.kv_blocks_cached = blocks.num_cached_blocks();
  load.kv_block_size = executor_->block_size();
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
    {
      std::unique_lock lock(mu_);
      // The scheduler is the loop's own state; reading it here is safe.
      work_cv_.wait(lock, [this] {
        return stop_ || !intake_.empty() || !cancels_.empty() || scheduler_->has_work();
      });
      if (stop_) {
        // Everything still active ends as the server goes away.
        for (const auto& [id, handle] : ids_) {
          cancels_.push_back(CancelOrder{handle, absl::UnavailableError("server is shutting down")});
        }
      }
      intake.swap(intake_);
      cancels.swap(cancels_);
    }
    for (Intake& in : intake) Admit(std::move(in));
    for (const CancelOrder& cancel : cancels) CancelActive(cancel.handle, cancel.status);
    bool stopping;
    {
      std::unique_lock lock(mu_);
      stopping = stop_;
    }
    if (stopping) {
      PublishLoad();
      return;
    }
    if (scheduler_->has_work()) RunStep();
    PublishLoad();
  }
}

void Engine::Admit(Intake in) {
  auto active = std::make_unique<Active>();
  active->handle = in.handle;
  active->params = std::move(in.params);
  active->sink = std::move(in.sink);
  active->arrival = in.arrival;
  const GenerateParams& p = active->params;

  scheduler::Request request;
  request.id = in.handle;
  request.prompt_token_ids = p.prompt_ids;
  request.max_tokens = p.max_tokens.value_or(max_model_len_ - static_cast<int>(p.prompt_ids.size()));
  request.n = p.n;
  request.priority = p.priority;
  request.ignore_eos = p.ignore_eos;
  request.stop_token_ids = p.stop_token_ids;
  if (!options_.eos_token_ids.empty()) {
    request.eos_token_id = options_.eos_token_ids[0];
    if (!p.ignore_eos) {
      request.stop_token_ids.insert(request.stop_token_ids.end(), options_.eos_token_ids.begin() + 1,
                                    options_.eos_token_ids.end());
    }
  }
  request.cache_salt = p.cache_salt;
  request.deadline = p.deadline;

  absl::Status status;
  active->samples.resize(p.n);
  for (int i = 0; i < p.n && status.ok(); ++i) {
    model::SamplingParams sampling = p.sampling;
    // Samples of one request must differ yet repeat for the same seed.
    if (sampling.seed.has_value()) sampling.seed = *sampling.seed + static_cast<uint64_t>(i);
    auto sampler = model::RequestSampler::Create(sampling, vocab_size_, p.prompt_ids);
    if (!sampler.ok()) {
      status = sampler.status();
      break;
    }
    Sample& sample = active->samples[i];
    sample.sampler = std::move(*sampler);
    sample.detokenizer =
        std::make_unique<tokenizer::IncrementalDetokenizer>(tokenizer_, p.skip_special_tokens);
    sample.stops = std::make_unique<StopStringMatcher>(p.stop, p.include_stop_str_in_output);
    sample.pending.index = i;
  }
  if (status.ok()) status = scheduler_->AddRequest(std::move(request));
  const uint64_t handle = active->handle;
  active_.emplace(handle, std::move(active));
  if (!status.ok()) {
    // Refused before it started: one FinishEvent carries the error.
    Active& refused = *active_[handle];
    refused.samples.resize(1);
    refused.samples[0].pending.index = 0;
    FinishSample(refused, 0, FinishReason::kError, status, absl::Now());
    Retire(handle);
  }
}

void Engine::CancelActive(uint64_t handle, const absl::Status& status) {
  auto it = active_.find(handle);
  if (it == active_.end()) return;  // already finished
  (void)scheduler_->Abort(handle);  // NOT_FOUND when refused at admission
  Active& active = *it->second;
  const absl::Time now = absl::Now();
  for (int i = 0; i < static_cast<int>(active.samples.size()); ++i) {
    if (!active.samples[i].finished) FinishSample(active, i, FinishReason::kCancelled, status, now);
  }
  Retire(handle);
}

void Engine::FinishSample(Active& active, int index, FinishReason reason, absl::Status status,
                          absl::Time now) {
  Sample& sample = active.samples[index];
  if (sample.finished) return;
  sample.finished = true;
  ++active.num_finished;
  if (!active.first_reason.has_value()) {
    active.first_reason = reason;
    active.first_error = status;
  }
  FinishEvent event;
  event.index = index;
  event.reason = reason;
  event.status = std::move(status);
  if (reason == FinishReason::kStop) {
    if (sample.stop_string.has_value()) {
      event.stop_string = sample.stop_string;
    } else {
      event.stop_token_id = sample.last_token;
    }
  }
  event.usage.prompt_tokens = static_cast<int>(active.params.prompt_ids.size());
  event.usage.cached_prompt_tokens = active.cached_prompt_tokens;
  event.usage.completion_tokens = sample.num_tokens;
  if (active.first_scheduled) event.timings.queue = *active.first_scheduled - active.arrival;
  if (active.first_token) event.timings.time_to_first_token = *active.first_token - active.arrival;
  event.timings.total = now - active.arrival;
  if (active.num_finished == static_cast<int>(active.samples.size())) {
    // The id is free again before the client can learn that the request
    // ended, so an immediate retry with the same id is never refused.
    {
      std::unique_lock lock(mu_);
      ids_.erase(active.params.request_id);
    }
    idle_cv_.notify_all();
  }
  active.sink->OnFinish(std::move(event));
}

void Engine::Retire(uint64_t handle) {
  auto it = active_.find(handle);
  if (it == active_.end()) return;
  Active& active = *it->second;
  // One summary feeds both the metrics and the log line.
  const std::string status = active.first_error.ok() ? "ok" : StatusLabel(active.first_error);
  RequestSample sample;
  sample.status = status;
  sample.finish_reason = FinishReasonName(active.first_reason.value_or(FinishReason::kError));
  sample.prompt_tokens = static_cast<int>(active.params.prompt_ids.size());
  for (const Sample& s : active.samples) sample.generation_tokens += s.num_tokens;
  if (active.first_scheduled) sample.queue_time = *active.first_scheduled - active.arrival;
  if (active.first_token) sample.time_to_first_token = *active.first_token - active.arrival;
  sample.end_to_end = absl::Now() - active.arrival;
  if (metrics_ != nullptr) metrics_->RecordRequest(sample);
  LogRequest(active, sample);
  if (!active.first_scheduled.has_value()) {
    std::unique_lock lock(mu_);
    --queued_;
  }
  // The id left ids_ with the last FinishSample; erasing it here could drop
  // a new request that already reuses the id.
  active_.erase(it);
}

void Engine::LogRequest(const Active& active, const RequestSample& sample) const {
  if (options_.request_log == RequestLogFormat::kOff) return;
  // -1 marks a stage the request never reached.
  auto seconds = [](absl::Duration d) {
    return d == absl::InfiniteDuration() ? -1.0 : absl::ToDoubleSeconds(d);
  };
  const double queue_s = seconds(sample.queue_time);
  const double ttft_s = seconds(sample.time_to_first_token);
  const double total_s = seconds(sample.end_to_end);
  if (options_.request_log == RequestLogFormat::kJson) {
    // The id is client-chosen: escape it as a JSON string.
    std::string id;
    for (char c : active.params.request_id) {
      if (c == '"' || c == '\\') {
        id += '\\';
        id += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        id += absl::StrFormat("\\u%04x", c);
      } else {
        id += c;
      }
    }
    spdlog::info(
        "{{\"event\":\"request_finished\",\"request_id\":\"{}\",\"status\":\"{}\","
        "\"finish_reason\":\"{}\",\"n\":{},\"prompt_tokens\":{},\"cached_prompt_tokens\":{},"
        "\"completion_tokens\":{},\"queue_seconds\":{:.6f},\"ttft_seconds\":{:.6f},"
        "\"total_seconds\":{:.6f}}}",
        id, std::string(sample.status), std::string(sample.finish_reason), active.params.n,
        sample.prompt_tokens, active.cached_prompt_tokens, sample.generation_tokens, queue_s,
        ttft_s, total_s);
  } else {
    spdlog::info(
        "request finished id={} status={} finish_reason={} n={} prompt_tokens={} "
        "cached_prompt_tokens={} completion_tokens={} queue_s={:.6f} ttft_s={:.6f} total_s={:.6f}",
        absl::CHexEscape(active.params.request_id), std::string(sample.status),
        std::string(sample.finish_reason), active.params.n, sample.prompt_tokens,
        active.cached_prompt_tokens, sample.generation_tokens, queue_s, ttft_s, total_s);
  }
}

absl::Status Engine::SampleToken(Active& active, int index, std::span<const float> row,
                                 scheduler::SequenceId seq_id, absl::Time now,
                                 std::vector<scheduler::SampledToken>* sampled) {
  Sample& sample = active.samples[index];
  const GenerateParams& p = active.params;
  std::span<const float> logits = row;
  if (sample.num_tokens < p.min_tokens) {
    // Below min_tokens nothing may end the sample: mask every stopping token
    // (in a copy: the row may be shared by the other samples of the request).
    std::vector<float>& masked = masked_logits_;
    masked.assign(row.begin(), row.end());
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    if (!p.ignore_eos) {
      for (int32_t eos : options_.eos_token_ids) masked[eos] = kNegInf;
    }
    for (int32_t stop : p.stop_token_ids) masked[stop] = kNegInf;
    logits = std::span<const float>(masked.data(), masked.size());
  }
  ASSIGN_OR_RETURN(model::SampledToken token, sample.sampler->Sample(logits));
  ++sample.num_tokens;
  sample.last_token = token.token;
  if (!active.first_token.has_value()) active.first_token = now;
  if (metrics_ != nullptr && sample.num_tokens > 1) {
    metrics_->RecordInterTokenLatency(now - sample.last_token_time);
  }
  sample.last_token_time = now;

  ASSIGN_OR_RETURN(std::string delta, sample.detokenizer->Add(token.token));
  StopStringMatcher::Result text =
      sample.stops->Process(delta, /*allow_stop=*/sample.num_tokens >= p.min_tokens);
  sample.pending.token_ids.push_back(token.token);
  sample.pending.text += text.text;
  if (p.sampling.logprobs) sample.pending.logprobs.push_back(std::move(token));
  if (text.stop.has_value()) sample.stop_string = text.stop;
  sampled->push_back(scheduler::SampledToken{seq_id, sample.last_token, text.stop.has_value()});
  return absl::OkStatus();
}

void Engine::FailStep(const absl::Status& status) {
  spdlog::error("engine step failed, ending its requests: {}", status.ToString());
  std::vector<uint64_t> handles;
  for (const scheduler::ScheduledSequence& seq : step_.scheduled) handles.push_back(seq.request_id);
  std::sort(handles.begin(), handles.end());
  handles.erase(std::unique(handles.begin(), handles.end()), handles.end());
  // The scheduler expects Update after Step; report nothing sampled for the
  // aborted requests (it ignores samples of aborted sequences).
  for (uint64_t handle : handles) CancelActive(handle, absl::InternalError(status.message()));
  std::vector<scheduler::SampledToken> none;
  (void)scheduler_->Update(none);
}

void Engine::RunStep() {
  const absl::Time start = absl::Now();
  absl::Status status = scheduler_->Step(start, &step_);
  if (!status.ok()) {
    spdlog::error("scheduler step failed: {}", status.ToString());
    return;
  }
  // Deadlines end the whole request, every sample of it.
  for (const scheduler::FinishedSequence& fs : step_.finished) {
    auto it = active_.find(fs.request_id);
    if (it == active_.end()) continue;
    (void)scheduler_->Abort(fs.request_id);  // its other samples, if any
    Active& active = *it->second;
    for (int i = 0; i < static_cast<int>(active.samples.size()); ++i) {
      FinishSample(active, i, FinishReason::kCancelled,
                   absl::DeadlineExceededError("request deadline passed; generation stopped"), start);
    }
    Retire(fs.request_id);
  }
  if (step_.scheduled.empty()) {
    std::vector<scheduler::SampledToken> none;
    (void)scheduler_->Update(none);
    return;
  }
  int prefix_queried = 0;
  int prefix_hits = 0;
  for (const scheduler::ScheduledSequence& seq : step_.scheduled) {
    auto it = active_.find(seq.request_id);
    if (it != active_.end() && !it->second->first_scheduled.has_value()) {
      // A new request's first chunk starts after the prompt blocks the
      // prefix cache already holds.
      it->second->first_scheduled = start;
      it->second->cached_prompt_tokens = seq.position_offset;
      prefix_queried += static_cast<int>(it->second->params.prompt_ids.size());
      prefix_hits += seq.position_offset;
      std::unique_lock lock(mu_);
      --queued_;
    }
  }

  status = executor_->Execute(step_, &logits_);
  if (status.ok()) {
    size_t sampling = 0;
    for (const scheduler::ScheduledSequence& seq : step_.scheduled) sampling += seq.samples ? 1 : 0;
    if (logits_.size() != sampling * static_cast<size_t>(vocab_size_)) {
      status = absl::InternalError(absl::StrCat("model returned ", logits_.size(),
                                                " logits for ", sampling, " sampling rows of ",
                                                vocab_size_));
    }
  }
  if (!status.ok()) {
    FailStep(status);
    return;
  }

  const absl::Time now = absl::Now();
  sampled_.clear();
  size_t row = 0;
  const size_t vocab = static_cast<size_t>(vocab_size_);
  std::vector<uint64_t> failed;
  for (const scheduler::ScheduledSequence& seq : step_.scheduled) {
    if (!seq.samples) continue;
    const std::span<const float> row_logits(logits_.data() + row * vocab, vocab);
    ++row;
    auto it = active_.find(seq.request_id);
    if (it == active_.end()) continue;
    for (int k = 0; k < seq.num_samples; ++k) {
      const int index = seq.num_samples > 1 ? k : seq.sample_index;
      absl::Status sample_status =
          SampleToken(*it->second, index, row_logits, seq.seq_id, now, &sampled_);
      if (!sample_status.ok()) {
        failed.push_back(seq.request_id);
        break;
      }
    }
  }
  // A request whose sampling failed is aborted; the scheduler ignores its
  // samples in Update.
  for (uint64_t handle : failed) {
    CancelActive(handle, absl::InternalError("sampling failed"));
  }

  absl::StatusOr<std::vector<scheduler::FinishedSequence>> finished = scheduler_->Update(sampled_);
  if (!finished.ok()) {
    spdlog::error("scheduler update failed: {}", finished.status().ToString());
    return;
  }

  // Mark what finished, flushing held-back text into this step's event.
  std::vector<std::pair<uint64_t, int>> ended;
  for (const scheduler::FinishedSequence& fs : *finished) {
    auto it = active_.find(fs.request_id);
    if (it == active_.end()) continue;
    Sample& sample = it->second->samples[fs.sample_index];
    if (fs.reason != scheduler::FinishReason::kStopString) {
      // The end of the text: whatever the detokenizer and the stop matcher
      // held back is final now.
      absl::StatusOr<std::string> rest = sample.detokenizer->Finish();
      sample.pending.text += sample.stops->Process(rest.ok() ? *rest : "", false).text;
      sample.pending.text += sample.stops->Flush();
    }
    ended.emplace_back(fs.request_id, fs.sample_index);
  }

  // Stream this step's tokens.
  for (const scheduler::ScheduledSequence& seq : step_.scheduled) {
    if (!seq.samples) continue;
    auto it = active_.find(seq.request_id);
    if (it == active_.end()) continue;
    for (Sample& sample : it->second->samples) {
      if (sample.pending.token_ids.empty()) continue;
      TokenEvent event = std::move(sample.pending);
      sample.pending = TokenEvent();
      sample.pending.index = event.index;
      it->second->sink->OnTokens(std::move(event));
    }
  }

  for (const scheduler::FinishedSequence& fs : *finished) {
    auto it = active_.find(fs.request_id);
    if (it == active_.end()) continue;
    Active& active = *it->second;
    const Sample& sample = active.samples[fs.sample_index];
    FinishReason reason = FinishReason::kLength;
    absl::Status fs_status;
    switch (fs.reason) {
      case scheduler::FinishReason::kEos:
        reason = FinishReason::kEos;
        break;
      case scheduler::FinishReason::kStopToken: {
        const auto& eos = options_.eos_token_ids;
        const bool is_eos = std::find(eos.begin(), eos.end(), sample.last_token) != eos.end();
        reason = is_eos ? FinishReason::kEos : FinishReason::kStop;
        break;
      }
      case scheduler::FinishReason::kStopString:
        reason = FinishReason::kStop;
        break;
      case scheduler::FinishReason::kLength:
        reason = FinishReason::kLength;
        break;
      case scheduler::FinishReason::kAborted:
        reason = FinishReason::kCancelled;
        fs_status = absl::CancelledError("request aborted");
        break;
      case scheduler::FinishReason::kDeadline:
        reason = FinishReason::kCancelled;
        fs_status = absl::DeadlineExceededError("request deadline passed; generation stopped");
        break;
    }
    FinishSample(active, fs.sample_index, reason, fs_status, now);
    if (active.num_finished == static_cast<int>(active.samples.size())) Retire(fs.request_id);
  }

  if (metrics_ != nullptr) {
    StepSample sample;
    sample.duration = absl::Now() - start;
    sample.num_sequences = static_cast<int>(step_.scheduled.size());
    sample.num_prefill_tokens = step_.num_prefill_tokens;
    sample.num_decode_tokens = step_.num_decode_tokens;
    sample.num_preemptions = static_cast<int>(step_.preempted.size());
    sample.prefix_cache_queried_tokens = prefix_queried;
    sample.prefix_cache_hit_tokens = prefix_hits;
    metrics_->RecordStep(sample);
  }
}

}  // namespace kestrel::engine

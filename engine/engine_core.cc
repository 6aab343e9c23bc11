#include "engine/engine_core.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "engine/stop_strings.h"
#include "model/sampler.h"
#include "model/tokenizer/incremental_detokenizer.h"
#include "spdlog/spdlog.h"

namespace kestrel::engine {

namespace {

// "DEADLINE_EXCEEDED" -> "deadline_exceeded", for the metrics label.
std::string StatusLabel(const absl::Status& status) {
  std::string label = absl::StatusCodeToString(status.code());
  for (char& c : label) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return label;
}

}  // namespace

struct EngineCore::Sample {
  std::unique_ptr<model::SequenceSampler> sampler;
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

struct EngineCore::Active {
  uint64_t handle = 0;
  GenerateParams params;
  std::shared_ptr<RequestSink> sink;
  absl::Time arrival;
  std::optional<absl::Time> first_scheduled;
  std::optional<absl::Time> first_token;
  int cached_prompt_tokens = 0;
  std::vector<Sample> samples;
  int num_finished = 0;
  // Prompt positions whose logits reached the sink (return_prompt_logits).
  int prompt_logits_sent = 0;
  // For the request's metrics sample: the first sample's outcome.
  std::optional<FinishReason> first_reason;
  absl::Status first_error;
  // The request's metrics and log line are written (RecordFinished).
  bool recorded = false;
};

absl::StatusOr<std::unique_ptr<EngineCore>> EngineCore::Create(
    const EngineOptions& options, std::unique_ptr<ModelExecutor> executor,
    const tokenizer::Tokenizer* tokenizer, EngineMetrics* metrics, Listener* listener) {
  if (executor == nullptr) return absl::InvalidArgumentError("engine needs a model executor");
  if (options.num_speculative_tokens < 0 ||
      options.num_speculative_tokens > scheduler::kMaxSpeculativeTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_speculative_tokens must be in [0, ", scheduler::kMaxSpeculativeTokens,
                     "], got ", options.num_speculative_tokens));
  }
  if (options.ngram.min_n < 1 || options.ngram.max_n < options.ngram.min_n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "speculative n-gram lengths need 1 <= min <= max, got min ", options.ngram.min_n,
        ", max ", options.ngram.max_n));
  }
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
  sched.ngram = options.ngram;
  ASSIGN_OR_RETURN(std::unique_ptr<scheduler::Scheduler> scheduler,
                   scheduler::Scheduler::Create(sched));
  return std::unique_ptr<EngineCore>(new EngineCore(options, std::move(executor),
                                                    std::move(scheduler), tokenizer, metrics,
                                                    listener));
}

EngineCore::EngineCore(const EngineOptions& options, std::unique_ptr<ModelExecutor> executor,
                       std::unique_ptr<scheduler::Scheduler> scheduler,
                       const tokenizer::Tokenizer* tokenizer, EngineMetrics* metrics,
                       Listener* listener)
    : options_(options),
      executor_(std::move(executor)),
      tokenizer_(tokenizer),
      metrics_(metrics),
      listener_(listener),
      clock_(options.clock != nullptr ? options.clock : RealClock::Get()),
      vocab_size_(executor_->vocab_size()),
      max_model_len_(executor_->max_model_len()),
      scheduler_(std::move(scheduler)) {}

EngineCore::~EngineCore() = default;

absl::Status EngineCore::Validate(const GenerateParams& p) const {
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
  if (p.num_speculative_tokens.has_value() &&
      (*p.num_speculative_tokens < 0 ||
       *p.num_speculative_tokens > scheduler::kMaxSpeculativeTokens)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.num_speculative_tokens must be in [0, ",
                     scheduler::kMaxSpeculativeTokens, "], got ", *p.num_speculative_tokens));
  }
  if (p.n < 1 || p.n > options_.max_num_seqs) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.n must be in [1, ", options_.max_num_seqs, "], got ", p.n));
  }
  if (!p.stop.empty() && tokenizer_ == nullptr) {
    return absl::InvalidArgumentError("stopping.stop needs the model's tokenizer, which is absent");
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

EngineLoad EngineCore::load() const {
  const scheduler::BlockManager& blocks = scheduler_->block_manager();
  EngineLoad load;
  load.running_requests = scheduler_->num_running();
  load.waiting_requests = scheduler_->num_waiting();
  load.kv_blocks_total = blocks.num_blocks();
  load.kv_blocks_free = blocks.num_free_blocks();
  load.kv_blocks_cached = blocks.num_cached_blocks();
  load.kv_block_size = executor_->block_size();
  load.active_requests = static_cast<int>(active_.size());
  return load;
}

void EngineCore::Add(uint64_t handle, GenerateParams params, std::shared_ptr<RequestSink> sink,
                     absl::Time arrival) {
  auto active = std::make_unique<Active>();
  active->handle = handle;
  active->params = std::move(params);
  active->sink = std::move(sink);
  active->arrival = arrival;
  const GenerateParams& p = active->params;

  scheduler::Request request;
  request.id = handle;
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
  // Prompt logits need every prompt position computed: no cached prefix.
  request.cache_salt =
      p.return_prompt_logits ? absl::StrCat("prompt-logits-", handle, "-", p.cache_salt)
                             : p.cache_salt;
  request.deadline = p.deadline;
  request.num_speculative_tokens =
      p.num_speculative_tokens.value_or(options_.num_speculative_tokens);

  absl::Status status;
  active->samples.resize(p.n);
  for (int i = 0; i < p.n && status.ok(); ++i) {
    model::SamplingParams sampling = p.sampling;
    // Samples of one request must differ yet repeat for the same seed.
    if (sampling.seed.has_value()) sampling.seed = *sampling.seed + static_cast<uint64_t>(i);
    auto sampler = model::SequenceSampler::Create(sampling, vocab_size_, p.prompt_ids);
    if (!sampler.ok()) {
      status = sampler.status();
      break;
    }
    Sample& sample = active->samples[i];
    sample.sampler = std::move(*sampler);
    if (tokenizer_ != nullptr) {
      sample.detokenizer =
          std::make_unique<tokenizer::IncrementalDetokenizer>(tokenizer_, p.skip_special_tokens);
    }
    sample.stops = std::make_unique<StopStringMatcher>(p.stop, p.include_stop_str_in_output);
    sample.pending.index = i;
  }
  if (status.ok()) status = scheduler_->AddRequest(std::move(request));
  Active& added = *active;
  active_.emplace(handle, std::move(active));
  if (!status.ok()) {
    // Refused before it started: one FinishEvent carries the error.
    added.samples.resize(1);
    added.samples[0].pending.index = 0;
    FinishSample(added, 0, FinishReason::kError, status, arrival);
    Retire(handle);
  }
}

void EngineCore::Cancel(uint64_t handle, const absl::Status& status) {
  auto it = active_.find(handle);
  if (it == active_.end()) return;  // already finished
  (void)scheduler_->Abort(handle);  // NOT_FOUND when refused at admission
  Active& active = *it->second;
  const absl::Time now = Now();
  for (int i = 0; i < static_cast<int>(active.samples.size()); ++i) {
    if (!active.samples[i].finished) FinishSample(active, i, FinishReason::kAborted, status, now);
  }
  Retire(handle);
}

void EngineCore::CancelAll(const absl::Status& status) {
  std::vector<uint64_t> handles;
  for (const auto& [handle, active] : active_) handles.push_back(handle);
  std::sort(handles.begin(), handles.end());
  for (uint64_t handle : handles) Cancel(handle, status);
}

void EngineCore::FinishSample(Active& active, int index, FinishReason reason, absl::Status status,
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
  if (reason == FinishReason::kStopToken || reason == FinishReason::kStopString) {
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
    if (listener_ != nullptr) listener_->OnReleased(active.params.request_id);
    // Before the client hears that its request ended: a client that reads
    // /metrics after its response then finds its tokens counted.
    RecordFinished(active);
  }
  active.sink->OnFinish(std::move(event));
}

void EngineCore::Retire(uint64_t handle) {
  auto it = active_.find(handle);
  if (it == active_.end()) return;
  Active& active = *it->second;
  RecordFinished(active);
  if (!active.first_scheduled.has_value() && listener_ != nullptr) listener_->OnDequeued(handle);
  active_.erase(it);
}

void EngineCore::RecordFinished(Active& active) {
  if (active.recorded) return;
  active.recorded = true;
  // One summary feeds both the metrics and the log line.
  const std::string status = active.first_error.ok() ? "ok" : StatusLabel(active.first_error);
  RequestSample sample;
  sample.status = status;
  sample.finish_reason = FinishReasonLabel(active.first_reason.value_or(FinishReason::kError));
  sample.prompt_tokens = static_cast<int>(active.params.prompt_ids.size());
  for (const Sample& s : active.samples) sample.generation_tokens += s.num_tokens;
  if (active.first_scheduled) sample.queue_time = *active.first_scheduled - active.arrival;
  if (active.first_token) sample.time_to_first_token = *active.first_token - active.arrival;
  sample.end_to_end = Now() - active.arrival;
  if (metrics_ != nullptr) metrics_->RecordRequest(sample);
  LogRequest(active, sample);
}

void EngineCore::LogRequest(const Active& active, const RequestSample& sample) const {
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

void EngineCore::FailStep(const absl::Status& status) {
  spdlog::error("engine step failed, ending its requests: {}", status.ToString());
  std::vector<uint64_t> handles;
  for (const scheduler::ScheduledSequence& seq : step_.scheduled) handles.push_back(seq.request_id);
  std::sort(handles.begin(), handles.end());
  handles.erase(std::unique(handles.begin(), handles.end()), handles.end());
  const absl::Status internal =
      absl::InternalError(absl::StrCat("engine step failed: ", status.message()));
  for (uint64_t handle : handles) Cancel(handle, internal);
  // The scheduler expects Update after Step. Every sequence of the step is
  // aborted, so an empty Update closes it.
  std::vector<scheduler::SampledToken> none;
  absl::StatusOr<std::vector<scheduler::FinishedSequence>> closed = scheduler_->Update(none);
  if (!closed.ok()) {
    // The scheduler's books disagree with its step: end everything, which
    // empties the step, so the next Step starts clean.
    spdlog::error("scheduler could not close the failed step ({}); ending every request",
                  closed.status().ToString());
    CancelAll(internal);
    (void)scheduler_->Update(none);
  }
}

EngineCore::StepStats EngineCore::Step(absl::Time now) {
  StepStats stats;
  if (!scheduler_->has_work()) return stats;
  const absl::Time start = now;
  auto fail = [&](const absl::Status& s) {
    FailStep(s);
    stats.failed = true;
    stats.duration = Now() - start;
    return stats;
  };
  const absl::Status scheduled = Schedule(now);
  // Requests the scheduler ended for their deadline are gone from it even
  // when the rest of its step failed: end them here either way.
  ExpireDeadlines(now);
  if (!scheduled.ok()) return fail(scheduled);
  stats.num_sequences = static_cast<int>(step_.scheduled.size());
  stats.prefill_tokens = step_.num_prefill_tokens;
  stats.decode_tokens = step_.num_decode_tokens;
  stats.preemptions = static_cast<int>(step_.preempted.size());
  stats.draft_tokens = step_.num_draft_tokens;
  if (step_.scheduled.empty()) {
    std::vector<scheduler::SampledToken> none;
    if (absl::Status s = scheduler_->Update(none).status(); !s.ok()) return fail(s);
    return stats;
  }
  int prefix_queried = 0, prefix_hits = 0;
  NoteFirstScheduled(now, &prefix_queried, &prefix_hits);
  PrepareDraws();
  if (absl::Status s = Execute(); !s.ok()) return fail(s);
  DeliverPromptLogits();
  const absl::Time done = Now();
  Detokenize(done, &stats);
  absl::StatusOr<std::vector<scheduler::FinishedSequence>> finished = Commit();
  if (!finished.ok()) return fail(finished.status());
  Stream(*finished, done);

  stats.duration = Now() - start;
  if (metrics_ != nullptr) {
    StepSample sample;
    sample.duration = stats.duration;
    sample.num_sequences = stats.num_sequences;
    sample.num_prefill_tokens = stats.prefill_tokens;
    sample.num_decode_tokens = stats.decode_tokens;
    sample.num_preemptions = stats.preemptions;
    sample.prefix_cache_queried_tokens = prefix_queried;
    sample.prefix_cache_hit_tokens = prefix_hits;
    sample.spec_draft_tokens = stats.draft_tokens;
    sample.spec_accepted_tokens = stats.accepted_draft_tokens;
    for (const scheduler::ScheduledSequence& seq : step_.scheduled) {
      sample.spec_decode_steps += seq.num_draft_tokens > 0;
    }
    sample.spec_tokens_per_sequence = spec_tokens_;
    sample.rank_step_times = output_.rank_step_times;
    metrics_->RecordStep(sample);
  }
  return stats;
}

absl::Status EngineCore::Schedule(absl::Time now) {
  absl::Status s = scheduler_->Step(now, &step_);
  if (!s.ok()) return absl::InternalError(absl::StrCat("scheduler: ", s.message()));
  return absl::OkStatus();
}

void EngineCore::ExpireDeadlines(absl::Time now) {
  // A deadline ends the whole request, every sample of it.
  for (const scheduler::FinishedSequence& fs : step_.finished) {
    auto it = active_.find(fs.request_id);
    if (it == active_.end()) continue;
    (void)scheduler_->Abort(fs.request_id);  // its other samples, if any
    Active& active = *it->second;
    for (int i = 0; i < static_cast<int>(active.samples.size()); ++i) {
      FinishSample(active, i, FinishReason::kDeadline,
                   absl::DeadlineExceededError("request deadline passed; generation stopped"), now);
    }
    Retire(fs.request_id);
  }
}

void EngineCore::NoteFirstScheduled(absl::Time now, int* prefix_queried, int* prefix_hits) {
  for (const scheduler::ScheduledSequence& seq : step_.scheduled) {
    auto it = active_.find(seq.request_id);
    if (it == active_.end() || it->second->first_scheduled.has_value()) continue;
    // A new request's first chunk starts after the prompt blocks the prefix
    // cache already holds.
    it->second->first_scheduled = now;
    it->second->cached_prompt_tokens = seq.position_offset;
    *prefix_queried += static_cast<int>(it->second->params.prompt_ids.size());
    *prefix_hits += seq.position_offset;
    if (listener_ != nullptr) listener_->OnDequeued(seq.request_id);
  }
}

void EngineCore::PrepareDraws() {
  draws_.clear();
  rows_.clear();
  adjust_.clear();
  return_logits_.clear();
  for (size_t s = 0; s < step_.scheduled.size(); ++s) {
    const scheduler::ScheduledSequence& seq = step_.scheduled[s];
    auto it = active_.find(seq.request_id);
    if (it == active_.end()) continue;
    Active& active = *it->second;
    const GenerateParams& p = active.params;
    if (p.return_prompt_logits && seq.position_offset < static_cast<int>(p.prompt_ids.size())) {
      return_logits_.push_back(static_cast<int32_t>(s));
    }
    if (!seq.samples) continue;
    if (seq.num_draft_tokens > 0) {
      // Row i verifies draft i given drafts 0..i-1 were accepted (they count
      // as generated for min_tokens and the penalties); the last row draws
      // the token after the last draft.
      Sample& sample = active.samples[seq.sample_index];
      const absl::Span<const int32_t> drafts = seq.token_ids.subspan(1);
      for (int i = 0; i <= seq.num_draft_tokens; ++i) {
        banned_.clear();
        if (sample.num_tokens + i < p.min_tokens) {
          if (!p.ignore_eos) banned_ = options_.eos_token_ids;
          banned_.insert(banned_.end(), p.stop_token_ids.begin(), p.stop_token_ids.end());
        }
        const int32_t draft = i < seq.num_draft_tokens ? drafts[i] : -1;
        kernels::SampleRow& row = rows_.emplace_back();
        sample.sampler->PrepareDraft(
            banned_, std::span<const int32_t>(drafts.data(), static_cast<size_t>(i)), draft, &row,
            &adjust_);
        row.logits_row = static_cast<int32_t>(s);
        draws_.push_back(Draw{seq.request_id, seq.sample_index, seq.seq_id, true, draft});
      }
      continue;
    }
    for (int k = 0; k < seq.num_samples; ++k) {
      const int index = seq.num_samples > 1 ? k : seq.sample_index;
      Sample& sample = active.samples[index];
      // Below min_tokens nothing may end the sample: ban every stopping token.
      banned_.clear();
      if (sample.num_tokens < p.min_tokens) {
        if (!p.ignore_eos) banned_ = options_.eos_token_ids;
        banned_.insert(banned_.end(), p.stop_token_ids.begin(), p.stop_token_ids.end());
      }
      kernels::SampleRow& row = rows_.emplace_back();
      sample.sampler->Prepare(banned_, &row, &adjust_);
      row.logits_row = static_cast<int32_t>(s);
      draws_.push_back(Draw{seq.request_id, index, seq.seq_id, false, -1});
    }
  }
}

absl::Status EngineCore::Execute() {
  ExecuteInput in;
  in.step = &step_;
  in.samples = rows_;
  in.adjust = adjust_;
  in.return_logits = return_logits_;
  RETURN_IF_ERROR(executor_->Execute(in, &output_));
  if (output_.sampled.size() != draws_.size()) {
    return absl::InternalError(absl::StrCat("model returned ", output_.sampled.size(),
                                            " tokens for ", draws_.size(), " draws"));
  }
  for (size_t i = 0; i < output_.sampled.size(); ++i) {
    if (output_.sampled[i].token < 0 || output_.sampled[i].token >= vocab_size_) {
      return absl::InternalError(absl::StrCat("model drew token ", output_.sampled[i].token,
                                              ", outside the vocabulary [0, ", vocab_size_, ")"));
    }
  }
  return absl::OkStatus();
}

void EngineCore::DeliverPromptLogits() {
  const size_t vocab = static_cast<size_t>(vocab_size_);
  size_t row = 0;
  for (int32_t s : return_logits_) {
    const scheduler::ScheduledSequence& seq = step_.scheduled[s];
    const size_t n = seq.token_ids.size();
    auto it = active_.find(seq.request_id);
    if (it != active_.end() && row + n <= output_.logits.size() / vocab) {
      Active& active = *it->second;
      const int prompt_len = static_cast<int>(active.params.prompt_ids.size());
      for (size_t i = 0; i < n; ++i) {
        const int pos = seq.position_offset + static_cast<int>(i);
        // A recomputation after preemption repeats positions: send each once.
        if (pos != active.prompt_logits_sent || pos >= prompt_len) continue;
        active.sink->OnPromptLogits(
            pos, std::span<const float>(output_.logits.data() + (row + i) * vocab, vocab));
        ++active.prompt_logits_sent;
      }
    }
    row += n;
  }
}

bool EngineCore::EndsSample(const Active& active, const Sample& sample, int32_t token) const {
  const GenerateParams& p = active.params;
  const auto& eos = options_.eos_token_ids;
  if (!p.ignore_eos && std::find(eos.begin(), eos.end(), token) != eos.end()) return true;
  if (std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), token) !=
      p.stop_token_ids.end()) {
    return true;
  }
  const int max_tokens =
      p.max_tokens.value_or(max_model_len_ - static_cast<int>(p.prompt_ids.size()));
  return sample.num_tokens >= max_tokens;
}

void EngineCore::Detokenize(absl::Time now, StepStats* stats) {
  sampled_.clear();
  std::vector<uint64_t> failed;
  // The sequence whose run of draft rows has ended; its later rows are
  // dropped (seq ids start at 1).
  scheduler::SequenceId run_over = 0;
  spec_tokens_.clear();
  scheduler::SequenceId counting = 0;  // the sequence spec_tokens_.back() counts
  for (size_t i = 0; i < draws_.size(); ++i) {
    const Draw& draw = draws_[i];
    if (draw.speculative) {
      if (draw.seq_id == run_over) continue;
      // Until the run ends, every row's token is emitted; only a row whose
      // token is its draft lets the next row count.
      if (draw.draft < 0 || output_.sampled[i].token != draw.draft) run_over = draw.seq_id;
    }
    auto it = active_.find(draw.handle);
    if (it == active_.end()) continue;
    Active& active = *it->second;
    Sample& sample = active.samples[draw.sample];
    const GenerateParams& p = active.params;
    model::SampledToken& token = output_.sampled[i];
    sample.sampler->Commit(token.token);
    ++sample.num_tokens;
    sample.last_token = token.token;
    if (!active.first_token.has_value()) active.first_token = now;
    if (metrics_ != nullptr && sample.num_tokens > 1) {
      metrics_->RecordInterTokenLatency(now - sample.last_token_time);
    }
    sample.last_token_time = now;

    absl::StatusOr<std::string> delta =
        sample.detokenizer != nullptr ? sample.detokenizer->Add(token.token) : std::string();
    if (!delta.ok()) {
      failed.push_back(draw.handle);
      run_over = draw.seq_id;
      continue;
    }
    StopStringMatcher::Result text =
        sample.stops->Process(*delta, /*allow_stop=*/sample.num_tokens >= p.min_tokens);
    if (draw.speculative) {
      if (token.token == draw.draft) ++stats->accepted_draft_tokens;
      if (draw.seq_id != counting) {
        spec_tokens_.push_back(0);
        counting = draw.seq_id;
      }
      ++spec_tokens_.back();
      // Cut the run exactly where plain decoding would have stopped.
      if (text.stop.has_value() || EndsSample(active, sample, token.token)) {
        run_over = draw.seq_id;
      }
    }
    sample.pending.token_ids.push_back(token.token);
    sample.pending.text += text.text;
    if (p.sampling.logprobs) sample.pending.logprobs.push_back(std::move(token));
    if (text.stop.has_value()) sample.stop_string = text.stop;
    sampled_.push_back(
        scheduler::SampledToken{draw.seq_id, sample.last_token, text.stop.has_value()});
  }
  // A request whose text could not be decoded is aborted; the scheduler
  // ignores its samples in Update.
  std::sort(failed.begin(), failed.end());
  failed.erase(std::unique(failed.begin(), failed.end()), failed.end());
  for (uint64_t handle : failed) {
    Cancel(handle, absl::InternalError("detokenizing the sampled token failed"));
  }
}

absl::StatusOr<std::vector<scheduler::FinishedSequence>> EngineCore::Commit() {
  absl::StatusOr<std::vector<scheduler::FinishedSequence>> finished = scheduler_->Update(sampled_);
  if (!finished.ok()) {
    return absl::InternalError(absl::StrCat("scheduler update: ", finished.status().message()));
  }
  return finished;
}

void EngineCore::Stream(const std::vector<scheduler::FinishedSequence>& finished,
                        absl::Time now) {
  // Mark what finished, flushing held-back text into this step's event.
  for (const scheduler::FinishedSequence& fs : finished) {
    auto it = active_.find(fs.request_id);
    if (it == active_.end()) continue;
    Sample& sample = it->second->samples[fs.sample_index];
    if (fs.reason != scheduler::FinishReason::kStopString && sample.detokenizer != nullptr) {
      // The end of the text: whatever the detokenizer and the stop matcher
      // held back is final now.
      absl::StatusOr<std::string> rest = sample.detokenizer->Finish();
      sample.pending.text += sample.stops->Process(rest.ok() ? *rest : "", false).text;
      sample.pending.text += sample.stops->Flush();
    }
  }

  // This step's tokens.
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

  for (const scheduler::FinishedSequence& fs : finished) {
    auto it = active_.find(fs.request_id);
    if (it == active_.end()) continue;
    Active& active = *it->second;
    const Sample& sample = active.samples[fs.sample_index];
    FinishReason reason = fs.reason;
    absl::Status fs_status;
    switch (fs.reason) {
      case FinishReason::kStopToken: {
        // The model's other EOS ids come to the scheduler as stop tokens.
        const auto& eos = options_.eos_token_ids;
        if (std::find(eos.begin(), eos.end(), sample.last_token) != eos.end()) {
          reason = FinishReason::kEos;
        }
        break;
      }
      case FinishReason::kEos:
      case FinishReason::kStopString:
      case FinishReason::kLength:
        break;
      case FinishReason::kAborted:
        fs_status = absl::CancelledError("request aborted");
        break;
      case FinishReason::kDeadline:
        fs_status = absl::DeadlineExceededError("request deadline passed; generation stopped");
        break;
      case FinishReason::kError:
        fs_status = absl::InternalError("the scheduler ended the request with an error");
        break;
    }
    FinishSample(active, fs.sample_index, reason, fs_status, now);
    if (active.num_finished == static_cast<int>(active.samples.size())) Retire(fs.request_id);
  }
}

}  // namespace kestrel::engine

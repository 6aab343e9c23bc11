#include "engine/offline.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kestrel::engine {

// Collects one request's events into its OfflineResult.
class OfflineEngine::Sink final : public RequestSink {
 public:
  explicit Sink(OfflineResult* result, int n, int64_t vocab)
      : result_(result), vocab_(vocab), finished_(0), n_(n) {
    result_->samples.resize(n);
  }
  void OnTokens(TokenEvent event) override {
    OfflineSample& s = result_->samples[event.index];
    s.token_ids.insert(s.token_ids.end(), event.token_ids.begin(), event.token_ids.end());
    s.text += event.text;
    for (model::SampledToken& t : event.logprobs) s.logprobs.push_back(std::move(t));
  }
  void OnFinish(FinishEvent event) override {
    OfflineSample& s = result_->samples[event.index];
    s.reason = event.reason;
    s.status = event.status;
    s.usage = event.usage;
    s.timings = event.timings;
    // A request refused before it started (kError) finishes once for all
    // its samples.
    ++finished_;
    if (finished_ == n_ || event.reason == FinishReason::kError) result_->finished = true;
  }
  void OnPromptLogits(int position, std::span<const float> logits) override {
    if (static_cast<int64_t>(result_->prompt_logits.size()) != position * vocab_) return;
    result_->prompt_logits.insert(result_->prompt_logits.end(), logits.begin(), logits.end());
  }

 private:
  OfflineResult* const result_;  // not owned
  const int64_t vocab_;
  int finished_;
  const int n_;
};

OfflineEngine::~OfflineEngine() = default;

absl::StatusOr<std::unique_ptr<OfflineEngine>> OfflineEngine::Create(
    EngineOptions options, std::unique_ptr<ModelExecutor> executor,
    const tokenizer::Tokenizer* tokenizer) {
  std::unique_ptr<OfflineEngine> engine(new OfflineEngine());
  engine->clock_ = options.clock != nullptr ? options.clock : RealClock::Get();
  ASSIGN_OR_RETURN(engine->core_,
                   EngineCore::Create(options, std::move(executor), tokenizer, nullptr, nullptr));
  return engine;
}

absl::StatusOr<size_t> OfflineEngine::Add(GenerateParams params) {
  RETURN_IF_ERROR(core_->Validate(params));
  const uint64_t handle = next_handle_++;
  if (params.request_id.empty()) params.request_id = absl::StrCat("offline-", handle);
  const size_t index = results_.size();
  results_.push_back(std::make_unique<OfflineResult>());
  auto sink = std::make_shared<Sink>(results_.back().get(), params.n, core_->vocab_size());
  core_->Add(handle, std::move(params), std::move(sink), clock_->Now());
  return index;
}

EngineCore::StepStats OfflineEngine::Step() { return core_->Step(clock_->Now()); }

absl::StatusOr<std::vector<OfflineResult>> OfflineEngine::Generate(
    std::vector<GenerateParams> requests) {
  std::vector<size_t> indices;
  for (size_t i = 0; i < requests.size(); ++i) {
    absl::StatusOr<size_t> index = Add(std::move(requests[i]));
    if (!index.ok()) {
      return absl::Status(index.status().code(),
                          absl::StrCat("request ", i, ": ", index.status().message()));
    }
    indices.push_back(*index);
  }
  while (core_->has_work()) Step();
  std::vector<OfflineResult> out;
  for (size_t index : indices) out.push_back(*results_[index]);
  return out;
}

}  // namespace kestrel::engine

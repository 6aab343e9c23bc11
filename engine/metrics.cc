// EngineMetrics: registers the engine's Prometheus families once and turns
// step, load and request samples into series (see metrics.h and
// docs/metrics.md for every series and its meaning).
#include "engine/metrics.h"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "scheduler/request.h"

namespace kestrel::engine {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

// `count` upper bounds start, start*factor, start*factor^2, ... Prometheus
// adds the +Inf bucket itself.
Histogram::BucketBoundaries ExponentialBuckets(double start, double factor, int count) {
  Histogram::BucketBoundaries bounds;
  bounds.reserve(count);
  double bound = start;
  for (int i = 0; i < count; ++i, bound *= factor) bounds.push_back(bound);
  return bounds;
}

// Latencies: 1 ms .. 65.536 s doubling (17 buckets). Doubling keeps every
// latency histogram at 17 series per model while a histogram_quantile()
// estimate (linear inside a bucket) stays within a factor of two of the
// truth, and much closer when samples spread over the bucket. 1 ms is below
// a decode step of any real model (so inter-token latency has resolution);
// ~65 s covers queue waits and end-to-end latency of long generations; slower
// samples land in +Inf and are still counted in _count and _sum.
const Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* const kBuckets =
      new Histogram::BucketBoundaries(ExponentialBuckets(0.001, 2, 17));
  return *kBuckets;
}

// Token counts (prompt and output lengths, tokens per step): 1 .. 32768
// doubling (16 buckets), the range of context lengths we serve.
const Histogram::BucketBoundaries& TokenBuckets() {
  static const auto* const kBuckets = new Histogram::BucketBoundaries(ExponentialBuckets(1, 2, 16));
  return *kBuckets;
}

// Tokens one sequence emits in a step that verifies drafts: 1 .. the most
// drafts plus the token after them, one bucket each.
const Histogram::BucketBoundaries& SpecTokenBuckets() {
  static const auto* const kBuckets = [] {
    auto* bounds = new Histogram::BucketBoundaries;
    for (int n = 1; n <= scheduler::kMaxSpeculativeTokens + 1; ++n) bounds->push_back(n);
    return bounds;
  }();
  return *kBuckets;
}

// Sequences per step: 1 .. 1024 doubling (11 buckets); batch sizes beyond
// 1024 sequences are not a configuration we run.
const Histogram::BucketBoundaries& BatchBuckets() {
  static const auto* const kBuckets = new Histogram::BucketBoundaries(ExponentialBuckets(1, 2, 11));
  return *kBuckets;
}

// Label values RecordRequest passes through: the lower-case names of the
// canonical status codes (absl::StatusCodeToString) and the finish reasons.
// Anything else becomes "other", so a stray string can never grow the number
// of series without bound (each label value is a series kept forever).
constexpr std::array<std::string_view, 17> kStatuses = {
    "ok",        "cancelled",      "unknown",           "invalid_argument",   "deadline_exceeded",
    "not_found", "already_exists", "permission_denied", "resource_exhausted", "failed_precondition",
    "aborted",   "out_of_range",   "unimplemented",     "internal",           "unavailable",
    "data_loss", "unauthenticated"};
constexpr std::array<std::string_view, 5> kFinishReasons = {"length", "stop", "eos", "cancelled",
                                                            "error"};

template <size_t N>
std::string KnownOrOther(std::string_view value, const std::array<std::string_view, N>& known) {
  for (std::string_view k : known) {
    if (value == k) return std::string(k);
  }
  return "other";
}

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

prometheus::Labels With(prometheus::Labels labels, const std::string& key, std::string value) {
  labels.emplace(key, std::move(value));
  return labels;
}

}  // namespace

// Every family and the series of this model, created in the constructor and
// constant afterwards (the metric objects themselves are atomic). `model` is
// a per-series label rather than a constant family label: the registry merges
// families by name, so several models (or several EngineMetrics of one model)
// share one family per name and the exposition has one TYPE line per name.
struct EngineMetrics::Families {
  Families(prometheus::Registry& registry, const std::string& model)
      : labels{{"model", model}},
        requests(prometheus::BuildCounter()
                     .Name("kestrel_requests_total")
                     .Help("Finished requests by final status and finish reason.")
                     .Register(registry)),
        running(prometheus::BuildGauge()
                    .Name("kestrel_requests_running")
                    .Help("Requests with sequences in the running batch.")
                    .Register(registry)
                    .Add(labels)),
        waiting(prometheus::BuildGauge()
                    .Name("kestrel_requests_waiting")
                    .Help("Requests admitted but waiting for KV memory or a batch slot.")
                    .Register(registry)
                    .Add(labels)),
        kv_blocks(prometheus::BuildGauge()
                      .Name("kestrel_kv_blocks")
                      .Help("KV cache blocks by state: used, free, and cached (free blocks "
                            "still holding reusable prefix-cache entries; a subset of free).")
                      .Register(registry)),
        kv_used(kv_blocks.Add(With(labels, "state", "used"))),
        kv_free(kv_blocks.Add(With(labels, "state", "free"))),
        kv_cached(kv_blocks.Add(With(labels, "state", "cached"))),
        kv_capacity(prometheus::BuildGauge()
                        .Name("kestrel_kv_blocks_capacity")
                        .Help("KV cache blocks in the pool.")
                        .Register(registry)
                        .Add(labels)),
        kv_usage(prometheus::BuildGauge()
                     .Name("kestrel_kv_usage_ratio")
                     .Help("Fraction of KV cache blocks in use (used / capacity), 0..1.")
                     .Register(registry)
                     .Add(labels)),
        prefix_queried(prometheus::BuildCounter()
                           .Name("kestrel_prefix_cache_queried_tokens_total")
                           .Help("Prompt tokens looked up in the prefix cache.")
                           .Register(registry)
                           .Add(labels)),
        prefix_hit(prometheus::BuildCounter()
                       .Name("kestrel_prefix_cache_hit_tokens_total")
                       .Help("Prompt tokens served from the prefix cache.")
                       .Register(registry)
                       .Add(labels)),
        prompt_tokens(prometheus::BuildCounter()
                          .Name("kestrel_prompt_tokens_total")
                          .Help("Prompt tokens of finished requests.")
                          .Register(registry)
                          .Add(labels)),
        generation_tokens(prometheus::BuildCounter()
                              .Name("kestrel_generation_tokens_total")
                              .Help("Generated tokens of finished requests.")
                              .Register(registry)
                              .Add(labels)),
        preemptions(prometheus::BuildCounter()
                        .Name("kestrel_preemptions_total")
                        .Help("Sequences preempted to free KV memory.")
                        .Register(registry)
                        .Add(labels)),
        spec_steps(prometheus::BuildCounter()
                       .Name("kestrel_spec_decode_steps_total")
                       .Help("Decodes of one sequence that verified draft tokens "
                             "(speculative decoding).")
                       .Register(registry)
                       .Add(labels)),
        spec_draft(prometheus::BuildCounter()
                       .Name("kestrel_spec_decode_draft_tokens_total")
                       .Help("Draft tokens proposed by prompt lookup and verified.")
                       .Register(registry)
                       .Add(labels)),
        spec_accepted(prometheus::BuildCounter()
                          .Name("kestrel_spec_decode_accepted_tokens_total")
                          .Help("Draft tokens accepted (emitted as output).")
                          .Register(registry)
                          .Add(labels)),
        spec_tokens_per_step(prometheus::BuildHistogram()
                                 .Name("kestrel_spec_decode_tokens_per_step")
                                 .Help("Tokens one sequence emitted in a decode that verified "
                                       "drafts (1 + accepted drafts).")
                                 .Register(registry)
                                 .Add(labels, SpecTokenBuckets())),
        steps(prometheus::BuildCounter()
                  .Name("kestrel_steps_total")
                  .Help("Engine steps executed.")
                  .Register(registry)
                  .Add(labels)),
        step_duration(prometheus::BuildHistogram()
                          .Name("kestrel_step_duration_seconds")
                          .Help("Wall time of one engine step (schedule, model, sample).")
                          .Register(registry)
                          .Add(labels, LatencyBuckets())),
        rank_step_duration(prometheus::BuildHistogram()
                               .Name("kestrel_rank_step_duration_seconds")
                               .Help("Wall time of one tensor-parallel rank's part of a model "
                                     "step (compute and collectives).")
                               .Register(registry)),
        step_batch_size(prometheus::BuildHistogram()
                            .Name("kestrel_step_batch_size")
                            .Help("Sequences in one engine step.")
                            .Register(registry)
                            .Add(labels, BatchBuckets())),
        step_tokens(prometheus::BuildHistogram()
                        .Name("kestrel_step_tokens")
                        .Help("Tokens (prefill plus decode) computed in one engine step.")
                        .Register(registry)
                        .Add(labels, TokenBuckets())),
        queue_time(prometheus::BuildHistogram()
                       .Name("kestrel_request_queue_time_seconds")
                       .Help("Time from arrival until a request's first step.")
                       .Register(registry)
                       .Add(labels, LatencyBuckets())),
        ttft(prometheus::BuildHistogram()
                 .Name("kestrel_time_to_first_token_seconds")
                 .Help("Time from arrival until the first generated token.")
                 .Register(registry)
                 .Add(labels, LatencyBuckets())),
        itl(prometheus::BuildHistogram()
                .Name("kestrel_inter_token_latency_seconds")
                .Help("Gap between two consecutive tokens of one sequence.")
                .Register(registry)
                .Add(labels, LatencyBuckets())),
        e2e(prometheus::BuildHistogram()
                .Name("kestrel_request_e2e_latency_seconds")
                .Help("Time from arrival until a request finished.")
                .Register(registry)
                .Add(labels, LatencyBuckets())),
        request_prompt_tokens(prometheus::BuildHistogram()
                                  .Name("kestrel_request_prompt_tokens")
                                  .Help("Prompt length of admitted requests, in tokens.")
                                  .Register(registry)
                                  .Add(labels, TokenBuckets())),
        request_generation_tokens(prometheus::BuildHistogram()
                                      .Name("kestrel_request_generation_tokens")
                                      .Help("Generated tokens of admitted requests.")
                                      .Register(registry)
                                      .Add(labels, TokenBuckets())) {
    // Series that exist from the first scrape, so rate() over them is right
    // from the first finished request (a series born at 1 loses that 1).
    for (std::string_view reason : {"length", "stop", "eos"}) {
      requests.Add(With(With(labels, "status", "ok"), "finish_reason", std::string(reason)));
    }
  }

  const prometheus::Labels labels;
  Family<Counter>& requests;
  Gauge& running;
  Gauge& waiting;
  Family<Gauge>& kv_blocks;
  Gauge& kv_used;
  Gauge& kv_free;
  Gauge& kv_cached;
  Gauge& kv_capacity;
  Gauge& kv_usage;
  Counter& prefix_queried;
  Counter& prefix_hit;
  Counter& prompt_tokens;
  Counter& generation_tokens;
  Counter& preemptions;
  Counter& spec_steps;
  Counter& spec_draft;
  Counter& spec_accepted;
  Histogram& spec_tokens_per_step;
  Counter& steps;
  Histogram& step_duration;
  Family<Histogram>& rank_step_duration;  // series per rank, added when seen
  Histogram& step_batch_size;
  Histogram& step_tokens;
  Histogram& queue_time;
  Histogram& ttft;
  Histogram& itl;
  Histogram& e2e;
  Histogram& request_prompt_tokens;
  Histogram& request_generation_tokens;
};

EngineMetrics::EngineMetrics(prometheus::Registry& registry, std::string model_name)
    : families_(std::make_unique<Families>(registry, model_name)) {}

EngineMetrics::~EngineMetrics() = default;

void EngineMetrics::RecordStep(const StepSample& step) {
  Families& f = *families_;
  f.steps.Increment();
  f.step_duration.Observe(Seconds(step.duration));
  for (size_t r = 0; r < step.rank_step_times.size(); ++r) {
    // Add returns the existing series for labels it has seen.
    f.rank_step_duration.Add(With(f.labels, "rank", std::to_string(r)), LatencyBuckets())
        .Observe(Seconds(step.rank_step_times[r]));
  }
  f.step_batch_size.Observe(step.num_sequences);
  f.step_tokens.Observe(step.num_prefill_tokens + step.num_decode_tokens);
  // Counter::Increment ignores negative amounts; the max() makes the intent
  // explicit for a (buggy) negative sample.
  f.preemptions.Increment(std::max(step.num_preemptions, 0));
  f.prefix_queried.Increment(std::max(step.prefix_cache_queried_tokens, 0));
  f.prefix_hit.Increment(std::max(step.prefix_cache_hit_tokens, 0));
  f.spec_steps.Increment(std::max(step.spec_decode_steps, 0));
  f.spec_draft.Increment(std::max(step.spec_draft_tokens, 0));
  f.spec_accepted.Increment(std::max(step.spec_accepted_tokens, 0));
  for (int n : step.spec_tokens_per_sequence) f.spec_tokens_per_step.Observe(n);
}

void EngineMetrics::RecordLoad(const LoadSample& load) {
  Families& f = *families_;
  f.running.Set(load.running_requests);
  f.waiting.Set(load.waiting_requests);
  const int used = std::max(load.kv_blocks_total - load.kv_blocks_free, 0);
  f.kv_used.Set(used);
  f.kv_free.Set(load.kv_blocks_free);
  f.kv_cached.Set(load.kv_blocks_cached);
  f.kv_capacity.Set(load.kv_blocks_total);
  f.kv_usage.Set(load.kv_blocks_total > 0 ? static_cast<double>(used) / load.kv_blocks_total : 0.0);
}

void EngineMetrics::RecordInterTokenLatency(absl::Duration gap) {
  families_->itl.Observe(Seconds(gap));
}

void EngineMetrics::RecordRequest(const RequestSample& request) {
  Families& f = *families_;
  // Family::Add returns the existing series for known labels (under the
  // family's mutex), so this is safe from any thread.
  f.requests
      .Add(With(With(f.labels, "status", KnownOrOther(request.status, kStatuses)), "finish_reason",
                KnownOrOther(request.finish_reason, kFinishReasons)))
      .Increment();
  f.prompt_tokens.Increment(std::max(request.prompt_tokens, 0));
  f.generation_tokens.Increment(std::max(request.generation_tokens, 0));
  const absl::Duration unset = absl::InfiniteDuration();
  if (request.queue_time != unset) f.queue_time.Observe(Seconds(request.queue_time));
  if (request.time_to_first_token != unset) f.ttft.Observe(Seconds(request.time_to_first_token));
  if (request.end_to_end != unset) f.e2e.Observe(Seconds(request.end_to_end));
  // Length distributions describe admitted work only: a request rejected
  // before admission (no queue time) would add a misleading 0-token sample.
  if (request.queue_time != unset) {
    f.request_prompt_tokens.Observe(request.prompt_tokens);
    f.request_generation_tokens.Observe(request.generation_tokens);
  }
}

}  // namespace kestrel::engine

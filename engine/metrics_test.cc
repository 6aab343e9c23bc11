// EngineMetrics through prometheus-cpp's own text exposition: records
// samples, serializes the registry with prometheus::TextSerializer and checks
// names, labels, values and cumulative bucket counts as a scraper sees them.
#include "engine/metrics.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace kestrel::engine {
namespace {

// One line of the text exposition format: name{labels} value.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// A minimal parser for the exposition format (label values may contain
// escaped quotes). Fails the test on a line it cannot read.
std::vector<Sample> Parse(const std::string& text) {
  std::vector<Sample> samples;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    Sample sample;
    size_t i = line.find_first_of("{ ");
    REQUIRE(i != std::string::npos);
    sample.name = line.substr(0, i);
    if (line[i] == '{') {
      ++i;
      while (line[i] != '}') {
        const size_t eq = line.find('=', i);
        REQUIRE(eq != std::string::npos);
        const std::string key = line.substr(i, eq - i);
        REQUIRE(line[eq + 1] == '"');
        std::string value;
        size_t j = eq + 2;
        for (; line[j] != '"'; ++j) {
          if (line[j] == '\\') ++j;
          value += line[j];
        }
        sample.labels[key] = value;
        i = j + 1;
        if (line[i] == ',') ++i;
      }
      ++i;
    }
    REQUIRE(line[i] == ' ');
    const std::string value = line.substr(i + 1);
    sample.value = value == "+Inf" ? INFINITY : std::stod(value);
    samples.push_back(std::move(sample));
  }
  return samples;
}

class Exposition {
 public:
  explicit Exposition(prometheus::Registry& registry) {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, registry.Collect());
    text_ = out.str();
    samples_ = Parse(text_);
  }

  const std::string& text() const { return text_; }

  // The value of the one series `name` with exactly `labels` ("le" compared
  // as a number, since its formatting is the library's choice). Fails the
  // test when there is no such series.
  double Value(const std::string& name, const std::map<std::string, std::string>& labels) const {
    for (const Sample& s : samples_) {
      if (s.name != name || s.labels.size() != labels.size()) continue;
      bool match = true;
      for (const auto& [key, want] : labels) {
        auto it = s.labels.find(key);
        if (it == s.labels.end()) {
          match = false;
        } else if (key == "le") {
          const double a = it->second == "+Inf" ? INFINITY : std::stod(it->second);
          const double b = want == "+Inf" ? INFINITY : std::stod(want);
          match = match && (a == b || (std::isfinite(b) && std::abs(a - b) <= 1e-12 * std::abs(b)));
        } else {
          match = match && it->second == want;
        }
      }
      if (match) return s.value;
    }
    FAIL("no series " << name << " with the given labels in:\n" << text_);
    return NAN;
  }

  bool Has(const std::string& name, const std::map<std::string, std::string>& labels) const {
    for (const Sample& s : samples_) {
      if (s.name == name && s.labels == labels) return true;
    }
    return false;
  }

  // The `le` bounds of histogram `name`, in order, without +Inf.
  std::vector<double> Bounds(const std::string& name) const {
    std::vector<double> bounds;
    for (const Sample& s : samples_) {
      if (s.name != name + "_bucket") continue;
      const std::string& le = s.labels.at("le");
      if (le != "+Inf") bounds.push_back(std::stod(le));
    }
    return bounds;
  }

 private:
  std::string text_;
  std::vector<Sample> samples_;
};

const std::map<std::string, std::string> kModel = {{"model", "stories"}};

std::map<std::string, std::string> With(std::map<std::string, std::string> labels,
                                        const std::string& key, const std::string& value) {
  labels[key] = value;
  return labels;
}

std::map<std::string, std::string> Bucket(const std::string& le) { return With(kModel, "le", le); }

TEST_CASE("every series is exported with HELP and TYPE from the start") {
  prometheus::Registry registry;
  EngineMetrics metrics(registry, "stories");
  Exposition e(registry);
  const std::vector<std::pair<std::string, std::string>> families = {
      {"kestrel_requests_total", "counter"},
      {"kestrel_requests_running", "gauge"},
      {"kestrel_requests_waiting", "gauge"},
      {"kestrel_kv_blocks", "gauge"},
      {"kestrel_kv_blocks_capacity", "gauge"},
      {"kestrel_kv_usage_ratio", "gauge"},
      {"kestrel_prefix_cache_queried_tokens_total", "counter"},
      {"kestrel_prefix_cache_hit_tokens_total", "counter"},
      {"kestrel_prompt_tokens_total", "counter"},
      {"kestrel_generation_tokens_total", "counter"},
      {"kestrel_preemptions_total", "counter"},
      {"kestrel_spec_decode_steps_total", "counter"},
      {"kestrel_spec_decode_draft_tokens_total", "counter"},
      {"kestrel_spec_decode_accepted_tokens_total", "counter"},
      {"kestrel_spec_decode_tokens_per_step", "histogram"},
      {"kestrel_steps_total", "counter"},
      {"kestrel_step_duration_seconds", "histogram"},
      {"kestrel_step_batch_size", "histogram"},
      {"kestrel_step_tokens", "histogram"},
      {"kestrel_request_queue_time_seconds", "histogram"},
      {"kestrel_time_to_first_token_seconds", "histogram"},
      {"kestrel_inter_token_latency_seconds", "histogram"},
      {"kestrel_request_e2e_latency_seconds", "histogram"},
      {"kestrel_request_prompt_tokens", "histogram"},
      {"kestrel_request_generation_tokens", "histogram"},
  };
  for (const auto& [name, type] : families) {
    INFO(name);
    CHECK(e.text().find("# HELP " + name + " ") != std::string::npos);
    CHECK(e.text().find("# TYPE " + name + " " + type + "\n") != std::string::npos);
  }
  // Plain series exist at zero before anything happened.
  CHECK(e.Value("kestrel_steps_total", kModel) == 0);
  CHECK(e.Value("kestrel_requests_running", kModel) == 0);
  CHECK(e.Value("kestrel_kv_blocks", With(kModel, "state", "free")) == 0);
  CHECK(e.Value("kestrel_time_to_first_token_seconds_count", kModel) == 0);
  // The common outcomes are pre-created so rate() sees their first request.
  for (const char* reason : {"length", "stop", "eos"}) {
    CHECK(e.Value("kestrel_requests_total",
                  With(With(kModel, "status", "ok"), "finish_reason", reason)) == 0);
  }
}

TEST_CASE("histogram buckets: latencies 1 ms..65.536 s, tokens 1..32768, batch 1..1024") {
  prometheus::Registry registry;
  EngineMetrics metrics(registry, "stories");
  Exposition e(registry);
  std::vector<double> latency, tokens, batch;
  for (int i = 0; i < 17; ++i) latency.push_back(0.001 * std::pow(2.0, i));
  for (int i = 0; i < 16; ++i) tokens.push_back(std::pow(2.0, i));
  for (int i = 0; i < 11; ++i) batch.push_back(std::pow(2.0, i));
  for (const char* name :
       {"kestrel_step_duration_seconds", "kestrel_request_queue_time_seconds",
        "kestrel_time_to_first_token_seconds", "kestrel_inter_token_latency_seconds",
        "kestrel_request_e2e_latency_seconds"}) {
    INFO(name);
    CHECK_THAT(e.Bounds(name), Catch::Matchers::Approx(latency));
  }
  for (const char* name : {"kestrel_step_tokens", "kestrel_request_prompt_tokens",
                           "kestrel_request_generation_tokens"}) {
    INFO(name);
    CHECK(e.Bounds(name) == tokens);
  }
  CHECK(e.Bounds("kestrel_step_batch_size") == batch);
}

TEST_CASE("RecordRequest: counts by status and finish reason, latency buckets are cumulative") {
  prometheus::Registry registry;
  EngineMetrics metrics(registry, "stories");

  RequestSample ok;
  ok.status = "ok";
  ok.finish_reason = "length";
  ok.prompt_tokens = 5;
  ok.generation_tokens = 100;
  ok.queue_time = absl::Microseconds(500);         // below the first bound
  ok.time_to_first_token = absl::Milliseconds(3);  // in (2 ms, 4 ms]
  ok.end_to_end = absl::Seconds(2);                // in (1.024, 2.048]
  metrics.RecordRequest(ok);
  ok.time_to_first_token = absl::Milliseconds(4);  // exactly on a bound: le is inclusive
  ok.prompt_tokens = 4;
  metrics.RecordRequest(ok);
  ok.time_to_first_token = absl::Seconds(100);  // beyond the last bound: only +Inf
  ok.finish_reason = "eos";
  metrics.RecordRequest(ok);

  RequestSample cancelled;
  cancelled.status = "cancelled";
  cancelled.finish_reason = "cancelled";
  cancelled.prompt_tokens = 7;
  cancelled.queue_time = absl::Milliseconds(10);
  // Never produced a token: time_to_first_token stays unset.
  cancelled.end_to_end = absl::Milliseconds(20);
  metrics.RecordRequest(cancelled);

  RequestSample rejected;  // refused before admission: no durations at all
  rejected.status = "invalid_argument";
  rejected.finish_reason = "error";
  metrics.RecordRequest(rejected);

  RequestSample odd;  // unknown strings are folded into "other"
  odd.status = "Some Unexpected Status";
  odd.finish_reason = "";
  metrics.RecordRequest(odd);

  Exposition e(registry);
  auto requests = [&](const std::string& status, const std::string& reason) {
    return e.Value("kestrel_requests_total",
                   With(With(kModel, "status", status), "finish_reason", reason));
  };
  CHECK(requests("ok", "length") == 2);
  CHECK(requests("ok", "eos") == 1);
  CHECK(requests("ok", "stop") == 0);
  CHECK(requests("cancelled", "cancelled") == 1);
  CHECK(requests("invalid_argument", "error") == 1);
  CHECK(requests("other", "other") == 1);
  CHECK_FALSE(e.Has("kestrel_requests_total",
                    With(With(kModel, "status", "Some Unexpected Status"), "finish_reason", "")));

  CHECK(e.Value("kestrel_prompt_tokens_total", kModel) == 5 + 4 + 4 + 7);
  CHECK(e.Value("kestrel_generation_tokens_total", kModel) == 300);

  const std::string ttft = "kestrel_time_to_first_token_seconds";
  CHECK(e.Value(ttft + "_bucket", Bucket("0.001")) == 0);
  CHECK(e.Value(ttft + "_bucket", Bucket("0.002")) == 0);
  CHECK(e.Value(ttft + "_bucket", Bucket("0.004")) == 2);
  CHECK(e.Value(ttft + "_bucket", Bucket("0.008")) == 2);
  CHECK(e.Value(ttft + "_bucket", Bucket("65.536")) == 2);
  CHECK(e.Value(ttft + "_bucket", Bucket("+Inf")) == 3);
  CHECK(e.Value(ttft + "_count", kModel) == 3);
  CHECK(e.Value(ttft + "_sum", kModel) == Approx(100.007));

  const std::string queue = "kestrel_request_queue_time_seconds";
  CHECK(e.Value(queue + "_bucket", Bucket("0.001")) == 3);
  CHECK(e.Value(queue + "_bucket", Bucket("0.008")) == 3);
  CHECK(e.Value(queue + "_bucket", Bucket("0.016")) == 4);
  CHECK(e.Value(queue + "_count", kModel) == 4);  // the rejected ones had no queue time

  const std::string e2e = "kestrel_request_e2e_latency_seconds";
  CHECK(e.Value(e2e + "_bucket", Bucket("0.016")) == 0);
  CHECK(e.Value(e2e + "_bucket", Bucket("0.032")) == 1);
  CHECK(e.Value(e2e + "_bucket", Bucket("1.024")) == 1);
  CHECK(e.Value(e2e + "_bucket", Bucket("2.048")) == 4);
  CHECK(e.Value(e2e + "_sum", kModel) == Approx(6.02));

  // Lengths only for admitted requests (4 of the 6).
  const std::string prompt = "kestrel_request_prompt_tokens";
  CHECK(e.Value(prompt + "_count", kModel) == 4);
  CHECK(e.Value(prompt + "_bucket", Bucket("2")) == 0);
  CHECK(e.Value(prompt + "_bucket", Bucket("4")) == 2);
  CHECK(e.Value(prompt + "_bucket", Bucket("8")) == 4);
  const std::string generated = "kestrel_request_generation_tokens";
  CHECK(e.Value(generated + "_bucket", Bucket("1")) == 1);  // the cancelled one: 0 tokens
  CHECK(e.Value(generated + "_bucket", Bucket("64")) == 1);
  CHECK(e.Value(generated + "_bucket", Bucket("128")) == 4);
  CHECK(e.Value(generated + "_sum", kModel) == 300);
}

TEST_CASE("RecordStep: step counters and per-step histograms") {
  prometheus::Registry registry;
  EngineMetrics metrics(registry, "stories");
  StepSample step;
  step.duration = absl::Milliseconds(250);  // in (0.128, 0.256]
  step.num_sequences = 3;                   // in (2, 4]
  step.num_prefill_tokens = 100;
  step.num_decode_tokens = 3;  // 103 tokens: in (64, 128]
  step.num_preemptions = 1;
  step.prefix_cache_queried_tokens = 100;
  step.prefix_cache_hit_tokens = 64;
  step.spec_decode_steps = 2;
  step.spec_draft_tokens = 8;
  step.spec_accepted_tokens = 5;
  const std::vector<int> spec_tokens = {4, 3};  // 2 + 3 accepted, + 1 each
  step.spec_tokens_per_sequence = spec_tokens;
  metrics.RecordStep(step);
  step = StepSample{};
  step.duration = absl::Microseconds(200);
  step.num_sequences = 1;
  step.num_decode_tokens = 1;
  metrics.RecordStep(step);

  Exposition e(registry);
  CHECK(e.Value("kestrel_steps_total", kModel) == 2);
  CHECK(e.Value("kestrel_preemptions_total", kModel) == 1);
  CHECK(e.Value("kestrel_prefix_cache_queried_tokens_total", kModel) == 100);
  CHECK(e.Value("kestrel_prefix_cache_hit_tokens_total", kModel) == 64);
  CHECK(e.Value("kestrel_spec_decode_steps_total", kModel) == 2);
  CHECK(e.Value("kestrel_spec_decode_draft_tokens_total", kModel) == 8);
  CHECK(e.Value("kestrel_spec_decode_accepted_tokens_total", kModel) == 5);
  const std::string spec_tokens_name = "kestrel_spec_decode_tokens_per_step";
  CHECK(e.Value(spec_tokens_name + "_bucket", Bucket("2")) == 0);
  CHECK(e.Value(spec_tokens_name + "_bucket", Bucket("3")) == 1);
  CHECK(e.Value(spec_tokens_name + "_bucket", Bucket("4")) == 2);
  CHECK(e.Value(spec_tokens_name + "_bucket", Bucket("17")) == 2);
  CHECK(e.Value(spec_tokens_name + "_sum", kModel) == 7);
  const std::string duration = "kestrel_step_duration_seconds";
  CHECK(e.Value(duration + "_bucket", Bucket("0.001")) == 1);
  CHECK(e.Value(duration + "_bucket", Bucket("0.128")) == 1);
  CHECK(e.Value(duration + "_bucket", Bucket("0.256")) == 2);
  CHECK(e.Value(duration + "_sum", kModel) == Approx(0.2502));
  CHECK(e.Value("kestrel_step_batch_size_bucket", Bucket("1")) == 1);
  CHECK(e.Value("kestrel_step_batch_size_bucket", Bucket("2")) == 1);
  CHECK(e.Value("kestrel_step_batch_size_bucket", Bucket("4")) == 2);
  CHECK(e.Value("kestrel_step_batch_size_bucket", Bucket("1024")) == 2);
  CHECK(e.Value("kestrel_step_tokens_bucket", Bucket("64")) == 1);
  CHECK(e.Value("kestrel_step_tokens_bucket", Bucket("128")) == 2);
  CHECK(e.Value("kestrel_step_tokens_sum", kModel) == 104);
}

TEST_CASE("RecordStep: a series per tensor-parallel rank, none without ranks") {
  prometheus::Registry registry;
  EngineMetrics metrics(registry, "stories");
  StepSample step;
  step.duration = absl::Milliseconds(10);
  metrics.RecordStep(step);
  CHECK(Exposition(registry).text().find("kestrel_rank_step_duration_seconds_count") ==
        std::string::npos);
  const std::vector<absl::Duration> ranks = {absl::Microseconds(1500), absl::Microseconds(3500)};
  step.rank_step_times = ranks;
  metrics.RecordStep(step);
  metrics.RecordStep(step);
  Exposition e(registry);
  const std::string name = "kestrel_rank_step_duration_seconds";
  CHECK(e.Value(name + "_count", With(kModel, "rank", "0")) == 2);
  CHECK(e.Value(name + "_count", With(kModel, "rank", "1")) == 2);
  CHECK(e.Value(name + "_sum", With(kModel, "rank", "1")) == Approx(0.007));
  CHECK(e.Value(name + "_bucket", With(With(kModel, "rank", "0"), "le", "0.002")) == 2);
  CHECK(e.Value(name + "_bucket", With(With(kModel, "rank", "1"), "le", "0.002")) == 0);
  CHECK(e.Value(name + "_bucket", With(With(kModel, "rank", "1"), "le", "0.004")) == 2);
}

TEST_CASE("RecordLoad: gauges follow the latest sample; used = total - free") {
  prometheus::Registry registry;
  EngineMetrics metrics(registry, "stories");
  LoadSample load;
  load.running_requests = 3;
  load.waiting_requests = 2;
  load.kv_blocks_total = 200;
  load.kv_blocks_free = 150;
  load.kv_blocks_cached = 20;
  metrics.RecordLoad(load);
  {
    Exposition e(registry);
    CHECK(e.Value("kestrel_requests_running", kModel) == 3);
    CHECK(e.Value("kestrel_requests_waiting", kModel) == 2);
    CHECK(e.Value("kestrel_kv_blocks", With(kModel, "state", "used")) == 50);
    CHECK(e.Value("kestrel_kv_blocks", With(kModel, "state", "free")) == 150);
    CHECK(e.Value("kestrel_kv_blocks", With(kModel, "state", "cached")) == 20);
    CHECK(e.Value("kestrel_kv_blocks_capacity", kModel) == 200);
    CHECK(e.Value("kestrel_kv_usage_ratio", kModel) == Approx(0.25));
  }
  // Everything finished and freed: gauges go back down (not counters).
  metrics.RecordLoad(LoadSample{.kv_blocks_total = 200, .kv_blocks_free = 200});
  {
    Exposition e(registry);
    CHECK(e.Value("kestrel_requests_running", kModel) == 0);
    CHECK(e.Value("kestrel_kv_blocks", With(kModel, "state", "used")) == 0);
    CHECK(e.Value("kestrel_kv_usage_ratio", kModel) == 0);
  }
  // An empty pool (before the model is loaded) is not a division by zero.
  metrics.RecordLoad(LoadSample{});
  Exposition e(registry);
  CHECK(e.Value("kestrel_kv_usage_ratio", kModel) == 0);
}

TEST_CASE("RecordInterTokenLatency") {
  prometheus::Registry registry;
  EngineMetrics metrics(registry, "stories");
  metrics.RecordInterTokenLatency(absl::Milliseconds(20));  // in (0.016, 0.032]
  metrics.RecordInterTokenLatency(absl::Milliseconds(30));
  Exposition e(registry);
  const std::string itl = "kestrel_inter_token_latency_seconds";
  CHECK(e.Value(itl + "_bucket", Bucket("0.016")) == 0);
  CHECK(e.Value(itl + "_bucket", Bucket("0.032")) == 2);
  CHECK(e.Value(itl + "_count", kModel) == 2);
}

TEST_CASE("two models share one registry: one family per name, a series per model") {
  prometheus::Registry registry;
  EngineMetrics a(registry, "a");
  EngineMetrics b(registry, "b");
  a.RecordStep(StepSample{.duration = absl::Milliseconds(1), .num_sequences = 1});
  a.RecordStep(StepSample{.duration = absl::Milliseconds(1), .num_sequences = 1});
  b.RecordStep(StepSample{.duration = absl::Milliseconds(1), .num_sequences = 1});
  Exposition e(registry);
  CHECK(e.Value("kestrel_steps_total", {{"model", "a"}}) == 2);
  CHECK(e.Value("kestrel_steps_total", {{"model", "b"}}) == 1);
  // A second TYPE line for one name would make the exposition invalid.
  size_t count = 0;
  for (size_t pos = 0;
       (pos = e.text().find("# TYPE kestrel_steps_total ", pos)) != std::string::npos; ++pos) {
    ++count;
  }
  CHECK(count == 1);
}

TEST_CASE("concurrent recording from several threads loses nothing") {
  prometheus::Registry registry;
  EngineMetrics metrics(registry, "stories");
  constexpr int kThreads = 4;
  constexpr int kPerThread = 1000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&metrics, t] {
      for (int i = 0; i < kPerThread; ++i) {
        RequestSample r;
        r.status = t % 2 == 0 ? "ok" : "cancelled";
        r.finish_reason = t % 2 == 0 ? "stop" : "cancelled";
        r.generation_tokens = 1;
        r.queue_time = absl::Milliseconds(1);
        metrics.RecordRequest(r);
        metrics.RecordStep(StepSample{.duration = absl::Milliseconds(1), .num_sequences = 1});
        metrics.RecordInterTokenLatency(absl::Milliseconds(5));
        metrics.RecordLoad(LoadSample{.running_requests = i});
      }
    });
  }
  for (std::thread& t : threads) t.join();
  Exposition e(registry);
  CHECK(e.Value("kestrel_steps_total", kModel) == kThreads * kPerThread);
  CHECK(e.Value("kestrel_generation_tokens_total", kModel) == kThreads * kPerThread);
  CHECK(e.Value("kestrel_inter_token_latency_seconds_count", kModel) == kThreads * kPerThread);
  CHECK(e.Value("kestrel_requests_total", With(With(kModel, "status", "ok"), "finish_reason",
                                               "stop")) == kThreads / 2 * kPerThread);
  CHECK(e.Value("kestrel_requests_running", kModel) == kPerThread - 1);
}

}  // namespace
}  // namespace kestrel::engine

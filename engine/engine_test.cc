// The engine end to end on a fake model: streaming, batch independence,
// seeds, stops, cancellation, deadlines, admission control and drain.
#include "engine/engine.h"

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <condition_variable>
#include <mutex>
#include "engine/fake_executor.h"
#include "model/synthetic.h"

namespace kestrel::engine {
namespace {

// Collects one request's events; Wait() blocks until every sample finished.
class CollectingSink final : public RequestSink {
 public:
  explicit CollectingSink(int n = 1) : n_(n) {}

  void OnTokens(TokenEvent event) override {
    std::lock_guard lock(mu_);
    // Catch2 is not thread-safe: record violations, check them in Wait().
    if (finished_[event.index]) tokens_after_finish_ = true;
    ids_[event.index].insert(ids_[event.index].end(), event.token_ids.begin(),
                             event.token_ids.end());
    text_[event.index] += event.text;
    ++chunks_;
  }
  void OnFinish(FinishEvent event) override {
    {
      std::lock_guard lock(mu_);
      finished_[event.index] = true;
      finishes_.push_back(std::move(event));
    }
    cv_.notify_all();
  }
  // False on timeout, or when tokens arrived after their sample finished.
  bool Wait(absl::Duration timeout = absl::Seconds(30)) {
    std::unique_lock lock(mu_);
    const bool done = cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [this] {
      return static_cast<int>(finishes_.size()) >= n_ ||
             (!finishes_.empty() && !finishes_[0].status.ok() &&
              finishes_[0].reason == FinishReason::kError);
    });
    return done && !tokens_after_finish_;
  }
  std::vector<int32_t> ids(int index = 0) {
    std::lock_guard lock(mu_);
    return ids_[index];
  }
  std::string text(int index = 0) {
    std::lock_guard lock(mu_);
    return text_[index];
  }
  std::vector<FinishEvent> finishes() {
    std::lock_guard lock(mu_);
    return finishes_;
  }
  FinishEvent finish(int index = 0) {
    std::lock_guard lock(mu_);
    for (const FinishEvent& f : finishes_) {
      if (f.index == index) return f;
    }
    FAIL("no finish event for sample " << index);
    return {};
  }
  int num_tokens() {
    std::lock_guard lock(mu_);
    int total = 0;
    for (const auto& [index, ids] : ids_) total += static_cast<int>(ids.size());
    return total;
  }

 private:
  const int n_;
  // std::mutex: TSan cannot see synchronization inside Debian's Abseil.
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int, std::vector<int32_t>> ids_ ABSL_GUARDED_BY(mu_);
  std::map<int, std::string> text_ ABSL_GUARDED_BY(mu_);
  std::map<int, bool> finished_ ABSL_GUARDED_BY(mu_);
  std::vector<FinishEvent> finishes_ ABSL_GUARDED_BY(mu_);
  int chunks_ ABSL_GUARDED_BY(mu_) = 0;
  bool tokens_after_finish_ ABSL_GUARDED_BY(mu_) = false;
};

// A byte-level tokenizer: ids 0..255 are bytes, 256 <s>, 257 </s>.
const tokenizer::Tokenizer& ByteTokenizer() {
  static const tokenizer::Tokenizer* tokenizer = [] {
    auto t = tokenizer::Tokenizer::FromJson(model::SyntheticTokenizerJson(258), "", {});
    REQUIRE(t.ok());
    return t->release();
  }();
  return *tokenizer;
}

struct Harness {
  FakeExecutor* executor = nullptr;  // owned by engine
  std::unique_ptr<Engine> engine;
};

Harness MakeEngine(FakeExecutor::Options fake = {}, Engine::Options options = {}) {
  Harness h;
  auto executor = std::make_unique<FakeExecutor>(fake);
  h.executor = executor.get();
  auto engine = Engine::Create(options, std::move(executor), &ByteTokenizer(), nullptr);
  REQUIRE(engine.ok());
  h.engine = std::move(*engine);
  return h;
}

// The fake's greedy continuation of `prompt`.
std::vector<int32_t> ExpectedGreedy(const FakeExecutor& fake, std::vector<int32_t> prompt, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    int32_t next = fake.Predict(prompt);
    out.push_back(next);
    prompt.push_back(next);
  }
  return out;
}

GenerateParams Greedy(std::vector<int32_t> prompt, int max_tokens) {
  GenerateParams p;
  p.prompt_ids = std::move(prompt);
  p.sampling.temperature = 0.0f;
  p.max_tokens = max_tokens;
  return p;
}

std::vector<int32_t> Prompt(int len, int salt) {
  std::vector<int32_t> ids;
  for (int i = 0; i < len; ++i) ids.push_back(97 + (i * 7 + salt) % 26);
  return ids;
}

bool WaitIdleBlocks(Engine& engine) {
  for (int i = 0; i < 500; ++i) {
    EngineLoad load = engine.load();
    if (load.active_requests == 0 && load.kv_blocks_free == load.kv_blocks_total) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EngineLoad load = engine.load();
  UNSCOPED_INFO("not idle: active " << load.active_requests << ", running " << load.running_requests
                << ", waiting " << load.waiting_requests << ", free blocks " << load.kv_blocks_free
                << " of " << load.kv_blocks_total);
  return false;
}

TEST_CASE("a greedy request streams the model's continuation and its text") {
  FakeExecutor::Options fake;
  fake.vocab_size = 123;  // predictions in 'a'..'z'
  fake.first_token = 97;
  Harness h = MakeEngine(fake);
  auto sink = std::make_shared<CollectingSink>();
  const std::vector<int32_t> prompt = Prompt(20, 1);
  REQUIRE(h.engine->Submit(Greedy(prompt, 12), sink).ok());
  REQUIRE(sink->Wait());
  const std::vector<int32_t> expected = ExpectedGreedy(*h.executor, prompt, 12);
  CHECK(sink->ids() == expected);
  auto decoded = ByteTokenizer().Decode(expected, true);
  REQUIRE(decoded.ok());
  CHECK(sink->text() == *decoded);
  FinishEvent finish = sink->finish();
  CHECK(finish.status.ok());
  CHECK(finish.reason == FinishReason::kLength);
  CHECK(finish.usage.prompt_tokens == 20);
  CHECK(finish.usage.completion_tokens == 12);
  CHECK(finish.timings.total >= finish.timings.time_to_first_token);
  CHECK(WaitIdleBlocks(*h.engine));
}

TEST_CASE("outputs do not depend on batch mates or prefill chunking") {
  Engine::Options options;
  options.max_num_batched_tokens = 24;  // long prompts prefill over several steps
  options.max_num_seqs = 16;
  Harness h = MakeEngine({}, options);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  std::vector<std::vector<int32_t>> prompts;
  std::mt19937 rng(7);
  for (int i = 0; i < 40; ++i) {
    prompts.push_back(Prompt(1 + static_cast<int>(rng() % 90), i));
    sinks.push_back(std::make_shared<CollectingSink>());
    REQUIRE(h.engine->Submit(Greedy(prompts.back(), 1 + static_cast<int>(rng() % 30)), sinks.back()).ok());
  }
  for (int i = 0; i < 40; ++i) {
    REQUIRE(sinks[i]->Wait());
    const int n = static_cast<int>(sinks[i]->ids().size());
    CHECK(sinks[i]->ids() == ExpectedGreedy(*h.executor, prompts[i], n));
    CHECK(sinks[i]->finish().reason == FinishReason::kLength);
  }
  CHECK(WaitIdleBlocks(*h.engine));
}

TEST_CASE("a seeded sampled request repeats exactly whatever runs beside it") {
  FakeExecutor::Options fake;
  fake.peak_logit = 1.0f;  // flat enough that sampling really varies
  auto run = [&](int batch_mates) {
    Harness h = MakeEngine(fake);
    std::vector<std::shared_ptr<CollectingSink>> others;
    for (int i = 0; i < batch_mates; ++i) {
      GenerateParams p = Greedy(Prompt(5 + i, i), 20);
      p.sampling.temperature = 1.0f;
      others.push_back(std::make_shared<CollectingSink>());
      REQUIRE(h.engine->Submit(p, others.back()).ok());
    }
    GenerateParams p = Greedy(Prompt(9, 3), 24);
    p.sampling.temperature = 0.8f;
    p.sampling.top_p = 0.9f;
    p.sampling.seed = 1234;
    auto sink = std::make_shared<CollectingSink>();
    REQUIRE(h.engine->Submit(p, sink).ok());
    REQUIRE(sink->Wait());
    for (auto& other : others) REQUIRE(other->Wait());
    return sink->ids();
  };
  std::vector<int32_t> alone = run(0);
  CHECK(alone.size() == 24);
  CHECK(run(7) == alone);
  CHECK(run(3) == alone);
}

TEST_CASE("stop strings cut the text and report the match") {
  FakeExecutor::Options fake;
  fake.vocab_size = 123;
  fake.first_token = 97;
  Harness h = MakeEngine(fake);
  const std::vector<int32_t> prompt = Prompt(10, 4);
  const std::vector<int32_t> expected = ExpectedGreedy(*h.executor, prompt, 30);
  const std::string full = *ByteTokenizer().Decode(expected, true);
  const std::string stop = full.substr(10, 3);
  const size_t at = full.find(stop);

  SECTION("excluded from the output") {
    GenerateParams p = Greedy(prompt, 30);
    p.stop = {stop, "this never appears"};
    auto sink = std::make_shared<CollectingSink>();
    REQUIRE(h.engine->Submit(p, sink).ok());
    REQUIRE(sink->Wait());
    CHECK(sink->text() == full.substr(0, at));
    FinishEvent finish = sink->finish();
    CHECK(std::string(FinishReasonLabel(finish.reason)) == "stop");
    REQUIRE(finish.stop_string.has_value());
    CHECK(*finish.stop_string == stop);
    // Generation stopped at the token that completed the stop string.
    CHECK(static_cast<int>(sink->ids().size()) == static_cast<int>(at + stop.size()));
  }
  SECTION("included when asked") {
    GenerateParams p = Greedy(prompt, 30);
    p.stop = {stop};
    p.include_stop_str_in_output = true;
    auto sink = std::make_shared<CollectingSink>();
    REQUIRE(h.engine->Submit(p, sink).ok());
    REQUIRE(sink->Wait());
    CHECK(sink->text() == full.substr(0, at + stop.size()));
  }
  SECTION("ignored before min_tokens") {
    GenerateParams p = Greedy(prompt, 30);
    p.stop = {full.substr(0, 2)};
    p.min_tokens = 5;
    auto sink = std::make_shared<CollectingSink>();
    REQUIRE(h.engine->Submit(p, sink).ok());
    REQUIRE(sink->Wait());
    const size_t later = full.find(full.substr(0, 2), 4);
    if (later == std::string::npos) {
      CHECK(sink->finish().reason == FinishReason::kLength);
      CHECK(sink->text() == full);
    } else {
      CHECK(std::string(FinishReasonLabel(sink->finish().reason)) == "stop");
      CHECK(sink->text() == full.substr(0, later));
    }
  }
}

TEST_CASE("stop token ids and EOS end a sample; ignore_eos and min_tokens override") {
  Harness probe = MakeEngine();
  const std::vector<int32_t> prompt = Prompt(8, 5);
  const std::vector<int32_t> expected = ExpectedGreedy(*probe.executor, prompt, 40);
  const int32_t marker = expected[6];
  const size_t first = std::find(expected.begin(), expected.end(), marker) - expected.begin();

  SECTION("stop token") {
    GenerateParams p = Greedy(prompt, 40);
    p.stop_token_ids = {marker};
    auto sink = std::make_shared<CollectingSink>();
    REQUIRE(probe.engine->Submit(p, sink).ok());
    REQUIRE(sink->Wait());
    CHECK(sink->ids().size() == first + 1);
    CHECK(std::string(FinishReasonLabel(sink->finish().reason)) == "stop");
    CHECK(sink->finish().stop_token_id == marker);
  }
  SECTION("eos, ignore_eos, min_tokens") {
    Engine::Options options;
    options.eos_token_ids = {marker};
    Harness h = MakeEngine({}, options);
    auto sink = std::make_shared<CollectingSink>();
    REQUIRE(h.engine->Submit(Greedy(prompt, 40), sink).ok());
    REQUIRE(sink->Wait());
    CHECK(sink->ids().size() == first + 1);
    CHECK(sink->finish().reason == FinishReason::kEos);

    GenerateParams ignore = Greedy(prompt, 40);
    ignore.ignore_eos = true;
    auto sink2 = std::make_shared<CollectingSink>();
    REQUIRE(h.engine->Submit(ignore, sink2).ok());
    REQUIRE(sink2->Wait());
    CHECK(sink2->ids() == expected);
    CHECK(sink2->finish().reason == FinishReason::kLength);

    GenerateParams min = Greedy(prompt, 40);
    min.min_tokens = static_cast<int>(first) + 2;
    auto sink3 = std::make_shared<CollectingSink>();
    REQUIRE(h.engine->Submit(min, sink3).ok());
    REQUIRE(sink3->Wait());
    const std::vector<int32_t> ids = sink3->ids();
    CHECK(static_cast<int>(ids.size()) >= min.min_tokens);
    CHECK(std::find(ids.begin(), ids.begin() + min.min_tokens - 1, marker) ==
          ids.begin() + min.min_tokens - 1);
  }
}

TEST_CASE("n samples each finish once, sharing the prompt") {
  FakeExecutor::Options fake;
  fake.peak_logit = 1.0f;
  Harness h = MakeEngine(fake);
  GenerateParams p = Greedy(Prompt(40, 2), 10);
  p.n = 3;
  p.sampling.temperature = 1.0f;
  p.sampling.seed = 99;
  auto sink = std::make_shared<CollectingSink>(3);
  REQUIRE(h.engine->Submit(p, sink).ok());
  REQUIRE(sink->Wait());
  std::vector<FinishEvent> finishes = sink->finishes();
  REQUIRE(finishes.size() == 3);
  std::set<int> indexes;
  for (const FinishEvent& f : finishes) indexes.insert(f.index);
  CHECK(indexes == std::set<int>{0, 1, 2});
  for (int i = 0; i < 3; ++i) CHECK(sink->ids(i).size() == 10);
  CHECK((sink->ids(0) != sink->ids(1) || sink->ids(1) != sink->ids(2)));
  CHECK(WaitIdleBlocks(*h.engine));
}

TEST_CASE("cancelled and aborted requests end within a step and return their blocks") {
  FakeExecutor::Options fake;
  fake.step_delay = absl::Milliseconds(2);
  Harness h = MakeEngine(fake);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  std::vector<uint64_t> handles;
  for (int i = 0; i < 20; ++i) {
    GenerateParams p = Greedy(Prompt(30 + i, i), 200);
    p.request_id = "r" + std::to_string(i);
    sinks.push_back(std::make_shared<CollectingSink>());
    auto handle = h.engine->Submit(p, sinks.back());
    REQUIRE(handle.ok());
    handles.push_back(*handle);
  }
  absl::SleepFor(absl::Milliseconds(60));
  for (int i = 0; i < 20; i += 2) h.engine->Cancel(handles[i]);
  CHECK(h.engine->Abort("r1"));
  CHECK_FALSE(h.engine->Abort("no-such-request"));
  for (int i = 0; i < 20; ++i) {
    REQUIRE(sinks[i]->Wait());
    FinishEvent f = sinks[i]->finish();
    if (i % 2 == 0 || i == 1) {
      CHECK(std::string(FinishReasonLabel(f.reason)) == "cancelled");
      CHECK(f.status.code() == absl::StatusCode::kCancelled);
      CHECK(sinks[i]->ids().size() < 200);
    } else {
      CHECK(f.reason == FinishReason::kLength);
      CHECK(sinks[i]->ids() == ExpectedGreedy(*h.executor, Prompt(30 + i, i), 200));
    }
  }
  CHECK(WaitIdleBlocks(*h.engine));
}

TEST_CASE("a deadline stops the work with DEADLINE_EXCEEDED") {
  FakeExecutor::Options fake;
  fake.step_delay = absl::Milliseconds(2);
  Harness h = MakeEngine(fake);
  GenerateParams p = Greedy(Prompt(10, 1), 900);
  p.deadline = absl::Now() + absl::Milliseconds(80);
  auto sink = std::make_shared<CollectingSink>();
  REQUIRE(h.engine->Submit(p, sink).ok());
  REQUIRE(sink->Wait());
  FinishEvent f = sink->finish();
  CHECK(f.status.code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(std::string(FinishReasonLabel(f.reason)) == "cancelled");
  CHECK(sink->ids().size() < 900);
  CHECK(WaitIdleBlocks(*h.engine));
}

TEST_CASE("invalid requests are refused with the field and value named") {
  Harness h = MakeEngine();
  struct Case {
    std::string name;
    std::function<void(GenerateParams&)> edit;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"empty prompt", [](GenerateParams& p) { p.prompt_ids.clear(); }, "prompt must contain"},
      {"negative token", [](GenerateParams& p) { p.prompt_ids[1] = -4; }, "token_ids[1] = -4"},
      {"token beyond vocab", [](GenerateParams& p) { p.prompt_ids[0] = 300; }, "token_ids[0] = 300"},
      {"prompt too long", [](GenerateParams& p) { p.prompt_ids.assign(1024, 5); }, "context length is 1024"},
      {"max_tokens zero", [](GenerateParams& p) { p.max_tokens = 0; }, "max_tokens must be >= 1, got 0"},
      {"max_tokens too many", [](GenerateParams& p) { p.max_tokens = 1020; }, "max_tokens = 1020"},
      {"min_tokens negative", [](GenerateParams& p) { p.min_tokens = -1; }, "min_tokens must be in"},
      {"n zero", [](GenerateParams& p) { p.n = 0; }, "sampling.n must be in [1, 256], got 0"},
      {"empty stop", [](GenerateParams& p) { p.stop = {""}; }, "stopping.stop[0]"},
      {"stop token", [](GenerateParams& p) { p.stop_token_ids = {1, 999}; }, "stop_token_ids[1] = 999"},
      {"top_p", [](GenerateParams& p) { p.sampling.top_p = 1.5f; }, "top_p"},
      {"temperature", [](GenerateParams& p) { p.sampling.temperature = -1.0f; }, "temperature"},
      {"long id", [](GenerateParams& p) { p.request_id = std::string(200, 'x'); }, "request_id"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    GenerateParams p = Greedy(Prompt(5, 0), 4);
    c.edit(p);
    auto result = h.engine->Submit(p, std::make_shared<CollectingSink>());
    REQUIRE_FALSE(result.ok());
    CHECK(result.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(result.status().message()), Catch::Contains(c.message));
  }
  // Still serving.
  auto sink = std::make_shared<CollectingSink>();
  REQUIRE(h.engine->Submit(Greedy(Prompt(5, 0), 4), sink).ok());
  REQUIRE(sink->Wait());
  CHECK(sink->ids().size() == 4);
}

TEST_CASE("duplicate ids, a full queue and draining are refused") {
  FakeExecutor::Options fake;
  fake.step_delay = absl::Milliseconds(5);
  fake.num_kv_blocks = 8;  // two 60-token requests fill the pool
  Engine::Options options;
  options.max_queued_requests = 2;
  Harness h = MakeEngine(fake, options);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  GenerateParams p = Greedy(Prompt(50, 0), 10);
  p.request_id = "same";
  sinks.push_back(std::make_shared<CollectingSink>());
  REQUIRE(h.engine->Submit(p, sinks.back()).ok());
  auto dup = h.engine->Submit(p, std::make_shared<CollectingSink>());
  CHECK(dup.status().code() == absl::StatusCode::kAlreadyExists);

  int exhausted = 0;
  for (int i = 0; i < 10; ++i) {
    auto sink = std::make_shared<CollectingSink>();
    auto result = h.engine->Submit(Greedy(Prompt(60, i), 60), sink);
    if (result.ok()) {
      sinks.push_back(sink);
    } else {
      CHECK(result.status().code() == absl::StatusCode::kResourceExhausted);
      CHECK_THAT(std::string(result.status().message()), Catch::Contains("--max-queued-requests=2"));
      ++exhausted;
    }
  }
  CHECK(exhausted > 0);

  h.engine->StopAccepting();
  auto refused = h.engine->Submit(Greedy(Prompt(5, 0), 4), std::make_shared<CollectingSink>());
  CHECK(refused.status().code() == absl::StatusCode::kUnavailable);
  // In-flight work still completes during a drain.
  CHECK(h.engine->WaitUntilIdle(absl::Seconds(30)));
  for (auto& sink : sinks) {
    REQUIRE(sink->Wait());
    CHECK(sink->finish().status.ok());
  }
}

TEST_CASE("CancelAll and destruction end active requests with their status") {
  FakeExecutor::Options fake;
  fake.step_delay = absl::Milliseconds(2);
  Harness h = MakeEngine(fake);
  auto a = std::make_shared<CollectingSink>();
  auto b = std::make_shared<CollectingSink>();
  REQUIRE(h.engine->Submit(Greedy(Prompt(10, 0), 500), a).ok());
  absl::SleepFor(absl::Milliseconds(20));
  h.engine->CancelAll(absl::UnavailableError("drain timeout"));
  REQUIRE(a->Wait());
  CHECK(a->finish().status.code() == absl::StatusCode::kUnavailable);

  REQUIRE(h.engine->Submit(Greedy(Prompt(10, 1), 500), b).ok());
  absl::SleepFor(absl::Milliseconds(10));
  h.engine.reset();
  REQUIRE(b->Wait(absl::Seconds(1)));
  CHECK(b->finish().status.code() == absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace kestrel::engine

namespace kestrel::engine {
namespace {

// Resubmits a request with the same id from inside OnFinish, the earliest
// moment a client can learn its request ended.
class ResubmittingSink final : public RequestSink {
 public:
  ResubmittingSink(Engine* engine, GenerateParams next, std::shared_ptr<CollectingSink> next_sink)
      : engine_(engine), next_(std::move(next)), next_sink_(std::move(next_sink)) {}
  void OnTokens(TokenEvent) override {}
  void OnFinish(FinishEvent) override {
    absl::StatusOr<uint64_t> handle = engine_->Submit(next_, next_sink_);
    std::lock_guard lock(mu_);
    resubmitted_ = handle.ok();
    done_ = true;
    cv_.notify_all();
  }
  bool WaitResubmitted() {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(30), [this] { return done_; });
    return resubmitted_;
  }

 private:
  Engine* const engine_;
  const GenerateParams next_;
  const std::shared_ptr<CollectingSink> next_sink_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool resubmitted_ = false;
};

TEST_CASE("an id reused the moment its request finishes stays tracked") {
  FakeExecutor::Options fake;
  fake.step_delay = absl::Milliseconds(2);
  Harness h = MakeEngine(fake);
  GenerateParams first = Greedy(Prompt(5, 0), 2);
  first.request_id = "same";
  GenerateParams second = Greedy(Prompt(5, 1), 900);
  second.request_id = "same";
  auto second_sink = std::make_shared<CollectingSink>();
  auto sink = std::make_shared<ResubmittingSink>(h.engine.get(), second, second_sink);
  REQUIRE(h.engine->Submit(first, sink).ok());
  REQUIRE(sink->WaitResubmitted());
  // The first request's clean-up must not forget the second one's id.
  CHECK(h.engine->Abort("same"));
  REQUIRE(second_sink->Wait());
  CHECK(std::string(FinishReasonLabel(second_sink->finish().reason)) == "cancelled");
}

}  // namespace
}  // namespace kestrel::engine

// The engine core stepped by hand on a fake clock and a fake model: no
// threads and no sleeps, so each timeline below is exact. Deadlines,
// cancellation, priorities, preemption, and a model that fails mid-run.
#include "engine/engine_core.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "engine/clock.h"
#include "engine/fake_executor.h"
#include "model/synthetic.h"

namespace kestrel::engine {
namespace {

// Records one request's events (the core calls it on the test's thread).
class Sink final : public RequestSink {
 public:
  void OnTokens(TokenEvent event) override {
    ids[event.index].insert(ids[event.index].end(), event.token_ids.begin(),
                            event.token_ids.end());
    ++token_events;
  }
  void OnFinish(FinishEvent event) override { finishes.push_back(std::move(event)); }
  bool finished() const { return !finishes.empty(); }
  const FinishEvent& finish() const { return finishes.front(); }

  std::map<int, std::vector<int32_t>> ids;
  std::vector<FinishEvent> finishes;
  int token_events = 0;
};

// Counts the core's lifecycle callbacks.
class Listener final : public EngineCore::Listener {
 public:
  void OnDequeued(uint64_t) override { ++dequeued; }
  void OnReleased(const std::string& id) override { released.push_back(id); }
  int dequeued = 0;
  std::vector<std::string> released;
};

struct Harness {
  FakeClock clock;
  FakeExecutor* fake = nullptr;  // owned by core
  Listener listener;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::unique_ptr<EngineCore> core;
  uint64_t next_handle = 1;

  std::shared_ptr<Sink> Add(GenerateParams p) {
    auto sink = std::make_shared<Sink>();
    REQUIRE(core->Validate(p).ok());
    const uint64_t handle = next_handle++;
    if (p.request_id.empty()) p.request_id = "r" + std::to_string(handle);
    core->Add(handle, std::move(p), sink, clock.Now());
    return sink;
  }
  // Steps until `done` or `max_steps`; each step takes 10 ms of fake time.
  int StepUntil(const std::function<bool()>& done, int max_steps = 1000) {
    int steps = 0;
    while (!done() && steps < max_steps) {
      core->Step(clock.Now());
      clock.Advance(absl::Milliseconds(10));
      ++steps;
    }
    return steps;
  }
  int free_blocks() const { return core->scheduler().block_manager().num_free_blocks(); }
  int total_blocks() const { return core->scheduler().block_manager().num_blocks(); }
};

std::unique_ptr<Harness> Make(FakeExecutor::Options fake_options = {}, EngineOptions options = {}) {
  auto h = std::make_unique<Harness>();
  auto executor = std::make_unique<FakeExecutor>(fake_options);
  h->fake = executor.get();
  auto tok = tokenizer::Tokenizer::FromJson(
      model::SyntheticTokenizerJson(static_cast<int>(fake_options.vocab_size)), "", {});
  REQUIRE(tok.ok());
  h->tokenizer = std::move(*tok);
  options.clock = &h->clock;
  options.request_log = RequestLogFormat::kOff;
  auto core = EngineCore::Create(options, std::move(executor), h->tokenizer.get(), nullptr,
                                 &h->listener);
  REQUIRE(core.ok());
  h->core = std::move(*core);
  return h;
}

GenerateParams Greedy(std::vector<int32_t> prompt, int max_tokens, int priority = 0) {
  GenerateParams p;
  p.prompt_ids = std::move(prompt);
  p.sampling.temperature = 0.0f;
  p.max_tokens = max_tokens;
  p.priority = priority;
  p.ignore_eos = true;
  return p;
}

// The fake model's greedy continuation of `prompt`.
std::vector<int32_t> Expected(const FakeExecutor& fake, std::vector<int32_t> context, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(fake.Predict(context));
    context.push_back(out.back());
  }
  return out;
}

TEST_CASE("a deadline ends the request at the first step after it", "[core]") {
  auto h = Make();
  GenerateParams p = Greedy({5, 6, 7}, 100);
  p.deadline = h->clock.Now() + absl::Milliseconds(45);
  auto sink = h->Add(p);
  // Steps at t = 0, 10, 20, 30, 40 ms run; the one at 50 ms finds the
  // deadline passed.
  const int steps = h->StepUntil([&] { return sink->finished(); });
  CHECK(steps == 6);
  CHECK(sink->ids[0].size() == 5);
  CHECK(sink->finish().status.code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(std::string(FinishReasonLabel(sink->finish().reason)) == "cancelled");
  CHECK(sink->finish().timings.total == absl::Milliseconds(50));
  CHECK(h->free_blocks() == h->total_blocks());
  CHECK(h->listener.released == std::vector<std::string>{"r1"});
  CHECK(h->core->num_active() == 0);
}

TEST_CASE("a cancel ends every sample at once and returns the blocks", "[core]") {
  auto h = Make();
  GenerateParams p = Greedy({5, 6, 7}, 100);
  p.n = 3;
  p.sampling = {.temperature = 1.0f, .seed = 9};
  auto sink = h->Add(p);
  auto other = h->Add(Greedy({8, 9}, 4));
  h->StepUntil([&] { return sink->token_events >= 6; });
  CHECK(h->free_blocks() < h->total_blocks());
  h->core->Cancel(1, absl::CancelledError("client went away"));
  REQUIRE(sink->finishes.size() == 3);
  for (const FinishEvent& f : sink->finishes) CHECK(f.status.code() == absl::StatusCode::kCancelled);
  // The other request is untouched and ends normally.
  h->StepUntil([&] { return other->finished(); });
  CHECK(other->ids[0] == Expected(*h->fake, {8, 9}, 4));
  CHECK(other->finish().status.ok());
  CHECK(h->free_blocks() == h->total_blocks());
  h->core->Cancel(1, absl::CancelledError("again"));  // already ended: no-op
  CHECK(sink->finishes.size() == 3);
}

TEST_CASE("with one running slot, the higher priority goes first", "[core]") {
  auto h = Make({}, {.max_num_seqs = 1, .policy = scheduler::SchedulingPolicy::kPriority});
  auto low = h->Add(Greedy({3, 4}, 3, /*priority=*/0));
  auto high = h->Add(Greedy({5, 6}, 3, /*priority=*/5));
  h->StepUntil([&] { return high->finished(); });
  CHECK(low->ids.empty());  // nothing of the low one ran yet
  h->StepUntil([&] { return low->finished(); });
  CHECK(high->finish().timings.queue == absl::ZeroDuration());
  // Low waited the three steps high took (10 ms each).
  CHECK(low->finish().timings.queue == absl::Milliseconds(30));
  CHECK(low->ids[0] == Expected(*h->fake, {3, 4}, 3));
  CHECK(h->listener.dequeued == 2);
}

TEST_CASE("preemption recomputes a sequence and its output stays the same", "[core]") {
  // 5 blocks of 4 tokens: two sequences growing to 12 tokens each cannot
  // both keep their blocks.
  auto h = Make({.num_kv_blocks = 5, .block_size = 4}, {.watermark = 0.0});
  auto a = h->Add(Greedy({3, 4, 5, 6}, 8));
  auto b = h->Add(Greedy({7, 8, 9, 10}, 8));
  h->StepUntil([&] { return a->finished() && b->finished(); });
  CHECK(h->core->scheduler().stats().preemptions > 0);
  CHECK(a->ids[0] == Expected(*h->fake, {3, 4, 5, 6}, 8));
  CHECK(b->ids[0] == Expected(*h->fake, {7, 8, 9, 10}, 8));
  CHECK(a->finish().status.ok());
  CHECK(b->finish().status.ok());
  CHECK(h->free_blocks() == h->total_blocks());
}

TEST_CASE("a model failure at step k fails exactly that step's requests", "[core]") {
  // One running slot: step 3 belongs to request A alone.
  auto h = Make({.fail_at_step = 3}, {.max_num_seqs = 1});
  auto a = h->Add(Greedy({3, 4, 5}, 5));
  auto b = h->Add(Greedy({6, 7}, 5));
  h->StepUntil([&] { return a->finished(); });
  CHECK(a->ids[0].size() == 2);  // steps 1 and 2 drew tokens
  CHECK(a->finish().status.code() == absl::StatusCode::kInternal);
  CHECK(std::string(a->finish().status.message()).find("injected fault at step 3") !=
        std::string::npos);
  CHECK_FALSE(b->finished());
  // The engine goes on: B completes with the right tokens, then a new one.
  h->StepUntil([&] { return b->finished(); });
  CHECK(b->finish().status.ok());
  CHECK(b->ids[0] == Expected(*h->fake, {6, 7}, 5));
  auto c = h->Add(Greedy({9}, 3));
  h->StepUntil([&] { return c->finished(); });
  CHECK(c->ids[0] == Expected(*h->fake, {9}, 3));
  CHECK(h->free_blocks() == h->total_blocks());
  CHECK(h->core->num_active() == 0);
  CHECK(h->listener.released.size() == 3);
}

TEST_CASE("a failure in a shared step fails every request of it and leaks nothing", "[core]") {
  auto h = Make({.fail_at_step = 2});
  std::vector<std::shared_ptr<Sink>> sinks;
  for (int i = 0; i < 4; ++i) sinks.push_back(h->Add(Greedy({3 + i, 4}, 6)));
  h->core->Step(h->clock.Now());
  CHECK(h->free_blocks() < h->total_blocks());
  h->core->Step(h->clock.Now());  // fails
  for (const auto& sink : sinks) {
    REQUIRE(sink->finished());
    CHECK(sink->finish().status.code() == absl::StatusCode::kInternal);
  }
  CHECK(h->free_blocks() == h->total_blocks());
  CHECK_FALSE(h->core->has_work());
  auto next = h->Add(Greedy({3, 4}, 6));
  h->StepUntil([&] { return next->finished(); });
  CHECK(next->finish().status.ok());
  CHECK(next->ids[0] == Expected(*h->fake, {3, 4}, 6));
}

TEST_CASE("a refused request ends at once with one error event", "[core]") {
  // Two blocks of 16 cannot hold 40 tokens: the scheduler refuses it.
  auto h = Make({.num_kv_blocks = 2, .block_size = 16});
  auto sink = h->Add(Greedy({3, 4}, 38));
  REQUIRE(sink->finishes.size() == 1);
  CHECK(sink->finish().reason == FinishReason::kError);
  CHECK(sink->finish().status.code() == absl::StatusCode::kInvalidArgument);
  CHECK(h->listener.dequeued == 1);
  CHECK(h->listener.released == std::vector<std::string>{"r1"});
  CHECK_FALSE(h->core->has_work());
}

}  // namespace
}  // namespace kestrel::engine

// Named scheduler scenarios with their exact step-by-step timelines, plus the
// failure paths (rejections, full queue, deadlines, bad Update input).
//
// Timeline notation, one string per step, sequences in batch order:
//   "A p0-29"  A computes a prefill chunk covering positions [0, 29)
//   "A d8"     A decodes the token at position 8
//   "*"        the entry samples
//   "-B"       B was preempted in this step
//   "xB"       B ended in this step (deadline)
#include "scheduler/scheduler.h"

#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kestrel::scheduler {
namespace {

std::vector<TokenId> Tokens(int n, TokenId start) {
  std::vector<TokenId> t(n);
  for (int i = 0; i < n; ++i) t[i] = start + i;
  return t;
}

// Drives a scheduler with a fake runner: every sampling sequence gets token
// 5000 + its position (+ 100 per sample index for forks) and never an EOS.
class Driver {
 public:
  explicit Driver(const Scheduler::Options& o) {
    auto s = Scheduler::Create(o);
    REQUIRE(s.ok());
    sched = std::move(s).value();
  }

  // Adds a request named by one letter; the name doubles as its id.
  void Add(char name, std::vector<TokenId> prompt, int max_tokens,
           int priority = 0, int n = 1) {
    Request r;
    r.id = static_cast<RequestId>(name);
    r.prompt_token_ids = std::move(prompt);
    r.max_tokens = max_tokens;
    r.priority = priority;
    r.n = n;
    REQUIRE(sched->AddRequest(std::move(r)).ok());
  }

  // Runs Step; returns the timeline line. Update is left to Finish so tests
  // can act between the two.
  std::string Plan(absl::Time now = absl::UnixEpoch()) {
    REQUIRE(sched->Step(now, &out).ok());
    REQUIRE(sched->CheckInvariants().ok());
    std::vector<std::string> parts;
    for (const ScheduledSequence& s : out.scheduled) {
      std::string name(1, static_cast<char>(s.request_id));
      if (s.sample_index > 0) absl::StrAppend(&name, s.sample_index);
      const int end = s.position_offset + static_cast<int>(s.token_ids.size());
      std::string part = s.is_prefill
                             ? absl::StrCat(name, " p", s.position_offset, "-", end)
                             : absl::StrCat(name, " d", s.position_offset);
      if (s.samples) part += "*";
      parts.push_back(part);
    }
    for (SequenceId id : out.preempted) parts.push_back(absl::StrCat("-", NameOf(id)));
    for (const FinishedSequence& f : out.finished) {
      parts.push_back(absl::StrCat("x", std::string(1, static_cast<char>(f.request_id))));
    }
    for (const ScheduledSequence& s : out.scheduled) {
      names[s.seq_id] = std::string(1, static_cast<char>(s.request_id));
    }
    return absl::StrJoin(parts, " ");
  }

  std::vector<FinishedSequence> Finish() {
    std::vector<SampledToken> sampled;
    for (const ScheduledSequence& s : out.scheduled) {
      const int pos = s.position_offset + static_cast<int>(s.token_ids.size());
      for (int i = 0; i < s.num_samples; ++i) {
        sampled.push_back({s.seq_id, 5000 + pos + 100 * (s.sample_index + i), false});
        generated[s.seq_id].push_back(sampled.back().token_id);
      }
    }
    auto finished = sched->Update(sampled);
    REQUIRE(finished.ok());
    REQUIRE(sched->CheckInvariants().ok());
    for (const auto& f : *finished) done.push_back(f);
    return *finished;
  }

  std::string StepLine(absl::Time now = absl::UnixEpoch()) {
    std::string line = Plan(now);
    Finish();
    return line;
  }

  std::string NameOf(SequenceId id) {
    auto it = names.find(id);
    return it == names.end() ? "?" : it->second;
  }

  std::unique_ptr<Scheduler> sched;
  StepOutput out;
  std::map<SequenceId, std::string> names;
  std::map<SequenceId, std::vector<TokenId>> generated;
  std::vector<FinishedSequence> done;
};

Scheduler::Options SmallOptions() {
  Scheduler::Options o;
  o.num_kv_blocks = 64;
  o.block_size = 16;
  o.max_num_batched_tokens = 32;
  o.max_num_seqs = 4;
  o.watermark = 0;
  return o;
}

TEST_CASE("Chunked prefill of a 100-token prompt beside 3 decodes, budget 32") {
  Driver d(SmallOptions());
  d.Add('A', Tokens(8, 100), 10);
  d.Add('B', Tokens(8, 200), 10);
  d.Add('C', Tokens(8, 300), 10);
  CHECK(d.StepLine() == "A p0-8* B p0-8* C p0-8*");
  d.Add('D', Tokens(100, 1000), 2);
  CHECK(d.StepLine() == "A d8* B d8* C d8* D p0-29");
  CHECK(d.out.num_batched_tokens == 32);
  CHECK(d.StepLine() == "A d9* B d9* C d9* D p29-58");
  CHECK(d.StepLine() == "A d10* B d10* C d10* D p58-87");
  CHECK(d.StepLine() == "A d11* B d11* C d11* D p87-100*");
  CHECK(d.out.num_batched_tokens == 16);
  CHECK(d.out.num_prefill_tokens == 13);
  CHECK(d.StepLine() == "A d12* B d12* C d12* D d100*");
  REQUIRE(d.done.size() == 1);
  CHECK(d.done[0].request_id == 'D');
  CHECK(d.done[0].reason == FinishReason::kLength);
  CHECK(d.done[0].num_output_tokens == 2);
  // Block tables cover every position the step writes.
  CHECK(d.StepLine() == "A d13* B d13* C d13*");
}

Scheduler::Options TinyPool(bool caching) {
  Scheduler::Options o;
  o.num_kv_blocks = 6;
  o.block_size = 4;
  o.max_num_batched_tokens = 64;
  o.max_num_seqs = 4;
  o.watermark = 0;
  o.enable_prefix_caching = caching;
  return o;
}

TEST_CASE("Preemption frees the latest arrival, which recomputes and finishes") {
  const bool caching = GENERATE(false, true);
  Driver d(TinyPool(caching));
  d.Add('A', Tokens(6, 100), 8);   // 13 tokens of KV at most: 4 blocks
  d.Add('B', Tokens(6, 200), 10);  // 15 tokens: 4 blocks; 8 > 6 together
  CHECK(d.StepLine() == "A p0-6* B p0-6*");
  CHECK(d.StepLine() == "A d6* B d6*");
  CHECK(d.StepLine() == "A d7* B d7*");
  CHECK(d.StepLine() == "A d8* B d8*");  // third block each: pool now empty
  CHECK(d.sched->block_manager().num_free_blocks() == 0);
  CHECK(d.StepLine() == "A d9* B d9*");
  CHECK(d.StepLine() == "A d10* B d10*");
  CHECK(d.StepLine() == "A d11* B d11*");
  // A needs a fourth block: B (latest arrival) loses its three; nothing new
  // is admitted in a step that preempted.
  CHECK(d.StepLine() == "A d12* -B");
  REQUIRE(d.out.preempted.size() == 1);
  const SequenceId b = d.out.preempted[0];
  CHECK(d.generated[b].size() == 7);
  CHECK(d.sched->stats().preemptions == 1);
  REQUIRE(d.done.size() == 1);
  CHECK(d.done[0].request_id == 'A');
  CHECK(d.done[0].num_output_tokens == 8);

  // B recomputes prompt + its 7 generated tokens. With prefix caching its
  // first two full blocks are still cached (A evicted the third), so only
  // positions [8, 13) are computed again.
  const std::string recompute = d.Plan();
  CHECK(recompute == (caching ? "B p8-13*" : "B p0-13*"));
  REQUIRE(d.out.scheduled.size() == 1);
  const ScheduledSequence& s = d.out.scheduled[0];
  CHECK(s.seq_id == b);
  std::vector<TokenId> expected = Tokens(6, 200);
  expected.insert(expected.end(), d.generated[b].begin(), d.generated[b].end());
  REQUIRE(expected.size() == 13);
  CHECK(std::vector<TokenId>(s.token_ids.begin(), s.token_ids.end()) ==
        std::vector<TokenId>(expected.begin() + s.position_offset, expected.end()));
  CHECK(d.out.num_prefix_cached_tokens == (caching ? 8 : 0));
  d.Finish();
  CHECK(d.StepLine() == "B d13*");
  CHECK(d.StepLine() == "B d14*");
  REQUIRE(d.done.size() == 2);
  CHECK(d.done[1].request_id == 'B');
  CHECK(d.done[1].reason == FinishReason::kLength);
  CHECK(d.done[1].num_output_tokens == 10);
  CHECK(d.generated[b].size() == 10);
  CHECK(d.sched->block_manager().num_used_blocks() == 0);
  CHECK_FALSE(d.sched->has_work());
}

TEST_CASE("Under kPriority the victim is the lowest priority, not the latest arrival") {
  Scheduler::Options o = TinyPool(false);
  o.policy = SchedulingPolicy::kPriority;
  Driver d(o);
  d.Add('L', Tokens(4, 100), 12, /*priority=*/0);
  CHECK(d.StepLine() == "L p0-4*");
  d.Add('H', Tokens(8, 200), 8, /*priority=*/5);
  // H runs first from now on (higher priority) even though it arrived later.
  CHECK(d.StepLine() == "L d4* H p0-8*");
  CHECK(d.StepLine() == "H d8* L d5*");
  CHECK(d.StepLine() == "H d9* L d6*");
  CHECK(d.StepLine() == "H d10* L d7*");
  CHECK(d.StepLine() == "H d11* L d8*");  // pool full: L 3 blocks, H 3
  // H needs a fourth block; L is the victim although it arrived first.
  CHECK(d.StepLine() == "H d12* -L");
  CHECK(d.StepLine() == "H d13*");
  CHECK(d.StepLine() == "H d14*");  // H's 8th token: done
  CHECK(d.StepLine() == "L p0-10*");  // 4 prompt + 6 generated, recomputed
  CHECK(d.StepLine() == "L d10*");
  CHECK(d.StepLine() == "L d11*");
  CHECK(d.StepLine() == "L d12*");
  CHECK(d.StepLine() == "L d13*");
  CHECK(d.StepLine() == "L d14*");  // L's 12th token
  CHECK_FALSE(d.sched->has_work());
  REQUIRE(d.done.size() == 2);
  CHECK(d.done[1].num_output_tokens == 12);
}

TEST_CASE("Abort mid-prefill, mid-decode, in flight and while waiting returns every block") {
  Scheduler::Options o;
  o.num_kv_blocks = 32;
  o.block_size = 4;
  o.max_num_batched_tokens = 16;
  o.max_num_seqs = 4;
  o.watermark = 0;
  Driver d(o);
  d.Add('B', Tokens(4, 100), 50);
  d.Add('A', Tokens(40, 200), 5);
  CHECK(d.StepLine() == "B p0-4* A p0-12");
  CHECK(d.StepLine() == "B d4* A p12-27");
  const BlockManager& bm = d.sched->block_manager();
  CHECK(bm.num_used_blocks() == 2 + 7);  // B: 5 tokens, A: 27 tokens
  REQUIRE(d.sched->Abort('A').ok());     // mid-prefill
  CHECK(bm.num_used_blocks() == 2);
  CHECK(d.StepLine() == "B d5*");
  REQUIRE(d.sched->Abort('B').ok());  // mid-decode
  CHECK(bm.num_used_blocks() == 0);
  CHECK(bm.num_free_blocks() == 32);
  CHECK(d.sched->Abort('B').code() == absl::StatusCode::kNotFound);

  // In flight: aborted between Step and Update; its sample is ignored.
  d.Add('C', Tokens(4, 300), 5);
  CHECK(d.Plan() == "C p0-4*");
  REQUIRE(d.sched->Abort('C').ok());
  CHECK(bm.num_used_blocks() == 0);
  CHECK(d.Finish().empty());

  // Waiting: never admitted.
  d.Add('E', Tokens(4, 400), 5);
  REQUIRE(d.sched->Abort('E').ok());
  CHECK(d.sched->num_waiting() == 0);
  CHECK(d.StepLine().empty());
  CHECK_FALSE(d.sched->has_work());
  REQUIRE(d.sched->CheckInvariants().ok());
}

TEST_CASE("Two requests sharing a 48-token prefix: the second reuses 3 blocks") {
  Scheduler::Options o = SmallOptions();
  o.max_num_batched_tokens = 256;
  Driver d(o);
  std::vector<TokenId> a = Tokens(48, 1);
  std::vector<TokenId> b = a;
  for (TokenId t : Tokens(8, 500)) a.push_back(t);
  for (TokenId t : Tokens(8, 900)) b.push_back(t);
  d.Add('A', a, 4);
  CHECK(d.StepLine() == "A p0-56*");
  CHECK(d.out.num_prefix_cached_tokens == 0);
  d.Add('B', b, 4);
  CHECK(d.Plan() == "A d56* B p48-56*");
  CHECK(d.out.num_prefix_cached_tokens == 48);
  const auto ta = d.out.scheduled[0].block_table;
  const auto tb = d.out.scheduled[1].block_table;
  REQUIRE(tb.size() == 4);
  CHECK(std::vector<BlockId>(ta.begin(), ta.begin() + 3) ==
        std::vector<BlockId>(tb.begin(), tb.begin() + 3));
  CHECK(ta[3] != tb[3]);
  d.Finish();
  const auto& c = d.sched->block_manager().counters();
  CHECK(c.prefix_query_blocks == 6);  // 3 eligible full blocks each
  CHECK(c.prefix_hit_blocks == 3);
  CHECK(d.sched->stats().prefix_cached_tokens == 48);
  CHECK(d.sched->stats().prefill_tokens == 56 + 8);
}

TEST_CASE("Priority admission runs a later high-priority request first") {
  Scheduler::Options o = SmallOptions();
  o.max_num_seqs = 2;
  o.policy = SchedulingPolicy::kPriority;
  Driver d(o);
  d.Add('L', Tokens(4, 100), 3, /*priority=*/0);
  d.Add('M', Tokens(4, 200), 3, /*priority=*/0);
  d.Add('H', Tokens(4, 300), 2, /*priority=*/5);
  CHECK(d.StepLine() == "H p0-4* L p0-4*");
  CHECK(d.StepLine() == "H d4* L d4*");  // H ends: 2 tokens
  CHECK(d.StepLine() == "L d5* M p0-4*");
  CHECK(d.StepLine() == "M d4*");
  CHECK(d.StepLine() == "M d5*");
  CHECK_FALSE(d.sched->has_work());

  SECTION("FCFS ignores priority") {
    Scheduler::Options f = SmallOptions();
    f.max_num_seqs = 2;
    Driver e(f);
    e.Add('L', Tokens(4, 100), 3, 0);
    e.Add('M', Tokens(4, 200), 3, 0);
    e.Add('H', Tokens(4, 300), 2, 5);
    CHECK(e.StepLine() == "L p0-4* M p0-4*");
  }
}

TEST_CASE("n > 1 forks at the first sample and copies the shared block on write") {
  Scheduler::Options o = TinyPool(true);
  o.num_kv_blocks = 16;
  Driver d(o);
  d.Add('A', Tokens(6, 100), 3, 0, /*n=*/3);
  CHECK(d.Plan() == "A p0-6*");
  CHECK(d.out.scheduled[0].num_samples == 3);
  d.Finish();
  CHECK(d.sched->num_running() == 3);
  CHECK(d.sched->block_manager().num_used_blocks() == 2);  // all shared
  CHECK(d.Plan() == "A d6* A1 d6* A2 d6*");
  // Block 1 (positions 4..7) is shared by three writers: two copy, the last
  // writes in place. Block 0 stays shared.
  CHECK(d.out.block_copies.size() == 2);
  CHECK(d.out.scheduled[0].block_table[0] == d.out.scheduled[2].block_table[0]);
  CHECK(d.out.scheduled[0].block_table[1] != d.out.scheduled[1].block_table[1]);
  d.Finish();
  CHECK(d.StepLine() == "A d7* A1 d7* A2 d7*");
  REQUIRE(d.done.size() == 3);
  for (const auto& f : d.done) CHECK(f.num_output_tokens == 3);
  CHECK(d.sched->num_requests() == 0);
  CHECK(d.sched->block_manager().num_used_blocks() == 0);
}

TEST_CASE("An unforked n > 1 request reserves its future sequence slots") {
  Driver d(SmallOptions());  // max_num_seqs 4, budget 32
  d.Add('A', Tokens(20, 100), 2, 0, /*n=*/3);
  d.Add('B', Tokens(4, 200), 2);
  d.Add('C', Tokens(4, 300), 2);
  // A holds 1 + 2 reserved slots, B the fourth: C waits though only 2 run.
  CHECK(d.StepLine() == "A p0-20* B p0-4*");
  CHECK(d.sched->num_running() == 4);
  CHECK(d.StepLine() == "A d20* A1 d20* A2 d20* B d4*");
  CHECK(d.StepLine() == "C p0-4*");
}

TEST_CASE("Without chunked prefill a prompt waits for a step it fits whole") {
  Scheduler::Options o = SmallOptions();  // budget 32
  o.enable_chunked_prefill = false;
  Driver d(o);
  d.Add('A', Tokens(20, 100), 4);
  d.Add('B', Tokens(20, 200), 4);
  CHECK(d.StepLine() == "A p0-20*");  // B would get only 12 tokens
  CHECK(d.StepLine() == "A d20* B p0-20*");
  Request r;
  r.id = 'C';
  r.prompt_token_ids = Tokens(30, 1);
  r.max_tokens = 4;  // a recompute could need 33 tokens in one step
  CHECK_THAT(std::string(d.sched->AddRequest(r).message()),
             Catch::Contains("beyond max_num_batched_tokens 32 with chunked prefill off"));
}

TEST_CASE("Stop conditions reported by the caller end sequences") {
  Scheduler::Options o = SmallOptions();
  auto s = Scheduler::Create(o);
  REQUIRE(s.ok());
  Scheduler& sched = **s;
  Request r;
  r.prompt_token_ids = {1, 2, 3};
  r.max_tokens = 100;
  r.eos_token_id = 2;
  r.stop_token_ids = {77};
  for (RequestId id : {1, 2, 3, 4}) {
    r.id = id;
    REQUIRE(sched.AddRequest(r).ok());
  }
  StepOutput out;
  REQUIRE(sched.Step(absl::UnixEpoch(), &out).ok());
  REQUIRE(out.scheduled.size() == 4);
  std::vector<SampledToken> sampled = {{out.scheduled[0].seq_id, 2, false},
                                       {out.scheduled[1].seq_id, 77, false},
                                       {out.scheduled[2].seq_id, 9, true},
                                       {out.scheduled[3].seq_id, 9, false}};
  auto finished = sched.Update(sampled);
  REQUIRE(finished.ok());
  REQUIRE(finished->size() == 3);
  CHECK((*finished)[0].reason == FinishReason::kEos);
  CHECK((*finished)[1].reason == FinishReason::kStopToken);
  CHECK((*finished)[2].reason == FinishReason::kStopString);
  CHECK(sched.num_running() == 1);
}

TEST_CASE("Deadlines passed into Step end waiting and running requests") {
  Driver d(SmallOptions());
  const absl::Time t0 = absl::UnixEpoch();
  Request r;
  r.id = 'A';
  r.prompt_token_ids = Tokens(4, 1);
  r.max_tokens = 50;
  r.deadline = t0 + absl::Seconds(2);
  REQUIRE(d.sched->AddRequest(r).ok());
  CHECK(d.StepLine(t0) == "A p0-4*");
  CHECK(d.StepLine(t0 + absl::Seconds(1)) == "A d4*");
  CHECK(d.StepLine(t0 + absl::Seconds(2)) == "xA");
  CHECK(d.out.finished[0].reason == FinishReason::kDeadline);
  CHECK(d.out.finished[0].num_output_tokens == 2);
  CHECK(d.sched->block_manager().num_used_blocks() == 0);
  // The id may be reused; the stale deadline entry is ignored.
  r.deadline = absl::InfiniteFuture();
  REQUIRE(d.sched->AddRequest(r).ok());
  CHECK(d.StepLine(t0 + absl::Seconds(3)) == "A p0-4*");
}

TEST_CASE("AddRequest rejects requests that can never fit, naming the field") {
  Scheduler::Options o = TinyPool(true);  // 6 blocks of 4: 24 tokens of KV
  o.max_model_len = 30;
  o.max_waiting_sequences = 2;
  auto s = Scheduler::Create(o);
  REQUIRE(s.ok());
  Scheduler& sched = **s;
  Request r;
  r.id = 1;
  r.prompt_token_ids = Tokens(20, 1);
  r.max_tokens = 6;  // 25 tokens of KV: 7 blocks
  absl::Status st = sched.AddRequest(r);
  CHECK(st.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(st.message()) ==
        "request.max_tokens: prompt length 20 + max_tokens 6 needs 7 KV blocks "
        "of 4 tokens, but the pool has only 6 (request 1)");
  r.max_tokens = 11;
  st = sched.AddRequest(r);
  CHECK_THAT(std::string(st.message()),
             Catch::Contains("prompt length 20 + max_tokens 11 = 31 exceeds max_model_len 30"));
  r.max_tokens = 5;  // exactly 24 tokens of KV: fits
  REQUIRE(sched.AddRequest(r).ok());
  CHECK(sched.AddRequest(r).code() == absl::StatusCode::kAlreadyExists);
  r.n = 5;
  r.id = 2;
  CHECK_THAT(std::string(sched.AddRequest(r).message()),
             Catch::Contains("request.n must be <= max_num_seqs (4), got 5"));
  r.n = 1;
  REQUIRE(sched.AddRequest(r).ok());
  r.id = 3;
  st = sched.AddRequest(r);
  CHECK(st.code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(st.message()), Catch::Contains("max_waiting_sequences 2"));
  CHECK(sched.stats().requests_rejected == 5);
  r.prompt_token_ids.clear();
  CHECK(sched.AddRequest(r).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Create validates options") {
  Scheduler::Options o = SmallOptions();
  o.max_num_batched_tokens = 2;
  auto s = Scheduler::Create(o);
  REQUIRE_FALSE(s.ok());
  CHECK_THAT(std::string(s.status().message()),
             Catch::Contains("max_num_batched_tokens must be >= max_num_seqs (4), got 2"));
  o = SmallOptions();
  o.num_kv_blocks = 0;
  CHECK_FALSE(Scheduler::Create(o).ok());
  o = SmallOptions();
  o.watermark = 1.5;
  CHECK_THAT(std::string(Scheduler::Create(o).status().message()),
             Catch::Contains("watermark must be in [0, 1), got 1.5"));
}

TEST_CASE("Step and Update must alternate and Update validates its input") {
  Driver d(SmallOptions());
  CHECK(d.sched->Update({}).status().code() == absl::StatusCode::kFailedPrecondition);
  d.Add('A', Tokens(4, 1), 5);
  CHECK(d.Plan() == "A p0-4*");
  CHECK(d.sched->Step(absl::UnixEpoch(), &d.out).code() ==
        absl::StatusCode::kFailedPrecondition);
  const SequenceId id = d.out.scheduled[0].seq_id;
  // Missing sample.
  CHECK(d.sched->Update({}).status().code() == absl::StatusCode::kInvalidArgument);
  // Too many samples, unknown sequence, negative token: all rejected, and
  // nothing changes, so a correct retry still works.
  std::vector<SampledToken> two = {{id, 1, false}, {id, 2, false}};
  CHECK_THAT(std::string(d.sched->Update(two).status().message()),
             Catch::Contains("sampled.seq_id"));
  std::vector<SampledToken> unknown = {{id + 99, 1, false}};
  CHECK_FALSE(d.sched->Update(unknown).ok());
  std::vector<SampledToken> negative = {{id, -3, false}};
  CHECK_THAT(std::string(d.sched->Update(negative).status().message()),
             Catch::Contains("sampled.token_id must be >= 0, got -3"));
  std::vector<SampledToken> good = {{id, 7, false}};
  REQUIRE(d.sched->Update(good).ok());
  CHECK(d.StepLine() == "A d4*");
}

TEST_CASE("Admission keeps the watermark free unless nothing runs") {
  Scheduler::Options o = TinyPool(false);
  o.num_kv_blocks = 10;
  o.watermark = 0.3;  // 3 blocks
  Driver d(o);
  d.Add('A', Tokens(16, 1), 4);   // 4 blocks
  d.Add('B', Tokens(16, 100), 4);  // 4 more would leave 2 < 3
  CHECK(d.StepLine() == "A p0-16*");
  CHECK(d.StepLine() == "A d16*");
  CHECK(d.sched->num_waiting() == 1);
}

}  // namespace
}  // namespace kestrel::scheduler

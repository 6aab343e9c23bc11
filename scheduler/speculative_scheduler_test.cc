// The scheduler's side of speculative decoding: drafts from prompt lookup
// ride on a decode, take KV slots and budget but never preempt, and Update
// commits (and hashes into the prefix cache) only the accepted tokens,
// returning the blocks reserved for rejected drafts.
#include <memory>
#include <vector>

#include <catch2/catch.hpp>

#include "scheduler/scheduler.h"

namespace kestrel::scheduler {
namespace {

struct Fixture {
  explicit Fixture(int num_blocks, int max_tokens = 10, int spec = 4) {
    Scheduler::Options o;
    o.num_kv_blocks = num_blocks;
    o.block_size = 4;
    o.max_num_batched_tokens = 32;
    o.max_num_seqs = 4;
    o.watermark = 0;
    auto s = Scheduler::Create(o);
    REQUIRE(s.ok());
    sched = std::move(*s);
    Request r;
    r.id = 1;
    r.prompt_token_ids = {1, 2, 3, 4, 5, 6, 1, 2};
    r.max_tokens = max_tokens;
    r.num_speculative_tokens = spec;
    REQUIRE(sched->AddRequest(r).ok());
    // Prefill; the first token is 3, so "1 2 3" occurred before, followed
    // by 4 5 6 1 2.
    REQUIRE(sched->Step(absl::UnixEpoch(), &out).ok());
    REQUIRE(out.scheduled.size() == 1);
    seq = out.scheduled[0].seq_id;
    REQUIRE(sched->Update({{seq, 3, false}}).ok());
  }

  const ScheduledSequence& Plan() {
    REQUIRE(sched->Step(absl::UnixEpoch(), &out).ok());
    REQUIRE(sched->CheckInvariants().ok());
    REQUIRE(out.scheduled.size() == 1);
    return out.scheduled[0];
  }

  absl::StatusOr<std::vector<FinishedSequence>> Report(const std::vector<TokenId>& tokens) {
    std::vector<SampledToken> sampled;
    for (TokenId t : tokens) sampled.push_back({seq, t, false});
    return sched->Update(sampled);
  }

  SequenceSnapshot Snap() const { return sched->Snapshot().at(0); }

  std::unique_ptr<Scheduler> sched;
  StepOutput out;
  SequenceId seq = 0;
};

TEST_CASE("a decode verifies prompt-lookup drafts; a partial acceptance commits its part",
          "[scheduler][speculative]") {
  Fixture f(/*num_blocks=*/8);
  const ScheduledSequence& s = f.Plan();
  CHECK(s.num_draft_tokens == 4);
  CHECK(std::vector<TokenId>(s.token_ids.begin(), s.token_ids.end()) ==
        std::vector<TokenId>{3, 4, 5, 6, 1});
  CHECK(s.position_offset == 8);
  CHECK(s.samples);
  CHECK(s.block_table.size() == 4);  // positions 0..12
  CHECK(f.out.num_draft_tokens == 4);
  CHECK(f.out.num_decode_tokens == 5);
  // Drafts 4 and 5 accepted, 6 rejected in favour of 9.
  auto finished = f.Report({4, 5, 9});
  REQUIRE(finished.ok());
  CHECK(finished->empty());
  REQUIRE(f.sched->CheckInvariants().ok());
  CHECK(f.Snap().num_tokens == 12);    // 8 prompt + 3, 4, 5, 9
  CHECK(f.Snap().num_computed_tokens == 11);  // KV of 3, 4, 5 (not 6, 1)
  // Only blocks of committed tokens enter the cache: [1 2 3 4] [5 6 1 2].
  CHECK(f.sched->block_manager().num_cached_blocks() == 2);
  // The block reserved for positions 12.. went back to the pool.
  CHECK(f.sched->block_manager().BlockTable(f.seq).size() == 3);
  CHECK(f.sched->block_manager().num_free_blocks() == 5);
  CHECK(f.sched->stats().draft_tokens == 4);
}

TEST_CASE("a full acceptance commits every draft and its blocks are cached",
          "[scheduler][speculative]") {
  Fixture f(8);
  f.Plan();
  REQUIRE(f.Report({4, 5, 6, 1, 7}).ok());
  CHECK(f.Snap().num_tokens == 14);
  CHECK(f.Snap().num_computed_tokens == 13);
  CHECK(f.sched->block_manager().num_cached_blocks() == 3);  // [3 4 5 6] too
  REQUIRE(f.sched->CheckInvariants().ok());
}

TEST_CASE("a stop inside an accepted run ends the sequence there", "[scheduler][speculative]") {
  Fixture f(8);
  f.Plan();
  // max_tokens 10: not reached; the caller stops at a stop string on 5.
  std::vector<SampledToken> sampled = {{f.seq, 4, false}, {f.seq, 5, true}, {f.seq, 6, false}};
  auto finished = f.sched->Update(sampled);
  REQUIRE(finished.ok());
  REQUIRE(finished->size() == 1);
  CHECK((*finished)[0].reason == FinishReason::kStopString);
  CHECK((*finished)[0].num_output_tokens == 3);  // 3, 4, 5
  CHECK(f.sched->num_requests() == 0);
  CHECK(f.sched->block_manager().num_free_blocks() == 8);
}

TEST_CASE("max_tokens bounds the drafts", "[scheduler][speculative]") {
  // One token generated; max_tokens 3 leaves room for 1 + 1 more.
  Fixture f(8, /*max_tokens=*/3);
  CHECK(f.Plan().num_draft_tokens == 1);
  auto finished = f.Report({4, 5});
  REQUIRE(finished.ok());
  REQUIRE(finished->size() == 1);
  CHECK((*finished)[0].reason == FinishReason::kLength);
  CHECK((*finished)[0].num_output_tokens == 3);
}

TEST_CASE("drafts take only free blocks and never preempt", "[scheduler][speculative]") {
  // 5 blocks of 4. A (8-token prompt, speculative) and B (7-token prompt)
  // take 2 each; A's drafts (positions 9..12) would need 2 more blocks, but
  // only 1 is free: A decodes plainly and B is not preempted for A's drafts.
  Scheduler::Options o;
  o.num_kv_blocks = 5;
  o.block_size = 4;
  o.max_num_batched_tokens = 32;
  o.max_num_seqs = 4;
  o.watermark = 0;
  auto sched = Scheduler::Create(o);
  REQUIRE(sched.ok());
  Request a;
  a.id = 1;
  a.prompt_token_ids = {1, 2, 3, 4, 5, 6, 1, 2};
  a.max_tokens = 10;
  a.num_speculative_tokens = 4;
  Request b;
  b.id = 2;
  b.prompt_token_ids = {7, 7, 7, 7, 7, 7, 7};
  b.max_tokens = 3;
  REQUIRE((*sched)->AddRequest(a).ok());
  REQUIRE((*sched)->AddRequest(b).ok());
  StepOutput out;
  REQUIRE((*sched)->Step(absl::UnixEpoch(), &out).ok());
  REQUIRE(out.scheduled.size() == 2);
  const SequenceId sa = out.scheduled[0].seq_id, sb = out.scheduled[1].seq_id;
  REQUIRE((*sched)->Update({{sa, 3, false}, {sb, 7, false}}).ok());
  REQUIRE((*sched)->Step(absl::UnixEpoch(), &out).ok());
  REQUIRE((*sched)->CheckInvariants().ok());
  REQUIRE(out.scheduled.size() == 2);
  CHECK(out.scheduled[0].num_draft_tokens == 0);
  CHECK(out.scheduled[0].token_ids.size() == 1);
  CHECK(out.preempted.empty());
  REQUIRE((*sched)->Update({{sa, 4, false}, {sb, 7, false}}).ok());
}

TEST_CASE("Update checks a speculative sequence's token count", "[scheduler][speculative]") {
  Fixture f(8);
  f.Plan();
  CHECK(f.Report({}).status().message() == "sequence 1 expected 1 to 5 sampled tokens, got 0");
  CHECK(f.Report({1, 2, 3, 4, 5, 6}).status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(f.Report({4}).ok());
  CHECK(f.Snap().num_computed_tokens == 9);
}

TEST_CASE("requests without num_speculative_tokens decode one token", "[scheduler][speculative]") {
  Fixture f(8, 10, /*spec=*/0);
  CHECK(f.Plan().num_draft_tokens == 0);
  Request bad;
  bad.id = 2;
  bad.prompt_token_ids = {1};
  bad.num_speculative_tokens = 17;
  REQUIRE(f.Report({4}).ok());
  CHECK(f.sched->AddRequest(bad).message() ==
        "request.num_speculative_tokens must be in [0, 16], got 17 (request 2)");
}

}  // namespace
}  // namespace kestrel::scheduler

// Speculative decoding (prompt lookup) end to end on stories260K: greedy
// tokens equal plain decoding's (the goldens, batches mixing speculative and
// plain requests, a small KV pool with preemption and the prefix cache),
// runs cut where plain decoding stops (max_tokens, stop tokens, EOS after
// min_tokens), and seeded sampled requests keep plain sampling's
// distribution over many seeds.
#include <cmath>
#include <map>

#include <catch2/catch.hpp>

#include "engine/offline.h"
#include "engine/offline_test_util.h"
#include "testing/shared_data.h"

namespace kestrel::engine {
namespace {

namespace fs = std::filesystem;

using testing::Golden;
using testing::ReadGolden;

std::unique_ptr<OfflineEngine> Make(const fs::path& dir, EngineOptions options = {},
                                    uint64_t kv_bytes = 16ull << 20) {
  return testing::MakeLlm(dir, model::KvCacheDType::kAuto, std::move(options), kv_bytes).engine;
}

GenerateParams Greedy(std::vector<int32_t> prompt, int max_tokens, int spec) {
  GenerateParams p;
  p.prompt_ids = std::move(prompt);
  p.sampling.temperature = 0.0f;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  p.num_speculative_tokens = spec;
  return p;
}

// Steps until done, summing the speculative counts.
struct Totals {
  int steps = 0;
  int draft_tokens = 0;
  int accepted = 0;
};

Totals RunAll(OfflineEngine& e) {
  Totals t;
  while (e.has_work()) {
    const EngineCore::StepStats s = e.Step();
    REQUIRE(!s.failed);
    ++t.steps;
    t.draft_tokens += s.draft_tokens;
    t.accepted += s.accepted_draft_tokens;
  }
  return t;
}

std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST_CASE("speculative greedy decoding gives stories260K's golden tokens", "[speculative]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  for (int k : {1, 3, 8}) {
    CAPTURE(k);
    auto e = Make(dir);
    auto i = e->Add(Greedy(g.prompt_ids, 60, k));
    REQUIRE(i.ok());
    const Totals t = RunAll(*e);
    CHECK(e->result(*i).samples[0].token_ids == g.output_ids);
    // The golden output repeats itself, so lookups find drafts and some
    // are accepted: fewer steps than tokens.
    CHECK(t.draft_tokens > 0);
    CHECK(t.accepted > 0);
    CHECK(t.steps < 60);
  }
}

TEST_CASE("a repetitive prompt is decoded in fewer steps with the same tokens", "[speculative]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  // Prompt: the golden text twice; the model goes on quoting it.
  const std::vector<int32_t> prompt = Concat(Concat(g.prompt_ids, g.output_ids), g.output_ids);
  auto plain = Make(dir);
  auto pi = plain->Add(Greedy(prompt, 80, 0));
  REQUIRE(pi.ok());
  const Totals tp = RunAll(*plain);
  auto spec = Make(dir);
  auto si = spec->Add(Greedy(prompt, 80, 4));
  REQUIRE(si.ok());
  const Totals ts = RunAll(*spec);
  CHECK(spec->result(*si).samples[0].token_ids == plain->result(*pi).samples[0].token_ids);
  CHECK(tp.draft_tokens == 0);
  INFO("plain steps " << tp.steps << ", speculative steps " << ts.steps << ", accepted "
                      << ts.accepted << " of " << ts.draft_tokens);
  CHECK(ts.steps < tp.steps);
}

// Requests of several lengths, half speculative, arriving over time beside
// the golden request, under a small token budget (prefill chunks share
// steps with speculative decodes).
TEST_CASE("batches mixing speculative and plain requests give plain greedy tokens",
          "[speculative]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  std::vector<GenerateParams> reqs;
  for (int i = 0; i < 8; ++i) {
    std::vector<int32_t> prompt = g.prompt_ids;
    // Some prompts quote part of the golden output, so drafts get accepted.
    for (int t = 0; t < 5 * i; ++t) prompt.push_back(g.output_ids[t]);
    for (int t = 0; t < i; ++t) prompt.push_back((t * 31 + i * 7) % 500 + 3);
    reqs.push_back(Greedy(prompt, 20 + 5 * i, /*spec=*/i % 2 == 0 ? 0 : 2 + i));
  }
  auto expected_engine = Make(dir);
  std::vector<std::vector<int32_t>> expected;
  for (GenerateParams r : reqs) {
    r.num_speculative_tokens = 0;
    auto res = expected_engine->Generate({r});
    REQUIRE(res.ok());
    expected.push_back((*res)[0].samples[0].token_ids);
  }
  auto e = Make(dir, {.max_num_batched_tokens = 24, .max_num_seqs = 16});
  std::vector<size_t> index;
  for (const GenerateParams& r : reqs) {
    auto i = e->Add(r);
    REQUIRE(i.ok());
    index.push_back(*i);
    e->Step();
  }
  const Totals t = RunAll(*e);
  CHECK(t.accepted > 0);
  for (size_t i = 0; i < reqs.size(); ++i) {
    CAPTURE(i);
    CHECK(e->result(index[i]).samples[0].token_ids == expected[i]);
  }
}

TEST_CASE("a small KV pool preempts speculative requests; tokens stay plain greedy's",
          "[speculative]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  const std::vector<int32_t> prompt = Concat(g.prompt_ids, g.output_ids);
  std::vector<GenerateParams> reqs;
  for (int i = 0; i < 6; ++i) {
    std::vector<int32_t> p = prompt;
    p.resize(prompt.size() - 3 * i);
    reqs.push_back(Greedy(p, 40, i % 3 == 0 ? 0 : 4));
  }
  std::vector<std::vector<int32_t>> expected;
  auto alone = Make(dir);
  for (GenerateParams r : reqs) {
    r.num_speculative_tokens = 0;
    auto res = alone->Generate({r});
    REQUIRE(res.ok());
    expected.push_back((*res)[0].samples[0].token_ids);
  }
  // stories260K's F32 KV takes 5 layers x 2 x 64 floats = 2.5 KiB a token,
  // 40 KiB a 16-token block: 512 KiB holds 12 blocks, while each of the six
  // sequences grows to 7.
  auto e = Make(dir, {}, 512 << 10);
  auto res = e->Generate(reqs);
  REQUIRE(res.ok());
  for (const OfflineResult& r : *res) REQUIRE(r.samples[0].status.ok());
  CHECK(e->core().scheduler().stats().preemptions > 0);
  CHECK(e->core().scheduler().stats().draft_tokens > 0);
  CHECK(e->core().scheduler().stats().prefix_cached_tokens > 0);
  for (size_t i = 0; i < reqs.size(); ++i) {
    CAPTURE(i);
    CHECK((*res)[i].samples[0].token_ids == expected[i]);
  }
  REQUIRE(e->core().scheduler().CheckInvariants().ok());
}

TEST_CASE("accepted runs stop where plain decoding stops", "[speculative]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  const std::vector<int32_t> prompt = Concat(g.prompt_ids, g.output_ids);
  auto plain = Make(dir);
  auto spec = Make(dir);
  // Plain greedy continuation, to pick stop tokens from it.
  auto base = plain->Generate({Greedy(prompt, 40, 0)});
  REQUIRE(base.ok());
  const std::vector<int32_t> cont = (*base)[0].samples[0].token_ids;
  std::vector<GenerateParams> cases;
  for (int max_tokens : {1, 2, 3, 5, 7, 11, 13, 17}) cases.push_back(Greedy(prompt, max_tokens, 4));
  for (int at : {1, 4, 9, 15, 30}) {
    GenerateParams p = Greedy(prompt, 40, 4);
    p.stop_token_ids = {cont[at]};
    cases.push_back(p);
    // Stop tokens are banned below min_tokens.
    p.min_tokens = at + 1;
    cases.push_back(p);
  }
  for (const GenerateParams& c : cases) {
    CAPTURE(c.max_tokens.value_or(-1), c.min_tokens,
            c.stop_token_ids.empty() ? -1 : c.stop_token_ids[0]);
    GenerateParams p = c;
    p.num_speculative_tokens = 0;
    auto want = plain->Generate({p});
    auto got = spec->Generate({c});
    REQUIRE(want.ok());
    REQUIRE(got.ok());
    CHECK((*got)[0].samples[0].token_ids == (*want)[0].samples[0].token_ids);
    CHECK((*got)[0].samples[0].reason == (*want)[0].samples[0].reason);
  }
  CHECK(spec->core().scheduler().stats().draft_tokens > 0);
}

// Two-sample chi-square over the bins with enough counts (equal totals).
double TwoSampleChiSquare(const std::map<int32_t, int>& a, const std::map<int32_t, int>& b,
                          int* dof) {
  std::map<int32_t, std::pair<int, int>> bins;
  std::pair<int, int> rest = {0, 0};
  for (const auto& [t, c] : a) bins[t].first += c;
  for (const auto& [t, c] : b) bins[t].second += c;
  double chi2 = 0;
  *dof = -1;
  auto add = [&](std::pair<int, int> c) {
    chi2 += double(c.first - c.second) * (c.first - c.second) / (c.first + c.second);
    ++*dof;
  };
  for (const auto& [t, c] : bins) {
    if (c.first + c.second < 20) {
      rest.first += c.first;
      rest.second += c.second;
    } else {
      add(c);
    }
  }
  if (rest.first + rest.second > 0) add(rest);
  return chi2;
}

TEST_CASE("seeded sampled requests keep plain sampling's distribution over many seeds",
          "[speculative]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const Golden g = ReadGolden(dir);
  // A prompt that quotes itself, so the later tokens are verified drafts.
  const std::vector<int32_t> prompt = Concat(g.prompt_ids, g.output_ids);
  constexpr int kSeeds = 1500;
  constexpr int kTokens = 4;
  auto generate = [&](int spec, Totals* totals) {
    auto e = Make(dir, {.max_num_seqs = 256});
    std::vector<size_t> index;
    for (int s = 0; s < kSeeds; ++s) {
      GenerateParams p;
      p.prompt_ids = prompt;
      p.sampling = {.temperature = 0.8f, .top_k = 40, .seed = uint64_t(1000 + s)};
      p.max_tokens = kTokens;
      p.ignore_eos = true;
      p.num_speculative_tokens = spec;
      auto i = e->Add(p);
      REQUIRE(i.ok());
      index.push_back(*i);
    }
    *totals = RunAll(*e);
    std::vector<std::map<int32_t, int>> counts(kTokens);
    for (size_t i : index) {
      const auto& ids = e->result(i).samples[0].token_ids;
      REQUIRE(ids.size() == kTokens);
      for (int t = 0; t < kTokens; ++t) ++counts[t][ids[t]];
    }
    return counts;
  };
  Totals plain_totals, spec_totals;
  const auto plain = generate(0, &plain_totals);
  const auto spec = generate(3, &spec_totals);
  // Both branches of the rule ran: drafts accepted and rejected.
  CHECK(spec_totals.accepted > 0);
  CHECK(spec_totals.accepted < spec_totals.draft_tokens);
  for (int t = 1; t < kTokens; ++t) {
    CAPTURE(t);
    int dof = 0;
    const double chi2 = TwoSampleChiSquare(plain[t], spec[t], &dof);
    // Far beyond the 99.99th percentile of chi-square(dof) (mean dof,
    // sd sqrt(2 dof)); accepting every draft moves the counts by hundreds.
    INFO("chi2 " << chi2 << " dof " << dof);
    CHECK(chi2 < dof + 6 * std::sqrt(2.0 * dof) + 10);
  }
}

}  // namespace
}  // namespace kestrel::engine

#include "engine/fake_executor.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/sampling.h"

namespace kestrel::engine {
namespace {

// FNV-1a over the context's token ids, then reduced to a token.
uint64_t HashStep(uint64_t hash, int32_t token) {
  for (int i = 0; i < 4; ++i) {
    hash ^= static_cast<uint8_t>(static_cast<uint32_t>(token) >> (8 * i));
    hash *= 1099511628211ull;
  }
  return hash;
}

constexpr uint64_t kHashSeed = 14695981039346656037ull;

}  // namespace

FakeExecutor::FakeExecutor(const Options& options)
    : options_(options),
      cache_(static_cast<size_t>(options.num_kv_blocks) * options.block_size, -1),
      step_delay_ns_(absl::ToInt64Nanoseconds(options.step_delay)),
      fail_at_step_(options.fail_at_step) {}

int32_t FakeExecutor::Predict(const std::vector<int32_t>& context) const {
  uint64_t hash = kHashSeed;
  for (int32_t token : context) hash = HashStep(hash, token);
  const int64_t range = options_.vocab_size - options_.first_token;
  return options_.first_token + static_cast<int32_t>(hash % static_cast<uint64_t>(range));
}

absl::Status FakeExecutor::Execute(const ExecuteInput& in, ExecuteOutput* out) {
  const scheduler::StepOutput& step = *in.step;
  const int64_t delay_ns = step_delay_ns_.load(std::memory_order_relaxed);
  if (delay_ns > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(delay_ns));
  const int64_t index = steps_.fetch_add(1, std::memory_order_relaxed) + 1;

  const int block_size = options_.block_size;
  const int64_t vocab = options_.vocab_size;
  for (const scheduler::BlockCopy& copy : step.block_copies) {
    for (int i = 0; i < block_size; ++i) {
      cache_[copy.dst * block_size + i] = cache_[copy.src * block_size + i];
    }
  }
  // Reads a context back through the block table, as attention does.
  auto context_of = [&](const scheduler::ScheduledSequence& seq, int end) {
    std::vector<int32_t> context(end);
    for (int pos = 0; pos < end; ++pos) {
      context[pos] = cache_[seq.block_table[pos / block_size] * block_size + pos % block_size];
    }
    return context;
  };
  logits_.clear();
  out->logits.clear();
  std::vector<int32_t> row_of_seq(step.scheduled.size(), -1);
  for (size_t s = 0; s < step.scheduled.size(); ++s) {
    const scheduler::ScheduledSequence& seq = step.scheduled[s];
    const int end = seq.position_offset + static_cast<int>(seq.token_ids.size());
    if (static_cast<int>(seq.block_table.size()) * block_size < end) {
      return absl::InternalError(absl::StrCat("fake executor: block table of sequence ", seq.seq_id,
                                              " covers ", seq.block_table.size() * block_size,
                                              " positions, need ", end));
    }
    for (size_t i = 0; i < seq.token_ids.size(); ++i) {
      const int pos = seq.position_offset + static_cast<int>(i);
      const scheduler::BlockId block = seq.block_table[pos / block_size];
      if (block < 0 || block >= options_.num_kv_blocks) {
        return absl::InternalError(absl::StrCat("fake executor: block id ", block, " out of range"));
      }
      if (seq.token_ids[i] < 0 || seq.token_ids[i] >= vocab) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", seq.token_ids[i], " out of range [0, ", vocab, ")"));
      }
      cache_[block * block_size + pos % block_size] = seq.token_ids[i];
    }
    if (!seq.samples) continue;
    // A sequence verifying drafts gets a row per new token.
    row_of_seq[s] = static_cast<int32_t>(logits_.size() / vocab);
    for (int i = seq.num_draft_tokens; i >= 0; --i) {
      const size_t row = logits_.size() / vocab;
      logits_.resize(logits_.size() + vocab, 0.0f);
      logits_[row * vocab + Predict(context_of(seq, end - i))] = options_.peak_logit;
    }
  }
  const int64_t fail_at = fail_at_step_.load(std::memory_order_relaxed);
  if (fail_at > 0 && index == fail_at) {
    return absl::InternalError(absl::StrCat("fake executor: injected fault at step ", index));
  }
  for (int32_t s : in.return_logits) {
    if (s < 0 || s >= static_cast<int32_t>(step.scheduled.size())) {
      return absl::InvalidArgumentError(absl::StrCat("fake executor: return_logits ", s));
    }
    const scheduler::ScheduledSequence& seq = step.scheduled[s];
    for (size_t i = 0; i < seq.token_ids.size(); ++i) {
      const size_t row = out->logits.size();
      out->logits.resize(row + vocab, 0.0f);
      const int end = seq.position_offset + static_cast<int>(i) + 1;
      out->logits[row + Predict(context_of(seq, end))] = options_.peak_logit;
    }
  }

  rows_.assign(in.samples.begin(), in.samples.end());
  int32_t max_top = 0;
  std::vector<int32_t> used(step.scheduled.size(), 0);
  for (size_t i = 0; i < rows_.size(); ++i) {
    const int32_t s = rows_[i].logits_row;
    if (s < 0 || s >= static_cast<int32_t>(row_of_seq.size()) || row_of_seq[s] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("fake executor: sample ", i, " names sequence ", s, ", which does not sample"));
    }
    const int drafts = step.scheduled[s].num_draft_tokens;
    if (drafts > 0 && used[s] > drafts) {
      return absl::InvalidArgumentError(
          absl::StrCat("fake executor: more than ", drafts + 1, " samples of sequence ", s));
    }
    rows_[i].logits_row = row_of_seq[s] + (drafts > 0 ? used[s]++ : 0);
    max_top = std::max(max_top, rows_[i].num_top_logprobs);
  }
  const size_t n = rows_.size();
  tokens_.assign(n, 0);
  logprobs_.assign(n, 0.0f);
  top_tokens_.assign(n * max_top, 0);
  top_logprobs_.assign(n * max_top, 0.0f);
  kernels::SampleParams p;
  p.logits = logits_.data();
  p.logits_stride = vocab;
  p.num_logits_rows = static_cast<int64_t>(logits_.size()) / vocab;
  p.vocab = vocab;
  p.rows = rows_.data();
  p.num_rows = static_cast<int64_t>(n);
  p.adjust = in.adjust.data();
  p.num_adjust = static_cast<int64_t>(in.adjust.size());
  p.tokens = tokens_.data();
  p.logprobs = logprobs_.data();
  p.top_tokens = top_tokens_.data();
  p.top_logprobs = top_logprobs_.data();
  p.max_top_logprobs = max_top;
  if (absl::Status s = kernels::cpu::Sample(p, nullptr); !s.ok()) return s;
  out->sampled = model::CollectDraws(rows_, tokens_.data(), logprobs_.data(), top_tokens_.data(),
                                     top_logprobs_.data(), max_top);
  return absl::OkStatus();
}

}  // namespace kestrel::engine

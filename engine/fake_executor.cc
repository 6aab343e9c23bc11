#include "engine/fake_executor.h"

#include <thread>

#include "absl/strings/str_cat.h"

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
      step_delay_ns_(absl::ToInt64Nanoseconds(options.step_delay)) {}

int32_t FakeExecutor::Predict(const std::vector<int32_t>& context) const {
  uint64_t hash = kHashSeed;
  for (int32_t token : context) hash = HashStep(hash, token);
  const int64_t range = options_.vocab_size - options_.first_token;
  return options_.first_token + static_cast<int32_t>(hash % static_cast<uint64_t>(range));
}

absl::Status FakeExecutor::Execute(const scheduler::StepOutput& step, std::vector<float>* logits) {
  const int64_t delay_ns = step_delay_ns_.load(std::memory_order_relaxed);
  if (delay_ns > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(delay_ns));
  steps_.fetch_add(1, std::memory_order_relaxed);

  const int block_size = options_.block_size;
  for (const scheduler::BlockCopy& copy : step.block_copies) {
    for (int i = 0; i < block_size; ++i) {
      cache_[copy.dst * block_size + i] = cache_[copy.src * block_size + i];
    }
  }
  logits->clear();
  for (const scheduler::ScheduledSequence& seq : step.scheduled) {
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
      if (seq.token_ids[i] < 0 || seq.token_ids[i] >= options_.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", seq.token_ids[i], " out of range [0, ", options_.vocab_size, ")"));
      }
      cache_[block * block_size + pos % block_size] = seq.token_ids[i];
    }
    if (!seq.samples) continue;
    // Read the whole context back through the block table, as attention does.
    std::vector<int32_t> context(end);
    for (int pos = 0; pos < end; ++pos) {
      context[pos] = cache_[seq.block_table[pos / block_size] * block_size + pos % block_size];
    }
    const size_t row = logits->size();
    logits->resize(row + options_.vocab_size, 0.0f);
    (*logits)[row + Predict(context)] = options_.peak_logit;
  }
  return absl::OkStatus();
}

}  // namespace kestrel::engine

#include "model/generate.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kestrel::model {
namespace {

struct Seq {
  const GenerationRequest* req = nullptr;
  std::unique_ptr<RequestSampler> sampler;
  std::vector<int32_t> tokens;  // prompt + generated
  int64_t cached = 0;           // tokens already in the KV cache
  std::vector<int32_t> blocks;
  bool done = false;
  // Per step:
  int64_t n_new = 0;
};

}  // namespace

absl::StatusOr<std::vector<GenerationResult>> Generate(ModelRunner& runner,
                                                       std::span<const GenerationRequest> requests,
                                                       const GenerateOptions& options,
                                                       GenerateStats* stats) {
  if (options.prefill_chunk < 1 || options.max_step_tokens < 1) {
    return absl::InvalidArgumentError("generate: prefill_chunk and max_step_tokens must be >= 1");
  }
  const ModelConfig& config = runner.config();
  const int64_t bs = runner.block_size();
  std::vector<int32_t> free_blocks;
  for (int64_t b = runner.num_kv_blocks() - 1; b >= 0; --b) free_blocks.push_back(static_cast<int32_t>(b));

  std::vector<Seq> seqs(requests.size());
  std::vector<GenerationResult> results(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const GenerationRequest& r = requests[i];
    if (r.prompt_ids.empty()) return absl::InvalidArgumentError(absl::StrCat("request ", i, ": empty prompt"));
    if (r.max_tokens < 0) {
      return absl::InvalidArgumentError(absl::StrCat("request ", i, ": max_tokens must be >= 0, got ", r.max_tokens));
    }
    if (static_cast<int64_t>(r.prompt_ids.size()) + r.max_tokens > runner.max_context_len()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request ", i, ": prompt (", r.prompt_ids.size(), ") + max_tokens (", r.max_tokens,
          ") exceeds the context length ", runner.max_context_len()));
    }
    seqs[i].req = &r;
    seqs[i].tokens = r.prompt_ids;
    ASSIGN_OR_RETURN(seqs[i].sampler, RequestSampler::Create(r.sampling, config.vocab_size, r.prompt_ids));
    if (r.prompt_logits) results[i].prompt_logits.resize(r.prompt_ids.size() * config.vocab_size);
  }

  std::vector<SequenceInput> batch;
  std::vector<Seq*> in_batch;
  StepOutput out;
  for (int64_t step = 0;; ++step) {
    batch.clear();
    in_batch.clear();
    int64_t budget = options.max_step_tokens;
    bool any_left = false, has_decode = false;
    // Two passes: decodes (one pending token) first, then prefill chunks.
    for (int pass = 0; pass < 2; ++pass) {
      for (Seq& s : seqs) {
        if (s.done) continue;
        any_left = true;
        if (s.req->arrival_step > step) continue;
        const int64_t pending = static_cast<int64_t>(s.tokens.size()) - s.cached;
        if ((pass == 0) != (pending == 1) || budget == 0) continue;
        s.n_new = std::min({pending, options.prefill_chunk, budget});
        budget -= s.n_new;
        has_decode |= pending == 1 && s.cached > 0;
        const int64_t end = s.cached + s.n_new;
        while (static_cast<int64_t>(s.blocks.size()) * bs < end) {
          if (free_blocks.empty()) {
            return absl::ResourceExhaustedError(absl::StrCat(
                "generate: KV cache full (", runner.num_kv_blocks(), " blocks of ", bs, " tokens)"));
          }
          s.blocks.push_back(free_blocks.back());
          free_blocks.pop_back();
        }
        const bool finishes_prompt = end == static_cast<int64_t>(s.tokens.size());
        const bool in_prompt = s.cached < static_cast<int64_t>(s.req->prompt_ids.size());
        LogitsMode mode = LogitsMode::kNone;
        if (s.req->prompt_logits && in_prompt) {
          mode = LogitsMode::kAll;
        } else if (finishes_prompt && s.req->max_tokens > 0) {
          mode = LogitsMode::kLast;
        }
        batch.push_back({.token_ids = {s.tokens.data() + s.cached, static_cast<size_t>(s.n_new)},
                         .position = static_cast<int32_t>(s.cached),
                         .block_table = s.blocks,
                         .logits = mode});
        in_batch.push_back(&s);
      }
    }
    if (!any_left) break;
    if (batch.empty()) continue;  // waiting for arrivals

    const auto t0 = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(runner.Step(batch, &out));
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (stats != nullptr) {
      ++stats->steps;
      (has_decode ? stats->decode_seconds : stats->prefill_seconds) += dt;
    }

    for (size_t b = 0; b < batch.size(); ++b) {
      Seq& s = *in_batch[b];
      const size_t idx = static_cast<size_t>(&s - seqs.data());
      GenerationResult& res = results[idx];
      const int64_t prompt_len = static_cast<int64_t>(s.req->prompt_ids.size());
      if (stats != nullptr) {
        (s.cached >= prompt_len ? stats->decode_tokens : stats->prefill_tokens) += s.n_new;
      }
      int32_t last_row = -1;
      if (batch[b].logits == LogitsMode::kAll) {
        for (int64_t i = 0; i < s.n_new; ++i) {
          const auto row = out.row(out.first_row[b] + i);
          std::copy(row.begin(), row.end(),
                    res.prompt_logits.begin() + (s.cached + i) * config.vocab_size);
        }
        last_row = out.first_row[b] + static_cast<int32_t>(s.n_new) - 1;
      } else if (batch[b].logits == LogitsMode::kLast) {
        last_row = out.first_row[b];
      }
      s.cached += s.n_new;
      const bool at_end = s.cached == static_cast<int64_t>(s.tokens.size());
      if (at_end && s.req->max_tokens == 0) {
        s.done = true;
        res.finish_reason = "length";
      } else if (at_end) {
        ASSIGN_OR_RETURN(SampledToken t, s.sampler->Sample(out.row(last_row)));
        s.tokens.push_back(t.token);
        res.output_ids.push_back(t.token);
        res.tokens.push_back(std::move(t));
        const bool eos = s.req->stop_at_eos &&
                         std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(),
                                   res.output_ids.back()) != config.eos_token_ids.end();
        if (eos || static_cast<int64_t>(res.output_ids.size()) >= s.req->max_tokens) {
          s.done = true;
          res.finish_reason = eos ? "stop" : "length";
        }
      }
      if (s.done) {
        free_blocks.insert(free_blocks.end(), s.blocks.rbegin(), s.blocks.rend());
        s.blocks.clear();
      }
    }
  }
  return results;
}

}  // namespace kestrel::model

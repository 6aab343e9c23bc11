// Prompt-lookup draft proposals for speculative decoding (no draft model):
// the tokens that followed the most recent earlier occurrence of a
// sequence's last n tokens. See docs/scheduler.md "Speculative decoding".
#ifndef KESTREL_SCHEDULER_NGRAM_PROPOSER_H_
#define KESTREL_SCHEDULER_NGRAM_PROPOSER_H_

#include <vector>

#include "absl/types/span.h"
#include "scheduler/request.h"

namespace kestrel::scheduler {

struct NgramOptions {
  // The longest and shortest suffix to look up; 1 <= min_n <= max_n.
  int min_n = 1;
  int max_n = 4;
};

// Replaces `draft` with up to `k` proposed continuations of `tokens` (the
// prompt and the output so far): the longest suffix of length in
// [min_n, max_n] that occurs earlier in `tokens` is found, its most recent
// earlier occurrence is chosen, and the k tokens that followed it are
// proposed; where the context ends first, the draft continues the cycle the
// match implies (the context from the match on, repeated). Empty when no
// suffix of length >= min_n occurs earlier.
//
// One backward scan over `tokens`, O(len(tokens) * max_n) at worst, and it
// stops at the first (most recent) occurrence of the full max_n suffix,
// which a repetitive context finds near its end.
// REQUIRES: 1 <= options.min_n <= options.max_n.
void ProposeNgramDraft(absl::Span<const TokenId> tokens, const NgramOptions& options, int k,
                       std::vector<TokenId>* draft);

}  // namespace kestrel::scheduler

#endif  // KESTREL_SCHEDULER_NGRAM_PROPOSER_H_

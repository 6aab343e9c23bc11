#include "scheduler/ngram_proposer.h"

#include <algorithm>

namespace kestrel::scheduler {

void ProposeNgramDraft(absl::Span<const TokenId> tokens, const NgramOptions& options, int k,
                       std::vector<TokenId>* draft) {
  draft->clear();
  const int len = static_cast<int>(tokens.size());
  if (k <= 0 || len < options.min_n + 1) return;
  const int max_n = std::min(options.max_n, len - 1);
  // Candidate occurrences end at `end` (inclusive), before the last token so
  // that at least one token follows. Scanning backward, the first match of
  // a given length is its most recent occurrence; longer matches win.
  int best_len = 0;
  int best_end = -1;
  for (int end = len - 2; end >= 0; --end) {
    int n = 0;
    while (n < max_n && end - n >= 0 && tokens[end - n] == tokens[len - 1 - n]) ++n;
    if (n > best_len) {
      best_len = n;
      best_end = end;
      if (n == max_n) break;
    }
  }
  if (best_len < options.min_n) return;
  // The context from the match on repeats with period P = len - first; past
  // the context's end the draft goes on repeating it (vLLM stops there,
  // which on a short cycle proposes one or two tokens a step).
  const int first = best_end + 1;
  const int period = len - first;
  draft->reserve(static_cast<size_t>(k));
  for (int i = 0; i < k; ++i) {
    draft->push_back(i < period ? tokens[first + i] : (*draft)[i - period]);
  }
}

}  // namespace kestrel::scheduler

// Prompt-lookup proposals: longest suffix first, most recent occurrence,
// k and the end of the context bound the draft, no match gives none.
#include "scheduler/ngram_proposer.h"

#include <vector>

#include <catch2/catch.hpp>

namespace kestrel::scheduler {
namespace {

std::vector<TokenId> Propose(const std::vector<TokenId>& tokens, int k, int min_n = 1,
                             int max_n = 4) {
  std::vector<TokenId> draft = {99};  // replaced
  ProposeNgramDraft(tokens, NgramOptions{.min_n = min_n, .max_n = max_n}, k, &draft);
  return draft;
}

TEST_CASE("the most recent occurrence of the longest suffix is continued", "[ngram]") {
  // Suffix "1 2 3" occurs at 0..2 (followed by 7 8) and its shorter suffix
  // "2 3" more recently at 5..6 (followed by 5): the longer match wins.
  CHECK(Propose({1, 2, 3, 7, 8, 2, 3, 5, 6, 1, 2, 3}, 2) == std::vector<TokenId>{7, 8});
  // Two occurrences of "4 5": the later one's continuation.
  CHECK(Propose({4, 5, 1, 4, 5, 2, 9, 4, 5}, 3) == std::vector<TokenId>{2, 9, 4});
  // Only 1-grams match: "9" was followed by 3.
  CHECK(Propose({9, 3, 8, 7, 9}, 4) == std::vector<TokenId>{3, 8, 7, 9});
}

TEST_CASE("k and min_n bound the draft; past the context's end it continues the cycle",
          "[ngram]") {
  // "1 2" matched 3 tokens back: the text repeats with period 3.
  CHECK(Propose({1, 2, 3, 1, 2}, 5) == std::vector<TokenId>{3, 1, 2, 3, 1});
  CHECK(Propose({1, 2, 3, 1, 2}, 1) == std::vector<TokenId>{3});
  CHECK(Propose({1, 2, 3, 1, 2}, 0).empty());
  // A repeated token proposes itself, a 2-cycle goes on alternating.
  CHECK(Propose({5, 5, 5, 5}, 3) == std::vector<TokenId>{5, 5, 5});
  CHECK(Propose({8, 1, 2, 1, 2}, 3) == std::vector<TokenId>{1, 2, 1});
  // No earlier occurrence, or only shorter than min_n.
  CHECK(Propose({1, 2, 3, 4}, 3).empty());
  CHECK(Propose({1, 2, 9, 2}, 3, /*min_n=*/2).empty());
  CHECK(Propose({7}, 3).empty());
  CHECK(Propose({}, 3).empty());
}

TEST_CASE("a long repetitive context stops at the most recent full match", "[ngram]") {
  std::vector<TokenId> tokens;
  for (int rep = 0; rep < 2000; ++rep) {
    for (TokenId t = 0; t < 10; ++t) tokens.push_back(t);
  }
  CHECK(Propose(tokens, 4) == std::vector<TokenId>{0, 1, 2, 3});
}

}  // namespace
}  // namespace kestrel::scheduler

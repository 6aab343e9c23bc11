// Streaming detokenization: turns generated ids, one at a time, into text
// deltas that are always complete UTF-8 and that concatenate to exactly
// Tokenizer::Decode of the whole sequence.
#ifndef KESTREL_MODEL_TOKENIZER_INCREMENTAL_DETOKENIZER_H_
#define KESTREL_MODEL_TOKENIZER_INCREMENTAL_DETOKENIZER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer/tokenizer.h"

namespace kestrel::tokenizer {

// How it works: it decodes a short window of recent ids and emits the part
// of the window's text beyond what it already emitted, holding back
//  - trailing U+FFFD (an incomplete UTF-8 sequence that the next byte-level
//    token may complete), and
//  - a trailing run of "<0xAB>" byte-fallback tokens (the reference turns a
//    whole run into text or into one U+FFFD per byte only once it ends).
// Decoding a window instead of the whole sequence is exact because the
// supported decoders treat only the start (SentencePiece's leading space) and
// the end (Strip with stop) of the text specially, and the window always
// keeps two already-decoded ids in front. The window is cut back to those two
// whenever everything is emitted, so each call costs O(window), not
// O(sequence).
//
//   IncrementalDetokenizer detok(tokenizer.get(), /*skip_special_tokens=*/true);
//   for (int32_t id : generated) send(*detok.Add(id));
//   send(*detok.Finish());
//
// Not thread-safe: one instance per sequence. The tokenizer is not owned and
// must outlive it.
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer* tokenizer, bool skip_special_tokens)
      : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

  // Adds one id; returns the newly complete text (often empty).
  absl::StatusOr<std::string> Add(int32_t id);

  // Flushes whatever was held back (as the whole-sequence decode renders it,
  // e.g. U+FFFD for an unfinished character) and resets the state.
  absl::StatusOr<std::string> Finish();

 private:
  // Window length beyond which a clean window is cut back to one id.
  static constexpr size_t kMaxWindow = 16;

  const Tokenizer* const tokenizer_;  // not owned
  const bool skip_special_tokens_;
  std::vector<int32_t> window_;  // recent ids, starting with already-emitted ones
  size_t emitted_ = 0;           // bytes of Decode(window_) already emitted
};

}  // namespace kestrel::tokenizer

#endif  // KESTREL_MODEL_TOKENIZER_INCREMENTAL_DETOKENIZER_H_

// tokenizer.json "pre_tokenizer" components: they cut each normalized piece
// into words, which the model then tokenizes independently (and which the
// BPE word cache is keyed by). Supported: Sequence, ByteLevel, Split, Digits,
// Metaspace, Whitespace, WhitespaceSplit, Punctuation, CharDelimiterSplit,
// BertPreTokenizer. Anything else is an Unimplemented error naming it.
#ifndef KESTREL_MODEL_TOKENIZER_PRE_TOKENIZERS_H_
#define KESTREL_MODEL_TOKENIZER_PRE_TOKENIZERS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/tokenizer/json_util.h"

namespace kestrel::tokenizer {

// One piece of the input on its way to the model.
struct Piece {
  std::string text;        // normalized (and pre-tokenized) text
  int32_t token_id = -1;   // >= 0: an added token, already final
  bool at_origin = false;  // begins at offset 0 of the original input
};

// A pre-tokenizer. Implementations are immutable and thread-safe.
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;

  // Splits every piece without a token id into smaller pieces, in place.
  // Empty pieces are dropped, as the reference does.
  virtual absl::Status PreTokenize(std::vector<Piece>* pieces) const = 0;

  static absl::StatusOr<std::unique_ptr<PreTokenizer>> FromJson(const Json& json);
};

}  // namespace kestrel::tokenizer

#endif  // KESTREL_MODEL_TOKENIZER_PRE_TOKENIZERS_H_

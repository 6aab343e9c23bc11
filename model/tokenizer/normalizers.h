// tokenizer.json "normalizer" components: text rewrites applied to each piece
// of the input that is not an added token, before pre-tokenization.
// Supported: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase,
// Strip, StripAccents. Anything else is an Unimplemented error naming it.
#ifndef KESTREL_MODEL_TOKENIZER_NORMALIZERS_H_
#define KESTREL_MODEL_TOKENIZER_NORMALIZERS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/tokenizer/json_util.h"

namespace kestrel::tokenizer {

// A normalizer. Implementations are immutable after construction and
// thread-safe.
class Normalizer {
 public:
  virtual ~Normalizer() = default;

  // Rewrites `text` in place. REQUIRES: `text` is valid UTF-8.
  virtual absl::Status Normalize(std::string* text) const = 0;

  // Builds the normalizer described by `json` (the value of
  // tokenizer.json's "normalizer", or a member of a Sequence).
  static absl::StatusOr<std::unique_ptr<Normalizer>> FromJson(const Json& json);
};

}  // namespace kestrel::tokenizer

#endif  // KESTREL_MODEL_TOKENIZER_NORMALIZERS_H_

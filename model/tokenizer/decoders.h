// tokenizer.json "decoder" components: how token strings become text.
// Supported: ByteLevel, Metaspace, Sequence, Replace, ByteFallback, Fuse,
// Strip. Anything else is an Unimplemented error naming it.
#ifndef KESTREL_MODEL_TOKENIZER_DECODERS_H_
#define KESTREL_MODEL_TOKENIZER_DECODERS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/tokenizer/json_util.h"

namespace kestrel::tokenizer {

// Thread-safe: immutable after construction.
class Decoder {
 public:
  virtual ~Decoder() = default;

  // The reference's decode_chain: rewrites the list of token strings; the
  // text is their concatenation afterwards.
  virtual absl::Status DecodeChain(std::vector<std::string>* tokens) const = 0;

  // True when the decoder turns "<0xAB>" tokens into raw bytes, so a run of
  // them only becomes text once complete (the incremental detokenizer holds
  // such runs back).
  virtual bool HasByteFallback() const { return false; }

  static absl::StatusOr<std::unique_ptr<Decoder>> FromJson(const Json& json);
};

// Parses "<0xAB>" into its byte; -1 for any other token.
int ParseByteToken(const std::string& token);

}  // namespace kestrel::tokenizer

#endif  // KESTREL_MODEL_TOKENIZER_DECODERS_H_

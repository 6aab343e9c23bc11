// tokenizer.json "post_processor" components: what `add_special_tokens`
// adds around an encoded sequence (BOS/EOS for Llama/Mistral-style files).
// Supported: TemplateProcessing, ByteLevel (adds nothing), Sequence,
// BertProcessing, RobertaProcessing. Single sequences only: pair encoding
// is not something an LLM server needs.
#ifndef KESTREL_MODEL_TOKENIZER_POST_PROCESSORS_H_
#define KESTREL_MODEL_TOKENIZER_POST_PROCESSORS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/tokenizer/json_util.h"

namespace kestrel::tokenizer {

// Thread-safe: immutable after construction.
class PostProcessor {
 public:
  virtual ~PostProcessor() = default;

  // Adds the special tokens of a single sequence around `ids`.
  virtual void AddSpecialTokens(std::vector<int32_t>* ids) const = 0;

  static absl::StatusOr<std::unique_ptr<PostProcessor>> FromJson(const Json& json);
};

}  // namespace kestrel::tokenizer

#endif  // KESTREL_MODEL_TOKENIZER_POST_PROCESSORS_H_

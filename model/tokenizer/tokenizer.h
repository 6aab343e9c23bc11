// Kestrel's tokenizer: loads a Hugging Face `tokenizer.json` (plus
// `tokenizer_config.json`) and encodes/decodes exactly as the reference
// `tokenizers` library does. The pipeline, per encode call:
//
//   text -> added tokens split out (AddedVocabulary)
//        -> normalizer on the remaining pieces (normalizers.h)
//        -> pre-tokenizer into words (pre_tokenizers.h)
//        -> BPE per word, through the word cache (bpe_model.h)
//        -> post-processor adds BOS/EOS when asked (post_processors.h)
//
// and decode runs the decoder chain (decoders.h). See docs/tokenizer.md for
// what is supported and the errors unsupported files produce.
#ifndef KESTREL_MODEL_TOKENIZER_TOKENIZER_H_
#define KESTREL_MODEL_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/tokenizer/added_vocabulary.h"
#include "model/tokenizer/bpe_model.h"
#include "model/tokenizer/decoders.h"
#include "model/tokenizer/normalizers.h"
#include "model/tokenizer/post_processors.h"
#include "model/tokenizer/pre_tokenizers.h"

namespace kestrel::tokenizer {

// What tokenizer_config.json says (all optional in the file).
struct TokenizerConfig {
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> unk_token;
  std::optional<std::string> pad_token;
  // Ids of the tokens above, when they exist in the vocabulary.
  std::optional<int32_t> bos_id;
  std::optional<int32_t> eos_id;
  std::optional<int32_t> unk_id;
  std::optional<int32_t> pad_id;
  // Informational: encoding adds exactly what tokenizer.json's
  // post_processor adds, as the reference does. (Transformers rebuilds the
  // post_processor from these flags for Llama; the files agree in practice.)
  bool add_bos_token = false;
  bool add_eos_token = false;
  // The Jinja chat template, verbatim ("" when absent); from
  // tokenizer_config.json or a chat_template.jinja beside it.
  std::string chat_template;
};

struct EncodeOptions {
  // Apply the post-processor (e.g. prepend BOS).
  bool add_special_tokens = true;
  // Recognise special tokens written in the text. Set false for untrusted
  // user text so "<|eot_id|>" typed by a user is tokenized as plain text.
  bool parse_special_tokens = true;
};

// Thread-safe: immutable after loading apart from the BPE word cache, which
// is internally synchronized without a global lock. Share one instance
// between all request threads.
class Tokenizer {
 public:
  struct Options {
    // Words kept in the BPE word cache (0 disables it).
    size_t word_cache_capacity = 100000;
  };

  // Loads DIR/tokenizer.json, DIR/tokenizer_config.json (optional) and
  // DIR/chat_template.jinja (optional).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromDirectory(const std::string& dir,
                                                                      const Options& options);
  // Builds a tokenizer from file contents; `config_json` may be empty.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view tokenizer_json,
                                                             std::string_view config_json,
                                                             const Options& options);

  // Token ids of `text`. InvalidArgument when `text` is not valid UTF-8.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              const EncodeOptions& options) const;

  // Text of `ids`. Ids with no token are skipped, as in the reference.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special_tokens) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The token string of `id` (added tokens first), or nullptr.
  const std::string* IdToToken(int32_t id) const;
  bool IsSpecialToken(int32_t id) const;
  // True for "<0xAB>" tokens when the decoder assembles them into bytes.
  bool IsByteFallbackToken(int32_t id) const;
  // One past the largest token id.
  int32_t vocab_size() const { return vocab_size_; }
  const TokenizerConfig& config() const { return config_; }

 private:
  Tokenizer() = default;
  absl::Status LoadConfig(std::string_view config_json);

  // Constant after construction.
  std::unique_ptr<Normalizer> normalizer_;      // may be null
  std::unique_ptr<PreTokenizer> pre_tokenizer_; // may be null
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PostProcessor> post_processor_;  // may be null
  std::unique_ptr<Decoder> decoder_;               // may be null
  std::unique_ptr<AddedVocabulary> added_;
  std::vector<bool> byte_fallback_token_;  // index = id
  int32_t vocab_size_ = 0;
  TokenizerConfig config_;
};

}  // namespace kestrel::tokenizer

#endif  // KESTREL_MODEL_TOKENIZER_TOKENIZER_H_

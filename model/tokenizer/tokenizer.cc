#include "model/tokenizer/tokenizer.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/tokenizer/json_util.h"
#include "model/tokenizer/unicode_util.h"

namespace kestrel::tokenizer {
namespace {

// A special token in tokenizer_config.json: "<s>", {"content": "<s>", ...}
// or null.
absl::StatusOr<std::optional<std::string>> ConfigToken(const Json& config, std::string_view key) {
  const Json* value = FindField(config, key);
  if (value == nullptr) return std::optional<std::string>();
  if (value->is_string()) return std::optional<std::string>(value->get<std::string>());
  if (value->is_object()) {
    ASSIGN_OR_RETURN(std::string content,
                     GetString(*value, "content", Concat("tokenizer_config.", key)));
    return std::optional<std::string>(std::move(content));
  }
  return absl::InvalidArgumentError(Concat("tokenizer_config.", key,
                                                 " must be a string or an object, got ",
                                                 Describe(*value)));
}

absl::StatusOr<std::unique_ptr<BpeModel>> LoadModel(const Json& root, const Tokenizer::Options& options) {
  const Json* model = FindField(root, "model");
  if (model == nullptr) return absl::InvalidArgumentError("tokenizer.json: missing field \"model\"");
  if (!model->is_object()) {
    return absl::InvalidArgumentError(
        Concat("tokenizer.json: \"model\" must be an object, got ", Describe(*model)));
  }
  std::string type = "BPE";  // files from old versions omit the type of a BPE model
  if (FindField(*model, "type") != nullptr) {
    ASSIGN_OR_RETURN(type, GetString(*model, "type", "model"));
  } else if (FindField(*model, "merges") == nullptr) {
    return absl::InvalidArgumentError("tokenizer.json: model has no \"type\" and no \"merges\"");
  }
  if (type != "BPE") {
    return absl::UnimplementedError(
        Concat("unsupported model type \"", type, "\" (supported: BPE)"));
  }
  BpeModel::Options bpe_options;
  bpe_options.cache_capacity = options.word_cache_capacity;
  return BpeModel::FromJson(*model, bpe_options);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::LoadFromDirectory(const std::string& dir,
                                                                        const Options& options) {
  const std::filesystem::path base(dir);
  ASSIGN_OR_RETURN(std::string tokenizer_json, ReadFileToString(base / "tokenizer.json"));
  std::string config_json;
  std::error_code ec;
  if (std::filesystem::exists(base / "tokenizer_config.json", ec)) {
    ASSIGN_OR_RETURN(config_json, ReadFileToString(base / "tokenizer_config.json"));
  }
  ASSIGN_OR_RETURN(auto tokenizer, FromJson(tokenizer_json, config_json, options));
  if (tokenizer->config_.chat_template.empty() &&
      std::filesystem::exists(base / "chat_template.jinja", ec)) {
    ASSIGN_OR_RETURN(tokenizer->config_.chat_template, ReadFileToString(base / "chat_template.jinja"));
  }
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view tokenizer_json,
                                                               std::string_view config_json,
                                                               const Options& options) {
  ASSIGN_OR_RETURN(const Json root, ParseJson(tokenizer_json, "tokenizer.json"));
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        Concat("tokenizer.json must be a JSON object, got ", Describe(root)));
  }
  auto tokenizer = std::unique_ptr<Tokenizer>(new Tokenizer());
  ASSIGN_OR_RETURN(tokenizer->model_, LoadModel(root, options));
  if (const Json* j = FindField(root, "normalizer"); j != nullptr) {
    ASSIGN_OR_RETURN(tokenizer->normalizer_, Normalizer::FromJson(*j));
  }
  if (const Json* j = FindField(root, "pre_tokenizer"); j != nullptr) {
    ASSIGN_OR_RETURN(tokenizer->pre_tokenizer_, PreTokenizer::FromJson(*j));
  }
  if (const Json* j = FindField(root, "post_processor"); j != nullptr) {
    ASSIGN_OR_RETURN(tokenizer->post_processor_, PostProcessor::FromJson(*j));
  }
  if (const Json* j = FindField(root, "decoder"); j != nullptr) {
    ASSIGN_OR_RETURN(tokenizer->decoder_, Decoder::FromJson(*j));
  }
  std::vector<AddedToken> added;
  if (FindField(root, "added_tokens") != nullptr) {
    ASSIGN_OR_RETURN(const Json* list, GetArray(root, "added_tokens", "tokenizer.json"));
    for (size_t i = 0; i < list->size(); ++i) {
      ASSIGN_OR_RETURN(AddedToken token, ParseAddedToken((*list)[i], i));
      if (token.id >= (int32_t{1} << 24)) {
        return absl::InvalidArgumentError(
            Concat("added_tokens[", i, "].id is too large: ", token.id));
      }
      added.push_back(std::move(token));
    }
  }
  int32_t vocab_size = tokenizer->model_->id_limit();
  for (const AddedToken& token : added) vocab_size = std::max(vocab_size, token.id + 1);
  tokenizer->vocab_size_ = vocab_size;
  ASSIGN_OR_RETURN(tokenizer->added_,
                   AddedVocabulary::Create(std::move(added), tokenizer->normalizer_.get()));

  tokenizer->byte_fallback_token_.assign(vocab_size, false);
  if (tokenizer->decoder_ != nullptr && tokenizer->decoder_->HasByteFallback()) {
    for (int32_t id = 0; id < vocab_size; ++id) {
      const std::string* token = tokenizer->IdToToken(id);
      tokenizer->byte_fallback_token_[id] = token != nullptr && ParseByteToken(*token) >= 0;
    }
  }
  RETURN_IF_ERROR(tokenizer->LoadConfig(config_json));
  return tokenizer;
}

absl::Status Tokenizer::LoadConfig(std::string_view config_json) {
  if (config_json.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(const Json config, ParseJson(config_json, "tokenizer_config.json"));
  if (!config.is_object()) {
    return absl::InvalidArgumentError(
        Concat("tokenizer_config.json must be a JSON object, got ", Describe(config)));
  }
  ASSIGN_OR_RETURN(config_.bos_token, ConfigToken(config, "bos_token"));
  ASSIGN_OR_RETURN(config_.eos_token, ConfigToken(config, "eos_token"));
  ASSIGN_OR_RETURN(config_.unk_token, ConfigToken(config, "unk_token"));
  ASSIGN_OR_RETURN(config_.pad_token, ConfigToken(config, "pad_token"));
  if (config_.bos_token) config_.bos_id = TokenToId(*config_.bos_token);
  if (config_.eos_token) config_.eos_id = TokenToId(*config_.eos_token);
  if (config_.unk_token) config_.unk_id = TokenToId(*config_.unk_token);
  if (config_.pad_token) config_.pad_id = TokenToId(*config_.pad_token);
  ASSIGN_OR_RETURN(config_.add_bos_token,
                   GetBoolOr(config, "add_bos_token", false, "tokenizer_config"));
  ASSIGN_OR_RETURN(config_.add_eos_token,
                   GetBoolOr(config, "add_eos_token", false, "tokenizer_config"));
  if (const Json* tmpl = FindField(config, "chat_template"); tmpl != nullptr) {
    if (tmpl->is_string()) {
      config_.chat_template = tmpl->get<std::string>();
    } else if (tmpl->is_array()) {
      // Named templates: [{"name": "default", "template": "..."}, ...].
      for (const Json& item : *tmpl) {
        ASSIGN_OR_RETURN(std::string name,
                         GetStringOr(item, "name", "", "tokenizer_config.chat_template[]"));
        if (name == "default") {
          ASSIGN_OR_RETURN(config_.chat_template,
                           GetString(item, "template", "tokenizer_config.chat_template[]"));
        }
      }
    } else {
      return absl::InvalidArgumentError(Concat(
          "tokenizer_config.chat_template must be a string or a list, got ", Describe(*tmpl)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       const EncodeOptions& options) const {
  if (!IsValidUtf8(text)) return absl::InvalidArgumentError("text to encode is not valid UTF-8");
  std::vector<Piece> pieces;
  RETURN_IF_ERROR(added_->ExtractAndNormalize(text, normalizer_.get(),
                                              options.parse_special_tokens, &pieces));
  if (pre_tokenizer_ != nullptr) RETURN_IF_ERROR(pre_tokenizer_->PreTokenize(&pieces));
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  for (const Piece& piece : pieces) {
    if (piece.token_id >= 0) {
      ids.push_back(piece.token_id);
    } else {
      RETURN_IF_ERROR(model_->Tokenize(piece.text, &ids));
    }
  }
  if (options.add_special_tokens && post_processor_ != nullptr) {
    post_processor_->AddSpecialTokens(&ids);
  }
  return ids;
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids,
                                              bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const std::string* token = IdToToken(id);
    if (token == nullptr) continue;
    if (skip_special_tokens && IsSpecialToken(id)) continue;
    tokens.push_back(*token);
  }
  if (decoder_ == nullptr) return absl::StrJoin(tokens, " ");
  RETURN_IF_ERROR(decoder_->DecodeChain(&tokens));
  return absl::StrJoin(tokens, "");
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (const AddedToken* added = added_->FindByContent(token); added != nullptr) return added->id;
  return model_->TokenToId(token);
}

const std::string* Tokenizer::IdToToken(int32_t id) const {
  if (const AddedToken* added = added_->FindById(id); added != nullptr) return &added->content;
  return model_->IdToToken(id);
}

bool Tokenizer::IsSpecialToken(int32_t id) const {
  const AddedToken* added = added_->FindById(id);
  return added != nullptr && added->special;
}

bool Tokenizer::IsByteFallbackToken(int32_t id) const {
  return id >= 0 && id < vocab_size_ && byte_fallback_token_[id];
}

}  // namespace kestrel::tokenizer

#include "model/tokenizer/post_processors.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace kestrel::tokenizer {
namespace {

class IdentityPostProcessor : public PostProcessor {
 public:
  void AddSpecialTokens(std::vector<int32_t>*) const override {}
};

class SequencePostProcessor : public PostProcessor {
 public:
  explicit SequencePostProcessor(std::vector<std::unique_ptr<PostProcessor>> parts)
      : parts_(std::move(parts)) {}
  void AddSpecialTokens(std::vector<int32_t>* ids) const override {
    for (const auto& part : parts_) part->AddSpecialTokens(ids);
  }

 private:
  const std::vector<std::unique_ptr<PostProcessor>> parts_;
};

// The single-sequence template flattened to: ids before, the sequence, ids
// after (a template names sequence A once).
class TemplatePostProcessor : public PostProcessor {
 public:
  TemplatePostProcessor(std::vector<int32_t> before, std::vector<int32_t> after)
      : before_(std::move(before)), after_(std::move(after)) {}
  void AddSpecialTokens(std::vector<int32_t>* ids) const override {
    ids->insert(ids->begin(), before_.begin(), before_.end());
    ids->insert(ids->end(), after_.begin(), after_.end());
  }

 private:
  const std::vector<int32_t> before_;
  const std::vector<int32_t> after_;
};

// One template element: the sequence ("A"), or the name of a special token.
struct TemplateItem {
  bool is_sequence = false;
  std::string special;
};

absl::StatusOr<std::vector<TemplateItem>> ParseTemplate(const Json& single,
                                                        const std::string& component) {
  std::vector<TemplateItem> items;
  auto parse_word = [&](std::string_view word) -> absl::Status {
    // String form: "$A", "$0", "$A:1", "[CLS]", "[CLS]:0".
    std::string_view name = word.substr(0, word.find(':'));
    if (!name.empty() && name[0] == '$') {
      if (name == "$" || name == "$A" || name == "$a" || name == "$0") {
        items.push_back({true, ""});
        return absl::OkStatus();
      }
      return absl::UnimplementedError(Concat(
          component, ".single refers to sequence \"", name, "\"; only single sequences (A) are supported"));
    }
    items.push_back({false, std::string(name)});
    return absl::OkStatus();
  };
  if (single.is_string()) {
    for (absl::string_view word :
         absl::StrSplit(single.get_ref<const std::string&>(), ' ', absl::SkipEmpty())) {
      RETURN_IF_ERROR(parse_word(std::string_view(word.data(), word.size())));
    }
    return items;
  }
  if (!single.is_array()) {
    return absl::InvalidArgumentError(
        Concat(component, ".single must be a list or a string, got ", Describe(single)));
  }
  for (const Json& item : single) {
    if (const Json* seq = FindField(item, "Sequence"); seq != nullptr) {
      ASSIGN_OR_RETURN(std::string id, GetString(*seq, "id", component + ".single.Sequence"));
      if (id != "A") {
        return absl::UnimplementedError(Concat(
            component, ".single refers to sequence \"", id, "\"; only A is supported"));
      }
      items.push_back({true, ""});
    } else if (const Json* special = FindField(item, "SpecialToken"); special != nullptr) {
      ASSIGN_OR_RETURN(std::string id, GetString(*special, "id", component + ".single.SpecialToken"));
      items.push_back({false, std::move(id)});
    } else {
      return absl::InvalidArgumentError(Concat(
          component, ".single items must be {\"Sequence\": ...} or {\"SpecialToken\": ...}, got ",
          Describe(item)));
    }
  }
  return items;
}

absl::StatusOr<std::unique_ptr<PostProcessor>> MakeTemplate(const Json& json) {
  const std::string component = "post_processor TemplateProcessing";
  const Json* single = FindField(json, "single");
  if (single == nullptr) {
    return absl::InvalidArgumentError(Concat(component, ": missing field \"single\""));
  }
  ASSIGN_OR_RETURN(std::vector<TemplateItem> items, ParseTemplate(*single, component));
  // special_tokens: {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}.
  const Json* specials = FindField(json, "special_tokens");
  std::vector<int32_t> before, after;
  bool seen_sequence = false;
  for (const TemplateItem& item : items) {
    if (item.is_sequence) {
      if (seen_sequence) {
        return absl::UnimplementedError(
            Concat(component, ".single uses sequence A twice"));
      }
      seen_sequence = true;
      continue;
    }
    const Json* entry = specials == nullptr ? nullptr : FindField(*specials, item.special);
    if (entry == nullptr) {
      return absl::InvalidArgumentError(Concat(component, ".single uses special token \"",
                                                     item.special,
                                                     "\" missing from special_tokens"));
    }
    ASSIGN_OR_RETURN(const Json* ids, GetArray(*entry, "ids", component + ".special_tokens"));
    for (const Json& id : *ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        return absl::InvalidArgumentError(Concat(component, ".special_tokens[\"",
                                                       item.special, "\"].ids has invalid id ",
                                                       Describe(id)));
      }
      (seen_sequence ? after : before).push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
  }
  if (!seen_sequence) {
    return absl::InvalidArgumentError(Concat(component, ".single never uses sequence A"));
  }
  return std::make_unique<TemplatePostProcessor>(std::move(before), std::move(after));
}

// BertProcessing / RobertaProcessing: "sep": ["[SEP]", 102], "cls": [...].
absl::StatusOr<int32_t> ParseTokenPair(const Json& json, std::string_view key,
                                       const std::string& component) {
  const Json* pair = FindField(json, key);
  if (pair == nullptr || !pair->is_array() || pair->size() != 2 || !(*pair)[1].is_number_integer() ||
      (*pair)[1].get<int64_t>() < 0 || (*pair)[1].get<int64_t>() > INT32_MAX) {
    return absl::InvalidArgumentError(Concat(component, ".", key,
                                                   " must be [token, id], got ",
                                                   pair == nullptr ? "nothing" : Describe(*pair)));
  }
  return static_cast<int32_t>((*pair)[1].get<int64_t>());
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostProcessor>> PostProcessor::FromJson(const Json& json) {
  ASSIGN_OR_RETURN(const std::string type, GetComponentType(json, "post_processor"));
  const std::string component = Concat("post_processor ", type);
  if (type == "ByteLevel") return std::make_unique<IdentityPostProcessor>();
  if (type == "TemplateProcessing") return MakeTemplate(json);
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(auto parts, ParseSequence<PostProcessor>(json, "processors", component));
    return std::make_unique<SequencePostProcessor>(std::move(parts));
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    ASSIGN_OR_RETURN(int32_t cls, ParseTokenPair(json, "cls", component));
    ASSIGN_OR_RETURN(int32_t sep, ParseTokenPair(json, "sep", component));
    return std::make_unique<TemplatePostProcessor>(std::vector<int32_t>{cls},
                                                   std::vector<int32_t>{sep});
  }
  return absl::UnimplementedError(Concat(
      "unsupported post_processor type \"", type,
      "\" (supported: TemplateProcessing, ByteLevel, Sequence, BertProcessing, RobertaProcessing)"));
}

}  // namespace kestrel::tokenizer

#include "model/builtin_models.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/config.h"
#include "model/demo/stories260K.h"
#include "model/safetensors.h"
#include "model/safetensors_writer.h"
#include "model/synthetic.h"

namespace kestrel::model {
namespace {

// The random model's weights are a pure function of this seed (the same
// weights the built-in "demo" model had before it became stories260K).
constexpr uint64_t kRandomSeed = 20261125;

// An embedded stories260K file by name; empty when the build left it out.
std::string_view DemoFile(std::string_view name) {
  for (const demo::EmbeddedFile& file : demo::Stories260KFiles()) {
    if (file.name == name) return file.contents;
  }
  return {};
}

absl::StatusOr<std::string_view> RequiredDemoFile(std::string_view name) {
  std::string_view contents = DemoFile(name);
  if (contents.empty()) {
    return absl::InternalError(absl::StrCat("the built-in demo model has no ", std::string(name),
                                            " (model/demo/BUILD.bazel embeds it)"));
  }
  return contents;
}

// Errors inside an embedded file name the model and the file.
absl::Status InDemo(const absl::Status& status, std::string_view file) {
  return absl::Status(status.code(), absl::StrCat("built-in demo model (stories260K) ",
                                                  std::string(file), ": ", status.message()));
}

absl::StatusOr<BuiltinModel> LoadDemo(Quantization quantization) {
  BuiltinModel model;
  ASSIGN_OR_RETURN(std::string_view config_json, RequiredDemoFile("config.json"));
  ASSIGN_OR_RETURN(std::string_view safetensors, RequiredDemoFile("model.safetensors"));
  ASSIGN_OR_RETURN(std::string_view tokenizer_json, RequiredDemoFile("tokenizer.json"));
  absl::StatusOr<ModelConfig> config = ModelConfig::Parse(config_json);
  if (!config.ok()) return InDemo(config.status(), "config.json");
  // A story ends at BOS, as in llama2.c's run.c: the model was trained on
  // stories that each start with BOS (id 1) and none that ends with </s>
  // (id 2), so after one story it begins the next with BOS. Without this a
  // request runs to its token limit, story after story.
  if (config->bos_token_ids.size() == 1 &&
      std::find(config->eos_token_ids.begin(), config->eos_token_ids.end(),
                config->bos_token_ids[0]) == config->eos_token_ids.end()) {
    config->eos_token_ids.push_back(config->bos_token_ids[0]);
  }
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> checkpoint =
      SafetensorsCheckpoint::FromMemory(safetensors, "model.safetensors");
  if (!checkpoint.ok()) return InDemo(checkpoint.status(), "model.safetensors");
  absl::StatusOr<std::unique_ptr<ModelWeights>> weights =
      ModelWeights::Create(*config, std::move(*checkpoint), quantization);
  if (!weights.ok()) return InDemo(weights.status(), "model.safetensors");
  model.weights = std::move(*weights);
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tokenizer =
      tokenizer::Tokenizer::FromJson(tokenizer_json, DemoFile("tokenizer_config.json"), {});
  if (!tokenizer.ok()) return InDemo(tokenizer.status(), "tokenizer.json");
  model.tokenizer = std::move(*tokenizer);
  model.name = "stories260K-demo";
  return model;
}

absl::StatusOr<BuiltinModel> LoadRandom(Quantization quantization) {
  BuiltinModel model;
  ASSIGN_OR_RETURN(std::string config_json, SyntheticPresetConfig("tiny", kernels::DType::kF32));
  ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::Parse(config_json));
  const std::string safetensors =
      SerializeSafetensors(SyntheticTensors(config, kernels::DType::kF32, kRandomSeed));
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsCheckpoint> checkpoint,
                   SafetensorsCheckpoint::FromMemory(safetensors, "model.safetensors"));
  ASSIGN_OR_RETURN(model.weights,
                   ModelWeights::Create(config, std::move(checkpoint), quantization));
  ASSIGN_OR_RETURN(model.tokenizer,
                   tokenizer::Tokenizer::FromJson(SyntheticTokenizerJson(config.vocab_size), "", {}));
  model.name = std::string(kRandomModel);
  return model;
}

}  // namespace

bool IsBuiltinModel(std::string_view model) { return model == kDemoModel || model == kRandomModel; }

absl::StatusOr<BuiltinModel> LoadBuiltinModel(std::string_view model,
                                              Quantization quantization) {
  if (model == kDemoModel) return LoadDemo(quantization);
  if (model == kRandomModel) return LoadRandom(quantization);
  return absl::NotFoundError(absl::StrCat("no built-in model \"", std::string(model),
                                          "\" (known: ", std::string(kDemoModel), ", ",
                                          std::string(kRandomModel), ")"));
}

std::string_view DemoModelLicense() { return DemoFile("LICENSE"); }

}  // namespace kestrel::model

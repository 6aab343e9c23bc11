// The models Kestrel serves with no files, by name:
//   "demo"    the real stories260K (Andrej Karpathy's llama2.c model, MIT,
//             trained on TinyStories; model/demo/stories260K), embedded in
//             the binary: it tells short English stories, each ending where
//             the model starts the next one (BOS is also an end token, as
//             in llama2.c's run.c).
//   "random"  a small deterministic random-weight Llama (2 layers, hidden
//             64, vocab 320, context 1024) with a byte-level tokenizer: for
//             tests and benchmarks that want a fixed shape and speed, not
//             sense. Its output is nonsense bytes.
// Both load from memory: nothing is read from or written to disk.
#ifndef KESTREL_MODEL_BUILTIN_MODELS_H_
#define KESTREL_MODEL_BUILTIN_MODELS_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/tokenizer/tokenizer.h"
#include "model/weights.h"

namespace kestrel::model {

inline constexpr std::string_view kDemoModel = "demo";
inline constexpr std::string_view kRandomModel = "random";

// True for kDemoModel and kRandomModel.
bool IsBuiltinModel(std::string_view model);

struct BuiltinModel {
  std::unique_ptr<ModelWeights> weights;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  // The name it is served under unless --model-name says otherwise:
  // "stories260K-demo" for "demo" (it says what the model is), "random".
  std::string name;
};

// Loads a built-in model. Weights are copied into anonymous memory, and
// quantized as ModelWeights::Options::quantization says. NotFound for a name
// that is not IsBuiltinModel.
absl::StatusOr<BuiltinModel> LoadBuiltinModel(std::string_view model,
                                              Quantization quantization = Quantization::kNone);

// The licence notice of the demo model's files (MIT, llama2.c), as embedded.
std::string_view DemoModelLicense();

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_BUILTIN_MODELS_H_

// The files of the stories260K checkpoint (model/demo/stories260K), embedded
// in the binary by //bazel:embed_files: config.json, generation_config.json,
// model.safetensors, tokenizer.json, tokenizer_config.json and LICENSE.
// model/builtin_models.h turns them into the built-in demo model.
#ifndef KESTREL_MODEL_DEMO_STORIES260K_H_
#define KESTREL_MODEL_DEMO_STORIES260K_H_

#include <span>
#include <string_view>

namespace kestrel::model::demo {

struct EmbeddedFile {
  std::string_view name;      // the file's base name, e.g. "config.json"
  std::string_view contents;  // its bytes, in static storage, 64-byte aligned
};

// Every embedded file, in the order model/demo/BUILD.bazel lists them.
std::span<const EmbeddedFile> Stories260KFiles();

}  // namespace kestrel::model::demo

#endif  // KESTREL_MODEL_DEMO_STORIES260K_H_

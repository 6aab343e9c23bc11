// A Hugging Face model's generation_config.json: the end-of-sequence ids
// generation stops at (instruct models list their end-of-turn token here,
// e.g. Llama 3's <|eot_id|>, and not in config.json) and the sampling
// defaults the model was published with. Kestrel, like vLLM's default
// `--generation-config auto`, stops at these ids and uses these defaults
// for the sampling fields a request leaves unset.
#ifndef KESTREL_MODEL_GENERATION_CONFIG_H_
#define KESTREL_MODEL_GENERATION_CONFIG_H_

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/sampler.h"

namespace kestrel::model {

struct GenerationConfig {
  std::vector<int64_t> eos_token_ids;
  // The sampling fields vLLM takes from the file; unset when absent. (Like
  // vLLM, do_sample is not read: temperature decides.)
  std::optional<float> temperature;
  std::optional<int32_t> top_k;
  std::optional<float> top_p;
  std::optional<float> min_p;
  std::optional<float> repetition_penalty;

  // True when any sampling default is set.
  bool has_sampling_defaults() const {
    return temperature || top_k || top_p || min_p || repetition_penalty;
  }
  // SamplingParams{} with the defaults above applied.
  SamplingParams SamplingDefaults() const;
  // "temperature=0.6 top_p=0.9", or "none".
  std::string DescribeSamplingDefaults() const;

  // Parses the file's text. Errors name the field and value, in the ranges
  // requests have: "generation_config.json: top_p must be in (0, 1], got 1.5".
  static absl::StatusOr<GenerationConfig> Parse(std::string_view json_text, int64_t vocab_size);
  // Reads `dir`/generation_config.json; an empty config when there is none.
  static absl::StatusOr<GenerationConfig> LoadFromDir(const std::filesystem::path& dir,
                                                      int64_t vocab_size);
};

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_GENERATION_CONFIG_H_

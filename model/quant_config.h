// How a checkpoint's linear layers are stored when config.json carries a
// "quantization_config": so far vLLM's / llm-compressor's compressed-tensors
// W8A8 int8 (per output channel, symmetric weights; dynamic per-token
// activations), the scheme the CPU int8 GEMM runs. Everything else in that
// object is refused with the field and its value. The tensor layout is in
// docs/kernels.md#int8-checkpoints-compressed-tensors.
#ifndef KESTREL_MODEL_QUANT_CONFIG_H_
#define KESTREL_MODEL_QUANT_CONFIG_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kestrel::model {

// Plain data, freely copyable. Default: nothing stored quantized.
struct CheckpointQuantization {
  // True for a compressed-tensors int8 checkpoint: every Linear module not
  // in `ignore` has `<module>.weight` I8 [out, in] and
  // `<module>.weight_scale` [out, 1] (F32, BF16 or F16).
  bool int8 = false;
  // Modules stored unquantized: exact module names ("lm_head") or
  // "re:<pattern>" (matched from the start of the name, as Python's
  // re.match in compressed-tensors). Validated by the parser.
  std::vector<std::string> ignore;

  // Whether the Linear module `module` ("model.layers.3.mlp.down_proj",
  // "lm_head") is stored int8.
  bool Quantizes(std::string_view module) const;
};

// Parses the value of config.json's "quantization_config" (JSON text).
// Errors are InvalidArgument naming the field and value, e.g.
// "quantization_config.config_groups.group_0.weights.strategy is not
// supported (supported: channel), got \"group\"".
absl::StatusOr<CheckpointQuantization> ParseQuantizationConfig(std::string_view json_text);

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_QUANT_CONFIG_H_

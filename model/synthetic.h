// Synthetic Hugging Face-layout checkpoints with deterministic pseudo-random
// weights, at real model shapes (presets) or any config: benchmarks and tests
// run at tinyllama/qwen shapes without downloading anything.
#ifndef KESTREL_MODEL_SYNTHETIC_H_
#define KESTREL_MODEL_SYNTHETIC_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/config.h"
#include "kernels/dtype.h"
#include "model/safetensors_writer.h"

namespace kestrel::model {

// config.json text for a preset: "tiny" (llama, 2 layers, byte vocab),
// "tiny-qwen2" (biases, tied embeddings), "tiny-qwen3" (q/k norm, explicit
// head_dim), "tinyllama-1.1b", "qwen2.5-0.5b". `torch_dtype` is written into
// the config ("float32", "float16", "bfloat16").
absl::StatusOr<std::string> SyntheticPresetConfig(std::string_view preset, kernels::DType dtype);

// Every tensor `config` needs, in `dtype`, with weights drawn from a
// splitmix64 stream keyed by (seed, tensor name): matrices uniform in
// +-1/sqrt(in_features) so activations stay O(1) through the layers, norm
// scales near 1, biases small.
std::vector<TensorToWrite> SyntheticTensors(const ModelConfig& config, kernels::DType dtype,
                                            uint64_t seed);

struct SyntheticCheckpointOptions {
  // Output directory (created).
  std::filesystem::path dir = {};
  // config.json text (e.g. from SyntheticPresetConfig).
  std::string config_json = {};
  // Weight dtype: kF32, kF16 or kBF16.
  kernels::DType dtype = kernels::DType::kF32;
  uint64_t seed = 0;
  // Checkpoints larger than this are sharded with an index (HF default 5 GB;
  // default here 2 GiB so the 1.1B BF16 preset exercises sharding).
  uint64_t max_shard_bytes = 2ull << 30;
  // Also write a byte-level tokenizer.json (256 byte tokens + <s>, </s>).
  bool write_tokenizer = true;
  // Write a compressed-tensors W8A8 int8 checkpoint (what llm-compressor's
  // int8 recipe saves and vLLM loads): every linear layer but lm_head
  // quantized with kernels::QuantizeRowsI8 from the `dtype` weights, as
  // `<name>.weight` I8 and `<name>.weight_scale` F32 [out, 1], and
  // config.json's quantization_config saying so. The int8 matrices and
  // scales are bit-identical to loading the `dtype` checkpoint with
  // Quantization::kInt8.
  bool int8 = false;
};

// config.json's "quantization_config" of a compressed-tensors W8A8 int8
// checkpoint (per-channel symmetric weights, dynamic per-token
// activations), with `ignore` as the modules left unquantized.
std::string CompressedTensorsInt8Config(const std::vector<std::string>& ignore);

// Replaces the linear layers' weights in `tensors` (as SyntheticTensors
// returns them) by their compressed-tensors int8 form, except the modules
// named in `ignore` (exact names).
void QuantizeTensorsInt8(std::vector<TensorToWrite>& tensors,
                         const std::vector<std::string>& ignore);

// A byte-level tokenizer.json: ids 0..255 are the bytes (GPT-2's
// byte-to-unicode alphabet, no merges), 256 is <s>, 257 is </s> (both
// special), and ids up to vocab_size - 1 are filler tokens "<extra_N>".
std::string SyntheticTokenizerJson(int64_t vocab_size);

// Writes config.json, the safetensors file(s) and optionally tokenizer.json.
absl::Status WriteSyntheticCheckpoint(const SyntheticCheckpointOptions& options);

}  // namespace kestrel::model

#endif  // KESTREL_MODEL_SYNTHETIC_H_

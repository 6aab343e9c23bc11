// synth_checkpoint: writes a Hugging Face-layout checkpoint with
// deterministic random weights (config.json, safetensors, sharded when
// large, a byte-level tokenizer.json) for a preset shape.
//
//   bazel run -c opt //benchmarks:synth_checkpoint -- --preset=tinyllama-1.1b
//       --dtype=bf16 --out=/tmp/tinyllama-bf16
//
// --quantization=int8 writes vLLM's compressed-tensors W8A8 int8 layout
// (I8 weights, per-row weight_scale, quantization_config; lm_head stays in
// --dtype), quantized from the --dtype weights of the same seed.
//
// Exit codes (docs/cli.md): 0 written, 1 cannot write, 2 usage.
#include <chrono>
#include <cstdio>
#include <string>

#include "common/flags.h"
#include "model/synthetic.h"

int main(int argc, char** argv) {
  std::string preset = "tiny";
  std::string dtype_name = "bf16";
  std::string out;
  std::string quantization = "none";
  uint64_t seed = 0;
  uint64_t max_shard_mib = 2048;
  kestrel::FlagSet flags("synth_checkpoint", "",
                         "Writes a Hugging Face-layout checkpoint with deterministic random "
                         "weights.\nExit codes: 0 written, 1 cannot write, 2 usage.");
  flags.Add("preset", &preset, "", "Model shape")
      .Choices({"tiny", "tiny-qwen2", "tiny-qwen3", "tinyllama-1.1b", "qwen2.5-0.5b"});
  flags.Add("dtype", &dtype_name, "", "Weight type").Choices({"f32", "f16", "bf16"});
  flags.Add("quantization", &quantization, "",
            "int8: compressed-tensors W8A8 int8 linear layers (lm_head stays in --dtype)")
      .Choices({"none", "int8"});
  flags.Add("out", &out, "DIR", "Output directory, created (required)");
  flags.Add("seed", &seed, "N", "Weight seed");
  flags.Add("max-shard-mib", &max_shard_mib, "MIB", "Shard the checkpoint above this size");
  const kestrel::ParsedArgs args = flags.ParseOrExit(argc, argv);
  if (!args.positional.empty()) {
    return flags.UsageError("unexpected argument '" + args.positional[0] + "' (see --help)");
  }
  if (out.empty()) return flags.UsageError("--out: required (--out=DIR)");
  if (max_shard_mib == 0) return flags.UsageError("--max-shard-mib: must be >= 1, got 0");
  using kestrel::kernels::DType;
  const DType dtype = dtype_name == "f32"   ? DType::kF32
                      : dtype_name == "f16" ? DType::kF16
                                            : DType::kBF16;
  auto config = kestrel::model::SyntheticPresetConfig(preset, dtype);
  if (!config.ok()) {
    return flags.UsageError("--preset: " + std::string(config.status().message()));
  }
  const auto t0 = std::chrono::steady_clock::now();
  absl::Status s = kestrel::model::WriteSyntheticCheckpoint(
      {.dir = out,
       .config_json = *config,
       .dtype = dtype,
       .seed = seed,
       .max_shard_bytes = max_shard_mib << 20,
       .int8 = quantization == "int8"});
  if (!s.ok()) {
    std::fprintf(stderr, "synth_checkpoint: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::printf("wrote %s (%s, %s%s) in %.1f s\n", out.c_str(), preset.c_str(), dtype_name.c_str(),
              quantization == "int8" ? ", compressed-tensors int8" : "",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

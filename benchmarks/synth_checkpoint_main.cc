// synth_checkpoint: writes a Hugging Face-layout checkpoint with
// deterministic random weights (config.json, safetensors, sharded when
// large, a byte-level tokenizer.json) for a preset shape.
//
//   bazel run -c opt //benchmarks:synth_checkpoint -- --preset=tinyllama-1.1b
//       --dtype=bf16 --out=/tmp/tinyllama-bf16
#include <chrono>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "model/synthetic.h"

ABSL_FLAG(std::string, preset, "tiny",
          "tiny, tiny-qwen2, tiny-qwen3, tinyllama-1.1b or qwen2.5-0.5b");
ABSL_FLAG(std::string, dtype, "bf16", "f32, f16 or bf16");
ABSL_FLAG(std::string, out, "", "Output directory (created)");
ABSL_FLAG(uint64_t, seed, 0, "Weight seed");
ABSL_FLAG(uint64_t, max_shard_mb, 2048, "Shard the checkpoint above this many MiB");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using kestrel::kernels::DType;
  const std::string d = absl::GetFlag(FLAGS_dtype);
  DType dtype;
  if (d == "f32") {
    dtype = DType::kF32;
  } else if (d == "f16") {
    dtype = DType::kF16;
  } else if (d == "bf16") {
    dtype = DType::kBF16;
  } else {
    std::fprintf(stderr, "synth_checkpoint: --dtype must be f32, f16 or bf16, got %s\n", d.c_str());
    return 1;
  }
  if (absl::GetFlag(FLAGS_out).empty()) {
    std::fprintf(stderr, "synth_checkpoint: --out is required\n");
    return 1;
  }
  auto config = kestrel::model::SyntheticPresetConfig(absl::GetFlag(FLAGS_preset), dtype);
  if (!config.ok()) {
    std::fprintf(stderr, "synth_checkpoint: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  absl::Status s = kestrel::model::WriteSyntheticCheckpoint(
      {.dir = absl::GetFlag(FLAGS_out),
       .config_json = *config,
       .dtype = dtype,
       .seed = absl::GetFlag(FLAGS_seed),
       .max_shard_bytes = absl::GetFlag(FLAGS_max_shard_mb) << 20});
  if (!s.ok()) {
    std::fprintf(stderr, "synth_checkpoint: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::printf("wrote %s (%s, %s) in %.1f s\n", absl::GetFlag(FLAGS_out).c_str(),
              absl::GetFlag(FLAGS_preset).c_str(), d.c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

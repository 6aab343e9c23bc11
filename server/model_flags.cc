#include "server/model_flags.h"

#include "absl/strings/str_cat.h"
#include "kernels/backends.h"
#include "model/model_runner.h"
#include "model/weights.h"

namespace kestrel::server {

void DeclareModelFlags(FlagSet& flags, ModelFlags& f) {
  flags.Add("device", &f.device, "cpu|cuda|cuda:N",
            "What the model runs on: the CPU backend, or a GPU (builds with --config=cuda)");
  flags.Add("threads", &f.threads, "N",
            "CPU compute threads per tensor-parallel rank; 0 = one per CPU, shared by the ranks");
  flags.Add("tensor-parallel-size", &f.tensor_parallel_size, "N",
            "Shard the model across N ranks (Megatron style; CPU only for now, docs/parallel.md)");
  flags.Add("kv-cache-mib", &f.kv_cache_mib, "MIB", "Memory for the paged KV cache (CPU)");
  flags.Add("gpu-memory-utilization", &f.gpu_memory_utilization, "FRACTION",
            "GPU: the share of the device's memory the process may use; the KV cache gets what "
            "the weights leave of it");
  flags.Add("max-model-len", &f.max_model_len, "TOKENS",
            "Longest prompt plus output; 0 = the model's context length");
  flags.Add("mmap-weights", &f.mmap_weights,
            "Map the checkpoint instead of loading it into anonymous memory (faster start, slower "
            "decode)");
  flags.Add("bf16-dot", &f.bf16_dot,
            "BF16 checkpoints: bf16 dot products (about 1.6x faster prefill); --no-bf16-dot "
            "widens weights to F32 and multiplies exactly");
  flags.Add("kv-cache-dtype", &f.kv_cache_dtype, "",
            "KV cache element type; auto = BF16 for BF16 checkpoints, else F32")
      .Choices({"auto", "f32", "bf16"});
  flags.Add("quantization", &f.quantization, "",
            "int8: quantize the linear weights at load to int8, one scale per output channel "
            "(about 1.9x faster decode, half the weight bytes; CPU only; docs/kernels.md). "
            "Checkpoints saved int8 (compressed-tensors) load as int8 whatever this says")
      .Choices({"none", "int8"});
}

void DeclareSpeculativeFlags(FlagSet& flags, SpeculativeFlags& f) {
  flags.Add("speculative-ngram-tokens", &f.ngram_tokens, "K",
            "Speculative decoding by prompt lookup: draft tokens each decode verifies, for "
            "requests that do not set num_speculative_tokens; 0 = off");
  flags.Add("speculative-ngram-max", &f.ngram_max, "N",
            "Longest suffix of the context looked up for drafts");
  flags.Add("speculative-ngram-min", &f.ngram_min, "N",
            "Shortest suffix of the context looked up for drafts");
}

namespace {

std::string AtLeast(const char* name, int64_t value, int64_t min) {
  return value >= min ? std::string()
                      : absl::StrCat("--", name, ": must be >= ", min, ", got ", value);
}

}  // namespace

std::string CheckModelFlags(const ModelFlags& f) {
  for (const std::string& error : {
           AtLeast("threads", f.threads, 0),
           AtLeast("tensor-parallel-size", f.tensor_parallel_size, 1),
           AtLeast("kv-cache-mib", f.kv_cache_mib, 1),
           AtLeast("max-model-len", f.max_model_len, 0),
       }) {
    if (!error.empty()) return error;
  }
  if (!kernels::ValidateDeviceName(f.device).ok()) {
    return absl::StrCat("--device: expected cpu, cuda or cuda:N, got \"", f.device, "\"");
  }
  if (!(f.gpu_memory_utilization > 0 && f.gpu_memory_utilization <= 1)) {
    return absl::StrCat("--gpu-memory-utilization: must be in (0, 1], got ",
                        f.gpu_memory_utilization);
  }
  // The parser has checked the choices; these guard callers that set the
  // fields directly.
  if (!model::ParseKvCacheDType(f.kv_cache_dtype).ok()) {
    return absl::StrCat("--kv-cache-dtype: expected auto, f32 or bf16, got \"", f.kv_cache_dtype,
                        "\"");
  }
  const absl::StatusOr<model::Quantization> quantization =
      model::ParseQuantization(f.quantization);
  if (!quantization.ok()) {
    return absl::StrCat("--quantization: expected none or int8, got \"", f.quantization, "\"");
  }
  if (*quantization != model::Quantization::kNone && f.device != "cpu") {
    // kernels/cuda has no int8 GEMM yet.
    return absl::StrCat("--quantization: int8 weights run only on the CPU backend for now, got ",
                        "--quantization=", f.quantization, " with --device=", f.device);
  }
  return "";
}

std::string CheckSpeculativeFlags(const SpeculativeFlags& s) {
  if (s.ngram_tokens < 0 || s.ngram_tokens > engine::kMaxSpeculativeTokens) {
    return absl::StrCat("--speculative-ngram-tokens: must be in [0, ",
                        engine::kMaxSpeculativeTokens, "], got ", s.ngram_tokens);
  }
  if (s.ngram_min < 1) {
    return absl::StrCat("--speculative-ngram-min: must be >= 1, got ", s.ngram_min);
  }
  if (s.ngram_max < s.ngram_min) {
    return absl::StrCat("--speculative-ngram-max: must be >= --speculative-ngram-min (",
                        s.ngram_min, "), got ", s.ngram_max);
  }
  return "";
}

void ApplyModelFlags(const ModelFlags& f, ModelLoadOptions& load) {
  load.device = f.device;
  load.threads = f.threads;
  load.tensor_parallel_size = f.tensor_parallel_size;
  load.kv_cache_bytes = static_cast<uint64_t>(f.kv_cache_mib) << 20;
  load.gpu_memory_utilization = f.gpu_memory_utilization;
  load.max_model_len = f.max_model_len;
  load.mmap_weights = f.mmap_weights;
  load.bf16_dot = f.bf16_dot;
  load.kv_cache_dtype = *model::ParseKvCacheDType(f.kv_cache_dtype);
  load.quantization = *model::ParseQuantization(f.quantization);
}

void ApplySpeculativeFlags(const SpeculativeFlags& s, engine::EngineOptions& options) {
  options.num_speculative_tokens = s.ngram_tokens;
  options.ngram = {.min_n = s.ngram_min, .max_n = s.ngram_max};
}

}  // namespace kestrel::server

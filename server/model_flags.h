// The flags that place and run the model (device, threads, KV cache,
// weights) and the speculative-decoding defaults, shared by kestrel-server
// and kestrel-generate so both take the same names, defaults, checks and
// error messages.
//
//   ModelFlags model;
//   flags.Section("Model");
//   DeclareModelFlags(flags, model);
//   ...parse...
//   if (std::string e = CheckModelFlags(model); !e.empty()) return flags.UsageError(e);
//   ModelLoadOptions load;
//   ApplyModelFlags(model, load);
#ifndef KESTREL_SERVER_MODEL_FLAGS_H_
#define KESTREL_SERVER_MODEL_FLAGS_H_

#include <cstdint>
#include <string>

#include "common/flags.h"
#include "engine/engine_core.h"
#include "server/model_loader.h"

namespace kestrel::server {

struct ModelFlags {
  std::string device = "cpu";
  int32_t threads = 0;
  int32_t tensor_parallel_size = 1;
  int64_t kv_cache_mib = 256;
  double gpu_memory_utilization = 0.9;
  int32_t max_model_len = 0;
  bool mmap_weights = false;
  bool bf16_dot = true;
  std::string kv_cache_dtype = "auto";
  std::string quantization = "none";
};

struct SpeculativeFlags {
  int32_t ngram_tokens = 0;
  int32_t ngram_max = 4;
  int32_t ngram_min = 1;
};

// Adds --device, --threads, --tensor-parallel-size, --kv-cache-mib,
// --gpu-memory-utilization, --max-model-len, --mmap-weights, --bf16-dot,
// --kv-cache-dtype and --quantization to the current section.
void DeclareModelFlags(FlagSet& flags, ModelFlags& f);
// Adds --speculative-ngram-tokens, -max and -min to the current section.
void DeclareSpeculativeFlags(FlagSet& flags, SpeculativeFlags& f);

// The first problem the parser cannot see, naming the flag
// ("--threads: must be >= 0, got -1"), or "" when there is none.
std::string CheckModelFlags(const ModelFlags& f);
std::string CheckSpeculativeFlags(const SpeculativeFlags& s);

// Copies the flags into `load`. REQUIRES: CheckModelFlags(f) is empty.
void ApplyModelFlags(const ModelFlags& f, ModelLoadOptions& load);
// Sets the engine's speculative-decoding defaults.
// REQUIRES: CheckSpeculativeFlags(s) is empty.
void ApplySpeculativeFlags(const SpeculativeFlags& s, engine::EngineOptions& options);

}  // namespace kestrel::server

#endif  // KESTREL_SERVER_MODEL_FLAGS_H_

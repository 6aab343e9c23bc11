// Test support for the engine tests that run a real model on the offline
// engine: stories260K's golden greedy output, and an OfflineEngine over one
// CPU worker.
#ifndef KESTREL_ENGINE_OFFLINE_TEST_UTIL_H_
#define KESTREL_ENGINE_OFFLINE_TEST_UTIL_H_

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "engine/offline.h"
#include "engine/worker_executor.h"
#include "model/model_runner.h"
#include "model/weights.h"
#include "model/worker.h"
#include "nlohmann/json.hpp"

namespace kestrel::engine::testing {

// golden/greedy.json of a model directory (stories260K's).
struct Golden {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> output_ids;
  int32_t max_tokens = 0;
};

inline Golden ReadGolden(const std::filesystem::path& dir) {
  std::ifstream in(dir / "golden/greedy.json");
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  REQUIRE(j.is_object());
  Golden g;
  g.prompt_ids = j["prompt_ids"].get<std::vector<int32_t>>();
  g.output_ids = j["greedy"]["output_ids"].get<std::vector<int32_t>>();
  g.max_tokens = j["greedy"]["max_tokens"].get<int32_t>();
  return g;
}

struct Llm {
  std::unique_ptr<OfflineEngine> engine;
  const WorkerExecutor* executor = nullptr;  // owned by engine
  const model::ModelRunner& runner() const { return executor->runner(); }
};

// The model in `dir` on one 2-thread CPU worker with a `kv_bytes` KV cache,
// the model's EOS ids added to options.eos_token_ids, request log off.
inline Llm MakeLlm(const std::filesystem::path& dir,
                   model::KvCacheDType kv_dtype = model::KvCacheDType::kAuto,
                   EngineOptions options = {}, uint64_t kv_bytes = 16ull << 20) {
  auto weights = model::ModelWeights::Load({.dir = dir});
  REQUIRE(weights.ok());
  for (int64_t id : (*weights)->config().eos_token_ids) {
    options.eos_token_ids.push_back(static_cast<int32_t>(id));
  }
  auto worker = model::Worker::Create(
      {.threads = 2, .runner = {.kv_cache_bytes = kv_bytes, .kv_cache_dtype = kv_dtype}},
      std::move(*weights));
  REQUIRE(worker.ok());
  std::vector<std::unique_ptr<model::Worker>> workers;
  workers.push_back(std::move(*worker));
  auto executor = WorkerExecutor::Create(std::move(workers), 0);
  REQUIRE(executor.ok());
  Llm llm;
  llm.executor = executor->get();
  options.request_log = RequestLogFormat::kOff;
  auto engine = OfflineEngine::Create(options, std::move(*executor), nullptr);
  REQUIRE(engine.ok());
  llm.engine = std::move(*engine);
  return llm;
}

}  // namespace kestrel::engine::testing

#endif  // KESTREL_ENGINE_OFFLINE_TEST_UTIL_H_

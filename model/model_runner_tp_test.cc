// Tensor parallelism at the runner level: N runners, one per rank, each on
// its own thread with its shard and one InProcessCommunicator group, give
// the logits of the whole model (stories260K's goldens, synthetic Qwen2 and
// Llama-with-biases checkpoints), and shapes that do not divide are refused.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <catch2/catch.hpp>

#include "model/model_runner.h"
#include "model/synthetic.h"
#include "model/weights.h"
#include "model/worker.h"
#include "nlohmann/json.hpp"
#include "parallel/in_process_communicator.h"
#include "testing/shared_data.h"

namespace kestrel::model {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Every position's logits of `tokens` fed in `chunks`, computed by `size`
// ranks sharing `weights`: [tokens.size()][vocab], from rank 0.
std::vector<std::vector<float>> TpLogits(std::shared_ptr<const ModelWeights> weights, int size,
                                         const std::vector<int32_t>& tokens,
                                         const std::vector<int>& chunks) {
  auto comms = parallel::InProcessCommunicator::CreateGroup({.size = size});
  REQUIRE(comms.ok());
  std::vector<std::unique_ptr<Worker>> workers;
  for (int r = 0; r < size; ++r) {
    auto w = Worker::Create({.rank = r,
                             .threads = 1,
                             .runner = {.kv_cache_bytes = 4ull << 20,
                                        .bf16_dot = false,
                                        .communicator = (*comms)[r].get()}},
                            weights);
    REQUIRE(w.ok());
    // Zero-copy: the shard's weights are views of the one checkpoint.
    CHECK((*w)->runner().uploaded_weight_bytes() == 0);
    workers.push_back(std::move(*w));
  }
  const std::vector<int32_t> blocks = {3, 7, 1, 4};
  std::vector<std::vector<float>> logits;
  std::vector<absl::Status> status(size);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      int pos = 0;
      StepOutput out;
      for (int n : chunks) {
        SequenceInput in{.token_ids = {tokens.data() + pos, static_cast<size_t>(n)},
                         .position = pos,
                         .block_table = blocks,
                         .logits = LogitsMode::kAll};
        status[r] = workers[r]->runner().Step({&in, 1}, &out);
        if (!status[r].ok()) {
          (*comms)[r]->Abort(status[r].message());
          return;
        }
        if (r == 0) {
          for (int i = 0; i < n; ++i) {
            auto row = out.row(i);
            logits.emplace_back(row.begin(), row.end());
          }
        } else if (!out.logits.empty()) {
          status[r] = absl::InternalError("a rank other than 0 returned logits");
        }
        pos += n;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < size; ++r) {
    INFO("rank " << r << ": " << status[r]);
    REQUIRE(status[r].ok());
  }
  REQUIRE(logits.size() == tokens.size());
  return logits;
}

float MaxAbsDiff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  REQUIRE(a.size() == b.size());
  float m = 0;
  for (size_t p = 0; p < a.size(); ++p) {
    REQUIRE(a[p].size() == b[p].size());
    for (size_t i = 0; i < a[p].size(); ++i) m = std::max(m, std::abs(a[p][i] - b[p][i]));
  }
  return m;
}

std::shared_ptr<const ModelWeights> Load(const fs::path& dir) {
  auto weights = ModelWeights::Load({.dir = dir});
  REQUIRE(weights.ok());
  return std::shared_ptr<const ModelWeights>(std::move(*weights));
}

TEST_CASE("stories260K: TP = 2 and 4 give TP = 1's logits and the golden ones", "[tp][golden]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> golden;
  std::ifstream in(dir / "golden/logits_pos0-15.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const json j = json::parse(line);
    tokens.push_back(j["token"].get<int32_t>());
    golden.push_back(j["logits"].get<std::vector<float>>());
  }
  REQUIRE(tokens.size() == 16);
  auto weights = Load(dir);
  const std::vector<int> chunks = {5, 3, 1, 7};
  const auto tp1 = TpLogits(weights, 1, tokens, chunks);
  CHECK(MaxAbsDiff(tp1, golden) < 1e-4f);
  float scale = 0;
  for (const auto& row : tp1) {
    for (float v : row) scale = std::max(scale, std::abs(v));
  }
  for (int size : {2, 4}) {
    const auto tp = TpLogits(weights, size, tokens, chunks);
    // Shards sum their partial products in another order than one GEMM
    // does, so logits move by float rounding: 1e-5 of the largest logit.
    INFO("TP = " << size << ": largest |logit| " << scale << ", largest difference "
                 << MaxAbsDiff(tp, tp1));
    CHECK(MaxAbsDiff(tp, tp1) < 1e-5f * scale);
    CHECK(MaxAbsDiff(tp, golden) < 1e-4f);
  }
}

// Qwen2: q/k/v biases and tied embeddings; Llama with attention_bias: an
// o_proj bias too.
TEST_CASE("synthetic Qwen2 and biased Llama: TP = 2 and 4 give TP = 1's logits", "[tp]") {
  const char* tmp = std::getenv("TEST_TMPDIR");
  for (const char* preset : {"tiny-qwen2", "tiny-bias"}) {
    INFO(preset);
    auto text = SyntheticPresetConfig(preset == std::string("tiny-bias") ? "tiny" : preset,
                                      kernels::DType::kF32);
    REQUIRE(text.ok());
    json config = json::parse(*text);
    // Llama with attention_bias has biases on q/k/v and o_proj (row-parallel:
    // added once, by rank 0).
    if (preset == std::string("tiny-bias")) config["attention_bias"] = true;
    const fs::path dir = fs::path(tmp != nullptr ? tmp : "/tmp") / (std::string("tp_") + preset);
    REQUIRE(WriteSyntheticCheckpoint({.dir = dir, .config_json = config.dump(),
                                      .dtype = kernels::DType::kF32, .seed = 7,
                                      .write_tokenizer = false})
                .ok());
    auto weights = Load(dir);
    if (preset == std::string("tiny-bias")) REQUIRE(weights->config().o_bias);
    if (preset == std::string("tiny-qwen2")) {
      REQUIRE(weights->config().qkv_bias);
      REQUIRE(weights->config().tie_word_embeddings);
    }
    std::vector<int32_t> tokens(29);
    for (int i = 0; i < 29; ++i) tokens[i] = (i * 97 + 5) % 320;
    const std::vector<int> chunks = {17, 1, 11};
    const auto tp1 = TpLogits(weights, 1, tokens, chunks);
    float scale = 0;
    for (const auto& row : tp1) {
      for (float v : row) scale = std::max(scale, std::abs(v));
    }
    REQUIRE(scale > 0.1f);
    for (int size : {2, 4}) {
      const float diff = MaxAbsDiff(TpLogits(weights, size, tokens, chunks), tp1);
      INFO("TP = " << size << ": largest |logit| " << scale << ", largest difference " << diff);
      CHECK(diff < 1e-5f * scale);
    }
  }
}

// A compressed-tensors int8 checkpoint shards as the int8 weights quantized
// at load do (row slices take their scales, column slices keep them): the
// same logits bit for bit at every TP size. Against TP = 1 they differ by
// more than rounding, since each rank of a row-parallel layer quantizes its
// own slice of the activations.
TEST_CASE("compressed-tensors int8: TP = 2 and 4 shard like int8 quantized at load", "[tp][int8]") {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::shared_ptr<const ModelWeights> weights[2];
  for (int int8 = 0; int8 < 2; ++int8) {
    auto text = SyntheticPresetConfig("tiny", kernels::DType::kBF16);
    REQUIRE(text.ok());
    const fs::path dir = fs::path(tmp != nullptr ? tmp : "/tmp") / ("tp_int8_" + std::to_string(int8));
    REQUIRE(WriteSyntheticCheckpoint({.dir = dir, .config_json = *text,
                                      .dtype = kernels::DType::kBF16, .seed = 7,
                                      .write_tokenizer = false, .int8 = int8 == 1})
                .ok());
    auto w = ModelWeights::Load({.dir = dir, .quantization = Quantization::kInt8});
    REQUIRE(w.ok());
    weights[int8] = std::shared_ptr<const ModelWeights>(std::move(*w));
  }
  REQUIRE(weights[1]->config().quantization.int8);
  std::vector<int32_t> tokens(29);
  for (int i = 0; i < 29; ++i) tokens[i] = (i * 97 + 5) % 320;
  const std::vector<int> chunks = {17, 1, 11};
  const auto tp1 = TpLogits(weights[1], 1, tokens, chunks);
  float scale = 0;
  for (const auto& row : tp1) {
    for (float v : row) scale = std::max(scale, std::abs(v));
  }
  for (int size : {1, 2, 4}) {
    const auto ct = TpLogits(weights[1], size, tokens, chunks);
    INFO("TP = " << size);
    CHECK(MaxAbsDiff(ct, TpLogits(weights[0], size, tokens, chunks)) == 0.0f);
    CHECK(MaxAbsDiff(ct, tp1) < 0.05f * scale);
  }
}

TEST_CASE("a shape that does not divide is refused at startup, naming the dimension", "[tp]") {
  KESTREL_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  auto weights = Load(dir);
  // stories260K: 8 heads, 4 KV heads, intermediate 172 (= 4 * 43): 8 ranks
  // do not divide the MLP, 3 do not divide the heads.
  for (int size : {3, 8}) {
    auto comms = parallel::InProcessCommunicator::CreateGroup({.size = size});
    REQUIRE(comms.ok());
    auto w = Worker::Create({.threads = 1, .runner = {.communicator = (*comms)[0].get()}}, weights);
    REQUIRE(!w.ok());
    CHECK(w.status().code() == absl::StatusCode::kInvalidArgument);
    const std::string message(w.status().message());
    INFO(message);
    CHECK(message.find(size == 3 ? "num_attention_heads (8)" : "intermediate_size (172)") !=
          std::string::npos);
  }
}

}  // namespace
}  // namespace kestrel::model

// compressed-tensors int8 checkpoints (vLLM / llm-compressor W8A8): a
// synthetic BF16 checkpoint and its int8 form written by the synthetic
// generator load to bit-identical int8 matrices, scales and logits (the
// int8 form against the BF16 one quantized at load); and every way such a
// checkpoint can be inconsistent is an error naming the tensor.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>

#include <catch2/catch.hpp>

#include "model/model_runner.h"
#include "model/safetensors_writer.h"
#include "model/synthetic.h"
#include "model/weights.h"
#include "model/worker.h"
#include "nlohmann/json.hpp"

namespace kestrel::model {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using kernels::DType;

fs::path TmpDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  fs::path dir = fs::path(tmp != nullptr ? tmp : "/tmp") / ("int8_ckpt_" + name);
  fs::remove_all(dir);
  return dir;
}

fs::path WriteSynthetic(const std::string& name, const std::string& preset, bool int8) {
  const fs::path dir = TmpDir(name);
  auto config = SyntheticPresetConfig(preset, DType::kBF16);
  REQUIRE(config.ok());
  REQUIRE(WriteSyntheticCheckpoint({.dir = dir, .config_json = *config, .dtype = DType::kBF16,
                                    .seed = 7, .write_tokenizer = false, .int8 = int8})
              .ok());
  return dir;
}

std::unique_ptr<ModelWeights> LoadOk(const fs::path& dir, Quantization q) {
  auto w = ModelWeights::Load({.dir = dir, .quantization = q});
  INFO(w.status());
  REQUIRE(w.ok());
  return std::move(*w);
}

std::vector<const Matrix*> Linear(const ModelWeights& w) {
  std::vector<const Matrix*> out;
  for (const LayerWeights& l : w.layers()) {
    for (const Matrix* m : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj,
                            &l.up_proj, &l.down_proj}) {
      out.push_back(m);
    }
  }
  return out;
}

void CheckSameInt8(const Matrix& a, const Matrix& b) {
  REQUIRE(a.dtype == DType::kI8);
  REQUIRE(b.dtype == DType::kI8);
  REQUIRE(a.rows == b.rows);
  REQUIRE(a.cols == b.cols);
  REQUIRE(a.ld == a.cols);
  REQUIRE(b.ld == b.cols);
  CHECK(std::memcmp(a.data, b.data, static_cast<size_t>(a.rows * a.cols)) == 0);
  CHECK(std::memcmp(a.scales, b.scales, sizeof(float) * static_cast<size_t>(a.rows)) == 0);
}

// Every position's logits of a 23-token prompt in one prefill, then 3
// decode steps (the M = 1 GEMM path).
std::vector<float> Logits(std::unique_ptr<ModelWeights> weights) {
  auto worker = Worker::Create(
      {.threads = 2, .runner = {.kv_cache_bytes = 8ull << 20, .bf16_dot = false}},
      std::move(weights));
  REQUIRE(worker.ok());
  ModelRunner& r = (*worker)->runner();
  std::vector<int32_t> blocks(8);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::vector<int32_t> prompt(23);
  for (int i = 0; i < 23; ++i) prompt[i] = (i * 131 + 17) % 320;
  std::vector<float> all;
  StepOutput out;
  SequenceInput in{.token_ids = prompt, .position = 0, .block_table = blocks,
                   .logits = LogitsMode::kAll};
  REQUIRE(r.Step({&in, 1}, &out).ok());
  for (int i = 0; i < 23; ++i) all.insert(all.end(), out.row(i).begin(), out.row(i).end());
  int32_t pos = 23;
  for (int32_t t : {5, 300, 42}) {
    const std::vector<int32_t> one = {t};
    SequenceInput d{.token_ids = one, .position = pos++, .block_table = blocks,
                    .logits = LogitsMode::kLast};
    REQUIRE(r.Step({&d, 1}, &out).ok());
    all.insert(all.end(), out.row(0).begin(), out.row(0).end());
  }
  return all;
}

TEST_CASE("compressed-tensors int8 loads bit-identical to quantizing at load", "[int8]") {
  for (const std::string preset : {"tiny", "tiny-qwen2"}) {  // tiny-qwen2: tied, biases
    INFO(preset);
    const fs::path bf16 = WriteSynthetic(preset + "_bf16", preset, false);
    const fs::path ct = WriteSynthetic(preset + "_ct", preset, true);
    auto ref = LoadOk(bf16, Quantization::kInt8);
    auto as_stored = LoadOk(ct, Quantization::kNone);
    auto full = LoadOk(ct, Quantization::kInt8);
    REQUIRE(as_stored->config().quantization.int8);
    CHECK(as_stored->quantization() == Quantization::kInt8);
    CHECK(full->quantization() == Quantization::kInt8);
    // The embedding stays BF16; the checkpoint's int8 layers are used in
    // place, with their scales converted (here F32 already).
    CHECK(as_stored->embed_tokens().dtype == DType::kBF16);
    for (size_t i = 0; i < Linear(*ref).size(); ++i) {
      CheckSameInt8(*Linear(*as_stored)[i], *Linear(*ref)[i]);
      CheckSameInt8(*Linear(*full)[i], *Linear(*ref)[i]);
    }
    // lm_head is in "ignore": BF16 as stored (kNone; tied: the embedding
    // itself), quantized at load with kInt8 exactly as from the BF16 file.
    CHECK(as_stored->lm_head().dtype == DType::kBF16);
    CheckSameInt8(full->lm_head(), ref->lm_head());
    CHECK(full->matrix_bytes_per_token() == ref->matrix_bytes_per_token());

    const std::vector<float> a = Logits(std::move(ref));
    const std::vector<float> b = Logits(std::move(full));
    REQUIRE(a.size() == b.size());
    CHECK(std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0);
    // As stored (BF16 lm_head): close to, not the same as, an int8 lm_head.
    const std::vector<float> c = Logits(std::move(as_stored));
    float diff = 0, range = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      diff = std::max(diff, std::fabs(a[i] - c[i]));
      range = std::max(range, std::fabs(a[i]));
    }
    INFO("max |logit diff| " << diff << " of " << range);
    CHECK(diff > 0);
    CHECK(diff < 0.05f * range);
  }
}

// A compressed-tensors tiny llama as tensors and config, for corrupting.
struct Ckpt {
  json config;
  std::vector<TensorToWrite> tensors;

  TensorToWrite* Find(const std::string& name) {
    for (TensorToWrite& t : tensors) {
      if (t.name == name) return &t;
    }
    FAIL("no tensor " << name);
    return nullptr;
  }
  void Erase(const std::string& name) {
    std::erase_if(tensors, [&](const TensorToWrite& t) { return t.name == name; });
  }
};

Ckpt TinyInt8() {
  auto text = SyntheticPresetConfig("tiny", DType::kBF16);
  REQUIRE(text.ok());
  auto config = ModelConfig::Parse(*text);
  REQUIRE(config.ok());
  Ckpt c{json::parse(*text), SyntheticTensors(*config, DType::kBF16, 3)};
  c.config["quantization_config"] = json::parse(CompressedTensorsInt8Config({"lm_head"}));
  QuantizeTensorsInt8(c.tensors, {"lm_head"});
  return c;
}

fs::path Write(const std::string& name, const Ckpt& c) {
  const fs::path dir = TmpDir(name);
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << c.config.dump();
  REQUIRE(WriteSafetensors(dir / "model.safetensors", c.tensors).ok());
  return dir;
}

absl::StatusOr<std::unique_ptr<ModelWeights>> Load(const std::string& name, const Ckpt& c) {
  return ModelWeights::Load({.dir = Write(name, c)});
}

std::string ErrorOf(const std::string& name, const Ckpt& c) {
  auto w = Load(name, c);
  REQUIRE_FALSE(w.ok());
  return std::string(w.status().message());
}

const std::string kQ = "model.layers.0.self_attn.q_proj";

// A layer kept float by a "re:" ignore pattern: the model mixes BF16 and
// int8 GEMMs as stored, and with quantization=int8 is the BF16 original
// quantized at load, bit for bit.
TEST_CASE("compressed-tensors ignore patterns leave layers in their float dtype", "[int8]") {
  const std::string down = "model.layers.1.mlp.down_proj";
  auto text = SyntheticPresetConfig("tiny", DType::kBF16);
  REQUIRE(text.ok());
  auto config = ModelConfig::Parse(*text);
  REQUIRE(config.ok());
  Ckpt c{json::parse(*text), SyntheticTensors(*config, DType::kBF16, 7)};
  c.config["quantization_config"] =
      json::parse(CompressedTensorsInt8Config({"re:.*layers\\.1\\.mlp\\.down", "lm_head"}));
  QuantizeTensorsInt8(c.tensors, {down, "lm_head"});
  const fs::path dir = Write("mixed", c);
  auto mixed = ModelWeights::Load({.dir = dir});
  INFO(mixed.status());
  REQUIRE(mixed.ok());
  CHECK((*mixed)->layers()[1].down_proj.dtype == DType::kBF16);
  CHECK((*mixed)->layers()[0].down_proj.dtype == DType::kI8);
  CHECK((*mixed)->layers()[1].up_proj.dtype == DType::kI8);
  CHECK((*mixed)->quantization() == Quantization::kInt8);
  const std::vector<float> as_stored = Logits(std::move(*mixed));
  for (float v : as_stored) REQUIRE(std::isfinite(v));

  auto full = ModelWeights::Load({.dir = dir, .quantization = Quantization::kInt8});
  REQUIRE(full.ok());
  CHECK((*full)->layers()[1].down_proj.dtype == DType::kI8);
  auto ref = LoadOk(WriteSynthetic("mixed_ref", "tiny", false), Quantization::kInt8);
  CheckSameInt8((*full)->layers()[1].down_proj, ref->layers()[1].down_proj);
  const std::vector<float> a = Logits(std::move(ref));
  const std::vector<float> b = Logits(std::move(*full));
  CHECK(std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0);
}

TEST_CASE("compressed-tensors scale dtypes and zero points", "[int8]") {
  Ckpt c = TinyInt8();
  auto ok = Load("good", c);
  REQUIRE(ok.ok());
  // BF16 scales (what llm-compressor writes for a BF16 model) become F32.
  TensorToWrite* s = c.Find(kQ + ".weight_scale");
  std::vector<float> f(s->bytes.size() / 4);
  std::memcpy(f.data(), s->bytes.data(), s->bytes.size());
  s->dtype = DType::kBF16;
  s->bytes = EncodeFloats(f, DType::kBF16);
  // A symmetric scheme's zero points, if written, are zeros.
  c.tensors.push_back({kQ + ".weight_zero_point", DType::kI8, {64, 1}, std::string(64, '\0')});
  auto bf = Load("bf16_scale", c);
  INFO(bf.status());
  REQUIRE(bf.ok());
  const Matrix& q = (*bf)->layers()[0].q_proj;
  for (int64_t r = 0; r < q.rows; ++r) {
    CHECK(q.scales[r] == kernels::Bf16ToF32(kernels::F32ToBf16(f[r])));
  }
  CHECK(std::memcmp(q.data, (*ok)->layers()[0].q_proj.data, 64 * 64) == 0);
  // Tensor-parallel shards are views with their rows' scales.
  CHECK(q.RowSlice(32, 64).scales == q.scales + 32);
  CHECK(q.RowSlice(32, 64).data == static_cast<const int8_t*>(q.data) + 32 * 64);
}

TEST_CASE("inconsistent compressed-tensors checkpoints are errors naming the tensor", "[int8]") {
  const std::string file = " in model.safetensors";
  auto error = [&](const std::string& name, const std::function<void(Ckpt&)>& patch) {
    Ckpt c = TinyInt8();
    patch(c);
    return ErrorOf(name, c);
  };
  CHECK(error("no_scale", [](Ckpt& c) { c.Erase(kQ + ".weight_scale"); }) ==
        "checkpoint is missing tensor \"" + kQ + ".weight_scale\" (expected shape [64, 1])");
  CHECK(error("scale_shape", [](Ckpt& c) {
          TensorToWrite* s = c.Find(kQ + ".weight_scale");
          s->shape = {32, 2};
        }) == "tensor \"" + kQ + ".weight_scale\"" + file +
                  " has shape [32, 2], config.json implies [64, 1]");
  CHECK(error("scale_dtype", [](Ckpt& c) {
          c.Find(kQ + ".weight_scale")->dtype = DType::kI32;
        }) == "tensor \"" + kQ + ".weight_scale\"" + file +
                  " has dtype I32; scales must be F32, F16 or BF16");
  CHECK(error("scale_nan", [](Ckpt& c) {
          const float nan = std::nanf("");
          std::memcpy(c.Find(kQ + ".weight_scale")->bytes.data() + 4 * 5, &nan, 4);
        }) == "tensor \"" + kQ + ".weight_scale\"" + file + ": row 5 has scale nan");
  CHECK(error("zero_point", [](Ckpt& c) {
          std::string z(64, '\0');
          z[3] = 2;
          c.tensors.push_back({kQ + ".weight_zero_point", DType::kI8, {64, 1}, z});
        }) == "tensor \"" + kQ + ".weight_zero_point\"" + file +
                  ": row 3 has zero point 2; only symmetric int8 (zero points all 0) is "
                  "supported");
  CHECK(error("float_weight", [](Ckpt& c) {
          TensorToWrite* w = c.Find(kQ + ".weight");
          w->dtype = DType::kBF16;
          w->bytes += w->bytes;  // 2 bytes an element
        }) == "tensor \"" + kQ + ".weight\"" + file +
                  " has dtype BF16, but config.json's quantization_config (compressed-tensors "
                  "int8) stores module \"" + kQ + "\" as I8");
  // I8 where the config says unquantized: lm_head is in "ignore".
  CHECK(error("ignored", [](Ckpt& c) {
          c.Erase("lm_head.weight");
          c.tensors.push_back({"lm_head.weight", DType::kI8, {320, 64}, std::string(320 * 64, 1)});
          c.tensors.push_back({"lm_head.weight_scale", DType::kF32, {320, 1},
                               EncodeFloats(std::vector<float>(320, 0.5f), DType::kF32)});
        }) == "tensor \"lm_head.weight\"" + file +
                  " has dtype I8, but config.json's quantization_config lists module "
                  "\"lm_head\" in ignore (stored unquantized)");
  CHECK(error("no_config", [](Ckpt& c) { c.config.erase("quantization_config"); }) ==
        "tensor \"" + kQ + ".weight\"" + file +
            " has dtype I8, but config.json has no quantization_config (int8 checkpoints need "
            "compressed-tensors' one)");
  CHECK(error("embed_i8", [](Ckpt& c) {
          TensorToWrite* e = c.Find("model.embed_tokens.weight");
          e->dtype = DType::kI8;
          e->bytes.resize(e->bytes.size() / 2);
        }) == "tensor \"model.embed_tokens.weight\"" + file +
                  " has dtype I8; I8 weights are only read for linear layers that config.json's "
                  "quantization_config (compressed-tensors) quantizes");
  // Static activation scales belong to a scheme the config parser refuses;
  // a stray one is an unknown tensor.
  CHECK(error("input_scale", [](Ckpt& c) {
          c.tensors.push_back({kQ + ".input_scale", DType::kF32, {1},
                               EncodeFloats({0.1f}, DType::kF32)});
        }).starts_with("tensor \"" + kQ + ".input_scale\"" + file +
                       " is not part of the architecture"));
  CHECK(error("static_config", [](Ckpt& c) {
          c.config["quantization_config"]["config_groups"]["group_0"]["input_activations"]
                  ["dynamic"] = false;
        }).ends_with("quantization_config.config_groups.group_0.input_activations.dynamic is "
                     "not supported (supported: true), got false"));
}

}  // namespace
}  // namespace kestrel::model

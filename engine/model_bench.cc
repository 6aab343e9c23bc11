// model_bench: prefill and decode throughput of a model on the serving
// engine's offline path (engine/offline.h: scheduler, worker executor, CPU
// backend, sampling), the machine's measured memory read bandwidth, and
// decode batch 1 as a share of the bandwidth limit (weight bytes per token /
// bandwidth). Weights in anonymous memory (the default) and from a plain
// file mmap. A shared machine's bandwidth drifts by tens of percent within a
// minute, so every timed batch-1 step follows a 1 GiB bandwidth pass and the
// share is the median of the per-step ratios.
//
//   bazel run -c opt //engine:model_bench -- --threads=2
//
// Without --model it generates the synthetic tinyllama-1.1b BF16 checkpoint
// in /tmp/kestrel_synth/tinyllama-1.1b-bf16 on first use.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "engine/offline.h"
#include "engine/worker_executor.h"
#include "kernels/cpu/bandwidth.h"
#include "kernels/cpu/thread_pool.h"
#include "model/synthetic.h"
#include "model/weights.h"
#include "model/worker.h"

namespace kestrel::engine {
namespace {

using model::SafetensorsCheckpoint;

struct Flags {
  std::string model;
  std::string device = "cpu";
  int32_t threads = 2;
  int32_t tensor_parallel_size = 1;
  int32_t prompt_len = 512;
  int32_t decode_steps = 32;
  std::string batches = "1,8,32";
  bool mmap_too = true;
  std::string kv_cache_dtype = "auto";
  bool bf16_dot = true;
  std::string quantization = "none";
};
Flags flags_;

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Process CPU time (all threads). On a shared, oversubscribed machine wall
// time counts other people's builds; CPU time / threads does not (it does
// count the pool's spin-waiting, so it errs on the slow side).
double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Result {
  double prefill_tps = 0;      // wall clock
  double prefill_cpu_tps = 0;  // CPU time / threads
  struct Decode {
    int batch = 0;
    double tps = 0;      // batch / median step time
    double cpu_tps = 0;  // batch / median step CPU time per thread
    // With a probe: a bandwidth pass right before every timed step.
    double probe_gbs = 0;        // median over those passes
    double weights_gbs = 0;      // weight bytes per step / median step time
    double limit_tps = 0;        // probe_gbs / weight bytes per token
    double percent_of_limit = 0; // median over steps of (step's weight GB/s / its pass's GB/s)
  };
  std::vector<Decode> decode;
};

// A GPU's memory bandwidth: a device-to-device copy of 2 x 512 MiB, counted
// as bytes read (the copy writes as many; HBM serves both).
class DeviceCopyProbe {
 public:
  static absl::StatusOr<DeviceCopyProbe> Create(kernels::Device& device) {
    DeviceCopyProbe p(device);
    auto a = device.Allocate(kBytes, "bandwidth probe");
    if (!a.ok()) return a.status();
    auto b = device.Allocate(kBytes, "bandwidth probe");
    if (!b.ok()) return b.status();
    p.src_ = std::move(*a);
    p.dst_ = std::move(*b);
    if (absl::Status s = device.Memset(p.src_.data(), 1, kBytes); !s.ok()) return s;
    return p;
  }
  // GB/s read by one copy (read + write traffic is twice this).
  double MeasureReadGbs() {
    (void)device_->Synchronize();
    const auto t = Clock::now();
    (void)device_->CopyOnDevice(dst_.data(), src_.data(), kBytes);
    (void)device_->Synchronize();
    return kBytes / Seconds(t) / 1e9;
  }

 private:
  static constexpr size_t kBytes = size_t{512} << 20;
  explicit DeviceCopyProbe(kernels::Device& device) : device_(&device) {}
  kernels::Device* device_;
  kernels::DeviceBuffer src_, dst_;
};

// `probe` (may be null) is read right before every timed batch-1 step, so the
// step's weight read rate is compared with the bandwidth of the same moment.
// On a GPU the probe is a device copy instead.
absl::StatusOr<Result> Bench(const std::string& dir, SafetensorsCheckpoint::Storage storage,
                             const std::vector<int>& batches, bool prefill,
                             kernels::cpu::BandwidthProbe* cpu_probe) {
  const auto t0 = Clock::now();
  const absl::StatusOr<model::KvCacheDType> kv_dtype =
      model::ParseKvCacheDType(flags_.kv_cache_dtype);
  if (!kv_dtype.ok()) return kv_dtype.status();
  const absl::StatusOr<model::Quantization> quantization =
      model::ParseQuantization(flags_.quantization);
  if (!quantization.ok()) return quantization.status();
  auto weights_or =
      model::ModelWeights::Load({.dir = dir, .storage = storage, .quantization = *quantization});
  if (!weights_or.ok()) return weights_or.status();
  std::shared_ptr<const model::ModelWeights> weights = std::move(*weights_or);
  WorkerExecutor::Options executor_options;
  executor_options.tensor_parallel_size = flags_.tensor_parallel_size;
  executor_options.worker = {.device = flags_.device,
                             .threads = flags_.threads,
                             .runner = {.kv_cache_bytes = 1ull << 30,
                                        .bf16_dot = flags_.bf16_dot,
                                        .kv_cache_dtype = *kv_dtype}};
  auto executor = WorkerExecutor::Create(executor_options, weights);
  if (!executor.ok()) return executor.status();
  model::Worker* worker = &(*executor)->worker(0);
  std::printf("  loaded in %.1f s (%s) on %s\n", Seconds(t0),
              storage == SafetensorsCheckpoint::Storage::kAnonymous ? "anonymous memory"
                                                                    : "file mmap",
              worker->Describe().c_str());
  std::optional<DeviceCopyProbe> device_probe;
  if (flags_.device != "cpu") {
    auto created = DeviceCopyProbe::Create(worker->backend().device());
    if (!created.ok()) return created.status();
    device_probe.emplace(std::move(*created));
  }
  std::function<double()> probe;
  if (device_probe.has_value()) {
    probe = [&] { return device_probe->MeasureReadGbs(); };
  } else if (cpu_probe != nullptr) {
    probe = [cpu_probe] { return cpu_probe->Measure(1).median_gbs; };
  }
  const model::ModelRunner& r = worker->runner();
  const double weight_bytes = static_cast<double>(weights->matrix_bytes_per_token());
  std::printf("  weights quantization %s\n", model::QuantizationName(weights->quantization()));
  std::printf("  KV cache %s, %lld blocks of %lld tokens\n", kernels::DTypeName(r.kv_cache_dtype()),
              static_cast<long long>(r.num_kv_blocks()), static_cast<long long>(r.block_size()));
  if (storage == SafetensorsCheckpoint::Storage::kAnonymous) {
    std::printf("  weight bytes read per decode step: %.3f GB\n", weight_bytes / 1e9);
  }
  const int64_t vocab = r.config().vocab_size;
  int max_batch = 1;
  for (int b : batches) max_batch = std::max(max_batch, b);
  EngineOptions options;
  // A whole prompt (or every batch's prompts) in one step, and no prefix
  // cache: each measurement computes everything it times.
  options.max_num_batched_tokens = std::max({2048, flags_.prompt_len, 16 * max_batch});
  options.max_num_seqs = std::max(max_batch, 1);
  options.enable_prefix_caching = false;
  options.request_log = RequestLogFormat::kOff;
  auto llm_or = OfflineEngine::Create(options, std::move(*executor), nullptr);
  if (!llm_or.ok()) return llm_or.status();
  OfflineEngine& llm = **llm_or;
  // Compute threads of all ranks together (threads = 0 shares the CPUs).
  const double threads = flags_.threads > 0 ? flags_.threads * flags_.tensor_parallel_size
                                            : std::thread::hardware_concurrency();
  auto greedy = [](std::vector<int32_t> prompt, int max_tokens) {
    GenerateParams p;
    p.prompt_ids = std::move(prompt);
    p.sampling.temperature = 0.0f;
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    return p;
  };
  Result res;

  if (prefill) {
    const int32_t len = flags_.prompt_len;
    std::vector<int32_t> ids(len);
    for (int32_t i = 0; i < len; ++i) ids[i] = static_cast<int32_t>((i * 7919 + 1) % vocab);
    double best = 1e30, best_cpu = 1e30;
    for (int rep = 0; rep < 2; ++rep) {
      if (absl::Status s = llm.Add(greedy(ids, 1)).status(); !s.ok()) return s;
      // One step: the whole prompt and its first token.
      const auto t = Clock::now();
      const double c0 = CpuSeconds();
      const EngineCore::StepStats step = llm.Step();
      best = std::min(best, Seconds(t));
      best_cpu = std::min(best_cpu, (CpuSeconds() - c0) / threads);
      if (step.failed || step.prefill_tokens != len) {
        return absl::InternalError(absl::StrCat("prefill step computed ", step.prefill_tokens,
                                                " of ", len, " prompt tokens"));
      }
      while (llm.has_work()) llm.Step();
    }
    res.prefill_tps = len / best;
    res.prefill_cpu_tps = len / best_cpu;
  }

  const int32_t steps = flags_.decode_steps;
  for (int batch : batches) {
    const int32_t prompt = 16;
    for (int b = 0; b < batch; ++b) {
      std::vector<int32_t> ids;
      for (int i = 0; i < prompt; ++i) ids.push_back(static_cast<int32_t>((b * 131 + i * 17) % vocab));
      if (absl::Status s = llm.Add(greedy(ids, steps + 2)).status(); !s.ok()) return s;
    }
    llm.Step();  // every prompt, in one step
    // Step 0 warms caches and the thread pool; steps 1..steps are timed.
    std::vector<double> wall, cpu, probe_gbs, ratio;
    for (int step = 0; step <= steps; ++step) {
      const bool timed = step > 0;
      const bool probed = timed && probe != nullptr && batch == 1;
      double pass_gbs = 0;
      if (probed) pass_gbs = probe();
      const auto t = Clock::now();
      const double c0 = CpuSeconds();
      const EngineCore::StepStats s = llm.Step();
      if (s.failed || s.decode_tokens != batch) {
        return absl::InternalError(absl::StrCat("decode step ", step, " decoded ",
                                                s.decode_tokens, " of ", batch, " sequences"));
      }
      if (!timed) continue;
      wall.push_back(Seconds(t));
      cpu.push_back((CpuSeconds() - c0) / threads);
      if (probed) {
        probe_gbs.push_back(pass_gbs);
        ratio.push_back(weight_bytes / wall.back() / 1e9 / pass_gbs);
      }
    }
    while (llm.has_work()) llm.Step();
    Result::Decode d{.batch = batch, .tps = batch / Median(wall), .cpu_tps = batch / Median(cpu)};
    if (!ratio.empty()) {
      d.probe_gbs = Median(probe_gbs);
      d.weights_gbs = weight_bytes / Median(wall) / 1e9;
      d.limit_tps = d.probe_gbs * 1e9 / weight_bytes;
      d.percent_of_limit = 100.0 * Median(ratio);
    }
    res.decode.push_back(d);
  }
  return res;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "model_bench: %s\n", std::string(s.message()).c_str());
  return 1;
}

int Main() {
  std::string dir = flags_.model;
  if (dir.empty()) {
    dir = "/tmp/kestrel_synth/tinyllama-1.1b-bf16";
    if (!std::filesystem::exists(std::filesystem::path(dir) / "config.json")) {
      std::printf("generating synthetic tinyllama-1.1b BF16 in %s ...\n", dir.c_str());
      auto config = model::SyntheticPresetConfig("tinyllama-1.1b", kernels::DType::kBF16);
      const auto t0 = Clock::now();
      absl::Status s = model::WriteSyntheticCheckpoint({.dir = dir, .config_json = *config,
                                                 .dtype = kernels::DType::kBF16, .seed = 1});
      if (!s.ok()) return Fail(s);
      std::printf("  written in %.1f s\n", Seconds(t0));
    }
  }
  std::vector<int> batches;
  for (absl::string_view b : absl::StrSplit(flags_.batches, ',')) {
    int batch = 0;
    if (!absl::SimpleAtoi(b, &batch) || batch < 1) {
      std::fprintf(stderr, "model_bench: --batches: expected positive integers, got \"%s\"\n",
                   flags_.batches.c_str());
      return kExitUsage;
    }
    batches.push_back(batch);
  }
  const int threads = flags_.threads;
  if (flags_.tensor_parallel_size < 1) {
    std::fprintf(stderr, "model_bench: --tensor-parallel-size must be >= 1, got %d\n",
                 flags_.tensor_parallel_size);
    return kExitUsage;
  }
  std::printf("model: %s, threads: %d, tensor parallel: %d, %s\n", dir.c_str(), threads,
              flags_.tensor_parallel_size,
              flags_.bf16_dot ? "bf16 dot products" : "exact BF16 (widened to F32)");

  // The probe has its own pool as large as all ranks' pools together (the
  // limit is what every compute thread can read); its workers sleep at once
  // when idle, so they do not compete with the runner's. 0: one per CPU.
  const int probe_threads = threads > 0 ? threads * flags_.tensor_parallel_size : 0;
  auto probe_pool =
      kernels::cpu::ThreadPool::Create({.num_threads = probe_threads, .spin_microseconds = 0});
  if (!probe_pool.ok()) return Fail(probe_pool.status());
  auto probe = kernels::cpu::BandwidthProbe::Create(probe_pool->get(), {.bytes = 1ull << 30});
  if (!probe.ok()) return Fail(probe.status());
  const kernels::cpu::BandwidthResult bw = (*probe)->Measure(5);
  std::printf("memory read bandwidth at start (%d threads, %s loads, 1 GiB passes): median "
              "%.1f GB/s, range %.1f-%.1f\n",
              (*probe_pool)->num_threads(), std::string(kernels::cpu::IsaName(bw.isa)).c_str(), bw.median_gbs,
              bw.min_gbs, bw.max_gbs);

  const bool prefill = flags_.prompt_len > 0;
  auto anon = Bench(dir, SafetensorsCheckpoint::Storage::kAnonymous, batches, prefill, probe->get());
  if (!anon.ok()) return Fail(anon.status());
  std::printf("(tokens/s from the median step, wall clock; in brackets by process CPU time / threads)\n");
  if (prefill) {
    std::printf("prefill (%d-token prompt): %.1f tokens/s [%.1f]\n",
                flags_.prompt_len, anon->prefill_tps, anon->prefill_cpu_tps);
  }
  auto print_limit = [](const Result::Decode& d) {
    std::printf("\n    weights read at %.1f GB/s; bandwidth in passes interleaved with the steps "
                "%.1f GB/s (limit %.1f tokens/s);\n    %.0f%% of the bandwidth limit (median of "
                "per-step ratios)",
                d.weights_gbs, d.probe_gbs, d.limit_tps, d.percent_of_limit);
  };
  for (const Result::Decode& d : anon->decode) {
    std::printf("decode batch %2d: %.1f tokens/s [%.1f]", d.batch, d.tps, d.cpu_tps);
    if (d.percent_of_limit > 0) print_limit(d);
    std::printf("\n");
  }
  if (flags_.mmap_too && flags_.device == "cpu") {
    auto mm = Bench(dir, SafetensorsCheckpoint::Storage::kFileMmap, {1}, false, probe->get());
    if (!mm.ok()) return Fail(mm.status());
    const Result::Decode& d = mm->decode[0];
    std::printf("decode batch  1, file-mmap weights: %.1f tokens/s [%.1f]", d.tps, d.cpu_tps);
    print_limit(d);
    std::printf("\n");
  }
  return 0;
}

}  // namespace
}  // namespace kestrel::engine

int main(int argc, char** argv) {
  kestrel::engine::Flags& f = kestrel::engine::flags_;
  kestrel::FlagSet flags("model_bench", "",
                         "Prefill and decode throughput on the offline engine, against the "
                         "measured memory bandwidth.");
  flags.Add("model", &f.model, "DIR", "Model directory").DefaultText("synthetic tinyllama-1.1b BF16");
  flags.Add("device", &f.device, "cpu|cuda|cuda:N",
            "Backend; on a GPU the bandwidth probe is a device-to-device copy");
  flags.Add("threads", &f.threads, "N", "CPU compute threads (per tensor-parallel rank)");
  flags.Add("tensor-parallel-size", &f.tensor_parallel_size, "N",
            "Shard the model across N ranks on threads (CPU only, docs/parallel.md)");
  flags.Add("prompt-len", &f.prompt_len, "N", "Prefill prompt length; 0 = skip the prefill");
  flags.Add("decode-steps", &f.decode_steps, "N", "Timed decode steps per batch size");
  flags.Add("batches", &f.batches, "B,...", "Decode batch sizes");
  flags.Add("mmap-too", &f.mmap_too, "Also measure decode batch 1 with file-mmap weights");
  flags.Add("quantization", &f.quantization, "none|int8",
            "int8: linear weights quantized at load to per-channel int8 (W8A8 GEMMs)")
      .Choices({"none", "int8"});
  flags.Add("kv-cache-dtype", &f.kv_cache_dtype, "TYPE", "KV cache element type")
      .Choices({"auto", "f32", "bf16"});
  flags.Add("bf16-dot", &f.bf16_dot,
            "BF16 GEMMs with AVX512-BF16 dot products (the server's default); "
            "--no-bf16-dot = exact path");
  const kestrel::ParsedArgs args = flags.ParseOrExit(argc, argv);
  if (!args.positional.empty()) return flags.UsageError("unexpected argument " + args.positional[0]);
  if (f.threads < 0) return flags.UsageError(absl::StrCat("--threads must be >= 0, got ", f.threads));
  if (f.decode_steps < 1) {
    return flags.UsageError(absl::StrCat("--decode-steps must be >= 1, got ", f.decode_steps));
  }
  if (f.prompt_len < 0) {
    return flags.UsageError(absl::StrCat("--prompt-len must be >= 0, got ", f.prompt_len));
  }
  return kestrel::engine::Main();
}

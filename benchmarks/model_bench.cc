// model_bench: prefill and decode throughput of the CPU model runner, the
// machine's measured memory read bandwidth, and decode batch 1 as a share of
// the bandwidth limit (weight bytes per token / bandwidth). Weights in
// anonymous memory (the default) and from a plain file mmap. A shared
// machine's bandwidth drifts by tens of percent within a minute, so every
// timed batch-1 step follows a 1 GiB bandwidth pass and the share is the
// median of the per-step ratios.
//
//   bazel run -c opt //benchmarks:model_bench -- --threads=2
//
// Without --model it generates the synthetic tinyllama-1.1b BF16 checkpoint
// in /tmp/kestrel_synth/tinyllama-1.1b-bf16 on first use.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "kernels/cpu/bandwidth.h"
#include "kernels/cpu/thread_pool.h"
#include "model/model_runner.h"
#include "model/synthetic.h"

ABSL_FLAG(std::string, model, "", "Model directory; empty = synthetic tinyllama-1.1b BF16");
ABSL_FLAG(int32_t, threads, 2, "Compute threads");
ABSL_FLAG(int32_t, prompt_len, 512, "Prefill prompt length; 0 = skip the prefill measurement");
ABSL_FLAG(int32_t, decode_steps, 32, "Timed decode steps per batch size");
ABSL_FLAG(std::string, batches, "1,8,32", "Decode batch sizes");
ABSL_FLAG(bool, mmap_too, true, "Also measure decode batch 1 with file-mmap weights");
ABSL_FLAG(std::string, kv_cache_dtype, "auto", "KV cache element type: auto, f32 or bf16");
ABSL_FLAG(bool, bf16_dot, true,
          "BF16 GEMMs with AVX512-BF16 dot products (the server's default); false = exact path");

namespace kestrel::model {
namespace {

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

// `probe` (may be null) is read right before every timed batch-1 step, so the
// step's weight read rate is compared with the bandwidth of the same moment.
absl::StatusOr<Result> Bench(const std::string& dir, SafetensorsCheckpoint::Storage storage,
                             const std::vector<int>& batches, bool prefill,
                             kernels::cpu::BandwidthProbe* probe) {
  const auto t0 = Clock::now();
  const absl::StatusOr<KvCacheDType> kv_dtype =
      ParseKvCacheDType(absl::GetFlag(FLAGS_kv_cache_dtype));
  if (!kv_dtype.ok()) return kv_dtype.status();
  auto runner_or = ModelRunner::Create({.model_dir = dir,
                                        .storage = storage,
                                        .num_threads = absl::GetFlag(FLAGS_threads),
                                        .kv_cache_bytes = 1ull << 30,
                                        .bf16_dot = absl::GetFlag(FLAGS_bf16_dot),
                                        .kv_cache_dtype = *kv_dtype});
  if (!runner_or.ok()) return runner_or.status();
  ModelRunner& r = **runner_or;
  std::printf("  loaded in %.1f s (%s)\n", Seconds(t0),
              storage == SafetensorsCheckpoint::Storage::kAnonymous ? "anonymous memory"
                                                                    : "file mmap");
  const double weight_bytes = static_cast<double>(r.weights().matrix_bytes_per_token());
  std::printf("  KV cache %s, %lld blocks of %lld tokens\n",
              std::string(kernels::DTypeName(r.kv_cache_dtype())).c_str(),
              static_cast<long long>(r.num_kv_blocks()), static_cast<long long>(r.block_size()));
  if (storage == SafetensorsCheckpoint::Storage::kAnonymous) {
    std::printf("  weight bytes read per decode step: %.3f GB\n", weight_bytes / 1e9);
  }
  const int64_t bs = r.block_size();
  const int64_t vocab = r.config().vocab_size;
  Result res;
  StepOutput out;
  int32_t next_block = 0;
  auto blocks_for = [&](int64_t tokens) {
    std::vector<int32_t> b;
    for (int64_t i = 0; i < (tokens + bs - 1) / bs; ++i) b.push_back(next_block++);
    return b;
  };

  if (prefill) {
    const int32_t len = absl::GetFlag(FLAGS_prompt_len);
    std::vector<int32_t> ids(len);
    for (int32_t i = 0; i < len; ++i) ids[i] = static_cast<int32_t>((i * 7919 + 1) % vocab);
    double best = 1e30, best_cpu = 1e30;
    for (int rep = 0; rep < 2; ++rep) {
      next_block = 0;
      const std::vector<int32_t> blocks = blocks_for(len);
      SequenceInput in{.token_ids = ids, .position = 0, .block_table = blocks,
                       .logits = LogitsMode::kLast};
      const auto t = Clock::now();
      const double c0 = CpuSeconds();
      if (absl::Status s = r.Step({&in, 1}, &out); !s.ok()) return s;
      best = std::min(best, Seconds(t));
      best_cpu = std::min(best_cpu, (CpuSeconds() - c0) / r.num_threads());
    }
    res.prefill_tps = len / best;
    res.prefill_cpu_tps = len / best_cpu;
  }

  const int32_t steps = absl::GetFlag(FLAGS_decode_steps);
  for (int batch : batches) {
    next_block = 0;
    const int32_t prompt = 16;
    std::vector<std::vector<int32_t>> tables, prompts(batch);
    std::vector<SequenceInput> seqs;
    for (int b = 0; b < batch; ++b) {
      tables.push_back(blocks_for(prompt + steps + 2));
      for (int i = 0; i < prompt; ++i) prompts[b].push_back(static_cast<int32_t>((b * 131 + i * 17) % vocab));
    }
    for (int b = 0; b < batch; ++b) {
      seqs.push_back({.token_ids = prompts[b], .position = 0, .block_table = tables[b],
                      .logits = LogitsMode::kLast});
    }
    if (absl::Status s = r.Step(seqs, &out); !s.ok()) return s;
    std::vector<int32_t> tok(batch, 42);
    // Step 0 warms caches and the thread pool; steps 1..steps are timed.
    std::vector<double> wall, cpu, probe_gbs, ratio;
    for (int step = 0; step <= steps; ++step) {
      for (int b = 0; b < batch; ++b) {
        seqs[b] = {.token_ids = {&tok[b], 1}, .position = prompt + step,
                   .block_table = tables[b], .logits = LogitsMode::kLast};
      }
      const bool timed = step > 0;
      const bool probed = timed && probe != nullptr && batch == 1;
      double pass_gbs = 0;
      if (probed) pass_gbs = probe->Measure(1).median_gbs;
      const auto t = Clock::now();
      const double c0 = CpuSeconds();
      if (absl::Status s = r.Step(seqs, &out); !s.ok()) return s;
      if (!timed) continue;
      wall.push_back(Seconds(t));
      cpu.push_back((CpuSeconds() - c0) / r.num_threads());
      if (probed) {
        probe_gbs.push_back(pass_gbs);
        ratio.push_back(weight_bytes / wall.back() / 1e9 / pass_gbs);
      }
    }
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
  std::string dir = absl::GetFlag(FLAGS_model);
  if (dir.empty()) {
    dir = "/tmp/kestrel_synth/tinyllama-1.1b-bf16";
    if (!std::filesystem::exists(std::filesystem::path(dir) / "config.json")) {
      std::printf("generating synthetic tinyllama-1.1b BF16 in %s ...\n", dir.c_str());
      auto config = SyntheticPresetConfig("tinyllama-1.1b", DType::kBF16);
      const auto t0 = Clock::now();
      absl::Status s = WriteSyntheticCheckpoint({.dir = dir, .config_json = *config,
                                                 .dtype = DType::kBF16, .seed = 1});
      if (!s.ok()) return Fail(s);
      std::printf("  written in %.1f s\n", Seconds(t0));
    }
  }
  std::vector<int> batches;
  for (absl::string_view b : absl::StrSplit(absl::GetFlag(FLAGS_batches), ',')) {
    batches.push_back(std::stoi(std::string(b)));
  }
  const int threads = absl::GetFlag(FLAGS_threads);
  std::printf("model: %s, threads: %d, %s\n", dir.c_str(), threads,
              absl::GetFlag(FLAGS_bf16_dot) ? "bf16 dot products" : "exact BF16 (widened to F32)");

  // The probe has its own pool of the same size; its workers sleep at once
  // when idle, so they do not compete with the runner's.
  auto probe_pool = kernels::cpu::ThreadPool::Create({.num_threads = threads, .spin_microseconds = 0});
  if (!probe_pool.ok()) return Fail(probe_pool.status());
  auto probe = kernels::cpu::BandwidthProbe::Create(probe_pool->get(), {.bytes = 1ull << 30});
  if (!probe.ok()) return Fail(probe.status());
  const kernels::cpu::BandwidthResult bw = (*probe)->Measure(5);
  std::printf("memory read bandwidth at start (%d threads, %s loads, 1 GiB passes): median "
              "%.1f GB/s, range %.1f-%.1f\n",
              threads, std::string(kernels::cpu::IsaName(bw.isa)).c_str(), bw.median_gbs,
              bw.min_gbs, bw.max_gbs);

  const bool prefill = absl::GetFlag(FLAGS_prompt_len) > 0;
  auto anon = Bench(dir, SafetensorsCheckpoint::Storage::kAnonymous, batches, prefill, probe->get());
  if (!anon.ok()) return Fail(anon.status());
  std::printf("(tokens/s from the median step, wall clock; in brackets by process CPU time / threads)\n");
  if (prefill) {
    std::printf("prefill (%d-token prompt): %.1f tokens/s [%.1f]\n",
                absl::GetFlag(FLAGS_prompt_len), anon->prefill_tps, anon->prefill_cpu_tps);
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
  if (absl::GetFlag(FLAGS_mmap_too)) {
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
}  // namespace kestrel::model

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return kestrel::model::Main();
}

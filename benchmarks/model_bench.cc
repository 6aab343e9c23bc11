// model_bench: prefill and decode throughput of the CPU model runner, the
// machine's measured memory read bandwidth, and decode batch 1 as a share of
// the bandwidth limit (weight bytes per token / bandwidth). Weights in
// anonymous memory (the default) and from a plain file mmap.
//
//   bazel run -c opt //benchmarks:model_bench -- --threads=2
//
// Without --model it generates the synthetic tinyllama-1.1b BF16 checkpoint
// in /tmp/kestrel_synth/tinyllama-1.1b-bf16 on first use.
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "model/model_runner.h"
#include "model/synthetic.h"

ABSL_FLAG(std::string, model, "", "Model directory; empty = synthetic tinyllama-1.1b BF16");
ABSL_FLAG(int32_t, threads, 2, "Compute threads");
ABSL_FLAG(int32_t, prompt_len, 512, "Prefill prompt length");
ABSL_FLAG(int32_t, decode_steps, 16, "Timed decode steps per batch size");
ABSL_FLAG(std::string, batches, "1,8,32", "Decode batch sizes");
ABSL_FLAG(bool, mmap_too, true, "Also measure decode batch 1 with file-mmap weights");
ABSL_FLAG(bool, bf16_dot, false, "Use AVX512-BF16 dot products for BF16 GEMMs");

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

// Best of several passes of `threads` threads summing disjoint halves of a
// 1 GiB buffer: the read bandwidth a memory-bound decode can hope for.
double MeasureBandwidth(int threads) {
  const size_t bytes = size_t{1} << 30;
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 0;
  ::madvise(mem, bytes, MADV_HUGEPAGE);
  std::memset(mem, 1, bytes);
  const float* data = static_cast<const float*>(mem);
  // GCC vector extensions: 64-byte vectors lowered to the baseline SIMD, four
  // independent sums so the loads, not the adds, set the pace.
  typedef float V16 __attribute__((vector_size(64), aligned(4)));
  const size_t n = bytes / sizeof(float);
  double best = 0;
  std::atomic<uint64_t> sink{0};
  for (int pass = 0; pass < 5; ++pass) {
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const size_t begin = n * t / threads / 64 * 64, end = n * (t + 1) / threads / 64 * 64;
        V16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
        for (size_t i = begin; i < end; i += 64) {
          a0 += *reinterpret_cast<const V16*>(data + i);
          a1 += *reinterpret_cast<const V16*>(data + i + 16);
          a2 += *reinterpret_cast<const V16*>(data + i + 32);
          a3 += *reinterpret_cast<const V16*>(data + i + 48);
        }
        const V16 s = (a0 + a1) + (a2 + a3);
        float sum = 0;
        for (int j = 0; j < 16; ++j) sum += s[j];
        sink += static_cast<uint64_t>(sum);
      });
    }
    for (auto& th : pool) th.join();
    best = std::max(best, static_cast<double>(bytes) / Seconds(t0));
  }
  ::munmap(mem, bytes);
  return best;
}

struct Result {
  double prefill_tps = 0;      // wall clock
  double prefill_cpu_tps = 0;  // CPU time / threads
  struct Decode {
    int batch = 0;
    double tps = 0;
    double cpu_tps = 0;
  };
  std::vector<Decode> decode;
};

absl::StatusOr<Result> Bench(const std::string& dir, SafetensorsCheckpoint::Storage storage,
                             const std::vector<int>& batches, bool prefill) {
  const auto t0 = Clock::now();
  auto runner_or = ModelRunner::Create({.model_dir = dir,
                                        .storage = storage,
                                        .num_threads = absl::GetFlag(FLAGS_threads),
                                        .kv_cache_bytes = 1ull << 30,
                                        .bf16_dot = absl::GetFlag(FLAGS_bf16_dot)});
  if (!runner_or.ok()) return runner_or.status();
  ModelRunner& r = **runner_or;
  std::printf("  loaded in %.1f s (%s)\n", Seconds(t0),
              storage == SafetensorsCheckpoint::Storage::kAnonymous ? "anonymous memory"
                                                                    : "file mmap");
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
    Clock::time_point t;
    double c0 = 0;
    for (int step = 0; step <= steps; ++step) {
      if (step == 1) {
        t = Clock::now();
        c0 = CpuSeconds();
      }
      for (int b = 0; b < batch; ++b) {
        seqs[b] = {.token_ids = {&tok[b], 1}, .position = prompt + step,
                   .block_table = tables[b], .logits = LogitsMode::kLast};
      }
      if (absl::Status s = r.Step(seqs, &out); !s.ok()) return s;
    }
    const double tokens = static_cast<double>(batch) * steps;
    res.decode.push_back({batch, tokens / Seconds(t), tokens / ((CpuSeconds() - c0) / r.num_threads())});
  }
  return res;
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
      if (!s.ok()) {
        std::fprintf(stderr, "model_bench: %s\n", std::string(s.message()).c_str());
        return 1;
      }
      std::printf("  written in %.1f s\n", Seconds(t0));
    }
  }
  std::vector<int> batches;
  for (absl::string_view b : absl::StrSplit(absl::GetFlag(FLAGS_batches), ',')) {
    batches.push_back(std::stoi(std::string(b)));
  }
  const int threads = absl::GetFlag(FLAGS_threads);
  const double bw = MeasureBandwidth(threads);
  std::printf("model: %s, threads: %d\n", dir.c_str(), threads);
  std::printf("memory read bandwidth (%d threads, 1 GiB): %.1f GB/s\n", threads, bw / 1e9);

  auto weights = ModelWeights::Load({.dir = dir, .storage = SafetensorsCheckpoint::Storage::kFileMmap});
  if (!weights.ok()) {
    std::fprintf(stderr, "model_bench: %s\n", std::string(weights.status().message()).c_str());
    return 1;
  }
  const double bytes_per_token = static_cast<double>((*weights)->matrix_bytes_per_token());
  weights->reset();
  const double limit = bw / bytes_per_token;
  std::printf("weight bytes per decoded token: %.3f GB -> bandwidth limit %.1f tokens/s\n",
              bytes_per_token / 1e9, limit);

  auto anon = Bench(dir, SafetensorsCheckpoint::Storage::kAnonymous, batches, true);
  if (!anon.ok()) {
    std::fprintf(stderr, "model_bench: %s\n", std::string(anon.status().message()).c_str());
    return 1;
  }
  std::printf("(tokens/s by wall clock; in brackets by process CPU time / threads)\n");
  std::printf("prefill (%d-token prompt): %.1f tokens/s [%.1f]\n", absl::GetFlag(FLAGS_prompt_len),
              anon->prefill_tps, anon->prefill_cpu_tps);
  for (const Result::Decode& d : anon->decode) {
    std::printf("decode batch %2d: %.1f tokens/s [%.1f]", d.batch, d.tps, d.cpu_tps);
    if (d.batch == 1) {
      std::printf("  (%.0f%% [%.0f%%] of the bandwidth limit)", 100.0 * d.tps / limit,
                  100.0 * d.cpu_tps / limit);
    }
    std::printf("\n");
  }
  if (absl::GetFlag(FLAGS_mmap_too)) {
    auto mm = Bench(dir, SafetensorsCheckpoint::Storage::kFileMmap, {1}, false);
    if (!mm.ok()) {
      std::fprintf(stderr, "model_bench: %s\n", std::string(mm.status().message()).c_str());
      return 1;
    }
    const Result::Decode& d = mm->decode[0];
    std::printf("decode batch  1, file-mmap weights: %.1f tokens/s [%.1f]  (%.0f%% [%.0f%%] of the limit)\n",
                d.tps, d.cpu_tps, 100.0 * d.tps / limit, 100.0 * d.cpu_tps / limit);
  }
  return 0;
}

}  // namespace
}  // namespace kestrel::model

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return kestrel::model::Main();
}

// model_bench: prefill and decode throughput of a model on the serving
// engine's offline path (engine/offline.h: scheduler, worker executor, CPU
// backend, sampling), each against its memory ceiling, and where a step's
// time goes.
//
// Every timed step (prefill and each decode batch) follows a 1 GiB
// bandwidth pass: a shared machine's bandwidth drifts by tens of percent
// within a minute, so a step is compared with the bandwidth of its own
// moment. The memory ceiling of a step is tokens per step x bandwidth /
// weight bytes per step (the weights read once); the bench prints the
// median and the spread (quartiles, range) of the passes and of the
// per-step shares of the ceiling, and marks a batch far below its ceiling
// (median share < 50%) compute-bound. Then, after the timed steps (so
// profiling costs the headline numbers nothing), --profile-steps more steps
// run with op timing on every rank (kernels/profiling_backend.h) and the
// bench splits a step's wall time into GEMM, attention and the rest (the
// other ops, and the host: engine, scheduler, runner, sampling rows).
// Weights in anonymous memory (the default) and from a plain file mmap.
//
//   bazel run -c opt //engine:model_bench -- --threads=2
//
// Without --model it generates the synthetic tinyllama-1.1b BF16 checkpoint
// in /tmp/kestrel_synth/tinyllama-1.1b-bf16 on first use. The columns are
// explained in docs/benchmarks.md.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
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
#include "common/status_macros.h"
#include "engine/offline.h"
#include "engine/worker_executor.h"
#include "kernels/cpu/bandwidth.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/profiling_backend.h"
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
  int32_t profile_steps = 4;
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

// A sample's five-number summary; quartiles interpolate linearly between
// order statistics (so the median of an even count is the mean of the
// middle two).
struct Spread {
  double min = 0;
  double q1 = 0;
  double median = 0;
  double q3 = 0;
  double max = 0;
};

Spread SpreadOf(std::vector<double> v) {
  Spread s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto at = [&v](double q) {
    const double pos = q * static_cast<double>(v.size() - 1);
    const size_t i = static_cast<size_t>(std::floor(pos));
    if (i + 1 >= v.size()) return v.back();
    return v[i] + (pos - static_cast<double>(i)) * (v[i + 1] - v[i]);
  };
  s.min = v.front();
  s.q1 = at(0.25);
  s.median = at(0.5);
  s.q3 = at(0.75);
  s.max = v.back();
  return s;
}

double Median(std::vector<double> v) { return SpreadOf(std::move(v)).median; }

// A measurement against its memory ceiling, from a bandwidth pass right
// before each timed step.
struct Ceiling {
  int passes = 0;         // 0: no probe, nothing below is set
  Spread probe_gbs = {};  // the passes' GB/s
  // Per step: its weight read rate / its pass's bandwidth, which is its
  // tokens/s / the ceiling of that moment. In percent.
  Spread share = {};
  double weights_gbs = 0;  // weight bytes per step / median step time
  double ceiling_tps = 0;  // tokens per step x median pass / weight bytes per step
};

// `wall[i]` follows a pass of `pass_gbs[i]`; every step reads `weight_bytes`
// and computes `tokens` tokens.
Ceiling CeilingOf(const std::vector<double>& wall, const std::vector<double>& pass_gbs,
                  double tokens, double weight_bytes) {
  Ceiling c;
  if (pass_gbs.empty() || pass_gbs.size() != wall.size()) return c;
  std::vector<double> share;
  for (size_t i = 0; i < wall.size(); ++i) {
    share.push_back(100.0 * weight_bytes / wall[i] / 1e9 / pass_gbs[i]);
  }
  c.passes = static_cast<int>(pass_gbs.size());
  c.probe_gbs = SpreadOf(pass_gbs);
  c.share = SpreadOf(std::move(share));
  c.weights_gbs = weight_bytes / Median(wall) / 1e9;
  c.ceiling_tps = tokens * c.probe_gbs.median * 1e9 / weight_bytes;
  return c;
}

// Where a step's wall time goes, from profiled steps run after the timed
// ones: per step, averaged over the steps and, for the ops, over the
// tensor-parallel ranks (which run side by side).
struct Breakdown {
  int steps = 0;            // 0: not profiled
  double step_ms = 0;       // wall clock
  double gemm_ms = 0;       // Gemm
  double attention_ms = 0;  // PagedAttention
  double other_ops_ms = 0;  // every other op: norms, RoPE, KV writes, sampling, ...
  // The rest: step - GEMM - attention = other ops + host (engine, scheduler,
  // the runner's own work, and with tensor parallelism the all-reduces).
  double rest_ms() const { return step_ms - gemm_ms - attention_ms; }
};

// The ranks' op timers (Worker::Options::profile_ops), on only while
// profiled steps run. Empty: no breakdown.
class RankProfilers {
 public:
  explicit RankProfilers(std::vector<kernels::ProfilingBackend*> ranks)
      : ranks_(std::move(ranks)) {}
  bool empty() const { return ranks_.empty(); }
  void Start() {
    for (kernels::ProfilingBackend* r : ranks_) {
      r->Reset();
      r->set_enabled(true);
    }
  }
  // `wall`: seconds the `steps` steps took since Start.
  Breakdown Stop(double wall, int steps) {
    Breakdown b{.steps = steps, .step_ms = 1e3 * wall / steps};
    const double per_step_ms = 1e3 / steps / static_cast<double>(ranks_.size());
    for (kernels::ProfilingBackend* r : ranks_) {
      r->set_enabled(false);
      const kernels::OpProfile& p = r->profile();
      const double gemm = p[kernels::OpKind::kGemm].seconds;
      const double attention = p[kernels::OpKind::kPagedAttention].seconds;
      b.gemm_ms += per_step_ms * gemm;
      b.attention_ms += per_step_ms * attention;
      b.other_ops_ms += per_step_ms * (p.total_seconds() - gemm - attention);
    }
    return b;
  }

 private:
  std::vector<kernels::ProfilingBackend*> ranks_;  // not owned: the workers' backends
};

// Every rank's op timer; empty without Worker::Options::profile_ops.
std::vector<kernels::ProfilingBackend*> ProfilersOf(WorkerExecutor& executor) {
  std::vector<kernels::ProfilingBackend*> ranks;
  for (int r = 0; r < executor.num_workers(); ++r) {
    if (kernels::ProfilingBackend* p = executor.worker(r).profiler(); p != nullptr) {
      ranks.push_back(p);
    }
  }
  return ranks;
}

struct Result {
  struct Prefill {
    double tps = 0;      // prompt tokens / best step time, wall clock
    double cpu_tps = 0;  // the same by CPU time / threads
    Ceiling ceiling = {};
    Breakdown breakdown = {};
  };
  std::optional<Prefill> prefill;
  struct Decode {
    int batch = 0;
    double tps = 0;      // batch / median step time
    double cpu_tps = 0;  // batch / median step CPU time per thread
    Ceiling ceiling = {};
    Breakdown breakdown = {};
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

GenerateParams Greedy(std::vector<int32_t> prompt, int max_tokens) {
  GenerateParams p;
  p.prompt_ids = std::move(prompt);
  p.sampling.temperature = 0.0f;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

// What the measurements on one loaded model share.
struct Setup {
  OfflineEngine* llm = nullptr;             // not owned
  std::function<double()> probe = nullptr;  // one bandwidth pass, GB/s; null: no ceilings
  RankProfilers* profilers = nullptr;       // not owned; empty: no breakdown
  double weight_bytes = 0;                  // matrix bytes read per step
  double threads = 0;                       // compute threads of all ranks
  int64_t vocab = 0;
};

// Per timed step: wall seconds, CPU seconds per compute thread, and the
// GB/s of the bandwidth pass before it (when probed).
struct StepTimes {
  std::vector<double> wall, cpu, pass_gbs;
};

// One engine step, after a bandwidth pass when `probed`, appended to `times`.
EngineCore::StepStats TimedStep(const Setup& setup, bool probed, StepTimes* times) {
  if (probed) times->pass_gbs.push_back(setup.probe());
  const auto t = Clock::now();
  const double c0 = CpuSeconds();
  const EngineCore::StepStats stats = setup.llm->Step();
  times->wall.push_back(Seconds(t));
  times->cpu.push_back((CpuSeconds() - c0) / setup.threads);
  return stats;
}

// An error unless the step computed exactly the tokens the measurement
// times (a failed or preempted step would make the figure meaningless).
absl::Status CheckStep(const EngineCore::StepStats& s, int prefill_tokens, int decode_tokens,
                       absl::string_view what) {
  if (s.failed || s.prefill_tokens != prefill_tokens || s.decode_tokens != decode_tokens) {
    return absl::InternalError(absl::StrCat(what, " computed ", s.prefill_tokens, " prompt and ",
                                            s.decode_tokens, " decode tokens, expected ",
                                            prefill_tokens, " and ", decode_tokens,
                                            s.failed ? " (the step failed)" : ""));
  }
  return absl::OkStatus();
}

// A --prompt-len prompt and its first token in one step, twice (the best
// counts), then once more profiled.
absl::StatusOr<Result::Prefill> MeasurePrefill(const Setup& setup) {
  OfflineEngine& llm = *setup.llm;
  const int32_t len = flags_.prompt_len;
  std::vector<int32_t> ids(len);
  for (int32_t i = 0; i < len; ++i) ids[i] = static_cast<int32_t>((i * 7919 + 1) % setup.vocab);
  StepTimes times;
  for (int rep = 0; rep < 2; ++rep) {
    RETURN_IF_ERROR(llm.Add(Greedy(ids, 1)).status());
    RETURN_IF_ERROR(CheckStep(TimedStep(setup, setup.probe != nullptr, &times), len, 0, "prefill"));
    while (llm.has_work()) llm.Step();
  }
  Result::Prefill res;
  res.tps = len / *std::min_element(times.wall.begin(), times.wall.end());
  res.cpu_tps = len / *std::min_element(times.cpu.begin(), times.cpu.end());
  res.ceiling = CeilingOf(times.wall, times.pass_gbs, len, setup.weight_bytes);
  if (!setup.profilers->empty() && flags_.profile_steps > 0) {
    RETURN_IF_ERROR(llm.Add(Greedy(ids, 1)).status());
    setup.profilers->Start();
    const auto t = Clock::now();
    const EngineCore::StepStats stats = llm.Step();
    res.breakdown = setup.profilers->Stop(Seconds(t), 1);
    RETURN_IF_ERROR(CheckStep(stats, len, 0, "profiled prefill"));
    while (llm.has_work()) llm.Step();
  }
  return res;
}

// `batch` 16-token prompts in one step, one untimed decode step (caches,
// thread pool), --decode-steps timed ones (each after a bandwidth pass),
// then --profile-steps profiled ones.
absl::StatusOr<Result::Decode> MeasureDecode(const Setup& setup, int batch) {
  OfflineEngine& llm = *setup.llm;
  const int32_t steps = flags_.decode_steps;
  const int32_t profiled = setup.profilers->empty() ? 0 : flags_.profile_steps;
  for (int b = 0; b < batch; ++b) {
    std::vector<int32_t> ids;
    for (int i = 0; i < 16; ++i) {
      ids.push_back(static_cast<int32_t>((b * 131 + i * 17) % setup.vocab));
    }
    RETURN_IF_ERROR(llm.Add(Greedy(ids, steps + profiled + 2)).status());
  }
  llm.Step();  // every prompt, in one step
  StepTimes warmup, times;
  RETURN_IF_ERROR(CheckStep(TimedStep(setup, false, &warmup), 0, batch, "decode step 0"));
  for (int step = 1; step <= steps; ++step) {
    RETURN_IF_ERROR(CheckStep(TimedStep(setup, setup.probe != nullptr, &times), 0, batch,
                              absl::StrCat("decode step ", step)));
  }
  Result::Decode d{.batch = batch, .tps = batch / Median(times.wall),
                   .cpu_tps = batch / Median(times.cpu)};
  d.ceiling = CeilingOf(times.wall, times.pass_gbs, batch, setup.weight_bytes);
  if (profiled > 0) {
    setup.profilers->Start();
    const auto t = Clock::now();
    for (int step = 0; step < profiled; ++step) {
      const EngineCore::StepStats stats = llm.Step();
      if (absl::Status s = CheckStep(stats, 0, batch, "profiled decode step"); !s.ok()) {
        setup.profilers->Stop(Seconds(t), step + 1);
        return s;
      }
    }
    d.breakdown = setup.profilers->Stop(Seconds(t), profiled);
  }
  while (llm.has_work()) llm.Step();
  return d;
}

// Loads the model from `dir` and measures it. `cpu_probe` (may be null)
// gives the interleaved bandwidth passes; on a GPU the probe is a device
// copy instead. `profile`: the op-profiled steps too (--profile-steps).
absl::StatusOr<Result> Bench(const std::string& dir, SafetensorsCheckpoint::Storage storage,
                             const std::vector<int>& batches, bool prefill,
                             kernels::cpu::BandwidthProbe* cpu_probe, bool profile) {
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
                                        .kv_cache_dtype = *kv_dtype},
                             .profile_ops = profile && flags_.profile_steps > 0};
  auto executor = WorkerExecutor::Create(executor_options, weights);
  if (!executor.ok()) return executor.status();
  model::Worker* worker = &(*executor)->worker(0);
  RankProfilers profilers(ProfilersOf(**executor));
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
  Setup setup{.profilers = &profilers};
  if (device_probe.has_value()) {
    setup.probe = [&] { return device_probe->MeasureReadGbs(); };
  } else if (cpu_probe != nullptr) {
    setup.probe = [cpu_probe] { return cpu_probe->Measure(1).median_gbs; };
  }
  const model::ModelRunner& r = worker->runner();
  setup.weight_bytes = static_cast<double>(weights->matrix_bytes_per_token());
  std::printf("  weights quantization %s (%.3f GB of the checkpoint released after quantizing)\n",
              model::QuantizationName(weights->quantization()),
              static_cast<double>(weights->released_checkpoint_bytes()) / 1e9);
  std::printf("  KV cache %s, %lld blocks of %lld tokens\n", kernels::DTypeName(r.kv_cache_dtype()),
              static_cast<long long>(r.num_kv_blocks()), static_cast<long long>(r.block_size()));
  if (storage == SafetensorsCheckpoint::Storage::kAnonymous) {
    std::printf("  weight bytes read per step: %.3f GB\n", setup.weight_bytes / 1e9);
  }
  setup.vocab = r.config().vocab_size;
  int max_batch = 1;
  for (int b : batches) max_batch = std::max(max_batch, b);
  EngineOptions options;
  // A whole prompt (or every batch's prompts) in one step, and no prefix
  // cache: each measurement computes everything it times.
  options.max_num_batched_tokens = std::max({2048, flags_.prompt_len, 16 * max_batch});
  options.max_num_seqs = std::max(max_batch, 1);
  options.enable_prefix_caching = false;
  options.request_log = RequestLogFormat::kOff;
  ASSIGN_OR_RETURN(std::unique_ptr<OfflineEngine> llm,
                   OfflineEngine::Create(options, std::move(*executor), nullptr));
  setup.llm = llm.get();
  // Compute threads of all ranks together (threads = 0 shares the CPUs).
  setup.threads = flags_.threads > 0 ? flags_.threads * flags_.tensor_parallel_size
                                     : std::thread::hardware_concurrency();
  Result res;
  if (prefill) {
    ASSIGN_OR_RETURN(res.prefill, MeasurePrefill(setup));
  }
  for (int batch : batches) {
    ASSIGN_OR_RETURN(Result::Decode d, MeasureDecode(setup, batch));
    res.decode.push_back(d);
  }
  return res;
}

// Milliseconds with about three significant digits: 4.21, 42.1, 421.
std::string Ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), ms < 10 ? "%.2f" : ms < 100 ? "%.1f" : "%.0f", ms);
  return buf;
}

// "    per step (4 profiled): 36.5 ms = GEMM 33.1 (91%) + attention ..."
void PrintBreakdown(const Breakdown& b) {
  if (b.steps == 0) return;
  auto pct = [&b](double ms) { return 100.0 * ms / b.step_ms; };
  std::printf("    per step (%d profiled): %s ms = GEMM %s (%.0f%%) + attention %s (%.0f%%) + "
              "rest %s (%.0f%%: other ops %s, host %s)\n",
              b.steps, Ms(b.step_ms).c_str(), Ms(b.gemm_ms).c_str(),
              pct(b.gemm_ms), Ms(b.attention_ms).c_str(), pct(b.attention_ms),
              Ms(b.rest_ms()).c_str(), pct(b.rest_ms()), Ms(b.other_ops_ms).c_str(),
              Ms(b.rest_ms() - b.other_ops_ms).c_str());
}

// The end of the headline line (", memory ceiling ...") and, with
// `spread`, the spread of the per-step shares and of the passes (a prefill
// has two of each: its median and range on one line instead).
void PrintCeiling(const Ceiling& c, bool spread) {
  if (c.passes == 0) {
    std::printf("\n");
    return;
  }
  // Far below the memory ceiling: the step is bound by something else.
  const bool compute_bound = c.share.median < 50;
  std::printf(", memory ceiling %.1f tokens/s%s\n", c.ceiling_tps,
              compute_bound ? ": compute-bound" : "");
  if (!spread) {
    std::printf("    %.0f%% of the ceiling; bandwidth %.1f GB/s (%d passes, %.1f-%.1f)\n",
                c.share.median, c.probe_gbs.median, c.passes, c.probe_gbs.min, c.probe_gbs.max);
    return;
  }
  std::printf("    share of the ceiling per step: median %.0f%%, IQR %.0f-%.0f%%, range "
              "%.0f-%.0f%%\n",
              c.share.median, c.share.q1, c.share.q3, c.share.min, c.share.max);
  std::printf("    bandwidth (%d passes between the steps): median %.1f GB/s, IQR %.1f-%.1f, range "
              "%.1f-%.1f; weights read at %.1f\n",
              c.passes, c.probe_gbs.median, c.probe_gbs.q1, c.probe_gbs.q3, c.probe_gbs.min,
              c.probe_gbs.max, c.weights_gbs);
}

void PrintResult(const Result& res, absl::string_view label) {
  if (res.prefill.has_value()) {
    const Result::Prefill& p = *res.prefill;
    std::printf("prefill (%d-token prompt): %.1f tokens/s [%.1f]", flags_.prompt_len, p.tps,
                p.cpu_tps);
    PrintCeiling(p.ceiling, /*spread=*/false);
    PrintBreakdown(p.breakdown);
  }
  for (const Result::Decode& d : res.decode) {
    std::printf("decode batch %2d%s: %.1f tokens/s [%.1f]", d.batch,
                std::string(label).c_str(), d.tps, d.cpu_tps);
    PrintCeiling(d.ceiling, /*spread=*/true);
    PrintBreakdown(d.breakdown);
  }
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
  auto anon = Bench(dir, SafetensorsCheckpoint::Storage::kAnonymous, batches, prefill, probe->get(),
                    /*profile=*/true);
  if (!anon.ok()) return Fail(anon.status());
  std::printf("(tokens/s from the median step, wall clock; in brackets by process CPU time / "
              "threads; memory ceiling: tokens per step x bandwidth / weight bytes)\n");
  PrintResult(*anon, "");
  if (flags_.mmap_too && flags_.device == "cpu") {
    auto mm = Bench(dir, SafetensorsCheckpoint::Storage::kFileMmap, {1}, false, probe->get(),
                    /*profile=*/false);
    if (!mm.ok()) return Fail(mm.status());
    PrintResult(*mm, ", file-mmap weights");
  }
  return 0;
}

}  // namespace
}  // namespace kestrel::engine

int main(int argc, char** argv) {
  kestrel::engine::Flags& f = kestrel::engine::flags_;
  kestrel::FlagSet flags("model_bench", "",
                         "Prefill and decode throughput on the offline engine, against the "
                         "measured memory bandwidth, and where a step's time goes.");
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
  flags.Add("profile-steps", &f.profile_steps, "N",
            "Op-profiled steps after each timed decode batch (and one prefill) for the time "
            "per step in GEMM, attention and the rest; 0 = none");
  flags.Add("bf16-dot", &f.bf16_dot,
            "BF16 GEMMs with AVX512-BF16 dot products (the server's default); "
            "--no-bf16-dot = exact path");
  const kestrel::ParsedArgs args = flags.ParseOrExit(argc, argv);
  if (!args.positional.empty()) return flags.UsageError("unexpected argument " + args.positional[0]);
  if (f.threads < 0) return flags.UsageError(absl::StrCat("--threads must be >= 0, got ", f.threads));
  if (f.decode_steps < 1) {
    return flags.UsageError(absl::StrCat("--decode-steps must be >= 1, got ", f.decode_steps));
  }
  if (f.profile_steps < 0) {
    return flags.UsageError(absl::StrCat("--profile-steps must be >= 0, got ", f.profile_steps));
  }
  if (f.prompt_len < 0) {
    return flags.UsageError(absl::StrCat("--prompt-len must be >= 0, got ", f.prompt_len));
  }
  return kestrel::engine::Main();
}

// What kestrel-bench sends and when: synthetic prompts with length
// distributions and a shared prefix, prompts from a JSONL dataset, and the
// arrival process (Poisson, gamma with burstiness, constant, all at once).
#ifndef KESTREL_BENCHMARKS_BENCH_WORKLOAD_H_
#define KESTREL_BENCHMARKS_BENCH_WORKLOAD_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kestrel::bench {

// One request to send.
struct BenchRequest {
  int64_t index = 0;
  // Exactly one of: a text prompt, or token ids (synthetic workloads send
  // ids so that input lengths are exact whatever the tokenizer).
  std::string text;
  std::vector<int32_t> token_ids;
  // Prompt length when known (token prompts); 0 for text prompts, whose
  // length comes from the server's usage report.
  int64_t input_tokens = 0;
  // stopping.max_tokens; unset: the server's default.
  std::optional<int32_t> max_tokens;
  bool ignore_eos = false;
};

// A length distribution: "fixed:N", "uniform:MIN:MAX" or "normal:MEAN:STDDEV"
// (a bare number means fixed). Samples are rounded and at least 1.
class LengthDistribution {
 public:
  static absl::StatusOr<LengthDistribution> Parse(const std::string& spec);
  int32_t Sample(std::mt19937_64& random) const;
  // The largest value Sample can return (normal: mean + 6 stddev).
  int32_t Max() const;

 private:
  enum class Kind { kFixed, kUniform, kNormal };
  Kind kind_ = Kind::kFixed;
  double a_ = 1;  // fixed value, uniform min, normal mean
  double b_ = 0;  // uniform max, normal stddev
};

// Produces the requests of a run in order. Not thread-safe: the runner
// calls it from one thread.
class Workload {
 public:
  virtual ~Workload() = default;
  virtual BenchRequest Next() = 0;
};

struct SyntheticOptions {
  LengthDistribution input_length;   // Prompt tokens.
  LengthDistribution output_length;  // max_tokens of each request.
  // Fraction of each prompt taken from one prefix shared by every request,
  // in [0, 1]: exercises the server's prefix cache.
  double shared_prefix_fraction = 0;
  // Prompt token ids are drawn uniformly from [first_token_id, vocab_size);
  // the low ids are left out because they are BOS/EOS/padding in most
  // vocabularies.
  int32_t first_token_id = 3;
  int32_t vocab_size = 256;
  bool ignore_eos = false;
  uint64_t seed = 0;
};

class SyntheticWorkload final : public Workload {
 public:
  static absl::StatusOr<std::unique_ptr<SyntheticWorkload>> Create(const SyntheticOptions& options);
  BenchRequest Next() override;

 private:
  explicit SyntheticWorkload(const SyntheticOptions& options);

  const SyntheticOptions options_;
  std::mt19937_64 random_;
  std::vector<int32_t> shared_prefix_;  // As long as the longest prompt.
  int64_t next_index_ = 0;
};

struct DatasetOptions {
  // JSONL: one object per line with a string "prompt" and optionally an
  // integer "output_tokens" (its max_tokens; else `default_output_tokens`).
  // Blank lines are skipped.
  std::string path;
  std::optional<int32_t> default_output_tokens;
  bool ignore_eos = false;
};

// Sends the dataset's prompts in file order, starting over at the end.
class DatasetWorkload final : public Workload {
 public:
  // Fails on an unreadable or empty file, or a malformed line (the message
  // names the file and the line number).
  static absl::StatusOr<std::unique_ptr<DatasetWorkload>> Create(const DatasetOptions& options);
  BenchRequest Next() override;
  size_t size() const { return prompts_.size(); }

 private:
  DatasetWorkload() = default;

  std::vector<BenchRequest> prompts_;
  int64_t next_index_ = 0;
};

// Gaps between request arrivals. Not thread-safe.
class ArrivalProcess {
 public:
  enum class Kind { kPoisson, kConstant };
  // `rate` in requests per second, > 0; infinity sends everything at once.
  // `burstiness` (> 0) is the shape of the gamma distribution of the gaps:
  // 1 is Poisson, below 1 burstier, above 1 more regular (ignored for
  // constant arrivals).
  static absl::StatusOr<ArrivalProcess> Create(double rate, Kind kind, double burstiness,
                                               uint64_t seed);
  // Seconds until the next arrival.
  double NextGap();

 private:
  ArrivalProcess(double rate, Kind kind, double burstiness, uint64_t seed);

  double rate_;
  Kind kind_;
  std::gamma_distribution<double> gamma_;
  std::mt19937_64 random_;
};

}  // namespace kestrel::bench

#endif  // KESTREL_BENCHMARKS_BENCH_WORKLOAD_H_

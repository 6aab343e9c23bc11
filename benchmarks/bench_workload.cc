// Workload generators and arrival processes for kestrel-bench.
#include "benchmarks/bench_workload.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

namespace kestrel::bench {

absl::StatusOr<LengthDistribution> LengthDistribution::Parse(const std::string& spec) {
  std::vector<std::string> parts = absl::StrSplit(spec, ':');
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("length distribution '", spec, "': ", why,
                     " (expected fixed:N, uniform:MIN:MAX or normal:MEAN:STDDEV)"));
  };
  if (parts.size() == 1) parts.insert(parts.begin(), "fixed");
  std::vector<double> numbers;
  for (size_t i = 1; i < parts.size(); ++i) {
    double number;
    if (!absl::SimpleAtod(parts[i], &number) || !std::isfinite(number)) {
      return bad(absl::StrCat("'", parts[i], "' is not a number"));
    }
    numbers.push_back(number);
  }
  LengthDistribution distribution;
  if (parts[0] == "fixed" && numbers.size() == 1) {
    distribution.kind_ = Kind::kFixed;
    if (numbers[0] < 1) return bad("must be at least 1");
  } else if (parts[0] == "uniform" && numbers.size() == 2) {
    distribution.kind_ = Kind::kUniform;
    if (numbers[0] < 1 || numbers[1] < numbers[0]) return bad("needs 1 <= MIN <= MAX");
  } else if (parts[0] == "normal" && numbers.size() == 2) {
    distribution.kind_ = Kind::kNormal;
    if (numbers[0] < 1 || numbers[1] < 0) return bad("needs MEAN >= 1 and STDDEV >= 0");
  } else {
    return bad("unknown form");
  }
  distribution.a_ = numbers[0];
  distribution.b_ = numbers.size() > 1 ? numbers[1] : 0;
  return distribution;
}

int32_t LengthDistribution::Sample(std::mt19937_64& random) const {
  double value = a_;
  switch (kind_) {
    case Kind::kFixed:
      break;
    case Kind::kUniform:
      value = static_cast<double>(std::uniform_int_distribution<int64_t>(
          static_cast<int64_t>(std::llround(a_)), static_cast<int64_t>(std::llround(b_)))(random));
      break;
    case Kind::kNormal:
      value =
          std::clamp(std::normal_distribution<double>(a_, b_)(random), a_ - 6 * b_, a_ + 6 * b_);
      break;
  }
  return static_cast<int32_t>(std::max<int64_t>(1, std::llround(value)));
}

int32_t LengthDistribution::Max() const {
  switch (kind_) {
    case Kind::kFixed:
      return static_cast<int32_t>(std::max<int64_t>(1, std::llround(a_)));
    case Kind::kUniform:
      return static_cast<int32_t>(std::llround(b_));
    case Kind::kNormal:
      return static_cast<int32_t>(std::max<int64_t>(1, std::llround(a_ + 6 * b_)));
  }
  return 1;
}

absl::StatusOr<std::unique_ptr<SyntheticWorkload>> SyntheticWorkload::Create(
    const SyntheticOptions& options) {
  if (options.shared_prefix_fraction < 0 || options.shared_prefix_fraction > 1) {
    return absl::InvalidArgumentError(absl::StrCat("shared prefix fraction must be in [0, 1], got ",
                                                   options.shared_prefix_fraction));
  }
  if (options.first_token_id < 0 || options.vocab_size <= options.first_token_id) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocabulary size must be > ", options.first_token_id, ", got ", options.vocab_size));
  }
  return std::unique_ptr<SyntheticWorkload>(new SyntheticWorkload(options));
}

SyntheticWorkload::SyntheticWorkload(const SyntheticOptions& options)
    : options_(options), random_(options.seed) {
  std::uniform_int_distribution<int32_t> token(options_.first_token_id, options_.vocab_size - 1);
  const int32_t prefix_length = static_cast<int32_t>(
      std::floor(options_.shared_prefix_fraction * options_.input_length.Max()));
  for (int32_t i = 0; i < prefix_length; ++i) shared_prefix_.push_back(token(random_));
}

BenchRequest SyntheticWorkload::Next() {
  BenchRequest request;
  request.index = next_index_++;
  const int32_t input = options_.input_length.Sample(random_);
  const int32_t shared =
      std::min<int32_t>(static_cast<int32_t>(std::floor(options_.shared_prefix_fraction * input)),
                        static_cast<int32_t>(shared_prefix_.size()));
  request.token_ids.assign(shared_prefix_.begin(), shared_prefix_.begin() + shared);
  std::uniform_int_distribution<int32_t> token(options_.first_token_id, options_.vocab_size - 1);
  while (static_cast<int32_t>(request.token_ids.size()) < input) {
    request.token_ids.push_back(token(random_));
  }
  request.input_tokens = input;
  request.max_tokens = options_.output_length.Sample(random_);
  request.ignore_eos = options_.ignore_eos;
  return request;
}

absl::StatusOr<std::unique_ptr<DatasetWorkload>> DatasetWorkload::Create(
    const DatasetOptions& options) {
  std::ifstream file(options.path);
  if (!file) {
    return absl::NotFoundError(absl::StrCat("cannot read dataset '", options.path, "'"));
  }
  std::unique_ptr<DatasetWorkload> workload(new DatasetWorkload());
  std::string line;
  for (int line_number = 1; std::getline(file, line); ++line_number) {
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    auto error = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat(options.path, ":", line_number, ": ", why));
    };
    nlohmann::json json = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded()) return error("not valid JSON");
    if (!json.is_object()) return error("expected a JSON object");
    auto prompt = json.find("prompt");
    if (prompt == json.end() || !prompt->is_string()) {
      return error("expected a string field \"prompt\"");
    }
    BenchRequest request;
    request.text = prompt->get<std::string>();
    request.max_tokens = options.default_output_tokens;
    auto output = json.find("output_tokens");
    if (output != json.end()) {
      if (!output->is_number_integer() || output->get<int64_t>() < 1 ||
          output->get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return error("\"output_tokens\" must be a positive integer");
      }
      request.max_tokens = output->get<int32_t>();
    }
    request.ignore_eos = options.ignore_eos;
    workload->prompts_.push_back(std::move(request));
  }
  if (file.bad()) return absl::DataLossError(absl::StrCat("error reading '", options.path, "'"));
  if (workload->prompts_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("dataset '", options.path, "' has no prompts"));
  }
  return workload;
}

BenchRequest DatasetWorkload::Next() {
  BenchRequest request = prompts_[static_cast<size_t>(next_index_) % prompts_.size()];
  request.index = next_index_++;
  return request;
}

absl::StatusOr<ArrivalProcess> ArrivalProcess::Create(double rate, Kind kind, double burstiness,
                                                      uint64_t seed) {
  if (!(rate > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("request rate must be > 0, got ", rate));
  }
  if (!(burstiness > 0) || std::isinf(burstiness)) {
    return absl::InvalidArgumentError(
        absl::StrCat("burstiness must be a positive number, got ", burstiness));
  }
  return ArrivalProcess(rate, kind, burstiness, seed);
}

ArrivalProcess::ArrivalProcess(double rate, Kind kind, double burstiness, uint64_t seed)
    : rate_(rate),
      kind_(kind),
      // Mean gap shape * scale = 1 / rate whatever the burstiness.
      gamma_(burstiness, std::isinf(rate) ? 1.0 : 1.0 / (rate * burstiness)),
      random_(seed) {}

double ArrivalProcess::NextGap() {
  if (std::isinf(rate_)) return 0;
  if (kind_ == Kind::kConstant) return 1.0 / rate_;
  return gamma_(random_);
}

}  // namespace kestrel::bench

// Tests of workloads and arrival processes: distributions, shared prefixes,
// dataset errors with line numbers, and arrival rates.
#include "benchmarks/bench_workload.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>

#include "testing/subprocess.h"

namespace kestrel::bench {
namespace {

using Catch::Detail::Approx;

TEST_CASE("Length distributions parse and sample in range") {
  std::mt19937_64 random(1);
  auto fixed = LengthDistribution::Parse("64");
  REQUIRE(fixed.ok());
  CHECK(fixed->Sample(random) == 64);
  auto uniform = LengthDistribution::Parse("uniform:10:20");
  REQUIRE(uniform.ok());
  double sum = 0;
  for (int i = 0; i < 2000; ++i) {
    const int32_t value = uniform->Sample(random);
    REQUIRE(value >= 10);
    REQUIRE(value <= 20);
    sum += value;
  }
  CHECK(sum / 2000 == Approx(15).margin(0.5));
  auto normal = LengthDistribution::Parse("normal:100:10");
  REQUIRE(normal.ok());
  sum = 0;
  for (int i = 0; i < 2000; ++i) sum += normal->Sample(random);
  CHECK(sum / 2000 == Approx(100).margin(2));
  CHECK(normal->Max() == 160);

  for (const char* bad :
       {"", "fixed:0", "uniform:5", "uniform:9:3", "normal:10:-1", "zipf:3", "fixed:x"}) {
    INFO(bad);
    CHECK(LengthDistribution::Parse(bad).status().code() == absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("Synthetic prompts have the asked lengths and share the asked prefix") {
  SyntheticOptions options;
  options.input_length = *LengthDistribution::Parse("fixed:40");
  options.output_length = *LengthDistribution::Parse("uniform:5:8");
  options.shared_prefix_fraction = 0.5;
  options.vocab_size = 100;
  options.ignore_eos = true;
  auto workload = SyntheticWorkload::Create(options);
  REQUIRE(workload.ok());
  BenchRequest first = (*workload)->Next();
  BenchRequest second = (*workload)->Next();
  CHECK(first.index == 0);
  CHECK(second.index == 1);
  REQUIRE(first.token_ids.size() == 40);
  CHECK(first.input_tokens == 40);
  CHECK(first.ignore_eos);
  CHECK(*first.max_tokens >= 5);
  CHECK(*first.max_tokens <= 8);
  CHECK(
      std::equal(first.token_ids.begin(), first.token_ids.begin() + 20, second.token_ids.begin()));
  // The rest is random: the two suffixes differ.
  CHECK_FALSE(std::equal(first.token_ids.begin() + 20, first.token_ids.end(),
                         second.token_ids.begin() + 20));
  for (int32_t id : first.token_ids) {
    REQUIRE(id >= 3);
    REQUIRE(id < 100);
  }
  options.shared_prefix_fraction = 1.5;
  CHECK_FALSE(SyntheticWorkload::Create(options).ok());
}

std::string WriteFile(const std::string& name, const std::string& contents) {
  const auto path = kestrel::testing::MakeTempDir("dataset") / name;
  std::ofstream(path) << contents;
  return path.string();
}

TEST_CASE("A JSONL dataset loads, cycles, and reports bad lines by number") {
  const std::string path = WriteFile("ok.jsonl",
                                     "{\"prompt\": \"Once upon a time\", \"output_tokens\": 7}\n\n"
                                     "{\"prompt\": \"Hello\"}\n");
  auto workload =
      DatasetWorkload::Create({.path = path, .default_output_tokens = 3, .ignore_eos = false});
  REQUIRE(workload.ok());
  CHECK((*workload)->size() == 2);
  BenchRequest a = (*workload)->Next();
  BenchRequest b = (*workload)->Next();
  BenchRequest c = (*workload)->Next();
  CHECK(a.text == "Once upon a time");
  CHECK(*a.max_tokens == 7);
  CHECK(*b.max_tokens == 3);
  CHECK(c.text == a.text);
  CHECK(c.index == 2);

  auto error = [](const std::string& contents) {
    return std::string(DatasetWorkload::Create({.path = WriteFile("bad.jsonl", contents),
                                                .default_output_tokens = std::nullopt,
                                                .ignore_eos = false})
                           .status()
                           .message());
  };
  CHECK(error("{\"prompt\": \"a\"}\n{\"prompt\": \"b\"\n").find("bad.jsonl:2: not valid JSON") !=
        std::string::npos);
  CHECK(error("\n\n[1, 2]\n").find(":3: expected a JSON object") != std::string::npos);
  CHECK(error("{\"text\": \"a\"}\n").find(":1: expected a string field \"prompt\"") !=
        std::string::npos);
  CHECK(error("{\"prompt\": \"a\", \"output_tokens\": -4}\n").find(":1: \"output_tokens\"") !=
        std::string::npos);
  CHECK(error("\n").find("has no prompts") != std::string::npos);
  CHECK(DatasetWorkload::Create(
            {.path = "/no/such/file.jsonl", .default_output_tokens = 1, .ignore_eos = false})
            .status()
            .code() == absl::StatusCode::kNotFound);
}

TEST_CASE("Arrival processes have the asked mean rate and shape") {
  auto constant = ArrivalProcess::Create(4, ArrivalProcess::Kind::kConstant, 1, 0);
  REQUIRE(constant.ok());
  CHECK(constant->NextGap() == Approx(0.25));
  auto all_at_once = ArrivalProcess::Create(INFINITY, ArrivalProcess::Kind::kPoisson, 1, 0);
  REQUIRE(all_at_once.ok());
  CHECK(all_at_once->NextGap() == 0);

  for (double burstiness : {1.0, 0.25, 4.0}) {
    auto process = ArrivalProcess::Create(10, ArrivalProcess::Kind::kPoisson, burstiness, 3);
    REQUIRE(process.ok());
    double sum = 0, sum_squares = 0;
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
      const double gap = process->NextGap();
      sum += gap;
      sum_squares += gap * gap;
    }
    const double mean = sum / n;
    const double variance = sum_squares / n - mean * mean;
    INFO("burstiness " << burstiness);
    CHECK(mean == Approx(0.1).epsilon(0.05));
    // Gamma: coefficient of variation squared = 1 / shape.
    CHECK(variance / (mean * mean) == Approx(1 / burstiness).epsilon(0.1));
  }
  CHECK_FALSE(ArrivalProcess::Create(0, ArrivalProcess::Kind::kPoisson, 1, 0).ok());
  CHECK_FALSE(ArrivalProcess::Create(1, ArrivalProcess::Kind::kPoisson, 0, 0).ok());
}

}  // namespace
}  // namespace kestrel::bench

// Conformance tests of the Communicator interface (communicator.h), run by
// each implementation's test binary against its harness. Ranks run on their
// own threads and only return statuses and data; every check happens on the
// test's thread (Catch2 assertions are not thread-safe).
#include "parallel/communicator_conformance.h"

#include <atomic>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "kernels/dtype.h"

namespace kestrel::parallel::testing {
namespace {

using kernels::DType;

// How long every rank thread of a test may take; past it the test fails
// (and the process aborts, since a hung thread cannot be joined).
constexpr auto kDeadline = std::chrono::seconds(20);
// How soon ranks blocked in a collective must return after an abort.
constexpr auto kAbortLatency = std::chrono::seconds(2);

// A device buffer of the harness, freed on destruction. Used on rank
// threads, so it fails by aborting, not with Catch2 assertions.
class DeviceMemory {
 public:
  explicit DeviceMemory(size_t bytes) : bytes_(bytes) {
    data_ = bytes == 0 ? nullptr : Harness().allocate(bytes);
    if (bytes != 0 && data_ == nullptr) {
      std::fprintf(stderr, "device allocation of %zu bytes failed\n", bytes);
      std::abort();
    }
  }
  ~DeviceMemory() {
    if (data_ != nullptr) Harness().free(data_);
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  void* data() const { return data_; }
  template <typename T>
  void Upload(const std::vector<T>& host) {
    if (host.size() * sizeof(T) > bytes_) {
      std::fprintf(stderr, "test bug: uploading %zu bytes into %zu\n", host.size() * sizeof(T),
                   bytes_);
      std::abort();
    }
    if (!host.empty()) Harness().upload(data_, host.data(), host.size() * sizeof(T));
  }
  template <typename T>
  std::vector<T> Download(size_t n) const {
    std::vector<T> host(n);
    if (n != 0) Harness().download(host.data(), data_, n * sizeof(T));
    return host;
  }

 private:
  size_t bytes_;
  void* data_ = nullptr;
};

std::vector<std::unique_ptr<Communicator>> CreateGroup(
    int size, absl::Duration timeout = absl::ZeroDuration()) {
  absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> group =
      Harness().create(size, timeout);
  INFO(group.status().ToString());
  REQUIRE(group.ok());
  REQUIRE(static_cast<int>(group->size()) == size);
  for (int r = 0; r < size; ++r) {
    REQUIRE((*group)[r]->rank() == r);
    REQUIRE((*group)[r]->size() == size);
  }
  return std::move(*group);
}

// Runs body(rank) on one thread per rank and returns their statuses. Aborts
// the process if they do not all finish within kDeadline.
std::vector<absl::Status> RunRanks(int size, const std::function<absl::Status(int)>& body) {
  std::vector<absl::Status> statuses(size);
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      absl::Status status = body(r);
      std::lock_guard<std::mutex> lock(mu);
      statuses[r] = std::move(status);
      ++done;
      cv.notify_all();
    });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, kDeadline, [&] { return done == size; })) {
      std::fprintf(stderr, "FAILED: %d of %d rank threads still running after %lld s\n",
                   size - done, size, static_cast<long long>(kDeadline.count()));
      std::abort();
    }
  }
  for (std::thread& t : threads) t.join();
  return statuses;
}

void RequireAllOk(const std::vector<absl::Status>& statuses) {
  for (size_t r = 0; r < statuses.size(); ++r) {
    INFO("rank " << r << ": " << statuses[r].ToString());
    REQUIRE(statuses[r].ok());
  }
}

// Rank r's input element i: signs and exponents vary, so the summation
// order shows in the last bits.
std::vector<float> RankData(int rank, int64_t count, uint32_t seed) {
  std::mt19937 rng(seed * 7919u + static_cast<uint32_t>(rank));
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-12, 12);
  std::vector<float> v(count);
  for (float& x : v) x = std::ldexp(mantissa(rng), exponent(rng));
  return v;
}

std::vector<float> RankOrderSum(const std::vector<std::vector<float>>& inputs) {
  std::vector<float> sum = inputs[0];
  for (size_t r = 1; r < inputs.size(); ++r) {
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += inputs[r][i];
  }
  return sum;
}

std::vector<uint16_t> ToHalf(const std::vector<float>& v, DType dtype) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    h[i] = dtype == DType::kBF16 ? kernels::F32ToBf16(v[i]) : kernels::F32ToF16(v[i]);
  }
  return h;
}

float HalfToF32(uint16_t h, DType dtype) {
  return dtype == DType::kBF16 ? kernels::Bf16ToF32(h) : kernels::F16ToF32(h);
}

// Whether the harness can hold a group of `size` (GPUs on the machine);
// tests run sizes 1, 2 and 4 and skip those it cannot (Catch2 v2 has no
// SKIP: the test says so and returns).
bool Fits(int size) {
  if (size <= Harness().max_size) return true;
  WARN("skipped: the machine holds at most " << Harness().max_size << " ranks");
  return false;
}

TEST_CASE("AllReduceSum F32 sums in rank order, bit-identical from run to run") {
  const int size = GENERATE(1, 2, 4);
  if (!Fits(size)) return;
  const int64_t count = GENERATE(1, 7, 19, 1000, 4099);
  INFO("size " << size << ", count " << count);
  std::vector<std::vector<float>> inputs;
  for (int r = 0; r < size; ++r) inputs.push_back(RankData(r, count, 1));
  const std::vector<float> expected = RankOrderSum(inputs);
  if (size == 4 && count == 4099) {
    // The reference must tell orders apart, or this test could not fail.
    std::vector<std::vector<float>> reversed(inputs.rbegin(), inputs.rend());
    const std::vector<float> other = RankOrderSum(reversed);
    REQUIRE(std::memcmp(expected.data(), other.data(), count * sizeof(float)) != 0);
  }

  auto group = CreateGroup(size);
  std::vector<std::vector<float>> first_results;
  for (int run = 0; run < 3; ++run) {
    const bool in_place = run == 1;
    std::vector<std::vector<float>> results(size);
    RequireAllOk(RunRanks(size, [&](int r) {
      DeviceMemory send(count * sizeof(float));
      DeviceMemory recv(count * sizeof(float));
      send.Upload(inputs[r]);
      void* out = in_place ? send.data() : recv.data();
      absl::Status s = group[r]->AllReduceSum(send.data(), out, count, DType::kF32);
      results[r] = (in_place ? send : recv).Download<float>(count);
      return s;
    }));
    for (int r = 0; r < size; ++r) {
      INFO("run " << run << ", rank " << r);
      if (Harness().rank_order_sums) {
        REQUIRE(std::memcmp(results[r].data(), expected.data(), count * sizeof(float)) == 0);
      } else {
        for (int64_t i = 0; i < count; ++i) {
          REQUIRE(results[r][i] == Approx(expected[i]).epsilon(1e-5).margin(1e-6));
        }
      }
      REQUIRE(std::memcmp(results[r].data(), results[0].data(), count * sizeof(float)) == 0);
    }
    if (run == 0) first_results = results;
    REQUIRE(std::memcmp(results[0].data(), first_results[0].data(), count * sizeof(float)) == 0);
  }
}

TEST_CASE("AllReduceSum BF16 and F16 sum in F32 (or per step, as the harness says)") {
  const int size = GENERATE(1, 2, 4);
  if (!Fits(size)) return;
  const DType dtype = GENERATE(DType::kBF16, DType::kF16);
  const int64_t count = 99;
  INFO("size " << size << ", dtype " << kernels::DTypeName(dtype));
  std::vector<std::vector<uint16_t>> inputs;
  for (int r = 0; r < size; ++r) inputs.push_back(ToHalf(RankData(r, count, 2), dtype));
  std::vector<uint16_t> expected(count);
  for (int64_t i = 0; i < count; ++i) {
    float acc = HalfToF32(inputs[0][i], dtype);
    for (int r = 1; r < size; ++r) {
      acc += HalfToF32(inputs[r][i], dtype);
      if (Harness().half_sums_round_each_step) acc = HalfToF32(ToHalf({acc}, dtype)[0], dtype);
    }
    expected[i] = ToHalf({acc}, dtype)[0];
  }

  auto group = CreateGroup(size);
  std::vector<std::vector<uint16_t>> results(size);
  RequireAllOk(RunRanks(size, [&](int r) {
    DeviceMemory buffer(count * sizeof(uint16_t));
    buffer.Upload(inputs[r]);
    absl::Status s = group[r]->AllReduceSum(buffer.data(), buffer.data(), count, dtype);
    results[r] = buffer.Download<uint16_t>(count);
    return s;
  }));
  for (int r = 0; r < size; ++r) {
    INFO("rank " << r);
    if (Harness().rank_order_sums) {
      REQUIRE(results[r] == expected);
    } else {
      for (int64_t i = 0; i < count; ++i) {
        REQUIRE(HalfToF32(results[r][i], dtype) ==
                Approx(HalfToF32(expected[i], dtype)).epsilon(1e-2).margin(1e-3));
      }
    }
    REQUIRE(results[r] == results[0]);
  }
}

TEST_CASE("AllGather puts rank r's elements at r * count on every rank") {
  const int size = GENERATE(1, 2, 4);
  if (!Fits(size)) return;
  const DType dtype = GENERATE(DType::kF32, DType::kBF16, DType::kI32);
  const int64_t count = GENERATE(0, 1, 19);
  const bool in_place = GENERATE(false, true);
  INFO("size " << size << ", dtype " << kernels::DTypeName(dtype) << ", count " << count
               << (in_place ? ", in place" : ""));
  const size_t element = kernels::DTypeSize(dtype);
  // Rank r's bytes: distinct per rank and position.
  auto rank_bytes = [&](int r) {
    std::vector<uint8_t> b(count * element);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(31 * r + 7 * i + 1);
    return b;
  };
  auto group = CreateGroup(size);
  std::vector<std::vector<uint8_t>> results(size);
  RequireAllOk(RunRanks(size, [&](int r) {
    DeviceMemory send(count * element);
    DeviceMemory recv(size * count * element);
    recv.Upload(std::vector<uint8_t>(size * count * element, 0xee));
    const void* src = send.data();
    if (in_place) {
      void* mine = static_cast<char*>(recv.data()) + r * count * element;
      if (count > 0) Harness().upload(mine, rank_bytes(r).data(), count * element);
      src = mine;
    } else {
      send.Upload(rank_bytes(r));
    }
    absl::Status s = group[r]->AllGather(src, recv.data(), count, dtype);
    results[r] = recv.Download<uint8_t>(size * count * element);
    return s;
  }));
  std::vector<uint8_t> expected;
  for (int r = 0; r < size; ++r) {
    const std::vector<uint8_t> b = rank_bytes(r);
    expected.insert(expected.end(), b.begin(), b.end());
  }
  for (int r = 0; r < size; ++r) {
    INFO("rank " << r);
    REQUIRE(results[r] == expected);
  }
}

TEST_CASE("Broadcast copies the root's buffer to every rank, from each root") {
  const int size = GENERATE(1, 2, 4);
  if (!Fits(size)) return;
  const DType dtype = GENERATE(DType::kF32, DType::kBF16);
  const int64_t count = 19;
  auto group = CreateGroup(size);
  for (int root = 0; root < size; ++root) {
    INFO("size " << size << ", root " << root << ", dtype " << kernels::DTypeName(dtype));
    const size_t bytes = count * kernels::DTypeSize(dtype);
    auto rank_bytes = [&](int r) {
      std::vector<uint8_t> b(bytes);
      for (size_t i = 0; i < bytes; ++i) b[i] = static_cast<uint8_t>(97 * r + 5 * i + root);
      return b;
    };
    std::vector<std::vector<uint8_t>> results(size);
    RequireAllOk(RunRanks(size, [&](int r) {
      DeviceMemory buffer(bytes);
      buffer.Upload(rank_bytes(r));
      absl::Status s = group[r]->Broadcast(buffer.data(), count, dtype, root);
      results[r] = buffer.Download<uint8_t>(bytes);
      return s;
    }));
    for (int r = 0; r < size; ++r) {
      INFO("rank " << r);
      REQUIRE(results[r] == rank_bytes(root));
    }
  }
}

TEST_CASE("Ranks calling with different sizes all get an error naming both sizes") {
  const int size = GENERATE(1, 2, 4);
  if (!Fits(size)) return;
  if (size == 1) return;  // one rank cannot disagree with itself
  auto group = CreateGroup(size);
  const std::vector<absl::Status> statuses = RunRanks(size, [&](int r) {
    const int64_t count = r == 0 ? 10 : 12;
    DeviceMemory buffer(12 * sizeof(float));
    buffer.Upload(std::vector<float>(12, 1.0f));
    return group[r]->AllReduceSum(buffer.data(), buffer.data(), count, DType::kF32);
  });
  for (int r = 0; r < size; ++r) {
    INFO("rank " << r << ": " << statuses[r].ToString());
    REQUIRE_FALSE(statuses[r].ok());
    REQUIRE(statuses[r].message().find("AllReduceSum of 10 F32 elements") != std::string::npos);
    REQUIRE(statuses[r].message().find("AllReduceSum of 12 F32 elements") != std::string::npos);
  }
  // The group is aborted: every later call fails at once.
  const std::vector<absl::Status> later = RunRanks(size, [&](int r) {
    DeviceMemory buffer(sizeof(float));
    buffer.Upload(std::vector<float>{1.0f});
    return group[r]->AllReduceSum(buffer.data(), buffer.data(), 1, DType::kF32);
  });
  for (const absl::Status& s : later) REQUIRE(absl::IsAborted(s));
}

// Ranks 1.. wait in an all-reduce that rank 0 never joins; `abort` aborts.
void CheckAbortWakesBlockedRanks(int size, const std::function<void(
    std::vector<std::unique_ptr<Communicator>>&)>& abort, const std::string& reason) {
  auto group = CreateGroup(size);
  std::atomic<int> entered{0};
  std::vector<std::chrono::steady_clock::time_point> returned(size);
  std::chrono::steady_clock::time_point aborted_at;
  const std::vector<absl::Status> statuses = RunRanks(size, [&](int r) {
    if (r == 0) {
      // Let the others block first (their entry is counted just before).
      while (entered.load() < size - 1) std::this_thread::yield();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      aborted_at = std::chrono::steady_clock::now();
      abort(group);
      return absl::OkStatus();
    }
    DeviceMemory buffer(16 * sizeof(float));
    buffer.Upload(std::vector<float>(16, 1.0f));
    entered.fetch_add(1);
    absl::Status s = group[r]->AllReduceSum(buffer.data(), buffer.data(), 16, DType::kF32);
    returned[r] = std::chrono::steady_clock::now();
    return s;
  });
  for (int r = 1; r < size; ++r) {
    INFO("rank " << r << ": " << statuses[r].ToString());
    REQUIRE(absl::IsAborted(statuses[r]));
    REQUIRE(statuses[r].message().find(reason) != std::string::npos);
    REQUIRE(returned[r] - aborted_at < kAbortLatency);
  }
  // After the abort every call fails fast, on every rank still there.
  const std::vector<absl::Status> later = RunRanks(size, [&](int r) {
    if (group[r] == nullptr) return absl::OkStatus();
    DeviceMemory buffer(sizeof(float));
    buffer.Upload(std::vector<float>{1.0f});
    return group[r]->Broadcast(buffer.data(), 1, DType::kF32, 0);
  });
  for (int r = 0; r < size; ++r) {
    if (group[r] == nullptr) continue;
    INFO("rank " << r << ": " << later[r].ToString());
    REQUIRE(absl::IsAborted(later[r]));
    REQUIRE(later[r].message().find(reason) != std::string::npos);
  }
}

TEST_CASE("Abort wakes every rank blocked in a collective, and later calls fail fast") {
  const int size = GENERATE(1, 2, 4);
  if (!Fits(size)) return;
  SECTION("a rank aborts its own communicator") {
    CheckAbortWakesBlockedRanks(
        size, [](auto& group) { group[0]->Abort("rank 0 failed at step 3"); },
        "rank 0 failed at step 3");
  }
  SECTION("another thread aborts a blocked rank's communicator") {
    CheckAbortWakesBlockedRanks(
        size, [size](auto& group) { group[size - 1]->Abort("watchdog gave up"); },
        "watchdog gave up");
  }
  SECTION("a rank's communicator is destroyed") {
    CheckAbortWakesBlockedRanks(
        size, [](auto& group) { group[0].reset(); }, "rank 0's communicator was destroyed");
  }
}

TEST_CASE("A collective waiting past the timeout fails naming the missing rank") {
  // Emulated NCCL collectives block inside NCCL (synchronous streams).
  if (!Harness().timeout_ends_wait || !Fits(2)) return;
  auto group = CreateGroup(2, absl::Milliseconds(200));
  std::atomic<bool> timed_out{false};
  const std::vector<absl::Status> statuses = RunRanks(2, [&](int r) {
    DeviceMemory buffer(sizeof(float));
    buffer.Upload(std::vector<float>{1.0f});
    if (r == 1) {
      // Rank 1 comes only after rank 0 gave up on it.
      while (!timed_out.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    } else {
      absl::Status s = group[0]->AllReduceSum(buffer.data(), buffer.data(), 1, DType::kF32);
      timed_out.store(true);
      if (!absl::IsDeadlineExceeded(s)) return s;
    }
    return group[r]->AllReduceSum(buffer.data(), buffer.data(), 1, DType::kF32);
  });
  INFO(statuses[0].ToString() << " / " << statuses[1].ToString());
  REQUIRE(absl::IsAborted(statuses[0]));  // its second call, after the timeout
  REQUIRE(absl::IsAborted(statuses[1]));
  REQUIRE(statuses[1].message().find("rank(s) 1") != std::string::npos);
}

TEST_CASE("Bad arguments are INVALID_ARGUMENT naming the value") {
  float x = 0.0f;
  struct Case {
    std::function<absl::Status(Communicator&)> call;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[&](Communicator& c) { return c.AllReduceSum(&x, &x, -1, DType::kF32); },
       "count must be >= 0, got -1"},
      {[&](Communicator& c) { return c.AllReduceSum(&x, &x, 1, DType::kI32); },
       "dtype must be F32, BF16 or F16, got I32"},
      {[&](Communicator& c) { return c.Broadcast(&x, 1, DType::kF32, 1); },
       "root must be in [0, 1), got 1"},
      {[&](Communicator& c) { return c.AllGather(nullptr, &x, 1, DType::kF32); },
       "null buffer"},
  };
  for (const Case& c : cases) {
    auto group = CreateGroup(1);
    const absl::Status s = c.call(*group[0]);
    INFO(s.ToString());
    REQUIRE(absl::IsInvalidArgument(s));
    REQUIRE(s.message().find(c.message) != std::string::npos);
  }
}

TEST_CASE("Many mixed collectives in a row stay matched") {
  const int size = GENERATE(1, 2, 4);
  if (!Fits(size)) return;
  auto group = CreateGroup(size);
  constexpr int kRounds = 150;
  std::vector<int> failures(size, 0);
  RequireAllOk(RunRanks(size, [&](int r) -> absl::Status {
    DeviceMemory buffer(size * 64 * sizeof(float));
    for (int round = 0; round < kRounds; ++round) {
      const int64_t count = 1 + round % 64;
      buffer.Upload(std::vector<float>(size * count, static_cast<float>(r + round)));
      std::vector<float> got;
      float want = 0.0f;
      switch (round % 3) {
        case 0: {
          absl::Status s = group[r]->AllReduceSum(buffer.data(), buffer.data(), count, DType::kF32);
          if (!s.ok()) return s;
          for (int q = 0; q < size; ++q) want += static_cast<float>(q + round);
          got = buffer.Download<float>(count);
          break;
        }
        case 1: {
          const int root = round % size;
          absl::Status s = group[r]->Broadcast(buffer.data(), count, DType::kF32, root);
          if (!s.ok()) return s;
          want = static_cast<float>(root + round);
          got = buffer.Download<float>(count);
          break;
        }
        default: {
          // In place: rank r's block already holds its value.
          void* mine = static_cast<char*>(buffer.data()) + r * count * sizeof(float);
          absl::Status s = group[r]->AllGather(mine, buffer.data(), count, DType::kF32);
          if (!s.ok()) return s;
          const std::vector<float> all = buffer.Download<float>(size * count);
          for (int q = 0; q < size; ++q) {
            if (all[q * count] != static_cast<float>(q + round)) ++failures[r];
          }
          continue;
        }
      }
      for (float v : got) {
        if (v != want) ++failures[r];
      }
    }
    return absl::OkStatus();
  }));
  for (int r = 0; r < size; ++r) REQUIRE(failures[r] == 0);
}

}  // namespace
}  // namespace kestrel::parallel::testing

// Tests for the persistent thread pool: coverage of ranges, grain, reuse
// across many calls, concurrent callers, nesting, and bad options.
#include "kernels/cpu/thread_pool.h"

#include <atomic>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace kestrel::kernels::cpu {
namespace {

TEST_CASE("ParallelFor covers every index exactly once", "[thread_pool]") {
  auto pool = ThreadPool::Create({.num_threads = 3, .spin_microseconds = 50});
  REQUIRE(pool.ok());
  for (int64_t n : {0, 1, 7, 19, 99, 1000}) {
    for (int64_t grain : {1, 4, 48}) {
      // Catch2 assertions are not thread-safe: the body only records.
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> bad_ranges{0};
      (*pool)->ParallelFor(n, grain, [&](int64_t b, int64_t e) {
        // Non-empty, and every range starts on a grain boundary.
        if (b >= e || b % grain != 0) bad_ranges.fetch_add(1);
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
      });
      INFO("n=" << n << " grain=" << grain);
      CHECK(bad_ranges.load() == 0);
      for (int64_t i = 0; i < n; ++i) REQUIRE(hits[static_cast<size_t>(i)].load() == 1);
    }
  }
}

TEST_CASE("ParallelFor uses the worker threads", "[thread_pool]") {
  auto pool = ThreadPool::Create({.num_threads = 2});
  REQUIRE(pool.ok());
  REQUIRE((*pool)->num_threads() == 2);
  // Each range blocks until another thread has started one, so the call can
  // only finish if two threads run it.
  std::atomic<int> started{0};
  (*pool)->ParallelFor(2, 1, [&](int64_t, int64_t) {
    started.fetch_add(1);
    while (started.load() < 2) std::this_thread::yield();
  });
  CHECK(started.load() == 2);
}

TEST_CASE("Many back-to-back calls and a sleeping pool", "[thread_pool]") {
  for (int spin : {0, 100}) {
    auto pool = ThreadPool::Create({.num_threads = 2, .spin_microseconds = spin});
    REQUIRE(pool.ok());
    int64_t total = 0;
    std::vector<int64_t> partial(64);
    for (int iter = 0; iter < 500; ++iter) {
      (*pool)->ParallelFor(64, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) partial[static_cast<size_t>(i)] = i + iter;
      });
      for (int64_t v : partial) total += v;
    }
    CHECK(total == 500 * (63 * 64 / 2) + 64 * (499 * 500 / 2));
  }
}

TEST_CASE("Concurrent callers and nested calls", "[thread_pool]") {
  auto pool = ThreadPool::Create({.num_threads = 2});
  REQUIRE(pool.ok());
  ThreadPool* p = pool->get();
  std::atomic<int64_t> sum{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 3; ++c) {
    callers.emplace_back([&] {
      for (int iter = 0; iter < 50; ++iter) {
        p->ParallelFor(10, 1, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) {
            // Nested: runs inline on this thread.
            p->ParallelFor(3, 1, [&](int64_t nb, int64_t ne) { sum.fetch_add(ne - nb); });
          }
        });
      }
    });
  }
  for (std::thread& t : callers) t.join();
  CHECK(sum.load() == 3 * 50 * 10 * 3);
}

TEST_CASE("Null pool runs inline; bad options are errors", "[thread_pool]") {
  int calls = 0;
  ParallelFor(nullptr, 10, 3, [&](int64_t b, int64_t e) {
    ++calls;
    CHECK(b == 0);
    CHECK(e == 10);
  });
  CHECK(calls == 1);
  CHECK(!ThreadPool::Create({.num_threads = -1}).ok());
  CHECK(!ThreadPool::Create({.num_threads = 1, .spin_microseconds = -5}).ok());
  auto one = ThreadPool::Create({.num_threads = 1});
  REQUIRE(one.ok());
  int64_t covered = 0;
  (*one)->ParallelFor(17, 4, [&](int64_t b, int64_t e) { covered += e - b; });
  CHECK(covered == 17);
}

}  // namespace
}  // namespace kestrel::kernels::cpu

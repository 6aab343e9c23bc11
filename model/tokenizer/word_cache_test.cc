#include "model/tokenizer/word_cache.h"

#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace kestrel::tokenizer {
namespace {

TEST_CASE("lookups return what was inserted") {
  WordCache cache(1000);
  std::vector<int32_t> ids;
  CHECK_FALSE(cache.Lookup("hello", &ids));
  cache.Insert("hello", {1, 2, 3});
  ids = {9};
  REQUIRE(cache.Lookup("hello", &ids));
  CHECK(ids == std::vector<int32_t>{9, 1, 2, 3});  // appended
}

TEST_CASE("the cache stays bounded and skips huge words") {
  WordCache cache(128);
  for (int i = 0; i < 100000; ++i) cache.Insert("w" + std::to_string(i), {i});
  int hits = 0;
  std::vector<int32_t> ids;
  for (int i = 0; i < 100000; ++i) hits += cache.Lookup("w" + std::to_string(i), &ids);
  CHECK(hits <= 128 + 64);  // at most one shard's share over capacity
  cache.Insert(std::string(WordCache::kMaxWordBytes + 1, 'x'), {1});
  CHECK_FALSE(cache.Lookup(std::string(WordCache::kMaxWordBytes + 1, 'x'), &ids));
  WordCache disabled(0);
  disabled.Insert("a", {1});
  CHECK_FALSE(disabled.Lookup("a", &ids));
}

TEST_CASE("concurrent readers and writers see consistent entries") {
  WordCache cache(512);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, &wrong, t] {
      for (int i = 0; i < 20000; ++i) {
        const int key = (i * 7 + t) % 2000;
        std::vector<int32_t> ids;
        if (cache.Lookup("k" + std::to_string(key), &ids)) {
          if (ids != std::vector<int32_t>{key, key + 1}) ++wrong;
        } else {
          cache.Insert("k" + std::to_string(key), {key, key + 1});
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(wrong == 0);
}

}  // namespace
}  // namespace kestrel::tokenizer

// Tokenizer throughput benchmark: load time of each shared tokenizer.json,
// then encode throughput (MB/s, tokens/s) on a few MB of mixed English,
// code and CJK text, on one thread and on all threads, plus decode and
// streaming detokenization rates.
//
//   bazel run -c opt //model/tokenizer:tokenizer_bench -- [--mb=4] [--threads=N] [--shared=DIR]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/flags.h"
#include "model/tokenizer/incremental_detokenizer.h"
#include "model/tokenizer/tokenizer.h"

namespace kestrel::tokenizer {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::filesystem::path FindShared(const std::string& flag) {
  std::vector<std::filesystem::path> candidates;
  if (!flag.empty()) candidates.emplace_back(flag);
  if (const char* env = std::getenv("KESTREL_SHARED")) candidates.emplace_back(env);
  if (const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY")) {
    candidates.push_back(std::filesystem::path(ws).parent_path() / "shared");
  }
  candidates.emplace_back("../shared");
  for (const auto& path : candidates) {
    std::error_code ec;
    if (std::filesystem::is_directory(path / "tokenizers", ec)) return path;
  }
  return {};
}

// Mixed text in request-sized documents: English prose, C++/Python code,
// Chinese and Japanese, with numbers and whitespace runs. Words come from
// fixed lists (so the word cache sees natural repetition) with random
// numbers and identifiers (so it also misses).
std::vector<std::string> MakeCorpus(size_t total_bytes, uint64_t seed) {
  static const char* const kWords[] = {
      "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be",
      "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have",
      "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has",
      "there", "been", "if", "more", "when", "will", "would", "who", "so", "no", "model",
      "server", "request", "latency", "throughput", "tokenizer", "inference", "batch",
      "scheduler", "memory", "bandwidth", "Kubernetes", "deployment", "replica", "gradient",
      "attention", "transformer", "embedding", "sequence", "probability", "distribution",
      "however", "therefore", "although", "international", "characteristics", "responsibility",
      "Hello", "World", "Monday", "January", "Paris", "Tokyo", "don't", "it's", "we're"};
  static const char* const kCode[] = {
      "for (int i = 0; i < n; ++i) {\n    sum += values[i] * weights[i];\n}\n",
      "def forward(self, x):\n    h = self.norm(x)\n    return x + self.mlp(h)\n",
      "if (!status.ok()) return status;\n",
      "    std::vector<int32_t> ids;\n    ids.reserve(text.size() / 4);\n",
      "SELECT id, name FROM users WHERE created_at > '2024-01-01' ORDER BY id;\n",
      "const result = await fetch(`/api/v1/items/${id}`, { method: 'GET' });\n",
      "\tassert len(tokens) == 42, f\"unexpected {len(tokens)}\"\n"};
  static const char* const kCjk[] = {
      "\xE6\x88\x91\xE4\xBB\xAC\xE7\x9A\x84\xE6\x9C\x8D\xE5\x8A\xA1\xE5\x99\xA8",  // 我们的服务器
      "\xE5\xA4\xA7\xE8\xAF\xAD\xE8\xA8\x80\xE6\xA8\xA1\xE5\x9E\x8B",              // 大语言模型
      "\xE6\x8E\xA8\xE7\x90\x86\xE9\x80\x9F\xE5\xBA\xA6\xE5\xBE\x88\xE5\xBF\xAB",  // 推理速度很快
      "\xE3\x80\x82", "\xEF\xBC\x8C",                                              // 。，
      "\xE6\x9D\xB1\xE4\xBA\xAC\xE3\x81\xA7\xE4\xBC\x9A\xE3\x81\x84\xE3\x81\xBE\xE3\x81\x97\xE3\x82\x87\xE3\x81\x86",  // 東京で会いましょう
      "\xE3\x83\x88\xE3\x83\xBC\xE3\x82\xAF\xE3\x83\x8A\xE3\x82\xA4\xE3\x82\xB6\xE3\x83\xBC",  // トークナイザー
      "\xE6\x95\xB0\xE6\x8D\xAE\xE4\xB8\xAD\xE5\xBF\x83"};                         // 数据中心
  std::mt19937_64 rng(seed);
  std::vector<std::string> docs;
  size_t bytes = 0;
  while (bytes < total_bytes) {
    std::string doc;
    while (doc.size() < 4096) {
      const int kind = static_cast<int>(rng() % 10);
      if (kind < 6) {  // an English sentence
        const int words = 6 + static_cast<int>(rng() % 14);
        for (int w = 0; w < words; ++w) {
          if (w > 0) doc += ' ';
          if (rng() % 12 == 0) {
            doc += std::to_string(rng() % 100000);
          } else {
            doc += kWords[rng() % std::size(kWords)];
          }
        }
        doc += rng() % 4 == 0 ? ".\n\n" : ". ";
      } else if (kind < 8) {  // code
        doc += kCode[rng() % std::size(kCode)];
        doc += "var_" + std::to_string(rng() % 500) + " = " + std::to_string(rng() % 1000) + ";\n";
      } else {  // CJK
        const int parts = 2 + static_cast<int>(rng() % 6);
        for (int p = 0; p < parts; ++p) doc += kCjk[rng() % std::size(kCjk)];
        doc += "\n";
      }
    }
    bytes += doc.size();
    docs.push_back(std::move(doc));
  }
  return docs;
}

struct EncodeResult {
  double seconds = 0;
  size_t tokens = 0;
};

EncodeResult EncodeAll(const Tokenizer& tok, const std::vector<std::string>& docs, int threads) {
  std::atomic<size_t> tokens{0};
  std::atomic<bool> failed{false};
  const auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      size_t local = 0;
      for (size_t i = t; i < docs.size(); i += threads) {
        auto ids = tok.Encode(docs[i], {});
        if (!ids.ok()) {
          failed = true;
          return;
        }
        local += ids->size();
      }
      tokens += local;
    });
  }
  for (auto& thread : pool) thread.join();
  EncodeResult result{Seconds(start), tokens.load()};
  if (failed) {
    std::fprintf(stderr, "encode failed\n");
    std::exit(1);
  }
  return result;
}

void Report(const char* label, size_t bytes, const EncodeResult& r) {
  std::printf("  %-34s %8.2f MB/s  %11.0f tokens/s  (%.3f s, %zu tokens)\n", label,
              bytes / 1e6 / r.seconds, r.tokens / r.seconds, r.seconds, r.tokens);
}

void Bench(const std::filesystem::path& dir, const std::vector<std::string>& docs, size_t bytes,
           int threads) {
  std::printf("%s\n", dir.filename().c_str());
  double best_load = 1e9;
  std::unique_ptr<Tokenizer> tok;
  for (int i = 0; i < 3; ++i) {
    const auto start = Clock::now();
    auto loaded = Tokenizer::LoadFromDirectory(dir.string(), {});
    const double s = Seconds(start);
    if (!loaded.ok()) {
      std::fprintf(stderr, "load failed: %s\n", loaded.status().ToString().c_str());
      std::exit(1);
    }
    best_load = std::min(best_load, s);
    tok = *std::move(loaded);
  }
  std::error_code ec;
  std::printf("  load tokenizer.json (%.1f MB):        %8.1f ms (best of 3)\n",
              std::filesystem::file_size(dir / "tokenizer.json", ec) / 1e6, best_load * 1e3);
  Report("encode 1 thread, cold word cache", bytes, EncodeAll(*tok, docs, 1));
  Report("encode 1 thread, warm", bytes, EncodeAll(*tok, docs, 1));
  char label[64];
  std::snprintf(label, sizeof(label), "encode %d threads, warm", threads);
  Report(label, bytes, EncodeAll(*tok, docs, threads));

  // Decode and streaming rates over the ids of the first ~1 MB.
  std::vector<std::vector<int32_t>> all_ids;
  size_t total_ids = 0;
  for (size_t i = 0; i < docs.size() && total_ids < 250000; ++i) {
    all_ids.push_back(*tok->Encode(docs[i], {}));
    total_ids += all_ids.back().size();
  }
  auto start = Clock::now();
  for (const auto& ids : all_ids) {
    if (!tok->Decode(ids, false).ok()) std::exit(1);
  }
  double s = Seconds(start);
  std::printf("  %-34s %23.0f tokens/s\n", "decode whole documents", total_ids / s);
  start = Clock::now();
  for (const auto& ids : all_ids) {
    IncrementalDetokenizer detok(tok.get(), false);
    for (int32_t id : ids) {
      if (!detok.Add(id).ok()) std::exit(1);
    }
    if (!detok.Finish().ok()) std::exit(1);
  }
  s = Seconds(start);
  std::printf("  %-34s %23.0f tokens/s\n", "incremental detokenize", total_ids / s);
}

}  // namespace
}  // namespace kestrel::tokenizer

int main(int argc, char** argv) {
  using namespace kestrel::tokenizer;
  double mb = 4;
  int32_t threads = 0;
  std::string shared_flag;
  kestrel::FlagSet flags("tokenizer_bench", "",
                         "Encode and decode throughput of the shared tokenizers (llama3, "
                         "mistral_v0_1).");
  flags.Add("mb", &mb, "MB", "Corpus size in MB");
  flags.Add("threads", &threads, "N", "Encoding threads; 0 = one per CPU");
  flags.Add("shared", &shared_flag, "DIR", "The shared test data")
      .DefaultText("$KESTREL_SHARED or ../shared");
  const kestrel::ParsedArgs args = flags.ParseOrExit(argc, argv);
  if (!args.positional.empty()) {
    return flags.UsageError("unexpected argument '" + args.positional[0] + "' (see --help)");
  }
  if (threads < 0) return flags.UsageError("--threads: must be >= 0, got " + std::to_string(threads));
  if (!(mb > 0)) return flags.UsageError("--mb: must be positive, got " + std::to_string(mb));
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::filesystem::path shared = FindShared(shared_flag);
  if (shared.empty()) {
    std::fprintf(stderr,
                 "tokenizer_bench: shared data not found: pass --shared=DIR or set KESTREL_SHARED\n");
    return kestrel::kExitRuntimeError;
  }
  const std::vector<std::string> docs = MakeCorpus(static_cast<size_t>(mb * 1e6), 1234);
  size_t bytes = 0;
  for (const auto& doc : docs) bytes += doc.size();
  std::printf("corpus: %.2f MB in %zu documents (English/code/CJK), %d threads\n", bytes / 1e6,
              docs.size(), threads);
  for (const char* name : {"llama3", "mistral_v0_1"}) {
    Bench(shared / "tokenizers" / name, docs, bytes, threads);
  }
  return 0;
}

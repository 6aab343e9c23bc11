// kestrel-bench's backend for OpenAI-compatible HTTP servers (Kestrel's
// HTTP front end, vLLM, SGLang, TGI, llama.cpp's server): POST
// /v1/completions with "stream": true, read as server-sent events.
#ifndef KESTREL_BENCHMARKS_BENCH_OPENAI_BACKEND_H_
#define KESTREL_BENCHMARKS_BENCH_OPENAI_BACKEND_H_

#include <atomic>
#include <condition_variable>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "benchmarks/bench_runner.h"

namespace kestrel::bench {

// Incremental parser of a text/event-stream body. Not thread-safe.
class SseParser {
 public:
  // Consumes `bytes` (any split of the stream) and returns the data of each
  // event they complete, in order; multi-line data is joined with "\n".
  // Comments and fields other than data are skipped.
  std::vector<std::string> Feed(std::string_view bytes);

 private:
  std::string line_;  // The incomplete line so far.
  std::string data_;  // Data of the event being read.
  bool has_data_ = false;
};

struct OpenAiBackendOptions {
  // Scheme, host and port, e.g. http://127.0.0.1:8000 (no trailing /v1).
  std::string base_url;
  // "model" of each request; most servers need the name they serve.
  std::string model;
  // Sent as `Authorization: Bearer` when not empty.
  std::string api_key;
  std::optional<float> temperature;
};

// Thread-safe. Each request runs libcurl's blocking transfer on its own
// thread, timestamping the events as libcurl hands over the bytes. A
// request's output tokens are the server's usage.completion_tokens when it
// sends usage (stream_options.include_usage), else one per text event.
class OpenAiBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<OpenAiBackend>> Create(const OpenAiBackendOptions& options);
  // Cancels and joins every request still running.
  ~OpenAiBackend() override;

  // Any HTTP answer from GET /v1/models counts as reachable.
  absl::Status Probe(absl::Duration timeout) override;
  void Start(const BenchRequest& request, absl::Time deadline, DoneCallback done) override;
  // Transfers notice within about a second (libcurl's progress callback).
  void CancelAll() override;

 private:
  explicit OpenAiBackend(const OpenAiBackendOptions& options) : options_(options) {}

  struct Worker {
    std::thread thread;
    std::atomic<bool> finished{false};
  };
  RequestRecord Transfer(const BenchRequest& request, absl::Time deadline,
                         int64_t started_generation);

  const OpenAiBackendOptions options_;
  // Bumped by CancelAll: transfers started before abort.
  std::atomic<int64_t> generation_{0};

  std::mutex mu_;
  std::list<std::unique_ptr<Worker>> workers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kestrel::bench

#endif  // KESTREL_BENCHMARKS_BENCH_OPENAI_BACKEND_H_

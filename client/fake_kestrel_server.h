// A scripted, in-process kestrel.v1.Kestrel server for tests of the client,
// the command line and kestrel-bench: tokens at known delays, chosen
// failures, and a switch that makes it stop answering.
#ifndef KESTREL_CLIENT_FAKE_KESTREL_SERVER_H_
#define KESTREL_CLIENT_FAKE_KESTREL_SERVER_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "kestrel/v1/kestrel.grpc.pb.h"

namespace kestrel::client::testing {

// How one Generate or Complete call fails: with `status`, after sending
// `after_tokens` tokens.
struct FakeFault {
  grpc::Status status;
  int after_tokens = 0;
};

// What the fake saw and did for one Generate call.
struct FakeCallRecord {
  kestrel::v1::GenerateRequest request;
  std::string authorization;  // The metadata value, "" when absent.
  absl::Time arrived;
  // When each token's chunk was handed to gRPC, one per token.
  std::vector<absl::Time> token_times;
  bool cancelled = false;  // The client cancelled (or its deadline passed).
  bool finished = false;   // The call has ended.
};

// Thread-safe. Listens on 127.0.0.1 on a free port. Generate streams one
// token per chunk: the first `ttft` after the call arrives, then one every
// `itl` (token i is due at arrival + ttft + i * itl; late writes are not
// caught up, so the recorded times are the truth to compare against).
// Token i has id 1000 + i and text token_texts[i % size]. Tokenize is one
// token per byte (id = byte + 3) after BOS = 1.
class FakeKestrelServer {
 public:
  struct Options {
    // Delay from a Generate call's arrival to its first token.
    absl::Duration ttft = absl::Milliseconds(50);
    // Delay between successive tokens.
    absl::Duration itl = absl::Milliseconds(10);
    // Tokens per sequence when the request sets no stopping.max_tokens.
    int default_output_tokens = 8;
    // Texts of successive tokens, cycled.
    std::vector<std::string> token_texts = {" Once", " upon", " a", " time"};
    // Called for each Generate and Complete call with its 0-based arrival
    // index; a returned fault makes that call fail. Unset: none fail.
    std::function<std::optional<FakeFault>(int, const kestrel::v1::GenerateRequest&)> fault;
    // The first this many unary calls other than Complete answer UNAVAILABLE
    // (for retry tests).
    int unavailable_unary_calls = 0;
    // When not empty, every Kestrel call must carry `Bearer <key>`.
    std::string required_api_key;
    // What GetModelInfo says (chat prompts are answered like text ones).
    bool has_chat_template = false;
  };

  static absl::StatusOr<std::unique_ptr<FakeKestrelServer>> Create(const Options& options);
  // Cancels whatever is still running and stops the server.
  ~FakeKestrelServer();

  // "127.0.0.1:<port>".
  std::string address() const { return address_; }

  // While hanging, streams send nothing more and new unary calls get no
  // answer, until the client cancels or its deadline passes. Health still
  // answers (the process is alive, the model is stuck).
  void SetHanging(bool hanging) { hanging_.store(hanging); }
  bool hanging() const { return hanging_.load(); }

  // Snapshot of every Generate call so far, in arrival order.
  std::vector<FakeCallRecord> generate_calls() const;
  // Unary calls received (each retry attempt counts), Complete excluded.
  int unary_calls() const { return unary_calls_.load(); }
  int complete_calls() const { return complete_calls_.load(); }
  // Generate streams still sending (Finish not yet called); the end of the
  // call itself is FakeCallRecord::finished.
  int active_streams() const;

  class Service;  // Internal (fake_kestrel_server.cc).
  class GenerateWriter;

 private:
  explicit FakeKestrelServer(const Options& options);

  // Constant after construction.
  const Options options_;
  std::string address_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;

  std::atomic<bool> hanging_{false};
  std::atomic<int> unary_calls_{0};
  std::atomic<int> complete_calls_{0};

  // std::mutex rather than absl::Mutex: TSan sees through the former
  // (Debian's Abseil is not built with TSan).
  mutable std::mutex mu_;
  std::condition_variable live_cv_;  // Signals live_reactors_ changes.
  std::vector<FakeCallRecord> calls_ ABSL_GUARDED_BY(mu_);
  int call_index_ ABSL_GUARDED_BY(mu_) = 0;                   // Generate and Complete calls.
  std::vector<GenerateWriter*> active_ ABSL_GUARDED_BY(mu_);  // Not owned.
  int live_reactors_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kestrel::client::testing

#endif  // KESTREL_CLIENT_FAKE_KESTREL_SERVER_H_

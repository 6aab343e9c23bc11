// kestrel-bench's backend for Kestrel's own gRPC API: one streaming
// Generate call per request through the client library.
#ifndef KESTREL_BENCHMARKS_BENCH_GRPC_BACKEND_H_
#define KESTREL_BENCHMARKS_BENCH_GRPC_BACKEND_H_

#include <condition_variable>
#include <list>
#include <memory>
#include <mutex>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "benchmarks/bench_runner.h"
#include "client/client.h"

namespace kestrel::bench {

struct GrpcBackendOptions {
  // Connection: address, TLS, API key (deadlines come from the runner).
  client::ClientOptions client;
  // sampling.temperature of every request; unset: the server's default.
  std::optional<float> temperature;
};

// Thread-safe. Timestamps are taken on gRPC's callback threads as each
// chunk arrives; a chunk is counted as one inter-token gap.
class GrpcBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<GrpcBackend>> Create(const GrpcBackendOptions& options);
  // Cancels and waits for every stream still running.
  ~GrpcBackend() override;

  // A health check; UNAVAILABLE when nothing answers at the address.
  absl::Status Probe(absl::Duration timeout) override;
  void Start(const BenchRequest& request, absl::Time deadline, DoneCallback done) override;
  void CancelAll() override;

 private:
  GrpcBackend(const GrpcBackendOptions& options, std::unique_ptr<client::Client> client);

  // Constant after construction.
  const GrpcBackendOptions options_;
  const std::unique_ptr<client::Client> client_;

  std::mutex mu_;
  // Streams started; finished ones are dropped on the next Start (a stream
  // cannot be destroyed from its own callback).
  std::list<std::unique_ptr<client::GenerateStream>> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kestrel::bench

#endif  // KESTREL_BENCHMARKS_BENCH_GRPC_BACKEND_H_

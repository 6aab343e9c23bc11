// The gRPC backend: per-request timing from the stream's event callbacks.
#include "benchmarks/bench_grpc_backend.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace kestrel::bench {
namespace {

namespace v1 = ::kestrel::v1;

// Timing state of one stream; touched only by its callbacks, which gRPC
// runs one at a time.
struct StreamTiming {
  absl::Time start;
  absl::Time last_chunk;
  RequestRecord record;
  int64_t streamed_tokens = 0;
  std::optional<v1::Finished> finished;
};

std::string StatusName(absl::StatusCode code) { return absl::StatusCodeToString(code); }

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcBackend>> GrpcBackend::Create(
    const GrpcBackendOptions& options) {
  absl::StatusOr<std::unique_ptr<client::Client>> client = client::Client::Create(options.client);
  if (!client.ok()) return client.status();
  return std::unique_ptr<GrpcBackend>(new GrpcBackend(options, std::move(client).value()));
}

GrpcBackend::GrpcBackend(const GrpcBackendOptions& options, std::unique_ptr<client::Client> client)
    : options_(options), client_(std::move(client)) {}

GrpcBackend::~GrpcBackend() {
  CancelAll();
  std::list<std::unique_ptr<client::GenerateStream>> streams;
  {
    std::unique_lock<std::mutex> lock(mu_);
    streams.swap(streams_);
  }
  streams.clear();  // Each destructor waits for its stream's callbacks.
}

absl::Status GrpcBackend::Probe(absl::Duration timeout) {
  return client_->Health("", {.timeout = timeout}).status();
}

void GrpcBackend::Start(const BenchRequest& request, absl::Time deadline, DoneCallback done) {
  v1::GenerateRequest generate;
  generate.set_request_id(absl::StrCat("bench-", request.index));
  if (!request.token_ids.empty()) {
    generate.mutable_token_ids()->mutable_ids()->Add(request.token_ids.begin(),
                                                     request.token_ids.end());
  } else {
    generate.set_text(request.text);
  }
  if (request.max_tokens.has_value())
    generate.mutable_stopping()->set_max_tokens(*request.max_tokens);
  generate.mutable_stopping()->set_ignore_eos(request.ignore_eos);
  if (options_.temperature.has_value()) {
    generate.mutable_sampling()->set_temperature(*options_.temperature);
  }

  auto timing = std::make_shared<StreamTiming>();
  timing->record.input_tokens = request.input_tokens;
  auto on_event = [timing](const v1::GenerateResponse& event) {
    const absl::Time now = absl::Now();
    if (event.has_chunk()) {
      // A chunk with text but no ids (return_token_ids off) still holds a
      // token; an empty chunk holds none and is not a token arrival.
      const int64_t tokens = event.chunk().token_ids_size() > 0
                                 ? event.chunk().token_ids_size()
                                 : (event.chunk().text().empty() ? 0 : 1);
      if (tokens == 0) return true;
      if (timing->streamed_tokens == 0) {
        timing->record.ttft_s = absl::ToDoubleSeconds(now - timing->start);
      } else {
        timing->record.itl_s.push_back(absl::ToDoubleSeconds(now - timing->last_chunk));
      }
      timing->last_chunk = now;
      timing->streamed_tokens += tokens;
    } else if (event.has_finished()) {
      timing->finished = event.finished();
    }
    return true;
  };
  auto on_done = [timing, done = std::move(done)](const absl::Status& status) {
    RequestRecord& record = timing->record;
    record.e2e_s = absl::ToDoubleSeconds(absl::Now() - timing->start);
    record.output_tokens = timing->streamed_tokens;
    if (timing->finished.has_value()) {
      // The server's own counts, which its Prometheus counters also use.
      const v1::Usage& usage = timing->finished->usage();
      if (usage.prompt_tokens() > 0) record.input_tokens = usage.prompt_tokens();
      if (usage.completion_tokens() > 0) record.output_tokens = usage.completion_tokens();
    }
    record.ok = status.ok();
    if (!status.ok()) {
      record.status = StatusName(status.code());
      record.error = std::string(status.message());
    } else if (timing->finished.has_value() &&
               (timing->finished->reason() == v1::FINISH_REASON_ERROR ||
                timing->finished->reason() == v1::FINISH_REASON_CANCELLED)) {
      record.ok = false;
      record.status = v1::FinishReason_Name(timing->finished->reason());
      record.error = "the server ended the sequence early";
    }
    done(std::move(record));
  };

  std::unique_lock<std::mutex> lock(mu_);
  streams_.remove_if([](const auto& stream) { return stream->Done(); });
  timing->start = absl::Now();
  streams_.push_back(client_->StartGenerate(generate, std::move(on_event), std::move(on_done),
                                            {.timeout = deadline - absl::Now()}));
}

void GrpcBackend::CancelAll() {
  std::unique_lock<std::mutex> lock(mu_);
  for (auto& stream : streams_) stream->Cancel();
}

}  // namespace kestrel::bench

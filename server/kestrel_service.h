// The kestrel.v1.Kestrel gRPC service. Handlers stay thin: validate and
// convert (server/request_convert.h), submit to the engine, stream its
// events back, map statuses (server/grpc_status.h). No scheduling or model
// logic lives here.
#ifndef KESTREL_SERVER_KESTREL_SERVICE_H_
#define KESTREL_SERVER_KESTREL_SERVICE_H_

#include <atomic>
#include <map>
#include <string>

#include "absl/time/time.h"
#include "engine/engine.h"
#include "kestrel/v1/kestrel.grpc.pb.h"
#include "model/tokenizer/tokenizer.h"
#include "server/chat_prompt.h"
#include "server/request_convert.h"

namespace kestrel::server {

struct KestrelServiceOptions {
  // Reported by GetServerInfo as configured.
  std::string listen_address;
  // Effective configuration for GetServerInfo (flag -> value, no secrets).
  std::map<std::string, std::string> config;
  // What GetModelInfo answers.
  kestrel::v1::ModelInfo model_info;
  // Events buffered for one stream whose client is not reading; past it the
  // stream is ended with RESOURCE_EXHAUSTED and its request cancelled.
  int max_buffered_events = 4096;
  // Renders GenerateRequest.chat; null when the model has no chat template
  // (such requests fail with FAILED_PRECONDITION). Not owned.
  const ChatRenderer* chat_renderer = nullptr;
  // Values of the sampling fields a request leaves unset (the model's
  // generation_config.json defaults).
  model::SamplingParams sampling_defaults;
};

// Thread-safe. `engine` and `tokenizer` are not owned and must outlive the
// service (and every call in flight: the server shuts gRPC down first).
class KestrelService final : public kestrel::v1::Kestrel::CallbackService {
 public:
  KestrelService(KestrelServiceOptions options, engine::Engine* engine,
                 const tokenizer::Tokenizer* tokenizer);

  // Marks the server as draining in GetServerInfo.
  void set_draining() { draining_.store(true); }

  grpc::ServerWriteReactor<kestrel::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const kestrel::v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* context,
                                     const kestrel::v1::GenerateRequest* request,
                                     kestrel::v1::CompleteResponse* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const kestrel::v1::TokenizeRequest* request,
                                     kestrel::v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const kestrel::v1::DetokenizeRequest* request,
                                       kestrel::v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const kestrel::v1::GetModelInfoRequest* request,
                                         kestrel::v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const kestrel::v1::GetServerInfoRequest* request,
                                          kestrel::v1::GetServerInfoResponse* response) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const kestrel::v1::AbortRequest* request,
                                  kestrel::v1::AbortResponse* response) override;

 private:
  // Constant after construction.
  const KestrelServiceOptions options_;
  engine::Engine* const engine_;                 // not owned
  const tokenizer::Tokenizer* const tokenizer_;  // not owned
  const RequestContext request_context_;
  const absl::Time start_time_;

  std::atomic<bool> draining_{false};
};

}  // namespace kestrel::server

#endif  // KESTREL_SERVER_KESTREL_SERVICE_H_

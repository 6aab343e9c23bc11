// `kestrel`: the command line for a Kestrel server. Subcommands generate,
// chat, tokenize, detokenize, info and health; exit codes are documented
// in docs/client.md and in ExitCodeFor below so that scripts can rely on them.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/cli_flags.h"
#include "client/client.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"

// Connection.
ABSL_FLAG(std::string, address, "localhost:50051", "Server address (host:port).");
ABSL_FLAG(std::string, api_key, "",
          "API key sent as `authorization: Bearer`; default $KESTREL_API_KEY.");
ABSL_FLAG(bool, tls, false, "Connect with TLS.");
ABSL_FLAG(std::string, tls_roots, "", "PEM file of root certificates (default: system roots).");
ABSL_FLAG(std::string, tls_cert, "", "PEM file of the client certificate chain (mutual TLS).");
ABSL_FLAG(std::string, tls_key, "", "PEM file of the client private key (mutual TLS).");
ABSL_FLAG(std::string, tls_server_name, "", "Name to check the server certificate against.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(60), "Deadline of each call (e.g. 30s, 2m).");
ABSL_FLAG(int, max_attempts, 3, "Attempts of idempotent calls answered UNAVAILABLE.");
ABSL_FLAG(bool, json, false, "Machine output: JSON (one object per event for generate).");

// The request (generate.proto); optional fields are sent only when given.
ABSL_FLAG(int, max_tokens, 0, "Most tokens to generate (stopping.max_tokens).");
ABSL_FLAG(int, min_tokens, 0, "Stops are ignored before this many tokens.");
ABSL_FLAG(std::string, stop, "", "Comma-separated stop strings (C escapes like \\n allowed).");
ABSL_FLAG(std::string, stop_token_ids, "", "Comma-separated stop token ids.");
ABSL_FLAG(bool, ignore_eos, false, "Keep generating past end-of-sequence.");
ABSL_FLAG(bool, include_stop_str_in_output, false, "Keep the matched stop string.");
ABSL_FLAG(float, temperature, 1.0, "Sampling temperature; 0 is greedy.");
ABSL_FLAG(int, top_k, 0, "Keep the k most likely tokens; 0 disables.");
ABSL_FLAG(float, top_p, 1.0, "Nucleus sampling probability mass, (0, 1].");
ABSL_FLAG(float, min_p, 0.0, "Drop tokens less likely than min_p times the best.");
ABSL_FLAG(float, repetition_penalty, 1.0, "Penalty for tokens already seen; 1 disables.");
ABSL_FLAG(float, presence_penalty, 0.0, "Subtracted once per generated token, [-2, 2].");
ABSL_FLAG(float, frequency_penalty, 0.0, "Subtracted per occurrence, [-2, 2].");
ABSL_FLAG(std::string, logit_bias, "", "Comma-separated id:bias pairs, e.g. 13:-100,42:5.");
ABSL_FLAG(uint64_t, seed, 0, "RNG seed (absent: random).");
ABSL_FLAG(int, n, 1, "Sequences to generate from the prompt.");
ABSL_FLAG(bool, logprobs, false, "Return each chosen token's log-probability (with --json).");
ABSL_FLAG(int, top_logprobs, 0, "Alternatives per position with --logprobs, [0, 20].");
ABSL_FLAG(bool, echo, false, "Send the prompt back first.");
ABSL_FLAG(bool, skip_special_tokens, true, "Leave special tokens out of the text.");
ABSL_FLAG(bool, add_special_tokens, true, "Add BOS to a text prompt.");
ABSL_FLAG(int, priority, 0, "Higher runs first when the server is busy.");
ABSL_FLAG(std::string, cache_salt, "", "Prefix-cache tenant separator.");
ABSL_FLAG(std::string, request_id, "", "Request id (server makes one up when empty).");
ABSL_FLAG(bool, prompt_ids, false, "The prompt is comma-separated token ids, not text.");

namespace kestrel::client {
namespace {

namespace v1 = ::kestrel::v1;

constexpr char kUsageText[] = R"(Usage: kestrel <command> [flags] [arguments]

Commands:
  generate "prompt"      Stream a completion of the prompt to stdout.
  chat                   Plain-text conversation: one user turn per stdin line;
                         /reset starts over, /exit (or end of input) quits.
  tokenize "text"        Print the token ids of the text.
  detokenize 1 2 3       Print the text of the token ids.
  info                   Print the model and server information.
  health                 Print the server's serving status.

Exit codes: 0 ok, 1 local error, 2 usage, 3 server unreachable/unavailable,
4 server error, 5 deadline exceeded, 6 not authenticated, 7 not serving,
130 interrupted.

Flags:
)";

enum ExitCode {
  kOk = 0,
  kLocalError = 1,
  kUsage = 2,
  kUnavailable = 3,
  kServerError = 4,
  kDeadline = 5,
  kAuth = 6,
  kNotServing = 7,
  kInterrupted = 130,
};

int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kOk;
    case absl::StatusCode::kUnavailable:
      return kUnavailable;
    case absl::StatusCode::kDeadlineExceeded:
      return kDeadline;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return kAuth;
    case absl::StatusCode::kCancelled:
      return kInterrupted;
    default:
      return kServerError;
  }
}

std::atomic<bool> g_interrupted{false};
void OnSigint(int) { g_interrupted.store(true); }

absl::StatusOr<std::vector<int>> ParseIds(const std::string& list, const std::string& what) {
  std::vector<int> ids;
  for (absl::string_view part : absl::StrSplit(list, absl::ByAnyChar(", "), absl::SkipEmpty())) {
    int id;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": '", part, "' is not a token id"));
    }
    ids.push_back(id);
  }
  return ids;
}

absl::StatusOr<ClientOptions> ClientOptionsFromFlags() {
  ClientOptions options;
  options.address = absl::GetFlag(FLAGS_address);
  options.api_key = absl::GetFlag(FLAGS_api_key);
  if (options.api_key.empty()) {
    if (const char* key = std::getenv("KESTREL_API_KEY")) options.api_key = key;
  }
  options.use_tls = absl::GetFlag(FLAGS_tls);
  if (!absl::GetFlag(FLAGS_tls_roots).empty()) {
    ASSIGN_OR_RETURN(options.tls_root_certs_pem, ReadFileToString(absl::GetFlag(FLAGS_tls_roots)));
  }
  if (!absl::GetFlag(FLAGS_tls_cert).empty()) {
    ASSIGN_OR_RETURN(options.tls_cert_chain_pem, ReadFileToString(absl::GetFlag(FLAGS_tls_cert)));
  }
  if (!absl::GetFlag(FLAGS_tls_key).empty()) {
    ASSIGN_OR_RETURN(options.tls_private_key_pem, ReadFileToString(absl::GetFlag(FLAGS_tls_key)));
  }
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  options.default_timeout = absl::GetFlag(FLAGS_timeout);
  options.max_attempts = absl::GetFlag(FLAGS_max_attempts);
  return options;
}

// The GenerateRequest the flags describe; optional proto fields are set
// only when their flag was given, so the server's defaults apply otherwise.
absl::StatusOr<v1::GenerateRequest> RequestFromFlags(const std::string& prompt,
                                                     const CommandLine& line) {
  auto given = [&](const char* name) { return line.specified.count(name) > 0; };
  v1::GenerateRequest request;
  request.set_request_id(absl::GetFlag(FLAGS_request_id));
  if (absl::GetFlag(FLAGS_prompt_ids)) {
    ASSIGN_OR_RETURN(std::vector<int> ids, ParseIds(prompt, "prompt"));
    for (int id : ids) request.mutable_token_ids()->add_ids(id);
  } else {
    request.set_text(prompt);
  }
  v1::SamplingParams* sampling = request.mutable_sampling();
  if (given("temperature")) sampling->set_temperature(absl::GetFlag(FLAGS_temperature));
  sampling->set_top_k(absl::GetFlag(FLAGS_top_k));
  if (given("top_p")) sampling->set_top_p(absl::GetFlag(FLAGS_top_p));
  sampling->set_min_p(absl::GetFlag(FLAGS_min_p));
  if (given("repetition_penalty")) {
    sampling->set_repetition_penalty(absl::GetFlag(FLAGS_repetition_penalty));
  }
  sampling->set_presence_penalty(absl::GetFlag(FLAGS_presence_penalty));
  sampling->set_frequency_penalty(absl::GetFlag(FLAGS_frequency_penalty));
  for (absl::string_view pair :
       absl::StrSplit(absl::GetFlag(FLAGS_logit_bias), ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> parts = absl::StrSplit(pair, ':');
    int id;
    float bias;
    if (!absl::SimpleAtoi(parts.first, &id) || !absl::SimpleAtof(parts.second, &bias)) {
      return absl::InvalidArgumentError(absl::StrCat("--logit-bias: '", pair, "' is not id:bias"));
    }
    (*sampling->mutable_logit_bias())[id] = bias;
  }
  if (given("seed")) sampling->set_seed(absl::GetFlag(FLAGS_seed));
  if (given("n")) sampling->set_n(absl::GetFlag(FLAGS_n));

  v1::StoppingCriteria* stopping = request.mutable_stopping();
  if (given("max_tokens")) stopping->set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  stopping->set_min_tokens(absl::GetFlag(FLAGS_min_tokens));
  for (absl::string_view stop : absl::StrSplit(absl::GetFlag(FLAGS_stop), ',', absl::SkipEmpty())) {
    std::string unescaped;
    std::string error;
    if (!absl::CUnescape(stop, &unescaped, &error)) {
      return absl::InvalidArgumentError(absl::StrCat("--stop: '", stop, "': ", error));
    }
    stopping->add_stop(unescaped);
  }
  ASSIGN_OR_RETURN(std::vector<int> stop_ids,
                   ParseIds(absl::GetFlag(FLAGS_stop_token_ids), "--stop-token-ids"));
  for (int id : stop_ids) stopping->add_stop_token_ids(id);
  stopping->set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));
  stopping->set_include_stop_str_in_output(absl::GetFlag(FLAGS_include_stop_str_in_output));

  v1::OutputOptions* output = request.mutable_output();
  output->set_logprobs(absl::GetFlag(FLAGS_logprobs));
  output->set_top_logprobs(absl::GetFlag(FLAGS_top_logprobs));
  output->set_echo_prompt(absl::GetFlag(FLAGS_echo));
  if (given("skip_special_tokens")) {
    output->set_skip_special_tokens(absl::GetFlag(FLAGS_skip_special_tokens));
  }
  if (given("add_special_tokens")) {
    request.set_add_special_tokens(absl::GetFlag(FLAGS_add_special_tokens));
  }
  request.set_priority(absl::GetFlag(FLAGS_priority));
  request.set_cache_salt(absl::GetFlag(FLAGS_cache_salt));
  return request;
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) return "{}";
  return json;
}

// Runs one Generate call, printing as events arrive: the text of sequence 0
// to stdout (other sequences are printed whole at the end), or one JSON
// object per event. Cancels on Ctrl-C. Appends sequence 0's text to `text`.
absl::Status StreamGenerate(Client& client, const v1::GenerateRequest& request, bool json,
                            std::string* text) {
  std::map<int, std::string> other_sequences;
  std::map<int, v1::Finished> finished;
  auto stream = client.StartGenerate(request, [&](const v1::GenerateResponse& event) {
    if (json) {
      std::cout << ToJson(event) << "\n" << std::flush;
    }
    if (event.has_chunk()) {
      if (event.chunk().index() == 0) {
        if (!json) std::cout << event.chunk().text() << std::flush;
        if (text != nullptr) text->append(event.chunk().text());
      } else {
        other_sequences[event.chunk().index()] += event.chunk().text();
      }
    } else if (event.has_finished()) {
      finished[event.finished().index()] = event.finished();
    }
    return true;
  });
  // Polls so that Ctrl-C (a flag set by the signal handler) can cancel.
  while (!stream->Done()) {
    if (g_interrupted.load()) stream->Cancel();
    absl::SleepFor(absl::Milliseconds(20));
  }
  absl::Status status = stream->Wait();
  if (!json) {
    for (const auto& [index, sequence_text] : other_sequences) {
      std::cout << "\n--- sequence " << index << " ---\n" << sequence_text;
    }
    if (status.ok()) std::cout << "\n";
  }
  if (!json && status.ok()) {
    for (const auto& [index, end] : finished) {
      std::cerr << "[" << (finished.size() > 1 ? absl::StrCat("sequence ", index, ": ") : "")
                << v1::FinishReason_Name(end.reason()) << ", " << end.usage().prompt_tokens()
                << " prompt + " << end.usage().completion_tokens() << " completion tokens]\n";
    }
  }
  return status;
}

absl::Status RunChat(Client& client, const CommandLine& line) {
  std::string conversation;
  std::string user;
  // The conversation is the prompt; the stop string keeps the model from
  // writing the user's next turn.
  const bool interactive = isatty(0);
  while (true) {
    if (interactive) std::cerr << "> " << std::flush;
    if (!std::getline(std::cin, user) || user == "/exit" || user == "/quit") break;
    if (user == "/reset") {
      conversation.clear();
      continue;
    }
    if (user.empty()) continue;
    absl::StrAppend(&conversation, "User: ", user, "\nAssistant:");
    ASSIGN_OR_RETURN(v1::GenerateRequest request, RequestFromFlags(conversation, line));
    if (request.stopping().stop_size() == 0) request.mutable_stopping()->add_stop("\nUser:");
    std::string reply;
    RETURN_IF_ERROR(StreamGenerate(client, request, absl::GetFlag(FLAGS_json), &reply));
    absl::StrAppend(&conversation, reply, "\n");
    if (g_interrupted.load()) break;
  }
  return absl::OkStatus();
}

absl::Status RunInfo(Client& client) {
  ASSIGN_OR_RETURN(v1::ModelInfo model, client.GetModelInfo());
  ASSIGN_OR_RETURN(v1::GetServerInfoResponse server, client.GetServerInfo());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << "{\"model\":" << ToJson(model) << ",\"server\":" << ToJson(server) << "}\n";
    return absl::OkStatus();
  }
  std::cout << "model:          " << model.name() << " (" << model.architecture() << ", "
            << model.dtype() << ", " << model.num_parameters() << " parameters)\n"
            << "context length: " << model.context_length() << "\n"
            << "vocabulary:     " << model.vocab_size() << "\n"
            << "server:         " << server.version() << " at " << server.listen_address()
            << ", up " << absl::FormatDuration(absl::Seconds(std::floor(server.uptime_seconds())))
            << (server.draining() ? ", DRAINING" : "") << "\n"
            << "load:           " << server.load().running_requests() << " running, "
            << server.load().waiting_requests() << " waiting, " << server.load().kv_blocks_free()
            << "/" << server.load().kv_blocks_total() << " KV blocks free\n";
  return absl::OkStatus();
}

int Run(int argc, char** argv) {
  absl::StatusOr<CommandLine> line = ParseFlags(argc, argv);
  if (!line.ok()) {
    std::cerr << "kestrel: " << line.status().message() << "\n"
              << "Run 'kestrel --help' for usage.\n";
    return kUsage;
  }
  if (line->help) {
    std::cout << kUsageText << FlagHelp("client/kestrel_cli");
    return kOk;
  }
  const std::vector<std::string>& args = line->positional;
  auto usage_error = [](const std::string& message) {
    std::cerr << "kestrel: " << message << "\nRun 'kestrel --help' for usage.\n";
    return kUsage;
  };
  if (args.empty()) return usage_error("missing command");
  const std::string& command = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());

  absl::StatusOr<ClientOptions> options = ClientOptionsFromFlags();
  if (!options.ok()) return usage_error(std::string(options.status().message()));
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(*options);
  if (!client.ok()) return usage_error(std::string(client.status().message()));
  signal(SIGINT, OnSigint);

  absl::Status status;
  if (command == "generate") {
    if (rest.size() != 1) return usage_error("generate takes one prompt argument");
    absl::StatusOr<v1::GenerateRequest> request = RequestFromFlags(rest[0], *line);
    if (!request.ok()) return usage_error(std::string(request.status().message()));
    status = StreamGenerate(**client, *request, absl::GetFlag(FLAGS_json), nullptr);
  } else if (command == "chat") {
    if (!rest.empty()) return usage_error("chat takes no arguments (it reads stdin)");
    status = RunChat(**client, *line);
  } else if (command == "tokenize") {
    if (rest.size() != 1) return usage_error("tokenize takes one text argument");
    v1::TokenizeRequest request;
    request.set_text(rest[0]);
    if (line->specified.count("add_special_tokens")) {
      request.set_add_special_tokens(absl::GetFlag(FLAGS_add_special_tokens));
    }
    absl::StatusOr<v1::TokenizeResponse> response = (*client)->Tokenize(request);
    status = response.status();
    if (status.ok()) {
      std::cout << (absl::GetFlag(FLAGS_json) ? ToJson(*response)
                                              : absl::StrJoin(response->token_ids(), " "))
                << "\n";
    }
  } else if (command == "detokenize") {
    absl::StatusOr<std::vector<int>> ids = ParseIds(absl::StrJoin(rest, " "), "detokenize");
    if (!ids.ok()) return usage_error(std::string(ids.status().message()));
    if (ids->empty()) return usage_error("detokenize takes token ids");
    v1::DetokenizeRequest request;
    for (int id : *ids) request.add_token_ids(id);
    if (line->specified.count("skip_special_tokens")) {
      request.set_skip_special_tokens(absl::GetFlag(FLAGS_skip_special_tokens));
    }
    absl::StatusOr<v1::DetokenizeResponse> response = (*client)->Detokenize(request);
    status = response.status();
    if (status.ok()) {
      std::cout << (absl::GetFlag(FLAGS_json) ? ToJson(*response) : response->text()) << "\n";
    }
  } else if (command == "info") {
    if (!rest.empty()) return usage_error("info takes no arguments");
    status = RunInfo(**client);
  } else if (command == "health") {
    if (!rest.empty()) return usage_error("health takes no arguments");
    auto serving = (*client)->Health();
    status = serving.status();
    if (status.ok()) {
      const std::string name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(*serving);
      std::cout << (absl::GetFlag(FLAGS_json) ? absl::StrCat("{\"status\":\"", name, "\"}") : name)
                << "\n";
      if (*serving != grpc::health::v1::HealthCheckResponse::SERVING) return kNotServing;
    }
  } else {
    return usage_error(absl::StrCat("unknown command '", command, "'"));
  }
  if (g_interrupted.load()) {
    std::cerr << "kestrel: interrupted\n";
    return kInterrupted;
  }
  if (!status.ok()) {
    std::cerr << "kestrel: " << status.message() << "\n";
    if (status.code() == absl::StatusCode::kUnavailable) {
      std::cerr << "kestrel: is a server running at " << options->address
                << "? (set it with --address)\n";
    }
    return ExitCodeFor(status);
  }
  return kOk;
}

}  // namespace
}  // namespace kestrel::client

int main(int argc, char** argv) { return kestrel::client::Run(argc, argv); }

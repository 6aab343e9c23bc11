// `kestrel`: the command line for a Kestrel server. Subcommands generate,
// chat, tokenize, detokenize, info and health; exit codes are documented
// in docs/client.md and in ExitCodeFor below so that scripts can rely on them.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/connection_flags.h"
#include "common/flags.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"

namespace kestrel::client {
namespace {

namespace v1 = ::kestrel::v1;

constexpr char kDescription[] = R"(The command line for a Kestrel server (docs/client.md).

Commands:
  generate "prompt"      Stream a completion of the prompt to stdout.
  chat                   Conversation: one user turn per stdin line, rendered by
                         the model's chat template (plain "User:/Assistant:"
                         text when it has none); /reset starts over, /exit
                         (or end of input) quits.
  tokenize "text"        Print the token ids of the text.
  detokenize 1 2 3       Print the text of the token ids.
  info                   Print the model and server information.
  health                 Print the server's serving status.

Exit codes: 0 ok, 1 local error, 2 usage, 3 server unreachable/unavailable,
4 server error, 5 deadline exceeded, 6 not authenticated, 7 not serving,
130 interrupted.)";

// The command line; initial values are the defaults. Optional request
// fields are sent only when their flag is given (ParsedArgs::given), so the
// server's defaults apply otherwise.
struct Flags {
  ConnectionFlags connection;
  absl::Duration timeout = absl::Seconds(60);
  int32_t max_attempts = 3;
  bool json = false;

  int32_t max_tokens = 0;
  int32_t min_tokens = 0;
  std::string stop;
  std::string stop_token_ids;
  bool ignore_eos = false;
  bool include_stop_str_in_output = false;
  float temperature = 1.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::string logit_bias;
  uint64_t seed = 0;
  int32_t n = 1;
  int32_t logprobs = -1;
  bool echo = false;
  bool skip_special_tokens = true;
  bool add_special_tokens = true;
  int32_t priority = 0;
  std::string cache_salt;
  std::string request_id;
  bool prompt_ids = false;
  std::string system;
};

constexpr int kMaxLogprobs = 20;

void DeclareFlags(FlagSet& flags, Flags& f) {
  AddConnectionFlags(flags, &f.connection);
  flags.Section("Calls and output");
  flags.Add("timeout", &f.timeout, "DURATION", "Deadline of each call (e.g. 30s, 2m)");
  flags.Add("max-attempts", &f.max_attempts, "N",
            "Attempts of idempotent calls answered UNAVAILABLE");
  flags.Add("json", &f.json, "Machine output: JSON (one object per event for generate)");

  flags.Section("Sampling (sent only when given; else the server's defaults)");
  flags.Add("max-tokens", &f.max_tokens, "N", "Most tokens to generate").DefaultText("server's");
  flags.Add("min-tokens", &f.min_tokens, "N", "Stops are ignored before this many tokens");
  flags.Add("temperature", &f.temperature, "T", "Sampling temperature; 0 is greedy");
  flags.Add("top-k", &f.top_k, "K", "Keep the k most likely tokens; 0 disables");
  flags.Add("top-p", &f.top_p, "P", "Nucleus sampling probability mass, (0, 1]");
  flags.Add("min-p", &f.min_p, "P", "Drop tokens less likely than min-p times the best");
  flags.Add("repetition-penalty", &f.repetition_penalty, "X",
            "Penalty for tokens already seen; 1 disables");
  flags.Add("presence-penalty", &f.presence_penalty, "X",
            "Subtracted once per generated token, [-2, 2]");
  flags.Add("frequency-penalty", &f.frequency_penalty, "X", "Subtracted per occurrence, [-2, 2]");
  flags.Add("logit-bias", &f.logit_bias, "ID:BIAS,...", "Token biases, e.g. 13:-100,42:5");
  flags.Add("seed", &f.seed, "N", "Sampling RNG seed").DefaultText("random");
  flags.Add("n", &f.n, "N", "Sequences to generate from the prompt");
  flags.Add("stop", &f.stop, "S,...", "Stop strings, comma-separated (C escapes like \\n allowed)");
  flags.Add("stop-token-ids", &f.stop_token_ids, "ID,...", "Stop token ids, comma-separated");
  flags.Add("ignore-eos", &f.ignore_eos, "Keep generating past end-of-sequence");
  flags.Add("include-stop-str-in-output", &f.include_stop_str_in_output,
            "Keep the matched stop string");
  flags.Add("logprobs", &f.logprobs, "N",
            "Report log-probabilities with N top alternatives, [0, 20] (0: the chosen token's "
            "only; -1: off; shown with --json)");

  flags.Section("Request");
  flags.Add("echo", &f.echo, "Send the prompt back first");
  flags.Add("skip-special-tokens", &f.skip_special_tokens, "Leave special tokens out of the text");
  flags.Add("add-special-tokens", &f.add_special_tokens, "Add BOS to a text prompt");
  flags.Add("priority", &f.priority, "N", "Higher runs first when the server is busy");
  flags.Add("cache-salt", &f.cache_salt, "SALT", "Prefix-cache tenant separator");
  flags.Add("request-id", &f.request_id, "ID", "Request id (empty: the server makes one up)");
  flags.Add("prompt-ids", &f.prompt_ids, "The prompt is comma-separated token ids, not text");
  flags.Add("system", &f.system, "TEXT", "chat: the system message opening the conversation");
}

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

absl::StatusOr<ClientOptions> ClientOptionsFromFlags(const Flags& f) {
  ASSIGN_OR_RETURN(ClientOptions options, ToClientOptions(f.connection));
  options.default_timeout = f.timeout;
  options.max_attempts = f.max_attempts;
  return options;
}

// The GenerateRequest the flags describe; optional proto fields are set
// only when their flag was given, so the server's defaults apply otherwise.
absl::StatusOr<v1::GenerateRequest> RequestFromFlags(const std::string& prompt, const Flags& f,
                                                     const ParsedArgs& args) {
  auto given = [&](const char* name) { return args.Given(name); };
  v1::GenerateRequest request;
  request.set_request_id(f.request_id);
  if (f.prompt_ids) {
    ASSIGN_OR_RETURN(std::vector<int> ids, ParseIds(prompt, "prompt"));
    for (int id : ids) request.mutable_token_ids()->add_ids(id);
  } else {
    request.set_text(prompt);
  }
  v1::SamplingParams* sampling = request.mutable_sampling();
  if (given("temperature")) sampling->set_temperature(f.temperature);
  if (given("top-k")) sampling->set_top_k(f.top_k);
  if (given("top-p")) sampling->set_top_p(f.top_p);
  if (given("min-p")) sampling->set_min_p(f.min_p);
  if (given("repetition-penalty")) {
    sampling->set_repetition_penalty(f.repetition_penalty);
  }
  sampling->set_presence_penalty(f.presence_penalty);
  sampling->set_frequency_penalty(f.frequency_penalty);
  for (absl::string_view pair :
       absl::StrSplit(f.logit_bias, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> parts = absl::StrSplit(pair, ':');
    int id;
    float bias;
    if (!absl::SimpleAtoi(parts.first, &id) || !absl::SimpleAtof(parts.second, &bias)) {
      return absl::InvalidArgumentError(absl::StrCat("--logit-bias: '", pair, "' is not id:bias"));
    }
    (*sampling->mutable_logit_bias())[id] = bias;
  }
  if (given("seed")) sampling->set_seed(f.seed);
  if (given("n")) sampling->set_n(f.n);

  v1::StoppingCriteria* stopping = request.mutable_stopping();
  if (given("max-tokens")) stopping->set_max_tokens(f.max_tokens);
  stopping->set_min_tokens(f.min_tokens);
  for (absl::string_view stop : absl::StrSplit(f.stop, ',', absl::SkipEmpty())) {
    std::string unescaped;
    std::string error;
    if (!absl::CUnescape(stop, &unescaped, &error)) {
      return absl::InvalidArgumentError(absl::StrCat("--stop: '", stop, "': ", error));
    }
    stopping->add_stop(unescaped);
  }
  ASSIGN_OR_RETURN(std::vector<int> stop_ids,
                   ParseIds(f.stop_token_ids, "--stop-token-ids"));
  for (int id : stop_ids) stopping->add_stop_token_ids(id);
  stopping->set_ignore_eos(f.ignore_eos);
  stopping->set_include_stop_str_in_output(f.include_stop_str_in_output);

  v1::OutputOptions* output = request.mutable_output();
  output->set_logprobs(f.logprobs >= 0);
  output->set_top_logprobs(std::max(f.logprobs, 0));
  output->set_echo_prompt(f.echo);
  if (given("skip-special-tokens")) {
    output->set_skip_special_tokens(f.skip_special_tokens);
  }
  if (given("add-special-tokens")) {
    request.set_add_special_tokens(f.add_special_tokens);
  }
  request.set_priority(f.priority);
  request.set_cache_salt(f.cache_salt);
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

// Reads user turns from stdin until /exit or the end of input. A model with
// a chat template gets the conversation as messages (GenerateRequest.chat,
// rendered by the server exactly as /v1/chat/completions renders it); one
// without gets it as plain "User: ...\nAssistant:" text, with a stop string
// that keeps the model from writing the user's next turn.
absl::Status RunChat(Client& client, const Flags& f, const ParsedArgs& args) {
  if (f.prompt_ids) return absl::InvalidArgumentError("chat takes text turns, not --prompt-ids");
  ASSIGN_OR_RETURN(v1::ModelInfo model, client.GetModelInfo());
  const bool templated = model.has_chat_template();
  std::vector<std::pair<std::string, std::string>> turns;  // (role, content)
  std::string user;
  const bool interactive = isatty(0);
  while (true) {
    if (interactive) std::cerr << "> " << std::flush;
    if (!std::getline(std::cin, user) || user == "/exit" || user == "/quit") break;
    if (user == "/reset") {
      turns.clear();
      continue;
    }
    if (user.empty()) continue;
    turns.emplace_back("user", user);
    v1::GenerateRequest request;
    if (templated) {
      ASSIGN_OR_RETURN(request, RequestFromFlags("", f, args));
      v1::ChatPrompt* chat = request.mutable_chat();
      if (!f.system.empty()) {
        v1::ChatMessage* system = chat->add_messages();
        system->set_role("system");
        system->set_content(f.system);
      }
      for (const auto& [role, content] : turns) {
        v1::ChatMessage* message = chat->add_messages();
        message->set_role(role);
        message->set_content(content);
      }
    } else {
      std::string conversation = f.system.empty() ? "" : absl::StrCat(f.system, "\n");
      for (const auto& [role, content] : turns) {
        absl::StrAppend(&conversation, role == "user" ? "User: " : "Assistant:", content, "\n");
      }
      absl::StrAppend(&conversation, "Assistant:");
      ASSIGN_OR_RETURN(request, RequestFromFlags(conversation, f, args));
      if (request.stopping().stop_size() == 0) request.mutable_stopping()->add_stop("\nUser:");
    }
    std::string reply;
    RETURN_IF_ERROR(StreamGenerate(client, request, f.json, &reply));
    turns.emplace_back("assistant", reply);
    if (g_interrupted.load()) break;
  }
  return absl::OkStatus();
}

absl::Status RunInfo(Client& client, bool json) {
  ASSIGN_OR_RETURN(v1::ModelInfo model, client.GetModelInfo());
  ASSIGN_OR_RETURN(v1::GetServerInfoResponse server, client.GetServerInfo());
  if (json) {
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
  Flags f;
  FlagSet flags("kestrel", "<command> [arguments]", kDescription);
  DeclareFlags(flags, f);
  const ParsedArgs parsed = flags.ParseOrExit(argc, argv);
  if (f.logprobs < -1 || f.logprobs > kMaxLogprobs) {
    return flags.UsageError(absl::StrCat("--logprobs: must be in [-1, ", kMaxLogprobs, "], got ",
                                         f.logprobs));
  }
  const std::vector<std::string>& args = parsed.positional;
  auto usage_error = [&](const std::string& message) { return flags.UsageError(message); };
  if (args.empty()) return usage_error("missing command (see --help)");
  const std::string& command = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());

  absl::StatusOr<ClientOptions> options = ClientOptionsFromFlags(f);
  if (!options.ok()) return usage_error(std::string(options.status().message()));
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(*options);
  if (!client.ok()) return usage_error(std::string(client.status().message()));
  signal(SIGINT, OnSigint);

  absl::Status status;
  if (command == "generate") {
    if (rest.size() != 1) return usage_error("generate takes one prompt argument");
    absl::StatusOr<v1::GenerateRequest> request = RequestFromFlags(rest[0], f, parsed);
    if (!request.ok()) return usage_error(std::string(request.status().message()));
    status = StreamGenerate(**client, *request, f.json, nullptr);
  } else if (command == "chat") {
    if (!rest.empty()) return usage_error("chat takes no arguments (it reads stdin)");
    status = RunChat(**client, f, parsed);
  } else if (command == "tokenize") {
    if (rest.size() != 1) return usage_error("tokenize takes one text argument");
    v1::TokenizeRequest request;
    request.set_text(rest[0]);
    if (parsed.Given("add-special-tokens")) {
      request.set_add_special_tokens(f.add_special_tokens);
    }
    absl::StatusOr<v1::TokenizeResponse> response = (*client)->Tokenize(request);
    status = response.status();
    if (status.ok()) {
      std::cout << (f.json ? ToJson(*response)
                                              : absl::StrJoin(response->token_ids(), " "))
                << "\n";
    }
  } else if (command == "detokenize") {
    absl::StatusOr<std::vector<int>> ids = ParseIds(absl::StrJoin(rest, " "), "detokenize");
    if (!ids.ok()) return usage_error(std::string(ids.status().message()));
    if (ids->empty()) return usage_error("detokenize takes token ids");
    v1::DetokenizeRequest request;
    for (int id : *ids) request.add_token_ids(id);
    if (parsed.Given("skip-special-tokens")) {
      request.set_skip_special_tokens(f.skip_special_tokens);
    }
    absl::StatusOr<v1::DetokenizeResponse> response = (*client)->Detokenize(request);
    status = response.status();
    if (status.ok()) {
      std::cout << (f.json ? ToJson(*response) : response->text()) << "\n";
    }
  } else if (command == "info") {
    if (!rest.empty()) return usage_error("info takes no arguments");
    status = RunInfo(**client, f.json);
  } else if (command == "health") {
    if (!rest.empty()) return usage_error("health takes no arguments");
    auto serving = (*client)->Health();
    status = serving.status();
    if (status.ok()) {
      const std::string name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(*serving);
      std::cout << (f.json ? absl::StrCat("{\"status\":\"", name, "\"}") : name)
                << "\n";
      if (*serving != grpc::health::v1::HealthCheckResponse::SERVING) return kNotServing;
    }
  } else {
    return usage_error(absl::StrCat("unknown command '", command, "' (see --help)"));
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

// A real client: the official OpenAI SDK for Node (npm `openai`, installed
// by scripts/setup into $KESTREL_TOOLS_DIR) drives the kestrel-server binary
// on stories260K through --http-listen (testdata/openai_e2e.js holds the
// checks). The model directory is a copy with a chat template added. Also:
// gRPC chat prompts and /v1/chat/completions take one path (the same prompt
// tokens, the same greedy text), and a malformed template stops the server
// at startup with the line at fault.
#include <cstdlib>
#include <iostream>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "kestrel/v1/kestrel.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "server/http/http_test_client.h"
#include "server/test_server.h"
#include "testing/shared_data.h"
#include "testing/subprocess.h"

namespace kestrel::server::http {
namespace {

using namespace std::chrono_literals;
using ::kestrel::testing::RunfilePath;
using ::kestrel::testing::Subprocess;

constexpr char kChatTemplate[] =
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}";

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// stories260K with a chat template in its tokenizer_config.json.
std::filesystem::path ModelWithChatTemplate(const std::filesystem::path& model_dir,
                                            const std::filesystem::path& dir) {
  const std::filesystem::path copy = dir / "stories260K";
  std::filesystem::create_directories(copy);
  for (const auto& entry : std::filesystem::directory_iterator(model_dir)) {
    if (entry.is_regular_file()) {
      std::filesystem::copy_file(entry.path(), copy / entry.path().filename());
    }
  }
  nlohmann::json config = nlohmann::json::parse(ReadAll(copy / "tokenizer_config.json"));
  config["chat_template"] = kChatTemplate;
  std::ofstream(copy / "tokenizer_config.json") << config.dump(2);
  return copy;
}

TEST_CASE("the OpenAI Node SDK against kestrel-server's HTTP API") {
  KESTREL_SHARED_PATH_OR_SKIP(model_dir, "models/stories260K");
  const char* tools_env = std::getenv("KESTREL_TOOLS_DIR");
  const std::filesystem::path tools = tools_env != nullptr ? tools_env : "/opt/kestrel/tools";
  const std::filesystem::path sdk = tools / "node_modules/openai/package.json";
  const bool ci = std::getenv("CI") != nullptr && std::string(std::getenv("CI")) == "true";
  if (!std::filesystem::exists(sdk) || !std::filesystem::exists("/usr/bin/node")) {
    INFO("node or the openai SDK is missing (" << sdk << "); scripts/setup installs them");
    REQUIRE_FALSE(ci);
    std::cout << "KESTREL-SKIPPED: node or the openai npm SDK is not installed\n";
    return;
  }

  const auto dir = ::kestrel::testing::MakeTempDir("openai_e2e");
  const std::filesystem::path model = ModelWithChatTemplate(model_dir, dir);
  const std::filesystem::path http_port_file = dir / "http_port";
  std::optional<TestServer> server =
      TestServer::Start({"--model=" + model.string(), "--threads=2", "--http-listen=127.0.0.1:0",
                         "--http-port-file=" + http_port_file.string()});
  REQUIRE(server.has_value());
  int port = 0;
  std::istringstream(ReadAll(http_port_file)) >> port;
  REQUIRE(port > 0);

  const std::string command =
      "NODE_PATH='" + (tools / "node_modules").string() + "' /usr/bin/node '" +
      RunfilePath("server/http/testdata/openai_e2e.js").string() + "' 'http://127.0.0.1:" +
      std::to_string(port) + "' stories260K '" + (model_dir / "golden/greedy.json").string() +
      "' > '" + (dir / "out").string() + "' 2>&1";
  auto node = Subprocess::Start({"/bin/sh", "-c", command});
  REQUIRE(node.has_value());
  std::optional<int> status = node->WaitForExit(300s);
  const std::string out = ReadAll(dir / "out");
  std::cout << out;
  INFO("node output:\n" << out << "\nserver log:\n" << server->Log());
  REQUIRE(status.has_value());
  CHECK(*status == 0);
  CHECK(out.find("summary: 0 failed") != std::string::npos);
}

TEST_CASE("gRPC chat prompts and /v1/chat/completions share one path") {
  KESTREL_SHARED_PATH_OR_SKIP(model_dir, "models/stories260K");
  const auto dir = ::kestrel::testing::MakeTempDir("chat_paths");
  const std::filesystem::path model = ModelWithChatTemplate(model_dir, dir);
  std::optional<TestServer> server =
      TestServer::Start({"--model=" + model.string(), "--threads=1", "--http-listen=127.0.0.1:0",
                         "--http-port-file=" + (dir / "http_port").string()});
  REQUIRE(server.has_value());
  int port = 0;
  std::istringstream(ReadAll(dir / "http_port")) >> port;
  REQUIRE(port > 0);
  auto stub = kestrel::v1::Kestrel::NewStub(server->Channel());

  // GetModelInfo says the model has a template.
  kestrel::v1::ModelInfo info;
  {
    grpc::ClientContext context;
    REQUIRE(stub->GetModelInfo(&context, kestrel::v1::GetModelInfoRequest(), &info).ok());
    CHECK(info.has_chat_template());
  }

  // Over HTTP: a system message, a user turn given as text parts, greedy.
  nlohmann::json body = {
      {"messages",
       {{{"role", "system"}, {"content", "Tell a story."}},
        {{"role", "user"},
         {"content", {{{"type", "text"}, {"text", "Once upon a time"}}, {{"type", "text"}, {"text", "Lily"}}}}}}},
      {"max_tokens", 24},
      {"temperature", 0}};
  testing::FetchOptions options;
  options.body = body.dump();
  testing::FetchResult http =
      testing::Fetch("http://127.0.0.1:" + std::to_string(port) + "/v1/chat/completions", options);
  INFO(http.body);
  REQUIRE(http.status == 200);
  const nlohmann::json answer = http.Json();

  // Over gRPC: the same conversation (parts joined by a newline, as the
  // HTTP front end joins them), the prompt echoed.
  kestrel::v1::GenerateRequest request;
  auto add = [&](const std::string& role, const std::string& content) {
    auto* message = request.mutable_chat()->add_messages();
    message->set_role(role);
    message->set_content(content);
  };
  add("system", "Tell a story.");
  add("user", "Once upon a time\nLily");
  request.mutable_stopping()->set_max_tokens(24);
  request.mutable_sampling()->set_temperature(0);
  request.mutable_output()->set_echo_prompt(true);
  kestrel::v1::CompleteResponse grpc_answer;
  grpc::ClientContext context;
  grpc::Status status = stub->Complete(&context, request, &grpc_answer);
  INFO(status.error_message());
  REQUIRE(status.ok());
  CHECK(grpc_answer.prompt().text() ==
        "system: Tell a story.\nuser: Once upon a time\nLily\nassistant:");
  CHECK(grpc_answer.prompt().token_ids_size() == answer["usage"]["prompt_tokens"].get<int>());
  REQUIRE(grpc_answer.completions_size() == 1);
  CHECK_FALSE(grpc_answer.completions(0).text().empty());
  CHECK(grpc_answer.completions(0).text() == answer["choices"][0]["message"]["content"].get<std::string>());

  // Errors name the field, on both front ends.
  request.mutable_chat()->set_tools_json("{");
  grpc::ClientContext bad_context;
  status = stub->Complete(&bad_context, request, &grpc_answer);
  CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(status.error_message().find("chat.tools_json") != std::string::npos);
}

TEST_CASE("a malformed chat template stops the server at startup, naming the line") {
  KESTREL_SHARED_PATH_OR_SKIP(model_dir, "models/stories260K");
  const auto dir = ::kestrel::testing::MakeTempDir("bad_template");
  const std::filesystem::path model = ModelWithChatTemplate(model_dir, dir);
  std::ofstream(model / "chat_template.jinja") << "{% for m in messages %}\n{{ m.content }\n";
  const std::filesystem::path log = dir / "server.log";
  auto process = Subprocess::Start(
      {RunfilePath("server/kestrel-server").string(), "--model=" + model.string(), "--listen=127.0.0.1:0"},
      log);
  REQUIRE(process.has_value());
  std::optional<int> status = process->WaitForExit(60s);
  const std::string text = ReadAll(log);
  INFO(text);
  REQUIRE(status.has_value());
  CHECK(*status == 1);
  CHECK(text.find("chat template") != std::string::npos);
  CHECK(text.find("line 2") != std::string::npos);
  CHECK(text.find("chat_template.jinja") != std::string::npos);
}

}  // namespace
}  // namespace kestrel::server::http

// A real client: the official OpenAI SDK for Node (npm `openai`, installed
// by scripts/setup into $KESTREL_TOOLS_DIR) drives the kestrel-server binary
// on stories260K through --http-listen (testdata/openai_e2e.js holds the
// checks). The model directory is a copy with a chat template added, so
// chat runs as soon as the server renders templates; until then the script
// skips only the chat part, saying so.
#include <cstdlib>
#include <iostream>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "nlohmann/json.hpp"
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

}  // namespace
}  // namespace kestrel::server::http

// API keys: loading (with errors that name file and line but never the key),
// the per-call decision, and a real TLS gRPC server with the processor:
// no key / wrong key -> UNAUTHENTICATED, right key -> OK with the key hidden
// from the handler, health open without a key.
#include "server/auth.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server/tls.h"
#include "server/tls_testutil.h"
#include "testing/subprocess.h"

KESTREL_TSAN_SUPPRESS_GRPC_TLS_RACES()

namespace kestrel::server {
namespace {

namespace fs = std::filesystem;

const std::string kKeyA = "k3str3l-test-key-aaaaaaaaaaaaaaaa";
const std::string kKeyB = "0123456789abcdef0123456789abcdef";

fs::path WriteKeysFile(const std::string& contents) {
  const fs::path path = ::kestrel::testing::MakeTempDir("keys") / "api_keys";
  std::ofstream(path) << contents;
  return path;
}

TEST_CASE("LoadFile: one key per line; blanks, comments, whitespace and CRLF ignored") {
  const fs::path path = WriteKeysFile("# production keys\n\n  " + kKeyA +
                                      "  \r\n   # old key below\n" + kKeyB + "\n\n");
  auto keys = ApiKeys::LoadFile(path.string());
  REQUIRE(keys.ok());
  CHECK(keys->size() == 2);
  CHECK(keys->Contains(kKeyA));
  CHECK(keys->Contains(kKeyB));
  CHECK_FALSE(keys->Contains(""));
  CHECK_FALSE(keys->Contains(kKeyA.substr(0, kKeyA.size() - 1)));  // a prefix
  CHECK_FALSE(keys->Contains(kKeyA + "x"));                        // an extension
  CHECK_FALSE(keys->Contains(" " + kKeyA));                        // the check does not trim
  std::string flipped = kKeyB;
  flipped.back() = 'e';
  CHECK_FALSE(keys->Contains(flipped));
  CHECK_FALSE(keys->Contains("# production keys"));
}

TEST_CASE("LoadFile errors name the file and line and never echo the key") {
  struct Case {
    std::string contents;
    std::string expected;
  };
  const std::string secret_short = "s3cr3t";
  const std::string secret_space = "abcdefghijklmnop qrstuvwxyz";
  const std::string secret_tab = "abcdefghijklmnop\tqrstuvwxyz";
  const std::string secret_utf8 = "abcdefghijklmnop\xc3\xa9";
  const std::vector<Case> cases = {
      {"", "contains no API key"},
      {"# only a comment\n\n   \n", "contains no API key"},
      {kKeyA + "\n" + secret_short + "\n", "line 2: the key has 6 characters, fewer than 16"},
      {"\n" + secret_space + "\n", "line 2: the key contains whitespace"},
      {secret_tab, "line 1: the key contains whitespace"},
      {kKeyA + " # comment\n", "line 1: the key contains whitespace"},
      {"#\n" + secret_utf8 + "\n", "line 2: the key contains a character outside printable ASCII"},
      {kKeyA + "\n" + kKeyB + "\n#\n" + kKeyA + "\n", "line 4: the key repeats line 1"},
  };
  for (const Case& c : cases) {
    const fs::path path = WriteKeysFile(c.contents);
    auto keys = ApiKeys::LoadFile(path.string());
    INFO("contents: " << c.contents << "\nstatus: " << keys.status());
    REQUIRE_FALSE(keys.ok());
    CHECK(keys.status().code() == absl::StatusCode::kInvalidArgument);
    const std::string message(keys.status().message());
    CHECK(message.find("--api-keys-file " + path.string()) != std::string::npos);
    CHECK(message.find(c.expected) != std::string::npos);
    for (const std::string& secret : {kKeyA, kKeyB, secret_short, secret_space, secret_tab,
                                      secret_utf8, std::string("qrstuvwxyz")}) {
      CHECK(message.find(secret) == std::string::npos);
    }
  }
  auto missing = ApiKeys::LoadFile("/nonexistent/kestrel/keys");
  CHECK(missing.status().code() == absl::StatusCode::kNotFound);
  CHECK(missing.status().message() ==
        "cannot read --api-keys-file /nonexistent/kestrel/keys: No such file or directory");
}

ApiKeyAuthProcessor MakeProcessor() {
  auto keys = ApiKeys::FromLines({kKeyA, kKeyB}, "test keys");
  REQUIRE(keys.ok());
  return ApiKeyAuthProcessor(*std::move(keys));
}

TEST_CASE("Check: health is open, everything else needs 'Bearer <key>'") {
  const ApiKeyAuthProcessor auth = MakeProcessor();
  const std::string generate = "/kestrel.v1.Kestrel/Generate";
  CHECK(auth.Check("/grpc.health.v1.Health/Check", {}).ok());
  CHECK(auth.Check("/grpc.health.v1.Health/Watch", {"Bearer nonsense"}).ok());
  CHECK(auth.Check(generate, {"Bearer " + kKeyA}).ok());
  CHECK(auth.Check(generate, {"Bearer " + kKeyB}).ok());
  CHECK(auth.Check(generate, {"bearer " + kKeyA}).ok());   // scheme is case-insensitive
  CHECK(auth.Check(generate, {"BEARER  " + kKeyA}).ok());  // extra space tolerated

  struct Case {
    std::string method;
    std::vector<std::string> authorization;
    std::string expected;
  };
  const std::string wrong = "definitely-not-a-configured-key";
  const std::vector<Case> cases = {
      {generate, {}, "missing API key"},
      {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", {}, "missing API key"},
      {"", {}, "missing API key"},                               // no :path at all
      {"/grpc.health.v1.HealthX/Check", {}, "missing API key"},  // only the exact service
      {generate, {"Bearer " + wrong}, "invalid API key"},
      {generate, {"Bearer " + kKeyA.substr(1)}, "invalid API key"},
      {generate, {"Bearer"}, "not of the form"},
      {generate, {"Bearer    "}, "empty API key"},
      {generate, {kKeyA}, "not of the form"},
      {generate, {"Basic " + wrong}, "not of the form"},
      {generate, {"Bearer " + kKeyA, "Bearer " + kKeyB}, "more than one authorization entry"},
  };
  for (const Case& c : cases) {
    std::vector<absl::string_view> values(c.authorization.begin(), c.authorization.end());
    const absl::Status status = auth.Check(c.method, values);
    INFO(c.method << " " << status);
    CHECK(status.code() == absl::StatusCode::kUnauthenticated);
    const std::string message(status.message());
    CHECK(message.find(c.expected) != std::string::npos);
    CHECK(message.find("authorization: Bearer <api key>") != std::string::npos);
    CHECK(message.find(wrong) == std::string::npos);
    CHECK(message.find(kKeyA.substr(1)) == std::string::npos);
    CHECK(message.find(kKeyB) == std::string::npos);
  }
}

TEST_CASE("Contains is safe to call from many threads") {
  auto keys = ApiKeys::FromLines({kKeyA, kKeyB}, "test keys");
  REQUIRE(keys.ok());
  std::atomic<int> wrong_answers{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        if (!keys->Contains(kKeyA) || keys->Contains("nope-nope-nope-nope")) ++wrong_answers;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(wrong_answers == 0);
}

TEST_CASE("API keys without TLS are refused at startup") {
  auto keys = ApiKeys::FromLines({kKeyA}, "test keys");
  REQUIRE(keys.ok());
  auto credentials =
      MakeListeningCredentials(TlsOptions{}, std::make_shared<ApiKeyAuthProcessor>(*keys));
  INFO(credentials.status());
  CHECK(credentials.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(credentials.status().message().find("--api-keys-file") != std::string::npos);
  CHECK(credentials.status().message().find("--tls-cert-file") != std::string::npos);
  // No TLS and no keys: plaintext, as before.
  CHECK(MakeListeningCredentials(TlsOptions{}, nullptr).ok());
}

TEST_CASE("a TLS gRPC server enforces the key on every call but health") {
  auto pki = testing::MakeTestPkiOrSkip();
  if (!pki) return;
  const fs::path keys_file = WriteKeysFile("# test\n" + kKeyA + "\n" + kKeyB + "\n");
  auto keys = ApiKeys::LoadFile(keys_file.string());
  REQUIRE(keys.ok());
  TlsOptions tls;
  tls.cert_file = pki->server_cert.string();
  tls.key_file = pki->server_key.string();
  auto credentials =
      MakeListeningCredentials(tls, std::make_shared<ApiKeyAuthProcessor>(*std::move(keys)));
  REQUIRE(credentials.ok());
  auto server = testing::TestServer::Start(*credentials);
  auto channel = testing::TlsChannel(server->port, pki->ca_cert);

  grpc::Status status = testing::CallGetServerInfo(channel, std::nullopt);
  CHECK(status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(status.error_message().find("missing API key") != std::string::npos);

  const std::string wrong = "Bearer wrong-key-wrong-key-wrong";
  status = testing::CallGetServerInfo(channel, wrong);
  CHECK(status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(status.error_message().find("invalid API key") != std::string::npos);
  CHECK(status.error_message().find("wrong-key") == std::string::npos);
  // Rejected calls never reached the service.
  CHECK(server->service->calls == 0);

  status = testing::CallGetServerInfo(channel, "Bearer " + kKeyB);
  INFO(status.error_message());
  CHECK(status.ok());
  CHECK(server->service->calls == 1);
  // The processor consumed the key: the handler could not see (or log) it.
  CHECK_FALSE(server->service->saw_authorization);

  bool serving = false;
  status = testing::CheckHealth(channel, std::nullopt, &serving);
  CHECK(status.ok());
  CHECK(serving);
  // A wrong key on health is ignored, not rejected.
  status = testing::CheckHealth(channel, wrong, &serving);
  CHECK(status.ok());
  CHECK(serving);
}

}  // namespace
}  // namespace kestrel::server

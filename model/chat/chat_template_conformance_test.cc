// Byte-for-byte agreement with the reference: every chat template (the
// shared tokenizers' and the ones in testdata/templates) rendered with every
// message list of testdata/conversations.jsonl must give exactly what
// python3-jinja2 gives, set up as transformers sets it up
// (testdata/jinja2_reference.py); where jinja2 raises, Kestrel must fail too.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/time/civil_time.h"
#include "model/chat/chat_template.h"
#include "testing/shared_data.h"
#include "testing/subprocess.h"

namespace kestrel::chat {
namespace {

using Json = nlohmann::ordered_json;
using ::kestrel::testing::RunfilePath;

// strftime_now() is pinned on both sides, so dated templates compare.
constexpr char kPinnedNow[] = "2026-07-26T14:30:00";

TemplateOptions PinnedOptions() {
  TemplateOptions options;
  options.clock = [] {
    return absl::FromCivil(absl::CivilSecond(2026, 7, 26, 14, 30, 0), absl::UTCTimeZone());
  };
  options.time_zone = absl::UTCTimeZone();
  return options;
}

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<Json> ReadConversations() {
  std::vector<Json> conversations;
  std::ifstream in(RunfilePath("model/chat/testdata/conversations.jsonl"));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) conversations.push_back(Json::parse(line));
  }
  return conversations;
}

struct NamedTemplate {
  std::string name;
  std::string source;
  Json special_tokens;  // {"bos_token": "<s>", ...}
};

ChatRequest ToRequest(const Json& conversation) {
  ChatRequest request;
  request.messages = conversation["messages"];
  request.tools = conversation["tools"];
  request.documents = conversation["documents"];
  request.add_generation_prompt = conversation["add_generation_prompt"].get<bool>();
  request.extra = conversation["extra"];
  return request;
}

// Runs the reference over all cases at once; one result line per case.
std::vector<Json> RenderWithJinja2(const std::vector<Json>& cases) {
  const auto dir = ::kestrel::testing::MakeTempDir("jinja2_reference");
  {
    std::ofstream out(dir / "cases.jsonl", std::ios::binary);
    for (const Json& c : cases) out << c.dump() << "\n";
  }
  const std::string script = RunfilePath("model/chat/testdata/jinja2_reference.py").string();
  const std::string command =
      "exec python3 '" + script + "' < '" + (dir / "cases.jsonl").string() + "'";
  auto run = ::kestrel::testing::RunAndCapture({"/bin/sh", "-c", command}, std::chrono::seconds(120));
  REQUIRE(run.has_value());
  INFO("jinja2_reference.py stderr: " << run->err);
  REQUIRE(run->exit_status == 0);
  std::vector<Json> results;
  std::istringstream lines(run->out);
  for (std::string line; std::getline(lines, line);) results.push_back(Json::parse(line));
  REQUIRE(results.size() == cases.size());
  return results;
}

// False (and the test is skipped, or failed under CI) without python3-jinja2.
bool HaveJinja2() {
  auto run = ::kestrel::testing::RunAndCapture({"/bin/sh", "-c", "exec python3 -c 'import jinja2'"});
  if (run.has_value() && run->exit_status == 0) return true;
  const std::string problem = "python3 with jinja2 (Debian python3-jinja2) is not available";
  if (::kestrel::testing::RunningInCi()) {
    FAIL(problem << "; under CI=true this is a failure");
  }
  WARN("SKIPPED: " << problem);
  std::cerr << "KESTREL-SKIPPED: " << problem << "\n";
  return false;
}

// Renders every template with every conversation on both sides and
// compares, printing how many renders were byte-identical.
void ExpectSameAsJinja2(const std::vector<NamedTemplate>& templates) {
  const std::vector<Json> conversations = ReadConversations();
  REQUIRE(conversations.size() >= 30);
  std::vector<Json> cases;
  std::vector<std::string> labels;
  std::vector<absl::StatusOr<std::string>> ours;
  for (const NamedTemplate& named : templates) {
    SpecialTokens special;
    for (const auto& [key, value] : named.special_tokens.items()) special.tokens[key] = value;
    auto chat = ChatTemplate::Create(named.source, special, PinnedOptions());
    REQUIRE(chat.ok());
    for (const Json& conversation : conversations) {
      Json c = conversation;
      c["template"] = named.source;
      c["special_tokens"] = named.special_tokens;
      c["now"] = kPinnedNow;
      cases.push_back(std::move(c));
      labels.push_back(named.name + " x " + conversation["name"].get<std::string>());
      ours.push_back(chat->Render(ToRequest(conversation)));
    }
  }
  const std::vector<Json> reference = RenderWithJinja2(cases);
  size_t identical = 0;
  size_t both_failed = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO(labels[i]);
    if (reference[i].contains("error")) {
      INFO("jinja2 raised: " << reference[i]["error"].get<std::string>());
      CHECK_FALSE(ours[i].ok());
      both_failed += !ours[i].ok();
      continue;
    }
    const std::string expected = reference[i]["rendered"].get<std::string>();
    INFO("Kestrel: " << (ours[i].ok() ? Json(*ours[i]).dump() : ours[i].status().ToString()));
    INFO("jinja2:  " << Json(expected).dump());
    CHECK((ours[i].ok() && *ours[i] == expected));
    identical += ours[i].ok() && *ours[i] == expected;
  }
  std::cout << templates.size() << " templates x " << conversations.size() << " message lists: "
            << identical << " byte-identical renders, " << both_failed
            << " failing in both (jinja2 raised), of " << cases.size() << "\n";
}

const Json kTestTokens = {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}};

TEST_CASE("Kestrel renders the test templates byte-identically to jinja2") {
  if (!HaveJinja2()) return;
  std::vector<NamedTemplate> templates;
  const auto dir = RunfilePath("model/chat/testdata/templates");
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    templates.push_back({entry.path().filename().string(), ReadAll(entry.path()), kTestTokens});
  }
  std::sort(templates.begin(), templates.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  REQUIRE(templates.size() >= 8);
  ExpectSameAsJinja2(templates);
}

TEST_CASE("Kestrel renders the shared tokenizers' chat templates byte-identically to jinja2") {
  KESTREL_SHARED_PATH_OR_SKIP(tokenizers, "tokenizers");
  if (!HaveJinja2()) return;
  std::vector<NamedTemplate> templates;
  size_t without_template = 0;
  for (const auto& entry : std::filesystem::directory_iterator(tokenizers)) {
    const std::filesystem::path dir = entry.path();
    INFO(dir.string());
    const Json config = std::filesystem::exists(dir / "tokenizer_config.json")
                            ? Json::parse(ReadAll(dir / "tokenizer_config.json"))
                            : Json::object();
    Json special = Json::object();
    for (const char* name : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
      if (config.contains(name) && config[name].is_string()) special[name] = config[name];
    }
    std::string source;
    if (std::filesystem::exists(dir / "chat_template.jinja")) {
      source = ReadAll(dir / "chat_template.jinja");
    } else if (config.contains("chat_template") && config["chat_template"].is_string()) {
      source = config["chat_template"].get<std::string>();
    }
    auto loaded = ChatTemplate::LoadFromDirectory(dir.string(), PinnedOptions());
    if (source.empty()) {
      // transformers refuses too: "tokenizer.chat_template is not set".
      CHECK(loaded.status().code() == absl::StatusCode::kNotFound);
      ++without_template;
      continue;
    }
    REQUIRE(loaded.ok());
    templates.push_back({dir.filename().string(), source, special});
  }
  std::cout << templates.size() << " shared templates, " << without_template
            << " shared tokenizers without one\n";
  REQUIRE(!templates.empty());
  ExpectSameAsJinja2(templates);
}

}  // namespace
}  // namespace kestrel::chat

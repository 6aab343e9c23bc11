// A bounded mutation driver for the chat template fuzz target, for
// toolchains without libFuzzer (g++): it mutates the seeds and the
// templates of --corpus-dir with Jinja-aware edits (tags, operators,
// filters, quotes, brackets), byte edits and splices, for a fixed time. No
// coverage feedback, so it is a smoke fuzzer; the libFuzzer build in
// docs/chat-templates.md goes deeper.
//
//   chat_template_fuzz --seconds=60 [--seed=N] [--corpus-dir=DIR]
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/file_util.h"
#include "common/flags.h"
#include "model/chat/chat_template_fuzz.h"

namespace kestrel::chat {
namespace {

// Fragments that make mutants reach deeper than random bytes would.
const char* const kFragments[] = {
    "{{", "}}", "{%", "%}", "{#", "#}", "{%-", "-%}", "{{-", "-}}", "{%+", "+%}", "\n", "  ",
    "{% for x in messages %}", "{% endfor %}", "{% if x %}", "{% elif y %}", "{% else %}",
    "{% endif %}", "{% set ns = namespace(a=1) %}", "{% set ns.a = ns.a + 1 %}", "{% break %}",
    "{% continue %}", "{% macro m(a, b=2) %}", "{% endmacro %}", "{{ m(1) }}", "{% call m(1) %}",
    "{% endcall %}", "{% filter upper %}", "{% endfilter %}", "{% set x %}", "{% endset %}",
    "{% generation %}", "{% endgeneration %}", "{% raw %}", "loop.index", "loop.previtem",
    "loop.cycle(1, 2)", "messages[0]", "messages[::-1]", "messages[-1].content", ".content",
    "['role']", "|tojson", "|tojson(indent=2)", "|trim", "|length", "|join(', ')", "|list",
    "|selectattr('role', 'eq', 'user')", "|map(attribute='role')", "|default('d', true)",
    "|dictsort", "|sort", "|unique", "|reverse", "|indent(4)", "|int", "|float", "|round(2)",
    "|first", "|last", "|items", "|batch(2)", "|truncate(5)", "|center(9)", "|string",
    " is defined", " is not none", " is string", " is divisibleby 3", " is mapping", " in ",
    " not in ", " and ", " or ", " not ", " if ", " else ", "~", "+", "-", "*", "**", "//", "%",
    "/", "==", "!=", "<", ">=", "(", ")", "[", "]", "{", "}", ",", ":", ".", "'", "\"", "\\",
    "\\u00e9", "\\x00", "0", "-1", "1.5", "1e308", "9223372036854775807", "none", "true", "False",
    "range(100000)", "range(10 ** 6)", "'x' * 100000", "raise_exception('boom')",
    "strftime_now('%Y-%m-%d %H')", "namespace()", "dict(a=1)", "tools", "bos_token",
    "add_generation_prompt", "enable_thinking", ".split('</think>')", ".strip('\\n')",
    ".startswith('<')", ".items()", ".get('x', 1)", ".append(1)", "caller()", "\xE4\xBD\xA0",
    "\xF0\x9F\xA6\x99", "\xC3", "\xED\xA0\x80", "\xEF\xBF\xBD"};

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  std::string Mutate(const std::string& input, const std::vector<std::string>& corpus) {
    // Keep the request part (after a NUL) mostly intact: mutate the template.
    const size_t split = input.find('\0');
    std::string source = input.substr(0, split);
    std::string request = split == std::string::npos ? "" : input.substr(split);
    const int rounds = 1 + static_cast<int>(rng_() % 4);
    for (int i = 0; i < rounds; ++i) MutateOnce(&source, corpus);
    if (!request.empty() && rng_() % 8 == 0) MutateOnce(&request, corpus);
    if (source.size() > (1 << 16)) source.resize(1 << 16);
    return source + request;
  }

 private:
  void MutateOnce(std::string* text, const std::vector<std::string>& corpus) {
    const size_t at = text->empty() ? 0 : rng_() % (text->size() + 1);
    switch (rng_() % 6) {
      case 0:
      case 1:
        text->insert(at, kFragments[rng_() % std::size(kFragments)]);
        break;
      case 2:
        if (!text->empty()) (*text)[rng_() % text->size()] = static_cast<char>(rng_());
        break;
      case 3:
        if (at < text->size()) text->erase(at, 1 + rng_() % std::min<size_t>(16, text->size() - at));
        break;
      case 4: {  // duplicate a piece of itself (nesting, repetition)
        if (text->empty()) break;
        const size_t from = rng_() % text->size();
        const size_t length = 1 + rng_() % std::min<size_t>(64, text->size() - from);
        text->insert(at, text->substr(from, length));
        break;
      }
      case 5: {  // splice from another corpus entry
        const std::string& other = corpus[rng_() % corpus.size()];
        const std::string_view other_source = std::string_view(other).substr(0, other.find('\0'));
        if (other_source.empty()) break;
        const size_t from = rng_() % other_source.size();
        const size_t length = 1 + rng_() % std::min<size_t>(128, other_source.size() - from);
        text->insert(at, other_source.substr(from, length));
        break;
      }
    }
  }

  std::mt19937_64 rng_;
};

void RunOne(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

}  // namespace
}  // namespace kestrel::chat

int main(int argc, char** argv) {
  using namespace kestrel::chat;
  double seconds = 10;
  uint64_t seed = std::random_device{}();
  std::string corpus_dir = "model/chat/testdata/templates";
  kestrel::FlagSet flags("chat_template_fuzz", "",
                         "Mutation fuzzing of the chat template parser and renderer.");
  flags.Add("seconds", &seconds, "S", "How long to fuzz");
  flags.Add("seed", &seed, "N", "Mutation seed").DefaultText("random");
  flags.Add("corpus-dir", &corpus_dir, "DIR",
            "Templates (*.jinja) to use as seeds, besides the built-in ones; skipped when absent");
  const kestrel::ParsedArgs args = flags.ParseOrExit(argc, argv);
  if (!args.positional.empty()) {
    return flags.UsageError("unexpected argument '" + args.positional[0] + "' (see --help)");
  }
  std::vector<std::string> corpus = FuzzSeeds();
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(corpus_dir, error)) {
    if (entry.path().extension() != ".jinja") continue;
    absl::StatusOr<std::string> text = kestrel::ReadFileToString(entry.path());
    if (!text.ok()) {
      std::fprintf(stderr, "chat_template_fuzz: %s\n", std::string(text.status().message()).c_str());
      return 1;
    }
    corpus.push_back(std::move(*text));
  }
  const size_t seed_count = corpus.size();
  std::printf("chat template fuzz: seed %llu, %.0f s, %zu seeds\n",
              static_cast<unsigned long long>(seed), seconds, seed_count);
  std::fflush(stdout);
  for (const std::string& input : corpus) RunOne(input);
  Mutator mutator(seed);
  std::mt19937_64 pick(seed ^ 0x9E3779B97F4A7C15ull);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  size_t iterations = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string input = mutator.Mutate(corpus[pick() % corpus.size()], corpus);
    RunOne(input);
    ++iterations;
    // Keep some mutants so later mutations stack up; bounded.
    if (pick() % 16 == 0) {
      if (corpus.size() < 256) {
        corpus.push_back(input);
      } else {
        corpus[seed_count + pick() % (256 - seed_count)] = input;
      }
    }
  }
  std::printf("chat template fuzz: %zu iterations, no crash\n", iterations);
  return 0;
}

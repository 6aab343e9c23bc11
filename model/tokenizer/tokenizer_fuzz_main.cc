// A bounded mutation driver for LLVMFuzzerTestOneInput, for toolchains
// without libFuzzer (g++): it mutates the seeds (JSON-aware value swaps,
// byte edits, splices) for a fixed time. No coverage feedback, so it is a
// smoke fuzzer; the libFuzzer build in docs/tokenizer.md goes deeper.
//
//   tokenizer_fuzz --seconds=60 [--seed=N] [--corpus-file=PATH ...]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "common/flags.h"
#include "model/tokenizer/json_util.h"
#include "model/tokenizer/tokenizer_fuzz.h"

namespace kestrel::tokenizer {
namespace {

const char* const kTypeNames[] = {
    "Sequence", "Prepend", "Replace", "NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Strip",
    "StripAccents", "ByteLevel", "Split", "Digits", "Metaspace", "Whitespace", "WhitespaceSplit",
    "Punctuation", "CharDelimiterSplit", "BertPreTokenizer", "TemplateProcessing", "ByteFallback",
    "Fuse", "BPE", "WordPiece", "Unigram", "Precompiled", "BertProcessing"};

const char* const kInterestingJson[] = {
    "null", "true", "0", "-1", "1", "2147483648", "99999999999", "1e300", "0.5", "\"\"",
    "\"\\u2581\"", "\"(?<\"", "\"[\"", "\"\\\\p{L}+\"", "\"(a*)*b\"", "\"<0xZZ>\"", "\"<0x41>\"",
    "\" \"", "[]", "{}", "[1, 2]", "[\"a\", \"b\"]", "{\"type\": \"Sequence\"}",
    "{\"String\": \"\"}", "{\"Regex\": \"\"}", "{\"Regex\": \"\\\\s+(?!\\\\S)\"}", "\"Isolated\"",
    "\"Removed\"", "\"MergedWithNext\"", "\"Contiguous\"", "\"first\"", "\"never\"", "\"$B\""};

const char* const kInterestingText[] = {
    "<s>", "</s>", "<mask>", "<|eot_id|>", "\xE2\x96\x81", "\xC3", "\xF0\x9F", "\xED\xA0\x80",
    "   ", "\n\r\n", "'S", "123456", "\xE4\xBD\xA0", "\xEF\xBF\xBD", "\x85", "\\u0000", "\""};

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  std::string Mutate(const std::string& input, const std::vector<std::string>& corpus) {
    if (input.empty()) return input;
    std::string out = input;
    const int rounds = 1 + static_cast<int>(rng_() % 4);
    for (int i = 0; i < rounds; ++i) {
      switch (rng_() % 6) {
        case 0:
        case 1:
          if (out.size() > 1 && MutateJson(&out)) break;
          [[fallthrough]];
        case 2: {  // flip or set bytes
          const size_t n = 1 + rng_() % 4;
          for (size_t k = 0; k < n && out.size() > 1; ++k) {
            out[1 + rng_() % (out.size() - 1)] = static_cast<char>(rng_());
          }
          break;
        }
        case 3: {  // insert an interesting fragment
          const std::string_view text = kInterestingText[rng_() % std::size(kInterestingText)];
          out.insert(1 + rng_() % out.size(), text);
          break;
        }
        case 4: {  // delete or truncate
          if (out.size() < 3) break;
          const size_t start = 1 + rng_() % (out.size() - 1);
          const size_t len = rng_() % 2 ? out.size() - start : 1 + rng_() % std::min<size_t>(16, out.size() - start);
          out.erase(start, len);
          break;
        }
        case 5: {  // splice with another corpus entry
          const std::string& other = corpus[rng_() % corpus.size()];
          if (other.size() < 2) break;
          const size_t from = 1 + rng_() % (other.size() - 1);
          const size_t len = 1 + rng_() % std::min<size_t>(64, other.size() - from);
          out.insert(1 + rng_() % out.size(), other.substr(from, len));
          break;
        }
      }
    }
    if (rng_() % 8 == 0) out[0] = static_cast<char>(rng_() % 3);
    if (out.size() > (1 << 20)) out.resize(1 << 20);
    return out;
  }

 private:
  // Replaces one value of the JSON payload by an interesting one, another
  // node of the same document, or a different component type name.
  bool MutateJson(std::string* input) {
    Json doc = Json::parse(input->begin() + 1, input->end(), nullptr, false);
    if (doc.is_discarded() || !doc.is_structured()) return false;
    std::vector<Json*> nodes;
    Collect(&doc, &nodes);
    if (nodes.size() < 2) return false;
    Json* target = nodes[1 + rng_() % (nodes.size() - 1)];
    switch (rng_() % 3) {
      case 0:
        *target = Json::parse(kInterestingJson[rng_() % std::size(kInterestingJson)]);
        break;
      case 1: {
        Json copy = *nodes[rng_() % nodes.size()];
        *target = std::move(copy);
        break;
      }
      case 2:
        *target = kTypeNames[rng_() % std::size(kTypeNames)];
        break;
    }
    *input = std::string(1, (*input)[0]) + doc.dump(-1, ' ', false, Json::error_handler_t::replace);
    return true;
  }

  void Collect(Json* node, std::vector<Json*>* nodes) {
    if (nodes->size() > 20000) return;
    nodes->push_back(node);
    if (node->is_object() || node->is_array()) {
      for (auto& child : *node) Collect(&child, nodes);
    }
  }

  std::mt19937_64 rng_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void RunOne(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

}  // namespace
}  // namespace kestrel::tokenizer

int main(int argc, char** argv) {
  using namespace kestrel::tokenizer;
  double seconds = 10;
  uint64_t seed = std::random_device{}();
  std::vector<std::string> corpus_files;
  kestrel::FlagSet flags("tokenizer_fuzz", "",
                         "Mutation fuzzing of the tokenizer loader, encoder and decoders.");
  flags.Add("seconds", &seconds, "S", "How long to fuzz");
  flags.Add("seed", &seed, "N", "Mutation seed").DefaultText("random");
  flags.Add("corpus-file", &corpus_files, "PATH",
            "A tokenizer.json to use as a loader seed (repeatable)");
  const kestrel::ParsedArgs args = flags.ParseOrExit(argc, argv);
  if (!args.positional.empty()) {
    return flags.UsageError("unexpected argument '" + args.positional[0] + "' (see --help)");
  }
  std::vector<std::string> corpus = FuzzSeeds();
  for (const std::string& path : corpus_files) {
    corpus.push_back(std::string("\x00", 1) + ReadFile(path));
  }
  std::printf("tokenizer fuzz: seed %llu, %.0f s, %zu seeds\n",
              static_cast<unsigned long long>(seed), seconds, corpus.size());
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
        corpus[FuzzSeeds().size() + pick() % (256 - FuzzSeeds().size())] = input;
      }
    }
  }
  std::printf("tokenizer fuzz: %zu iterations, no crash\n", iterations);
  return 0;
}

// Finds stop strings in a sequence's streamed text. Text that could be the
// start of a stop string is held back until the next delta shows whether it
// is one, so a client never receives part of a stop string it asked to cut.
#ifndef KESTREL_ENGINE_STOP_STRINGS_H_
#define KESTREL_ENGINE_STOP_STRINGS_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kestrel::engine {

// Not thread-safe: one per sequence, used by the engine loop.
//
//   StopStringMatcher m({"\n\n"}, /*include_stop=*/false);
//   m.Process("Hello\n")   -> {text "Hello", no stop}      ("\n" held back)
//   m.Process("\nWorld")   -> {text "", stop "\n\n"}       (done)
class StopStringMatcher {
 public:
  struct Result {
    // Text the client may now see.
    std::string text;
    // The stop string found, if any; after it nothing more is emitted.
    std::optional<std::string> stop;
  };

  // Empty stop strings are ignored (the API validates them away).
  StopStringMatcher(std::vector<std::string> stops, bool include_stop_in_output);

  // Appends `delta` to the sequence's text. With `allow_stop` false (before
  // min_tokens) stop strings are not matched but partial matches are still
  // held back, so the text stays in order.
  Result Process(std::string_view delta, bool allow_stop = true);

  // The end of the sequence: releases whatever is held back.
  std::string Flush();

  bool stopped() const { return stopped_; }

 private:
  // Length of the longest suffix of pending_ that is a proper prefix of some
  // stop string.
  size_t HoldBackLength() const;

  const std::vector<std::string> stops_;
  const bool include_stop_;
  std::string pending_;  // received, not yet emitted
  bool stopped_ = false;
};

}  // namespace kestrel::engine

#endif  // KESTREL_ENGINE_STOP_STRINGS_H_

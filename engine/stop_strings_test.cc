#include "engine/stop_strings.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace kestrel::engine {
namespace {

// Feeds `deltas` and returns everything emitted plus the stop found.
std::pair<std::string, std::optional<std::string>> Run(StopStringMatcher& m,
                                                       const std::vector<std::string>& deltas) {
  std::string out;
  for (const std::string& d : deltas) {
    auto r = m.Process(d);
    out += r.text;
    if (r.stop) return {out, r.stop};
  }
  out += m.Flush();
  return {out, std::nullopt};
}

TEST_CASE("a stop string split across deltas is found and never streamed") {
  StopStringMatcher m({"\n\n"}, false);
  auto r1 = m.Process("Hello\n");
  CHECK(r1.text == "Hello");
  CHECK_FALSE(r1.stop);
  auto r2 = m.Process("\nWorld");
  CHECK(r2.text.empty());
  REQUIRE(r2.stop);
  CHECK(*r2.stop == "\n\n");
  CHECK(m.stopped());
  CHECK(m.Process("more").text.empty());
}

TEST_CASE("held-back text is released when it turns out not to be a stop") {
  StopStringMatcher m({"STOP"}, false);
  CHECK(m.Process("abc ST").text == "abc ");
  // "STOR" can no longer become "STOP": all of it goes out.
  CHECK(m.Process("OR").text == "STOR");
  CHECK(m.Flush().empty());
}

TEST_CASE("emitted text concatenates to the input when nothing stops") {
  StopStringMatcher m({"STOP", "xyz"}, false);
  auto [out, stop] = Run(m, {"abc ST", "OR", "E x", "y", " done"});
  CHECK_FALSE(stop);
  CHECK(out == "abc STORE xy done");
}

TEST_CASE("include_stop_str_in_output keeps the stop string") {
  StopStringMatcher m({"END"}, true);
  auto [out, stop] = Run(m, {"the E", "ND of it"});
  REQUIRE(stop);
  CHECK(out == "the END");
}

TEST_CASE("the earliest of several stop strings wins") {
  StopStringMatcher m({"world", "lo w"}, false);
  auto [out, stop] = Run(m, {"hello world"});
  REQUIRE(stop);
  CHECK(*stop == "lo w");
  CHECK(out == "hel");
}

TEST_CASE("before min_tokens stops are not matched but order is kept") {
  StopStringMatcher m({"ab"}, false);
  auto r = m.Process("xab", /*allow_stop=*/false);
  CHECK_FALSE(r.stop);
  CHECK(r.text == "xab");
  auto r2 = m.Process("cab");
  REQUIRE(r2.stop);
  CHECK(r2.text == "c");
}

TEST_CASE("a held-back partial stop never splits a UTF-8 character") {
  // The stop begins with the last byte of "é" (0xA9), which is never a
  // character boundary; text must not be cut between 0xC3 and 0xA9.
  StopStringMatcher m({"\xA9x"}, false);
  auto r = m.Process("caf\xC3\xA9");
  CHECK((r.text == "caf" || r.text == "caf\xC3\xA9"));
  std::string out = r.text;
  out += m.Process("!").text;
  out += m.Flush();
  CHECK(out == "caf\xC3\xA9!");
}

TEST_CASE("no stop strings: everything passes straight through") {
  StopStringMatcher m({}, false);
  CHECK(m.Process("abc").text == "abc");
  CHECK(m.Flush().empty());
}

}  // namespace
}  // namespace kestrel::engine

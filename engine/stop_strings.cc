#include "engine/stop_strings.h"

#include <algorithm>
#include <utility>

namespace kestrel::engine {
namespace {

std::vector<std::string> NonEmpty(std::vector<std::string> stops) {
  stops.erase(std::remove(stops.begin(), stops.end(), std::string()), stops.end());
  return stops;
}

}  // namespace

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops, bool include_stop_in_output)
    : stops_(NonEmpty(std::move(stops))), include_stop_(include_stop_in_output) {}

size_t StopStringMatcher::HoldBackLength() const {
  size_t longest = 0;
  for (const std::string& stop : stops_) {
    const size_t max_len = std::min(stop.size() - 1, pending_.size());
    for (size_t len = max_len; len > longest; --len) {
      if (std::string_view(pending_).substr(pending_.size() - len) ==
          std::string_view(stop).substr(0, len)) {
        longest = len;
        break;
      }
    }
  }
  // Never split a UTF-8 character: if the held-back part starts inside one,
  // hold back the whole character (deltas themselves are whole characters).
  while (longest < pending_.size() && longest > 0 &&
         (static_cast<unsigned char>(pending_[pending_.size() - longest]) & 0xC0) == 0x80) {
    ++longest;
  }
  return longest;
}

StopStringMatcher::Result StopStringMatcher::Process(std::string_view delta, bool allow_stop) {
  Result result;
  if (stopped_) return result;
  pending_.append(delta);
  if (allow_stop) {
    // The earliest stop occurrence wins; among stops starting at the same
    // place, the longest.
    size_t best_pos = std::string::npos;
    const std::string* best = nullptr;
    for (const std::string& stop : stops_) {
      size_t pos = pending_.find(stop);
      if (pos == std::string::npos) continue;
      if (pos < best_pos || (pos == best_pos && stop.size() > best->size())) {
        best_pos = pos;
        best = &stop;
      }
    }
    if (best != nullptr) {
      result.text = pending_.substr(0, best_pos + (include_stop_ ? best->size() : 0));
      result.stop = *best;
      pending_.clear();
      stopped_ = true;
      return result;
    }
  }
  const size_t hold = HoldBackLength();
  result.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return result;
}

std::string StopStringMatcher::Flush() {
  std::string rest = std::move(pending_);
  pending_.clear();
  return rest;
}

}  // namespace kestrel::engine

// The OpenAI-compatible backend over libcurl.
#include "benchmarks/bench_openai_backend.h"

#include <curl/curl.h>

#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

namespace kestrel::bench {

std::vector<std::string> SseParser::Feed(std::string_view bytes) {
  std::vector<std::string> events;
  for (char c : bytes) {
    if (c != '\n') {
      line_.push_back(c);
      continue;
    }
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    if (line_.empty()) {
      // A blank line dispatches the event.
      if (has_data_) events.push_back(std::move(data_));
      data_.clear();
      has_data_ = false;
    } else if (absl::StartsWith(line_, "data:")) {
      std::string_view value = std::string_view(line_).substr(5);
      if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      if (has_data_) data_.push_back('\n');
      data_.append(value);
      has_data_ = true;
    }
    line_.clear();
  }
  return events;
}

namespace {

// State of one transfer, shared with libcurl's callbacks (same thread).
struct TransferState {
  CURL* curl = nullptr;
  absl::Time start;
  absl::Time last_token;
  SseParser parser;
  RequestRecord record;
  int64_t text_events = 0;
  std::optional<int64_t> usage_prompt;
  std::optional<int64_t> usage_completion;
  std::string error_body;    // Body of a non-200 answer, for the message.
  std::string stream_error;  // An "error" object inside the stream.
  // CancelAll bumps the generation; transfers of older ones abort.
  const std::atomic<int64_t>* generation = nullptr;
  int64_t started_generation = 0;
};

size_t OnBytes(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<TransferState*>(user);
  const absl::Time now = absl::Now();
  const size_t bytes = size * count;
  long http_status = 0;
  curl_easy_getinfo(transfer->curl, CURLINFO_RESPONSE_CODE, &http_status);
  if (http_status != 200) {
    if (transfer->error_body.size() < 4096) transfer->error_body.append(data, bytes);
    return bytes;
  }
  for (const std::string& event : transfer->parser.Feed(std::string_view(data, bytes))) {
    if (event == "[DONE]") continue;
    nlohmann::json json = nlohmann::json::parse(event, nullptr, false);
    if (json.is_discarded() || !json.is_object()) continue;
    if (json.contains("error")) {
      transfer->stream_error = json["error"].dump();
      continue;
    }
    if (json.contains("usage") && json["usage"].is_object()) {
      const auto& usage = json["usage"];
      if (usage.value("prompt_tokens", -1) >= 0)
        usage.at("prompt_tokens").get_to(transfer->usage_prompt.emplace());
      if (usage.value("completion_tokens", -1) >= 0)
        usage.at("completion_tokens").get_to(transfer->usage_completion.emplace());
    }
    auto choices = json.find("choices");
    if (choices == json.end() || !choices->is_array() || choices->empty()) continue;
    const auto& text = (*choices)[0].find("text");
    if (text == (*choices)[0].end() || !text->is_string() || text->get<std::string>().empty()) {
      continue;
    }
    if (transfer->text_events == 0) {
      transfer->record.ttft_s = absl::ToDoubleSeconds(now - transfer->start);
    } else {
      transfer->record.itl_s.push_back(absl::ToDoubleSeconds(now - transfer->last_token));
    }
    transfer->last_token = now;
    ++transfer->text_events;
  }
  return bytes;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* transfer = static_cast<TransferState*>(user);
  return transfer->generation->load() != transfer->started_generation ? 1 : 0;  // Non-zero aborts.
}

size_t Discard(char*, size_t size, size_t count, void*) { return size * count; }

std::string CurlStatus(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return "DEADLINE_EXCEEDED";
    case CURLE_ABORTED_BY_CALLBACK:
      return "CANCELLED";
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
      return "UNAVAILABLE";
    default:
      return "CURL_ERROR";
  }
}

long MillisecondsUntil(absl::Time deadline) {
  return std::max<long>(1, static_cast<long>(absl::ToInt64Milliseconds(deadline - absl::Now())));
}

}  // namespace

absl::StatusOr<std::unique_ptr<OpenAiBackend>> OpenAiBackend::Create(
    const OpenAiBackendOptions& options) {
  if (!absl::StartsWith(options.base_url, "http://") &&
      !absl::StartsWith(options.base_url, "https://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("base URL must start with http:// or https://, got '", options.base_url, "'"));
  }
  // Not thread-safe itself, so done once, before any transfer thread.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  return std::unique_ptr<OpenAiBackend>(new OpenAiBackend(options));
}

OpenAiBackend::~OpenAiBackend() {
  CancelAll();
  std::list<std::unique_ptr<Worker>> workers;
  {
    std::unique_lock<std::mutex> lock(mu_);
    workers.swap(workers_);
  }
  for (auto& worker : workers) worker->thread.join();
}

absl::Status OpenAiBackend::Probe(absl::Duration timeout) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  const std::string url = absl::StrCat(absl::StripSuffix(options_.base_url, "/"), "/v1/models");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(timeout)));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Discard);
  const CURLcode code = curl_easy_perform(curl);
  curl_easy_cleanup(curl);
  if (code != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat("GET ", url, ": ", curl_easy_strerror(code)));
  }
  return absl::OkStatus();
}

void OpenAiBackend::Start(const BenchRequest& request, absl::Time deadline, DoneCallback done) {
  auto worker = std::make_unique<Worker>();
  Worker* raw = worker.get();
  std::unique_lock<std::mutex> lock(mu_);
  for (auto it = workers_.begin(); it != workers_.end();) {
    if ((*it)->finished.load()) {
      (*it)->thread.join();
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  const int64_t generation = generation_.load();
  raw->thread = std::thread([this, request, deadline, done = std::move(done), raw, generation] {
    done(Transfer(request, deadline, generation));
    raw->finished.store(true);
  });
  workers_.push_back(std::move(worker));
}

void OpenAiBackend::CancelAll() { generation_.fetch_add(1); }

RequestRecord OpenAiBackend::Transfer(const BenchRequest& request, absl::Time deadline,
                                      int64_t started_generation) {
  nlohmann::json body = {
      {"model", options_.model}, {"stream", true}, {"stream_options", {{"include_usage", true}}}};
  if (!request.token_ids.empty()) {
    body["prompt"] = request.token_ids;
  } else {
    body["prompt"] = request.text;
  }
  if (request.max_tokens.has_value()) body["max_tokens"] = *request.max_tokens;
  // Not in OpenAI's API; vLLM, SGLang and Kestrel accept it.
  if (request.ignore_eos) body["ignore_eos"] = true;
  if (options_.temperature.has_value()) body["temperature"] = *options_.temperature;
  const std::string payload = body.dump();
  const std::string url =
      absl::StrCat(absl::StripSuffix(options_.base_url, "/"), "/v1/completions");

  TransferState transfer;
  transfer.generation = &generation_;
  transfer.started_generation = started_generation;
  transfer.record.input_tokens = request.input_tokens;
  transfer.curl = curl_easy_init();
  if (transfer.curl == nullptr) {
    transfer.record.status = "CURL_ERROR";
    transfer.record.error = "curl_easy_init failed";
    return transfer.record;
  }
  CURL* curl = transfer.curl;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Accept: text/event-stream");
  const std::string authorization = absl::StrCat("Authorization: Bearer ", options_.api_key);
  if (!options_.api_key.empty()) headers = curl_slist_append(headers, authorization.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBytes);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, OnProgress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, MillisecondsUntil(deadline));

  transfer.start = absl::Now();
  const CURLcode code = generation_.load() != started_generation ? CURLE_ABORTED_BY_CALLBACK
                                                                 : curl_easy_perform(curl);
  RequestRecord& record = transfer.record;
  record.e2e_s = absl::ToDoubleSeconds(absl::Now() - transfer.start);
  long http_status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);

  record.output_tokens = transfer.usage_completion.value_or(transfer.text_events);
  if (transfer.usage_prompt.has_value()) record.input_tokens = *transfer.usage_prompt;
  if (code != CURLE_OK) {
    record.status = CurlStatus(code);
    record.error = absl::StrCat("POST ", url, ": ", curl_easy_strerror(code));
  } else if (http_status != 200) {
    record.status = absl::StrCat("HTTP ", http_status);
    record.error = transfer.error_body;
  } else if (!transfer.stream_error.empty()) {
    record.status = "STREAM_ERROR";
    record.error = transfer.stream_error;
  } else {
    record.ok = true;
    record.status = "OK";
  }
  return record;
}

}  // namespace kestrel::bench

#include "server/http/http_test_client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <thread>

namespace kestrel::server::http::testing {
namespace {

struct Transfer {
  FetchResult* result;
  const FetchOptions* options;
  size_t parsed = 0;  // bytes of body already split into events
  long long uploaded = 0;
};

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  FetchResult& result = *transfer->result;
  result.body.append(data, size * count);
  size_t end;
  while ((end = result.body.find("\n\n", transfer->parsed)) != std::string::npos) {
    std::string block = result.body.substr(transfer->parsed, end - transfer->parsed);
    transfer->parsed = end + 2;
    if (block.rfind("data: ", 0) != 0) continue;
    std::string payload = block.substr(6);
    if (payload == "[DONE]") {
      result.done = true;
    } else {
      result.events.push_back(nlohmann::ordered_json::parse(payload, nullptr, false));
    }
    if (transfer->options->stop_after_events > 0 &&
        static_cast<int>(result.events.size()) >= transfer->options->stop_after_events) {
      return 0;  // aborts the transfer: the connection closes
    }
  }
  return size * count;
}

size_t OnUpload(char* buffer, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const long long left = transfer->options->upload_bytes - transfer->uploaded;
  const size_t n = static_cast<size_t>(std::min<long long>(left, static_cast<long long>(size * count)));
  std::fill(buffer, buffer + n, '{');
  transfer->uploaded += static_cast<long long>(n);
  return n;
}

}  // namespace

nlohmann::ordered_json FetchResult::Json() const {
  return nlohmann::ordered_json::parse(body, nullptr, false);
}

FetchResult Fetch(const std::string& url, const FetchOptions& options) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  FetchResult result;
  Transfer transfer{&result, &options};
  CURL* curl = curl_easy_init();
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Expect:");
  const std::string authorization = "Authorization: Bearer " + options.api_key;
  if (!options.api_key.empty()) headers = curl_slist_append(headers, authorization.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, options.timeout_ms);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
  if (!options.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options.ca_file.c_str());
  if (options.upload_bytes > 0) {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, OnUpload);
    curl_easy_setopt(curl, CURLOPT_READDATA, &transfer);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(options.upload_bytes));
  } else if (options.method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, options.body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(options.body.size()));
  } else if (options.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, options.method.c_str());
  }
  const CURLcode code = curl_easy_perform(curl);
  result.curl_code = code;
  result.curl_error = curl_easy_strerror(code);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.status);
  char* content_type = nullptr;
  curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &content_type);
  if (content_type != nullptr) result.content_type = content_type;
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return result;
}

std::string StreamedText(const FetchResult& result, int index) {
  std::string text;
  for (const auto& event : result.events) {
    if (!event.is_object() || !event.contains("choices")) continue;
    for (const auto& choice : event["choices"]) {
      if (choice["index"] != index) continue;
      if (choice.contains("text")) text += choice["text"].get<std::string>();
      if (choice.contains("delta") && choice["delta"].contains("content")) {
        text += choice["delta"]["content"].get<std::string>();
      }
    }
  }
  return text;
}

int SendAndNeverRead(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  // Set before connecting, so the advertised window stays small.
  const int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return -1;
  }
  return fd;
}

bool PeerClosed(int fd) {
  // The server's unsent bytes may still be on their way: read them, for up
  // to 10 s of silence.
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  char buffer[65536];
  while (true) {
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

bool WaitFor(const std::function<bool()>& condition, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return condition();
}

}  // namespace kestrel::server::http::testing

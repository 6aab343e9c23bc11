// Internal to server/http: how engine events reach the HTTP event loop.
// The engine's step-loop thread calls an HttpSink, which appends to its
// request's Stream (a mutex-protected queue) and posts the Stream to the
// Mailbox, whose one libevent event wakes the loop thread; the engine thread
// never waits for a client or for the loop.
#ifndef KESTREL_SERVER_HTTP_ENGINE_EVENTS_H_
#define KESTREL_SERVER_HTTP_ENGINE_EVENTS_H_

#include <event2/event.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "engine/request.h"

namespace kestrel::server::http {

class Call;  // http_server.cc

struct QueuedEvent {
  int prompt = 0;
  std::variant<engine::TokenEvent, engine::FinishEvent> event;
};

// One request's events on their way from the engine to the loop.
struct Stream {
  std::mutex mu;
  std::deque<QueuedEvent> events ABSL_GUARDED_BY(mu);
  bool overflow ABSL_GUARDED_BY(mu) = false;  // the client stopped reading
  bool closed ABSL_GUARDED_BY(mu) = false;    // the response has ended: drop events
  bool posted ABSL_GUARDED_BY(mu) = false;    // in the Mailbox, not taken yet
  // Loop thread only.
  Call* call = nullptr;
};

// Wakes the loop thread: streams with new events, and tasks to run there.
// Thread-safe. Shared by the server and every sink (a sink can outlive the
// server: the engine drops it only when its request ends).
class Mailbox {
 public:
  explicit Mailbox(event* wake) : wake_(wake) {}

  void Post(std::shared_ptr<Stream> stream) {
    std::lock_guard lock(mu_);
    streams_.push_back(std::move(stream));
    RingLocked();
  }
  void Run(std::function<void()> task) {
    std::lock_guard lock(mu_);
    tasks_.push_back(std::move(task));
    RingLocked();
  }
  void Take(std::vector<std::shared_ptr<Stream>>& streams, std::vector<std::function<void()>>& tasks) {
    std::lock_guard lock(mu_);
    streams.swap(streams_);
    tasks.swap(tasks_);
    rung_ = false;
  }
  // No wake-ups from now on (the loop has stopped).
  void Close() {
    std::lock_guard lock(mu_);
    wake_ = nullptr;
    streams_.clear();
    tasks_.clear();
  }

 private:
  void RingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (rung_ || wake_ == nullptr) return;
    rung_ = true;
    // Thread-safe: evthread_use_pthreads() was called before the base.
    event_active(wake_, EV_READ, 0);
  }

  std::mutex mu_;
  event* wake_ ABSL_GUARDED_BY(mu_);
  bool rung_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::shared_ptr<Stream>> streams_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
};

// The engine's view of one prompt of a Call. Never blocks: queues and wakes.
class HttpSink final : public engine::RequestSink {
 public:
  HttpSink(std::shared_ptr<Stream> stream, std::shared_ptr<Mailbox> mailbox, int prompt,
           int max_buffered)
      : stream_(std::move(stream)),
        mailbox_(std::move(mailbox)),
        prompt_(prompt),
        max_buffered_(max_buffered) {}

  void OnTokens(engine::TokenEvent event) override { Push(std::move(event), true); }
  void OnFinish(engine::FinishEvent event) override { Push(std::move(event), false); }

 private:
  template <typename Event>
  void Push(Event event, bool bounded) {
    bool post = false;
    {
      std::lock_guard lock(stream_->mu);
      if (stream_->closed || stream_->overflow) return;
      if (bounded && static_cast<int>(stream_->events.size()) >= max_buffered_) {
        stream_->overflow = true;
      } else {
        stream_->events.push_back(QueuedEvent{prompt_, std::move(event)});
      }
      post = !stream_->posted;
      stream_->posted = true;
    }
    if (post) mailbox_->Post(stream_);
  }

  const std::shared_ptr<Stream> stream_;
  const std::shared_ptr<Mailbox> mailbox_;
  const int prompt_;
  const int max_buffered_;
};

}  // namespace kestrel::server::http

#endif  // KESTREL_SERVER_HTTP_ENGINE_EVENTS_H_

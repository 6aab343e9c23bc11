// Turns SIGTERM and SIGINT into an orderly shutdown: the signals are blocked
// in every thread and one watcher thread receives them with sigwait(), so the
// shutdown work runs in normal thread context rather than a signal handler.
#ifndef KESTREL_SERVER_SHUTDOWN_SIGNALS_H_
#define KESTREL_SERVER_SHUTDOWN_SIGNALS_H_

#include <csignal>
#include <functional>
#include <thread>

namespace kestrel::server {

// Not thread-safe; create and destroy it from the main thread.
class ShutdownSignals {
 public:
  // Blocks SIGTERM and SIGINT for the calling thread and every thread it
  // starts afterwards. REQUIRES: called before any other thread is started
  // (gRPC's included), or those threads may receive the signals instead.
  ShutdownSignals();
  ~ShutdownSignals();
  ShutdownSignals(const ShutdownSignals&) = delete;
  ShutdownSignals& operator=(const ShutdownSignals&) = delete;

  // Starts the watcher: on the first SIGTERM or SIGINT it calls
  // `on_signal(signal_number)` once, from the watcher thread.
  void Watch(std::function<void(int)> on_signal);

  // Stops the watcher and waits for it, including an on_signal call in
  // progress. Call it before destroying anything on_signal uses. Idempotent;
  // the destructor calls it too.
  void Stop();

 private:
  sigset_t signals_;
  std::thread watcher_;
};

}  // namespace kestrel::server

#endif  // KESTREL_SERVER_SHUTDOWN_SIGNALS_H_

#include "server/shutdown_signals.h"

#include <pthread.h>

#include <utility>

namespace kestrel::server {

// A signal the watcher sends to itself to stop when no real one arrived.
constexpr int kWakeSignal = SIGUSR2;

ShutdownSignals::ShutdownSignals() {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGTERM);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, kWakeSignal);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
}

ShutdownSignals::~ShutdownSignals() { Stop(); }

void ShutdownSignals::Stop() {
  if (watcher_.joinable()) {
    pthread_kill(watcher_.native_handle(), kWakeSignal);
    watcher_.join();
  }
}

void ShutdownSignals::Watch(std::function<void(int)> on_signal) {
  watcher_ = std::thread([this, on_signal = std::move(on_signal)] {
    int signal_number = 0;
    if (sigwait(&signals_, &signal_number) == 0 && signal_number != kWakeSignal) {
      on_signal(signal_number);
    }
  });
}

}  // namespace kestrel::server

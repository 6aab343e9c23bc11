// Starts a program under test as a child process and watches it: waits for a
// file it writes when ready, sends it signals, and reaps it with a timeout,
// so tests of whole binaries never hang and never leave processes behind.
#ifndef KESTREL_TESTING_SUBPROCESS_H_
#define KESTREL_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kestrel::testing {

// The path of a Bazel runfile, e.g. RunfilePath("server/kestrel-server").
std::filesystem::path RunfilePath(const std::string& workspace_relative);

// A fresh, empty directory for one test's files (under $TEST_TMPDIR).
std::filesystem::path MakeTempDir(const std::string& prefix);

// Not thread-safe. The destructor kills (SIGKILL) and reaps a child that is
// still running.
class Subprocess {
 public:
  // Starts `argv[0]` with the given arguments; stdout and stderr go to
  // `log_file` when given (else they are inherited). Returns nullopt and
  // prints why when the program cannot be started.
  static std::optional<Subprocess> Start(const std::vector<std::string>& argv,
                                         const std::filesystem::path& log_file = {});
  // The same with stdout and stderr in separate files (empty: inherited).
  static std::optional<Subprocess> Start(const std::vector<std::string>& argv,
                                         const std::filesystem::path& stdout_file,
                                         const std::filesystem::path& stderr_file);

  Subprocess(Subprocess&& other) noexcept : pid_(other.pid_), exit_status_(other.exit_status_) {
    other.pid_ = -1;
  }
  Subprocess& operator=(Subprocess&& other) noexcept {
    std::swap(pid_, other.pid_);
    std::swap(exit_status_, other.exit_status_);
    return *this;
  }
  ~Subprocess();

  pid_t pid() const { return pid_; }

  // Sends `signal_number` to the child. False if it has already exited.
  bool Signal(int signal_number);

  // Waits up to `timeout` for the child to exit. Returns its exit status
  // (0-255) when it exited normally, 128 + N when killed by signal N, and
  // nullopt on timeout (the child keeps running). Once the child has exited,
  // every call returns the same status.
  std::optional<int> WaitForExit(std::chrono::milliseconds timeout);

  // True while the child has not exited.
  bool Running();

 private:
  explicit Subprocess(pid_t pid) : pid_(pid) {}

  // Reaps the child if it has exited, recording its status. True while it runs.
  bool Poll();

  pid_t pid_;  // -1 once reaped.
  std::optional<int> exit_status_;
};

// Polls until `path` exists and is non-empty, or `timeout` passes, or
// `process` exits. Returns the file's contents, or nullopt.
std::optional<std::string> WaitForFile(const std::filesystem::path& path, Subprocess& process,
                                       std::chrono::milliseconds timeout);

// What a program that ran to its end printed, and its exit status.
struct CapturedRun {
  int exit_status = -1;  // as Subprocess::WaitForExit
  std::string out;       // stdout
  std::string err;       // stderr
};

// Runs `argv` to its end (stdin inherited), capturing stdout and stderr
// separately. Returns nullopt (and prints why) when it cannot be started or
// is still running after `timeout` (it is then killed).
std::optional<CapturedRun> RunAndCapture(
    const std::vector<std::string>& argv,
    std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace kestrel::testing

#endif  // KESTREL_TESTING_SUBPROCESS_H_

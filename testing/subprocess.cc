#include "testing/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

extern char** environ;

namespace kestrel::testing {

namespace fs = std::filesystem;

fs::path RunfilePath(const std::string& workspace_relative) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir == nullptr) return fs::path(workspace_relative);
  return fs::path(srcdir) / (workspace ? workspace : "kestrel") / workspace_relative;
}

fs::path MakeTempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string pattern = (fs::path(tmp ? tmp : "/tmp") / (prefix + ".XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) {
    std::cerr << "mkdtemp(" << pattern << ") failed: " << std::strerror(errno) << "\n";
    std::abort();
  }
  return pattern;
}

std::optional<Subprocess> Subprocess::Start(const std::vector<std::string>& argv,
                                            const fs::path& log_file) {
  return Start(argv, log_file, log_file);
}

std::optional<Subprocess> Subprocess::Start(const std::vector<std::string>& argv,
                                            const fs::path& stdout_file,
                                            const fs::path& stderr_file) {
  if (argv.empty()) return std::nullopt;
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!stdout_file.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, stdout_file.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  if (!stderr_file.empty() && stderr_file == stdout_file) {
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  } else if (!stderr_file.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_file.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  // The child starts with no blocked signals, whatever the test runner set.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);

  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    std::cerr << "cannot start " << argv[0] << ": " << std::strerror(rc) << "\n";
    return std::nullopt;
  }
  return Subprocess(pid);
}

Subprocess::~Subprocess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

bool Subprocess::Signal(int signal_number) { return pid_ > 0 && kill(pid_, signal_number) == 0; }

bool Subprocess::Poll() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) != pid_) return true;
  pid_ = -1;
  if (WIFEXITED(status)) exit_status_ = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) exit_status_ = 128 + WTERMSIG(status);
  return false;
}

std::optional<int> Subprocess::WaitForExit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (Poll()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return exit_status_;
}

bool Subprocess::Running() { return Poll(); }

std::optional<std::string> WaitForFile(const fs::path& path, Subprocess& process,
                                       std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::error_code ec;
    if (fs::exists(path, ec) && fs::file_size(path, ec) > 0) {
      std::ifstream in(path);
      std::stringstream contents;
      contents << in.rdbuf();
      return contents.str();
    }
    if (!process.Running()) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::nullopt;
}

std::optional<CapturedRun> RunAndCapture(const std::vector<std::string>& argv,
                                         std::chrono::milliseconds timeout) {
  const fs::path dir = MakeTempDir("captured_run");
  std::optional<Subprocess> process = Subprocess::Start(argv, dir / "stdout", dir / "stderr");
  if (!process) return std::nullopt;
  std::optional<int> status = process->WaitForExit(timeout);
  if (!status) {
    std::cerr << argv[0] << " still running after " << timeout.count() << " ms\n";
    return std::nullopt;
  }
  auto slurp = [](const fs::path& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  return CapturedRun{*status, slurp(dir / "stdout"), slurp(dir / "stderr")};
}

}  // namespace kestrel::testing

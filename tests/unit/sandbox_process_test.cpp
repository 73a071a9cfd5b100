// Behaviour of sandbox::runProcess against the deliberately hostile programs in tests/hostile.
#include "sandbox/process.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <poll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using namespace std::chrono_literals;
using sandbox::ProcessSpec;
using sandbox::RunResult;
using sandbox::Status;

std::string hostilePath(const std::string& name) {
  // CMake names the targets hostile_<name>; accept the bare name too should it set OUTPUT_NAME.
  const std::string dir = std::string(DA_BINARY_DIR) + "/hostile/";
  for (const std::string& candidate : {dir + name, dir + "hostile_" + name}) {
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return dir + name;
}

ProcessSpec hostileSpec(const std::string& name, std::vector<std::string> args = {},
                        std::map<std::string, std::string> env = {}) {
  ProcessSpec spec;
  spec.executable = hostilePath(name);
  spec.args = std::move(args);
  spec.env = std::move(env);
  spec.working_dir = "/";
  // A guard, not the thing under test: a broken runner then fails a test instead of hanging it.
  spec.limits.wallTime(20s);
  return spec;
}

struct Captured {
  RunResult result;
  std::string output;
};

Captured run(const ProcessSpec& spec, const std::atomic<bool>* cancel = nullptr) {
  Captured captured;
  captured.result = sandbox::runProcess(
      spec, [&](std::string_view chunk) { captured.output.append(chunk); }, cancel);
  return captured;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> result;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) result.push_back(line);
  return result;
}

// "key=value" lines into a map (later keys win).
std::map<std::string, std::string> keyValues(const std::string& text) {
  std::map<std::string, std::string> result;
  for (const auto& line : lines(text)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) result[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return result;
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "da-sandbox-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) ? pattern : "";
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs `action` after `after` unless destroyed first: a last-resort guard for the tests whose
// subject is the runner's own deadline, so that a broken runner fails them instead of hanging.
class Watchdog {
 public:
  Watchdog(std::chrono::milliseconds after, std::function<void()> action)
      : thread_([this, after, action = std::move(action)] {
          std::unique_lock lock(mutex_);
          if (!cv_.wait_for(lock, after, [this] { return stopped_; })) action();
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mutex_);
      stopped_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopped_ = false;
  std::thread thread_;
};

TEST(SandboxProcess, StatusNamesAreStable) {
  EXPECT_STREQ(sandbox::statusName(Status::kOk), "ok");
  EXPECT_STREQ(sandbox::statusName(Status::kExitedNonZero), "exited_non_zero");
  EXPECT_STREQ(sandbox::statusName(Status::kSignaled), "signaled");
  EXPECT_STREQ(sandbox::statusName(Status::kTimedOut), "timed_out");
  EXPECT_STREQ(sandbox::statusName(Status::kCancelled), "cancelled");
  EXPECT_STREQ(sandbox::statusName(Status::kSetupFailed), "setup_failed");
}

TEST(SandboxProcess, ExitZeroIsOkWithBothStreamsMergedInOrder) {
  auto [result, output] = run(hostileSpec("exit_with", {"0"}));
  EXPECT_EQ(result.status, Status::kOk) << result.reason;
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(output, "to stdout\nto stderr\n");
  EXPECT_FALSE(result.output_truncated);
}

TEST(SandboxProcess, NonZeroExitCodeIsReported) {
  auto [result, output] = run(hostileSpec("exit_with", {"42"}));
  EXPECT_EQ(result.status, Status::kExitedNonZero) << result.reason;
  EXPECT_EQ(result.exit_code, 42);
  EXPECT_EQ(output, "to stdout\nto stderr\n");
}

TEST(SandboxProcess, EnvironmentIsExactlyTheSpecNothingInherited) {
  ASSERT_EQ(::setenv("DA_SANDBOX_TEST_CANARY", "leaked", 1), 0);
  auto [result, output] =
      run(hostileSpec("print_env", {}, {{"ALPHA", "1"}, {"BETA", "two words"}, {"EMPTY", ""}}));
  ::unsetenv("DA_SANDBOX_TEST_CANARY");
  ASSERT_EQ(result.status, Status::kOk) << result.reason;
  const auto seen = lines(output);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()),
            (std::set<std::string>{"ALPHA=1", "BETA=two words", "EMPTY="}));
  EXPECT_EQ(seen.size(), 3u) << output;

  auto empty = run(hostileSpec("print_env"));
  ASSERT_EQ(empty.result.status, Status::kOk) << empty.result.reason;
  EXPECT_EQ(empty.output, "");
}

TEST(SandboxProcess, ChildRunsInWorkingDirectory) {
  TempDir dir;
  auto spec = hostileSpec("write_file", {"relative.txt", "5"});
  spec.working_dir = dir.path();
  auto [result, output] = run(spec);
  ASSERT_EQ(result.status, Status::kOk) << result.reason << "\n" << output;
  EXPECT_EQ(std::filesystem::file_size(dir.path() + "/relative.txt"), 5u);
}

TEST(SandboxProcess, MissingWorkingDirectoryNamesChdir) {
  auto spec = hostileSpec("exit_with", {"0"});
  spec.working_dir = "/nonexistent-da-sandbox-dir";
  auto [result, output] = run(spec);
  EXPECT_EQ(result.status, Status::kSetupFailed);
  EXPECT_NE(result.reason.find("chdir(\"/nonexistent-da-sandbox-dir\") failed: No such file or directory"),
            std::string::npos)
      << result.reason;
  EXPECT_NE(result.reason.find("Fix:"), std::string::npos) << result.reason;
  EXPECT_EQ(output, "");
}

TEST(SandboxProcess, MissingExecutableNamesExecve) {
  ProcessSpec spec = hostileSpec("exit_with");
  spec.executable = "/nonexistent-da-sandbox/prog";
  auto [result, output] = run(spec);
  EXPECT_EQ(result.status, Status::kSetupFailed);
  EXPECT_NE(result.reason.find("execve(\"/nonexistent-da-sandbox/prog\") failed: No such file or directory"),
            std::string::npos)
      << result.reason;
  EXPECT_NE(result.reason.find("PATH"), std::string::npos) << result.reason;
}

TEST(SandboxProcess, RelativeExecutableIsRejectedWithoutPathSearch) {
  ProcessSpec spec = hostileSpec("exit_with");
  spec.executable = "true";
  auto [result, output] = run(spec);
  EXPECT_EQ(result.status, Status::kSetupFailed);
  EXPECT_NE(result.reason.find("not an absolute path"), std::string::npos) << result.reason;
}

TEST(SandboxProcess, ImpossibleRlimitNamesSetrlimit) {
  // Above fs.nr_open: refused even for root.
  auto spec = hostileSpec("exit_with", {"0"});
  spec.limits.openFiles(uint64_t{1} << 40);
  auto [result, output] = run(spec);
  EXPECT_EQ(result.status, Status::kSetupFailed);
  EXPECT_NE(result.reason.find("setrlimit(RLIMIT_NOFILE"), std::string::npos) << result.reason;
  EXPECT_NE(result.reason.find("Operation not permitted"), std::string::npos) << result.reason;
}

TEST(SandboxProcess, ChildHasOwnSessionDeathSignalCleanSignalStateAndLimits) {
  // Give the child something to inherit: an ignored signal (survives execve) and a blocked one
  // (the mask survives execve too).
  struct sigaction ignore {}, previous_action {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGUSR2, &ignore, &previous_action), 0);
  sigset_t usr1, previous_mask;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &usr1, &previous_mask), 0);
  // And a core limit above 0, so that "core=0" proves the runner set it.
  rlimit previous_core{};
  ASSERT_EQ(::getrlimit(RLIMIT_CORE, &previous_core), 0);
  rlimit raised_core = previous_core;
  raised_core.rlim_cur = raised_core.rlim_max;
  ASSERT_EQ(::setrlimit(RLIMIT_CORE, &raised_core), 0);

  auto spec = hostileSpec("print_process_state");
  spec.limits.cpuSeconds(100).addressSpaceBytes(uint64_t{1} << 30).fileSizeBytes(1 << 20)
      .openFiles(64).processes(4096);
  auto [result, output] = run(spec);

  ::setrlimit(RLIMIT_CORE, &previous_core);
  ::pthread_sigmask(SIG_SETMASK, &previous_mask, nullptr);
  ::sigaction(SIGUSR2, &previous_action, nullptr);

  ASSERT_EQ(result.status, Status::kOk) << result.reason << "\n" << output;
  auto state = keyValues(output);
  EXPECT_EQ(state["pgid"], state["pid"]);
  EXPECT_EQ(state["sid"], state["pid"]);
  EXPECT_EQ(state["pdeathsig"], std::to_string(SIGKILL));
  EXPECT_EQ(state["SigBlk"], "0000000000000000");
  EXPECT_EQ(state["SigIgn"], "0000000000000000");
  EXPECT_EQ(state["core"], "0");
  EXPECT_EQ(state["cpu"], "100");
  EXPECT_EQ(state["as"], std::to_string(uint64_t{1} << 30));
  EXPECT_EQ(state["fsize"], std::to_string(1 << 20));
  EXPECT_EQ(state["nofile"], "64");
  EXPECT_EQ(state["nproc"], "4096");
}

TEST(SandboxProcess, TimeoutKillsProcessThatIgnoresSigterm) {
  std::atomic<pid_t> child{0};
  std::atomic<bool> watchdog_fired{false};
  Watchdog watchdog(10s, [&] {
    watchdog_fired = true;
    if (pid_t pid = child.load(); pid > 0) ::kill(pid, SIGKILL);
  });
  auto spec = hostileSpec("ignore_sigterm_sleep");
  spec.limits.wallTime(300ms);
  std::string output;
  auto result = sandbox::runProcess(spec, [&](std::string_view chunk) {
    output.append(chunk);
    if (auto at = output.find("pid="); at != std::string::npos) child = std::atoi(output.c_str() + at + 4);
  });
  EXPECT_FALSE(watchdog_fired) << "the runner did not kill the child by itself";
  EXPECT_EQ(result.status, Status::kTimedOut) << result.reason;
  EXPECT_EQ(result.signal, SIGKILL);
  EXPECT_GE(result.wall_time, 300ms);
  EXPECT_LT(result.wall_time, 2s);
  EXPECT_EQ(output.rfind("ready pid=", 0), 0u) << output;
}

TEST(SandboxProcess, CancelFlagStopsRunningProcess) {
  std::atomic<bool> cancel{false};
  std::chrono::steady_clock::time_point cancelled_at;
  std::string output;
  // Cancel from the sink once the child has proven it runs: no sleeping to synchronise.
  auto result = sandbox::runProcess(
      hostileSpec("sleep_ms", {"60000"}),
      [&](std::string_view chunk) {
        output.append(chunk);
        if (!cancel && output.find("sleeping") != std::string::npos) {
          cancelled_at = std::chrono::steady_clock::now();
          cancel = true;
        }
      },
      &cancel);
  const auto reaction = std::chrono::steady_clock::now() - cancelled_at;
  EXPECT_EQ(result.status, Status::kCancelled) << result.reason;
  EXPECT_EQ(result.signal, SIGKILL);
  EXPECT_LT(reaction, 1s);
  EXPECT_EQ(output.find("done"), std::string::npos);
}

TEST(SandboxProcess, CancelBeforeStartDoesNotRun) {
  std::atomic<bool> cancel{true};
  auto [result, output] = run(hostileSpec("exit_with", {"0"}), &cancel);
  EXPECT_EQ(result.status, Status::kCancelled);
  EXPECT_EQ(output, "");
}

TEST(SandboxProcess, DaemonizedGrandchildHoldingPipeDoesNotBlockAndIsKilled) {
  auto [result, output] = run(hostileSpec("daemonize_holding_pipe"));
  EXPECT_EQ(result.status, Status::kOk) << result.reason;
  // Killing and reaping the group takes milliseconds. Well below 5 s on purpose: an init that
  // reaps orphans only now and then (this CI's does, after ~2 s) must not be what we wait for.
  EXPECT_LT(result.wall_time, 1s);
  const std::string pid_text = keyValues(output)["grandchild_pid"];
  ASSERT_FALSE(pid_text.empty()) << output;
  const pid_t grandchild = std::stoi(pid_text);
  errno = 0;
  EXPECT_EQ(::kill(grandchild, 0), -1) << "grandchild " << grandchild << " is still there";
  EXPECT_EQ(errno, ESRCH);
}

TEST(SandboxProcess, GrandchildThatEscapedTheGroupAndFloodsThePipeDoesNotHoldTheRun) {
  auto spec = hostileSpec("escape_group_and_flood");
  spec.limits.outputBytes(64);  // keep only the first line; the rest is the flood
  auto [result, output] = run(spec);
  EXPECT_EQ(result.status, Status::kOk) << result.reason;
  EXPECT_LT(result.wall_time, 2s);
  const std::string pid_text = keyValues(output.substr(0, output.find('\n') + 1))["escaped_pid"];
  ASSERT_FALSE(pid_text.empty()) << output.substr(0, 64);
  // Out of the group's reach; it dies of SIGPIPE now that the pipe is closed. Make sure and
  // reap it (it was re-parented to us, the subreaper).
  const pid_t escaped = std::stoi(pid_text);
  ::kill(escaped, SIGKILL);
  ::waitpid(escaped, nullptr, 0);
}

TEST(SandboxProcess, OutputBeyondLimitIsDroppedWhileTheChildIsDrained) {
  auto spec = hostileSpec("flood_output");  // 100 MiB
  spec.limits.outputBytes(1 << 20);
  size_t received = 0;
  auto result = sandbox::runProcess(spec, [&](std::string_view chunk) { received += chunk.size(); });
  // kOk: the child could write all 100 MiB, so the pipe kept being drained past the limit.
  EXPECT_EQ(result.status, Status::kOk) << result.reason;
  EXPECT_TRUE(result.output_truncated);
  EXPECT_EQ(received, size_t{1} << 20);
}

TEST(SandboxProcess, OutputStillInThePipeWhenTheChildExitsIsDelivered) {
  // The sink holds the runner on the first chunk until the child has exited, so the 512 KiB
  // it parked in the pipe can only arrive through the read after the exit.
  std::string output;
  bool waited_for_exit = false;
  auto result = sandbox::runProcess(hostileSpec("exit_leaving_output_in_pipe"), [&](std::string_view chunk) {
    output.append(chunk);
    if (waited_for_exit || output.find('\n') == std::string::npos) return;
    waited_for_exit = true;
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, std::atoi(output.c_str() + 4), 0));
    pollfd exited{pidfd, POLLIN, 0};
    if (pidfd >= 0) ::poll(&exited, 1, 5000);
    if (pidfd >= 0) ::close(pidfd);
  });
  EXPECT_EQ(result.status, Status::kOk) << result.reason;
  EXPECT_TRUE(waited_for_exit);
  EXPECT_FALSE(result.output_truncated);
  const size_t header = output.find('\n') + 1;
  EXPECT_EQ(output.size() - header, 512u * 1024) << "bytes lost after the child exited";
}

TEST(SandboxProcess, NoFileDescriptorLeaksIntoChild) {
  // Descriptors without CLOEXEC, as careless code elsewhere in the agent might leave them.
  const int stray_file = ::open("/dev/null", O_RDONLY);
  int stray_pipe[2];
  ASSERT_GE(stray_file, 0);
  ASSERT_EQ(::pipe(stray_pipe), 0);
  // And a stdin that is not /dev/null, so that seeing /dev/null proves the runner set it.
  const int saved_stdin = ::dup(STDIN_FILENO);
  ASSERT_GE(saved_stdin, 0);
  ASSERT_EQ(::dup2(stray_pipe[0], STDIN_FILENO), STDIN_FILENO);

  auto [result, output] = run(hostileSpec("print_fds"));
  ::dup2(saved_stdin, STDIN_FILENO);
  ::close(saved_stdin);
  ::close(stray_file);
  ::close(stray_pipe[0]);
  ::close(stray_pipe[1]);

  ASSERT_EQ(result.status, Status::kOk) << result.reason;
  std::map<int, std::string> fds;
  int listing_fd = -1;
  for (const auto& line : lines(output)) {
    if (line.rfind("listing_fd=", 0) == 0) listing_fd = std::stoi(line.substr(11));
    if (line.rfind("fd=", 0) == 0) {
      auto arrow = line.find(" -> ");
      fds[std::stoi(line.substr(3, arrow - 3))] = line.substr(arrow + 4);
    }
  }
  std::set<int> numbers;
  for (const auto& [fd, target] : fds) numbers.insert(fd);
  EXPECT_EQ(numbers, (std::set<int>{0, 1, 2, listing_fd})) << output;
  EXPECT_EQ(fds[0], "/dev/null");
  EXPECT_EQ(fds[1].rfind("pipe:", 0), 0u) << fds[1];
  EXPECT_EQ(fds[1], fds[2]) << "stdout and stderr must share one pipe";
}

TEST(SandboxProcess, FileSizeLimitStopsWriterEvenIfTheAgentIgnoresSigxfsz) {
  TempDir dir;
  struct sigaction ignore {}, previous {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGXFSZ, &ignore, &previous), 0);
  auto spec = hostileSpec("write_file", {dir.path() + "/big.bin", std::to_string(1 << 20)});
  spec.limits.fileSizeBytes(64 * 1024);
  auto [result, output] = run(spec);
  ::sigaction(SIGXFSZ, &previous, nullptr);

  // The disposition was reset to default in the child, so the kernel's SIGXFSZ kills it.
  EXPECT_EQ(result.status, Status::kSignaled) << result.reason << "\n" << output;
  EXPECT_EQ(result.signal, SIGXFSZ);
  EXPECT_NE(result.reason.find("Limits::fileSizeBytes"), std::string::npos) << result.reason;
  EXPECT_LE(std::filesystem::file_size(dir.path() + "/big.bin"), 64u * 1024);
}

TEST(SandboxProcess, AddressSpaceLimitStopsAllocation) {
  auto within = hostileSpec("allocate", {"16"});
  within.limits.addressSpaceBytes(256 << 20);
  auto small = run(within);
  EXPECT_EQ(small.result.status, Status::kOk) << small.result.reason << "\n" << small.output;

  auto beyond = hostileSpec("allocate", {"1024"});
  beyond.limits.addressSpaceBytes(256 << 20);
  auto [result, output] = run(beyond);
  EXPECT_NE(result.status, Status::kOk) << output;
  EXPECT_NE(output.find("allocation of"), std::string::npos) << result.reason << "\n" << output;
}

TEST(SandboxProcess, ProcessLimitIsAppliedAndTheForkBombIsCleanedUp) {
  auto spec = hostileSpec("fork_bomb_bounded");
  spec.limits.processes(20);
  auto [result, output] = run(spec);
  EXPECT_EQ(result.status, Status::kOk) << result.reason;
  auto report = keyValues(output);
  EXPECT_EQ(report["rlimit_nproc"], "20") << output;
  ASSERT_FALSE(report["forks_ok"].empty()) << output;
  if (::geteuid() != 0) {
    // RLIMIT_NPROC counts every process of the user, so at most 20 of the 1000 can exist.
    EXPECT_GT(std::stoi(output.substr(output.find("forks_failed=") + 13)), 900) << output;
  } else {
    RecordProperty("note", "root: the kernel does not enforce RLIMIT_NPROC");
  }
}

TEST(SandboxProcess, ThrowingSinkNeitherEscapesNorLeavesTheChildRunning) {
  auto result = sandbox::runProcess(hostileSpec("exit_with", {"0"}),
                                    [](std::string_view) { throw std::runtime_error("sink broke"); });
  EXPECT_EQ(result.status, Status::kOk) << result.reason;
  EXPECT_TRUE(result.output_truncated);
  EXPECT_NE(result.reason.find("sink broke"), std::string::npos) << result.reason;
}

TEST(SandboxProcess, ConcurrentRunsFromFourThreadsStayApart) {
  constexpr int kThreads = 4;
  constexpr int kRunsPerThread = 10;
  std::vector<std::string> failures(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &failures] {
      std::ostringstream problems;
      for (int i = 0; i < kRunsPerThread; ++i) {
        const std::string id = std::to_string(t) + "." + std::to_string(i);
        auto env = run(hostileSpec("print_env", {}, {{"RUN", id}}));
        if (env.result.status != Status::kOk || env.output != "RUN=" + id + "\n") {
          problems << "print_env " << id << ": " << env.result.reason << " [" << env.output << "]\n";
        }
        const int code = 1 + t * kRunsPerThread + i;
        auto exit = run(hostileSpec("exit_with", {std::to_string(code)}));
        if (exit.result.status != Status::kExitedNonZero || exit.result.exit_code != code ||
            exit.output != "to stdout\nto stderr\n") {
          problems << "exit_with " << code << ": " << exit.result.reason << " [" << exit.output << "]\n";
        }
      }
      failures[t] = problems.str();
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], "") << "thread " << t;
}

}  // namespace

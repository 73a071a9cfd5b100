// Per-run cgroups against the real kernel. The project's machines (development and CI) run
// these as root on a host with writable memory and pids controllers, so a missing facility is
// a failure that says why, never a skip. Forked children wait on a pipe until they are
// attached; nothing here synchronises with sleeps.
#include "sandbox/cgroup.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <poll.h>
#include <sstream>
#include <string>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "sandbox/fds.h"

namespace {

using sandbox::internal::CgroupLimits;
using sandbox::internal::CgroupSupport;
using sandbox::internal::Pipe;
using sandbox::internal::RunCgroup;
using sandbox::internal::UniqueFd;

constexpr uint64_t kMiB = 1024 * 1024;

// Unique per process and call: other engineers' test runs share the pids hierarchy's base group.
std::string uniqueName(const std::string& what) {
  static std::atomic<int> counter{0};
  return "gtest-" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

bool isDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string readText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<pid_t> procsOf(const std::string& dir) {
  std::vector<pid_t> pids;
  std::istringstream in(readText(dir + "/cgroup.procs"));
  for (pid_t pid; in >> pid;) pids.push_back(pid);
  return pids;
}

bool contains(const std::vector<pid_t>& pids, pid_t pid) {
  return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

std::string describeStatus(int status) {
  if (status == -1) return "had not exited after 30 s";
  if (WIFEXITED(status)) return "exited with " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by ") + ::strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

bool writeAll(int fd, const void* data, size_t size) {
  return ::write(fd, data, size) == static_cast<ssize_t>(size);
}

// Reads exactly `size` bytes; false on EOF or error first.
bool readAll(int fd, void* data, size_t size) {
  auto* bytes = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::read(fd, bytes, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// A forked child that does nothing until go(): the parent attaches it first. The destructor
// kills and reaps it should a test bail out early.
class WaitingChild {
 public:
  // `body` runs in the child after go(); its return value is the exit code. It gets the write
  // end of the report pipe. Only async-signal-safe calls belong in it.
  template <typename Body>
  explicit WaitingChild(Body body) {
    if (sandbox::internal::makePipe(go_) != 0 || sandbox::internal::makePipe(report_) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      go_.write_end.reset();
      report_.read_end.reset();
      char byte;
      if (::read(go_.read_end.get(), &byte, 1) != 1) ::_exit(120);  // the parent gave up
      ::_exit(body(report_.write_end.get()));
    }
    go_.read_end.reset();
    report_.write_end.reset();
  }
  WaitingChild(const WaitingChild&) = delete;
  WaitingChild& operator=(const WaitingChild&) = delete;
  ~WaitingChild() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }
  bool go() { return writeAll(go_.write_end.get(), "g", 1); }
  int reportFd() const { return report_.read_end.get(); }

  // Reaps the child; its wait status, or kNotExited if it has not exited within 30 s (a guard
  // so that a broken limit fails the test instead of hanging it; the destructor then kills it).
  static constexpr int kNotExited = -1;
  int wait() {
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
    if (pidfd.valid()) {
      pollfd exited{pidfd.get(), POLLIN, 0};
      if (::poll(&exited, 1, 30'000) != 1) return kNotExited;
    }
    int status = kNotExited;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }
  // True if the child has not exited yet (does not reap it).
  bool running() const {
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == 0;
  }

 private:
  Pipe go_;
  Pipe report_;
  pid_t pid_ = -1;
};

// The support every test below needs; a failure names what is missing.
::testing::AssertionResult fullSupport() {
  const CgroupSupport& support = sandbox::internal::cgroupSupport();
  if (support.kind == CgroupSupport::Kind::kNone) {
    return ::testing::AssertionFailure() << "no cgroup support: " << support.unavailable_reason;
  }
  const std::string prefix = support.kind == CgroupSupport::Kind::kV1 ? "cgroup_v1_" : "cgroup_v2_";
  for (const char* controller : {"memory", "pids"}) {
    if (!support.has(prefix + controller)) {
      return ::testing::AssertionFailure()
             << "missing facility " << prefix << controller << ": " << support.unavailable_reason;
    }
  }
  return ::testing::AssertionSuccess();
}

std::unique_ptr<RunCgroup> createOrFail(const std::string& name, const CgroupLimits& limits) {
  std::string problem;
  auto group = RunCgroup::create(name, limits, problem);
  EXPECT_NE(group, nullptr) << "RunCgroup::create(\"" << name << "\"): " << problem;
  if (group) {
    EXPECT_TRUE(problem.empty()) << problem;
  }
  return group;
}

TEST(SandboxCgroup, HostOffersMemoryAndPidsControllers) {
  ASSERT_TRUE(fullSupport());
  const CgroupSupport& support = sandbox::internal::cgroupSupport();
  EXPECT_TRUE(support.unavailable_reason.empty()) << support.unavailable_reason;
  EXPECT_TRUE(isDirectory(support.memory_base)) << support.memory_base;
  EXPECT_TRUE(isDirectory(support.pids_base)) << support.pids_base;
  // The limit must not be dodged through swap.
  if (support.kind == CgroupSupport::Kind::kV1) {
    EXPECT_EQ(support.has("cgroup_v1_memsw"),
              isDirectory(support.memory_base) &&
                  ::access((support.memory_base + "/memory.memsw.limit_in_bytes").c_str(), F_OK) == 0);
  }
  // Probed once: the same object every time.
  EXPECT_EQ(&support, &sandbox::internal::cgroupSupport());
}

TEST(SandboxCgroup, ChildBeyondItsMemoryLimitIsOomKilled) {
  ASSERT_TRUE(fullSupport());
  constexpr uint64_t kLimit = 64 * kMiB;
  auto group = createOrFail(uniqueName("memory"), CgroupLimits{kLimit, 0});
  ASSERT_NE(group, nullptr);

  WaitingChild child([](int report) {
    constexpr size_t kSize = 256 * kMiB;
    void* memory = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) return 2;
    auto* bytes = static_cast<volatile char*>(memory);
    for (size_t i = 0; i < kSize; i += 4096) bytes[i] = 1;  // touch every page
    writeAll(report, "survived", 8);
    return 0;
  });
  ASSERT_GT(child.pid(), 0);
  ASSERT_EQ(group->attach(child.pid()), 0)
      << group->describeAttachFailure(child.pid(), errno);
  for (const std::string& dir : group->directories()) {
    EXPECT_TRUE(contains(procsOf(dir), child.pid())) << dir << "/cgroup.procs";
  }
  ASSERT_TRUE(child.go());

  const int status = child.wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "a child touching 256 MiB under a 64 MiB limit " << describeStatus(status);
  const RunCgroup::Usage usage = group->usage();
  EXPECT_GE(usage.oom_kills, 1u);
  EXPECT_LE(usage.memory_peak_bytes, kLimit);
  EXPECT_GE(usage.memory_peak_bytes, kLimit / 2) << "the limit was reached before the kill";
}

// SIGKILLs, on destruction, the processes whose pidfds it holds (dead ones are unaffected).
struct SurvivorKiller {
  std::vector<UniqueFd> pidfds;
  ~SurvivorKiller() {
    for (const UniqueFd& fd : pidfds) {
      if (fd.valid()) ::syscall(SYS_pidfd_send_signal, fd.get(), SIGKILL, nullptr, 0);
    }
  }
};

// What the forking child reports.
struct ForkReport {
  int forked = 0;
  int fork_errno = 0;
  pid_t pids[64] = {};
};

TEST(SandboxCgroup, ForksBeyondMaxProcessesFailWithEagainAndKillAllReachesNewSessions) {
  ASSERT_TRUE(fullSupport());
  auto group = createOrFail(uniqueName("pids"), CgroupLimits{0, 8});
  ASSERT_NE(group, nullptr);
  const std::vector<std::string> dirs = group->directories();

  // Every process of the run holds the write end: EOF on the read end means all are dead.
  Pipe alive;
  ASSERT_EQ(sandbox::internal::makePipe(alive), 0);
  // Each grandchild reports once it runs in a new session.
  Pipe sessions;
  ASSERT_EQ(sandbox::internal::makePipe(sessions), 0);
  const int sessions_fd = sessions.write_end.get();

  WaitingChild child([sessions_fd](int report) {
    ForkReport result;
    while (result.forked < 64) {
      pid_t pid = ::fork();
      if (pid == 0) {
        ::setsid();  // leaves the child's process group and session: a group kill misses it
        writeAll(sessions_fd, "s", 1);
        for (;;) ::pause();
      }
      if (pid < 0) {
        result.fork_errno = errno;
        break;
      }
      result.pids[result.forked++] = pid;
    }
    writeAll(report, &result, sizeof result);
    for (;;) ::pause();
    return 0;
  });
  ASSERT_GT(child.pid(), 0);
  alive.write_end.reset();
  sessions.write_end.reset();
  ASSERT_EQ(group->attach(child.pid()), 0)
      << group->describeAttachFailure(child.pid(), errno);
  ASSERT_TRUE(child.go());

  ForkReport result;
  ASSERT_TRUE(readAll(child.reportFd(), &result, sizeof result)) << "the child died early";
  EXPECT_EQ(result.fork_errno, EAGAIN) << "fork failed with " << ::strerror(result.fork_errno)
                                       << " after " << result.forked << " forks";
  EXPECT_EQ(result.forked, 7) << "pids.max 8 = the child + 7";
  std::vector<char> acks(static_cast<size_t>(result.forked));
  ASSERT_TRUE(readAll(sessions.read_end.get(), acks.data(), acks.size()));
  // Should killAll miss them, they must still die: a survivor would hold the test's output open.
  SurvivorKiller survivors;
  for (int i = 0; i < result.forked; ++i) {
    survivors.pidfds.emplace_back(static_cast<int>(::syscall(SYS_pidfd_open, result.pids[i], 0)));
    EXPECT_EQ(::getsid(result.pids[i]), result.pids[i]) << "grandchild " << result.pids[i];
  }
  EXPECT_GE(group->usage().pids_limit_hits, 1u);

  group.reset();  // kills everything in it, then removes the groups

  pollfd wait_for_eof{alive.read_end.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&wait_for_eof, 1, 10'000), 1) << "processes of the run are still alive";
  char byte;
  EXPECT_EQ(::read(alive.read_end.get(), &byte, 1), 0) << "processes of the run are still alive";
  const int status = child.wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << describeStatus(status);
  for (const std::string& dir : dirs) EXPECT_FALSE(isDirectory(dir)) << dir;
}

TEST(SandboxCgroup, DestroyingKillsAWaitingChildAndRemovesTheDirectories) {
  ASSERT_TRUE(fullSupport());
  auto group = createOrFail(uniqueName("destroy"), CgroupLimits{128 * kMiB, 16});
  ASSERT_NE(group, nullptr);
  const std::vector<std::string> dirs = group->directories();
  const CgroupSupport& support = sandbox::internal::cgroupSupport();
  // v1: one group per controller; v2: one group.
  EXPECT_EQ(dirs.size(), support.kind == CgroupSupport::Kind::kV1 ? 2u : 1u);
  for (const std::string& dir : dirs) ASSERT_TRUE(isDirectory(dir)) << dir;

  WaitingChild child([](int) { return 0; });  // never told to go: blocks in read()
  ASSERT_GT(child.pid(), 0);
  ASSERT_EQ(group->attach(child.pid()), 0)
      << group->describeAttachFailure(child.pid(), errno);

  std::string problem;
  EXPECT_TRUE(group->destroy(problem)) << problem;
  for (const std::string& dir : dirs) EXPECT_FALSE(isDirectory(dir)) << dir;
  const int status = child.wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << describeStatus(status);
  EXPECT_TRUE(group->destroy(problem)) << "destroy is idempotent: " << problem;
}

TEST(SandboxCgroup, TwoRunsCoexistAndStaySeparate) {
  ASSERT_TRUE(fullSupport());
  auto first = createOrFail(uniqueName("first"), CgroupLimits{64 * kMiB, 8});
  auto second = createOrFail(uniqueName("second"), CgroupLimits{32 * kMiB, 4});
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  for (const std::string& dir : first->directories()) {
    EXPECT_TRUE(isDirectory(dir)) << dir;
    EXPECT_EQ(std::count(second->directories().begin(), second->directories().end(), dir), 0);
  }

  WaitingChild in_first([](int) { return 0; });
  WaitingChild in_second([](int) { return 0; });
  ASSERT_GT(in_first.pid(), 0);
  ASSERT_GT(in_second.pid(), 0);
  ASSERT_EQ(first->attach(in_first.pid()), 0);
  ASSERT_EQ(second->attach(in_second.pid()), 0);
  for (const std::string& dir : first->directories()) {
    EXPECT_EQ(procsOf(dir), std::vector<pid_t>{in_first.pid()}) << dir;
  }
  for (const std::string& dir : second->directories()) {
    EXPECT_EQ(procsOf(dir), std::vector<pid_t>{in_second.pid()}) << dir;
  }

  const std::vector<std::string> first_dirs = first->directories();
  first.reset();
  const int status = in_first.wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << describeStatus(status);
  for (const std::string& dir : first_dirs) EXPECT_FALSE(isDirectory(dir)) << dir;
  // The other run is untouched.
  EXPECT_TRUE(in_second.running());
  for (const std::string& dir : second->directories()) {
    EXPECT_TRUE(isDirectory(dir)) << dir;
    EXPECT_EQ(procsOf(dir), std::vector<pid_t>{in_second.pid()}) << dir;
  }
}

TEST(SandboxCgroup, ANameInUseOrNotAPathComponentIsRefused) {
  ASSERT_TRUE(fullSupport());
  const std::string name = uniqueName("taken");
  auto group = createOrFail(name, CgroupLimits{});
  ASSERT_NE(group, nullptr);
  std::string problem;
  EXPECT_EQ(RunCgroup::create(name, CgroupLimits{}, problem), nullptr);
  EXPECT_NE(problem.find("EEXIST"), std::string::npos) << problem;
  EXPECT_NE(problem.find(name), std::string::npos) << problem;
  for (const std::string& bad : {std::string(), std::string(".."), std::string("a/b"),
                                 std::string(".hidden"), std::string("x y")}) {
    problem.clear();
    EXPECT_EQ(RunCgroup::create(bad, CgroupLimits{}, problem), nullptr) << bad;
    EXPECT_NE(problem.find("invalid run cgroup name"), std::string::npos) << problem;
  }
  // The refused duplicate did not disturb the original.
  for (const std::string& dir : group->directories()) EXPECT_TRUE(isDirectory(dir)) << dir;
}

// ---- Locating the agent's own group (synthetic /proc texts: hosts this machine is not) ----

std::string locate(const std::string& mountinfo, const std::string& cgroup,
                   const std::string& controller, std::string* problem_out = nullptr) {
  std::string dir, problem;
  if (!sandbox::internal::locateOwnCgroup(mountinfo, cgroup, controller, dir, problem)) {
    if (problem_out) *problem_out = problem;
    return "<none>";
  }
  return dir;
}

TEST(SandboxCgroupLocate, HybridHostMapsEachV1ControllerThroughItsMount) {
  const std::string mountinfo =
      "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
      "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
      "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
  const std::string cgroup =
      "8:pids:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/x\n0::/\n";
  EXPECT_EQ(locate(mountinfo, cgroup, "memory"), "/sys/fs/cgroup/memory/process_api/abc");
  EXPECT_EQ(locate(mountinfo, cgroup, "pids"), "/sys/fs/cgroup/pids");
  EXPECT_EQ(locate(mountinfo, cgroup, "cpuacct"), "/sys/fs/cgroup/cpu,cpuacct/x");
  EXPECT_EQ(locate(mountinfo, cgroup, ""), "/sys/fs/cgroup/unified");
  std::string problem;
  EXPECT_EQ(locate(mountinfo, cgroup, "blkio", &problem), "<none>");
  EXPECT_NE(problem.find("blkio"), std::string::npos) << problem;
}

TEST(SandboxCgroupLocate, PureV2InPrivateNamespaceAndBindMountedSubtree) {
  // docker --cgroupns=private: the container's group is the namespace's root.
  EXPECT_EQ(locate("50 40 0:30 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw\n", "0::/\n", ""),
            "/sys/fs/cgroup");
  // A mount showing only a subtree (cgroupns=host with a bind mount of the container's group).
  const std::string subtree =
      "50 40 0:30 /system.slice/docker-1.scope /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
  EXPECT_EQ(locate(subtree, "0::/system.slice/docker-1.scope/app\n", ""), "/sys/fs/cgroup/app");
  EXPECT_EQ(locate(subtree, "0::/system.slice/docker-1.scope\n", ""), "/sys/fs/cgroup");
  std::string problem;
  EXPECT_EQ(locate(subtree, "0::/system.slice/docker-10.scope\n", "", &problem), "<none>");
  EXPECT_NE(problem.find("docker-10.scope"), std::string::npos) << problem;
  // Outside the cgroup namespace.
  EXPECT_EQ(locate(subtree, "0::/../other\n", "", &problem), "<none>");
  EXPECT_NE(problem.find("--cgroupns=private"), std::string::npos) << problem;
  // Not mounted at all.
  EXPECT_EQ(locate("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n", "0::/\n", "", &problem), "<none>");
  EXPECT_NE(problem.find("cgroup2"), std::string::npos) << problem;
}

TEST(SandboxCgroupLocate, EscapedMountPointsAndOptionalFields) {
  EXPECT_EQ(locate("50 40 0:30 / /mnt/my\\040cgroups rw shared:5 master:1 - cgroup2 cgroup2 rw\n",
                   "0::/a:b\n", ""),
            "/mnt/my cgroups/a:b");
}

}  // namespace

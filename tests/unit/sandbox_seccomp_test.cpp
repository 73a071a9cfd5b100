// The job's syscall filter, loaded for real in forked children: each child loads it (after
// no_new_privs, as the runner's child does), makes the calls and sends back what they answered.
#include "sandbox/seccomp.h"

#include <gtest/gtest.h>

#include <sys/socket.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <functional>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <set>
#include <spawn.h>
#include <string>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace {

using sandbox::internal::deniedSyscalls;
using sandbox::internal::jobSeccompProgram;
using sandbox::internal::loadSeccompProgram;
using sandbox::internal::SeccompProgram;

// One call made in the child: 0 if it succeeded, else its errno.
struct Check {
  std::string what;
  int expected;  // 0 or an errno
  std::function<int()> run;
};

int errnoOf(long result) { return result < 0 ? errno : 0; }

struct ChildRun {
  int setup_error = -1;      // what preparing the child answered (0: the filter is loaded)
  std::vector<int> results;  // one per check that ran
  int wait_status = 0;
};

// Forks; the child sets no_new_privs, runs `before` (e.g. another filter), loads `program`
// unless it is null, then runs every check and writes the answers to a pipe.
ChildRun runInChild(const SeccompProgram* program, const std::vector<Check>& checks,
                    const std::function<int()>& before = nullptr) {
  ChildRun run;
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) return run;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ends[0]);
    int setup = ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 ? 0 : errno;
    if (setup == 0 && before) setup = before();
    if (setup == 0 && program) setup = loadSeccompProgram(*program);
    (void)!::write(ends[1], &setup, sizeof setup);
    if (setup != 0) ::_exit(1);
    for (const Check& check : checks) {
      const int result = check.run();
      (void)!::write(ends[1], &result, sizeof result);
    }
    ::_exit(0);
  }
  ::close(ends[1]);
  if (pid < 0) {
    ::close(ends[0]);
    return run;
  }
  int value = 0;
  bool first = true;
  while (::read(ends[0], &value, sizeof value) == static_cast<ssize_t>(sizeof value)) {
    if (first) {
      run.setup_error = value;
      first = false;
    } else {
      run.results.push_back(value);
    }
  }
  ::close(ends[0]);
  ::waitpid(pid, &run.wait_status, 0);
  return run;
}

std::string errnoName(int error) {
  if (error == 0) return "success";
  const char* name = ::strerrorname_np(error);
  return name ? name : std::to_string(error);
}

// Runs the checks under the job filter and expects each answer.
void expectUnderFilter(const std::vector<Check>& checks) {
  const SeccompProgram& program = jobSeccompProgram();
  ASSERT_EQ(program.problem, "");
  const ChildRun run = runInChild(&program, checks);
  ASSERT_EQ(run.setup_error, 0) << "loading the filter failed: " << errnoName(run.setup_error);
  ASSERT_TRUE(WIFEXITED(run.wait_status) && WEXITSTATUS(run.wait_status) == 0)
      << "the filtered child died (wait status " << run.wait_status << ")";
  ASSERT_EQ(run.results.size(), checks.size());
  for (size_t i = 0; i < checks.size(); ++i) {
    EXPECT_EQ(errnoName(run.results[i]), errnoName(checks[i].expected)) << checks[i].what;
  }
}

// A raw clone() that, should it ever succeed, leaves the new process no time to do anything.
int cloneWithFlags(unsigned long flags) {
  const long pid = ::syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) ::_exit(0);
  if (pid < 0) return errno;
  ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
  return 0;
}

int clone3Fork() {
  clone_args args{};
  args.exit_signal = SIGCHLD;
  const long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) ::_exit(0);
  if (pid < 0) return errno;
  ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
  return 0;
}

TEST(SandboxSeccomp, ProgramBuildsOnceAndListsWhatItDenies) {
  const SeccompProgram& program = jobSeccompProgram();
  ASSERT_EQ(program.problem, "");
  EXPECT_FALSE(program.instructions.empty());
  EXPECT_LE(program.instructions.size(), size_t{BPF_MAXINSNS});
  EXPECT_EQ(&program, &jobSeccompProgram()) << "built once";

  std::set<std::string> names;
  for (const auto& denied : deniedSyscalls()) names.insert(denied.name);
  // Every one of these exists on x86_64 and is known to libseccomp 2.5.
  for (const char* name :
       {"mount", "umount2", "pivot_root", "unshare", "setns", "chroot", "ptrace", "process_vm_readv",
        "process_vm_writev", "kexec_load", "kexec_file_load", "init_module", "finit_module",
        "delete_module", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "reboot",
        "swapon", "swapoff", "userfaultfd", "personality", "acct", "quotactl", "open_by_handle_at",
        "name_to_handle_at", "fsopen", "fsmount", "fsconfig", "move_mount", "open_tree", "fspick",
        "mount_setattr", "clone", "clone3", "syslog", "vhangup", "iopl", "ioperm", "settimeofday",
        "clock_settime", "adjtimex", "clock_adjtime", "sethostname", "setdomainname", "pidfd_getfd",
        "io_uring_setup", "io_uring_enter", "io_uring_register", "ioctl", "socket"}) {
    EXPECT_TRUE(names.count(name)) << name << " missing from deniedSyscalls()";
  }
  EXPECT_FALSE(names.count("kcmp")) << "kcmp stays allowed";
  for (const auto& denied : deniedSyscalls()) {
    const bool enosys = std::string(denied.name) == "clone3" ||
                        std::string(denied.name).rfind("io_uring_", 0) == 0;
    const bool eacces = std::string(denied.name) == "socket";
    EXPECT_EQ(denied.error, enosys ? ENOSYS : eacces ? EACCES : EPERM) << denied.name;
  }
}

TEST(SandboxSeccomp, FilterIsActiveInTheChild) {
  expectUnderFilter({{"/proc/self/status says Seccomp: 2 (filter mode)", 0, [] {
                        std::ifstream status("/proc/self/status");
                        for (std::string line; std::getline(status, line);) {
                          if (line.rfind("Seccomp:", 0) == 0) return line.find('2') != std::string::npos ? 0 : EINVAL;
                        }
                        return ENOENT;
                      }}});
}

TEST(SandboxSeccomp, NamespacesMountsAndKernelFacilitiesAnswerEperm) {
  // Without the filter the agent (root) could do each of these: unshare and ptrace succeed, mount
  // answers ENOENT for the missing target, keyctl returns the session keyring.
  expectUnderFilter({
      {"mount(tmpfs, /nonexistent)", EPERM,
       [] { return errnoOf(::mount("none", "/nonexistent-da-seccomp", "tmpfs", 0, nullptr)); }},
      {"unshare(CLONE_NEWUSER)", EPERM, [] { return errnoOf(::unshare(CLONE_NEWUSER)); }},
      {"ptrace(PTRACE_TRACEME)", EPERM, [] { return errnoOf(::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr)); }},
      {"keyctl(KEYCTL_GET_KEYRING_ID, session)", EPERM,
       [] { return errnoOf(::syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)); }},
      {"personality(PER_LINUX32)", EPERM, [] { return errnoOf(::personality(PER_LINUX32)); }},
      {"personality(ADDR_NO_RANDOMIZE)", EPERM, [] { return errnoOf(::personality(ADDR_NO_RANDOMIZE)); }},
  });
}

TEST(SandboxSeccomp, CloneWithANamespaceFlagIsRefusedButForkAndThreadsWork) {
  std::vector<Check> checks = {
      {"clone(CLONE_NEWNS)", EPERM, [] { return cloneWithFlags(CLONE_NEWNS); }},
      {"clone(CLONE_NEWUSER)", EPERM, [] { return cloneWithFlags(CLONE_NEWUSER); }},
      {"clone(CLONE_NEWPID)", EPERM, [] { return cloneWithFlags(CLONE_NEWPID); }},
      {"clone(CLONE_NEWNET)", EPERM, [] { return cloneWithFlags(CLONE_NEWNET); }},
      {"clone(CLONE_NEWIPC)", EPERM, [] { return cloneWithFlags(CLONE_NEWIPC); }},
      {"clone(CLONE_NEWUTS)", EPERM, [] { return cloneWithFlags(CLONE_NEWUTS); }},
      {"clone(CLONE_NEWCGROUP)", EPERM, [] { return cloneWithFlags(CLONE_NEWCGROUP); }},
      {"clone3 (any flags)", ENOSYS, [] { return clone3Fork(); }},
      {"plain clone()", 0, [] { return cloneWithFlags(0); }},
      {"fork() and its exit code", 0,
       [] {
         const pid_t pid = ::fork();
         if (pid == 0) ::_exit(7);
         if (pid < 0) return errno;
         int status = 0;
         ::waitpid(pid, &status, 0);
         return WIFEXITED(status) && WEXITSTATUS(status) == 7 ? 0 : ECHILD;
       }},
      // glibc tries clone3 first and must fall back to clone on ENOSYS: Node is all threads.
      {"pthread_create + join", 0,
       [] {
         pthread_t thread;
         static int ran = 0;
         if (int err = ::pthread_create(&thread, nullptr, [](void*) -> void* { ran = 1; return nullptr; }, nullptr)) {
           return err;
         }
         ::pthread_join(thread, nullptr);
         return ran == 1 ? 0 : EINVAL;
       }},
      {"posix_spawn(/bin/true)", 0,
       [] {
         pid_t pid = 0;
         char arg0[] = "true";
         char* argv[] = {arg0, nullptr};
         if (int err = ::posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ)) return err;
         int status = 0;
         ::waitpid(pid, &status, 0);
         return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : ECHILD;
       }},
  };
  expectUnderFilter(checks);
}

TEST(SandboxSeccomp, IoUringAnswersEnosys) {
  expectUnderFilter({
      {"io_uring_setup(4)", ENOSYS,
       [] {
         io_uring_params params{};
         const long fd = ::syscall(SYS_io_uring_setup, 4, &params);
         if (fd >= 0) ::close(static_cast<int>(fd));
         return errnoOf(fd);
       }},
      {"io_uring_enter(-1)", ENOSYS, [] { return errnoOf(::syscall(SYS_io_uring_enter, -1, 0, 0, 0, nullptr, 0)); }},
      {"io_uring_register(-1)", ENOSYS, [] { return errnoOf(::syscall(SYS_io_uring_register, -1, 0, nullptr, 0)); }},
  });
}

TEST(SandboxSeccomp, PersonalityQueryAndPerLinuxStayAllowedOtherValuesDo) {
  std::vector<Check> checks = {
      {"getpid()", 0, [] { return ::syscall(SYS_getpid) == ::getpid() && ::getpid() > 0 ? 0 : EINVAL; }},
      {"personality(0xffffffff) query", 0,
       [] { return ::personality(0xffffffff) == PER_LINUX ? 0 : errno ? errno : EINVAL; }},
      {"personality(PER_LINUX)", 0, [] { return errnoOf(::personality(PER_LINUX)); }},
  };
  // Every other value is a change: each single bit set, and each single bit clear.
  for (unsigned bit = 0; bit < 32; ++bit) {
    const unsigned long one = 1UL << bit;
    const unsigned long all_but_one = 0xffffffffUL & ~one;
    checks.push_back({"personality(" + std::to_string(one) + ")", EPERM,
                      [one] { return errnoOf(::syscall(SYS_personality, one)); }});
    checks.push_back({"personality(" + std::to_string(all_but_one) + ")", EPERM,
                      [all_but_one] { return errnoOf(::syscall(SYS_personality, all_but_one)); }});
  }
  // High bits are ignored by the kernel; the filter refuses them rather than guess.
  checks.push_back({"personality(1 << 32 | PER_LINUX32)", EPERM,
                    [] { return errnoOf(::syscall(SYS_personality, (1UL << 32) | PER_LINUX32)); }});
  expectUnderFilter(checks);
}

TEST(SandboxSeccomp, TerminalInjectionIoctlsAnswerEpermOthersReachTheKernel) {
  // fd -1: without the filter every one of these would answer EBADF.
  expectUnderFilter({
      {"ioctl(-1, TIOCSTI)", EPERM, [] { char c = 'x'; return errnoOf(::ioctl(-1, TIOCSTI, &c)); }},
      {"ioctl(-1, TIOCLINUX)", EPERM, [] { char c = 0; return errnoOf(::ioctl(-1, TIOCLINUX, &c)); }},
      {"raw ioctl(-1, 1 << 32 | TIOCSTI): the kernel ignores the high bits", EPERM,
       [] { char c = 'x'; return errnoOf(::syscall(SYS_ioctl, -1, (1UL << 32) | TIOCSTI, &c)); }},
      {"ioctl(-1, TCGETS) reaches the kernel", EBADF,
       [] { char buffer[64]; return errnoOf(::ioctl(-1, TCGETS, buffer)); }},
  });
}

// A filter stacked *under* the job filter that refuses every listed syscall with a sentinel
// errno. The kernel runs the newest filter first and keeps its answer among equal actions, so a
// call the job filter denies shows the job filter's errno, one it allows shows the sentinel, and
// no listed call ever reaches the kernel: even a broken job filter can do no harm here.
constexpr int kSentinel = ENOTRECOVERABLE;

int loadSentinelFilter() {
  scmp_filter_ctx ctx = ::seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) return ENOMEM;
  int rc = 0;
  for (const auto& denied : deniedSyscalls()) {
    rc = ::seccomp_rule_add(ctx, SCMP_ACT_ERRNO(kSentinel), ::seccomp_syscall_resolve_name(denied.name), 0);
    if (rc != 0) break;
  }
  if (rc == 0) rc = ::seccomp_load(ctx);
  ::seccomp_release(ctx);
  return -rc;
}

TEST(SandboxSeccomp, EveryListedSyscallAnswersItsErrno) {
  const SeccompProgram& program = jobSeccompProgram();
  ASSERT_EQ(program.problem, "");
  std::vector<Check> checks;
  for (const auto& denied : deniedSyscalls()) {
    const int nr = ::seccomp_syscall_resolve_name(denied.name);
    ASSERT_GE(nr, 0) << denied.name;
    if (denied.only_when == nullptr) {
      checks.push_back({denied.name, denied.error, [nr] { return errnoOf(::syscall(nr, 0, 0, 0, 0, 0, 0)); }});
    }
  }
  // The conditional rules, on both sides of their condition.
  const long clone_nr = SYS_clone, personality_nr = SYS_personality, ioctl_nr = SYS_ioctl;
  checks.push_back({"clone(CLONE_NEWUSER)", EPERM, [=] { return errnoOf(::syscall(clone_nr, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)); }});
  checks.push_back({"clone(SIGCHLD) passes the job filter", kSentinel, [=] { return errnoOf(::syscall(clone_nr, SIGCHLD, 0, 0, 0, 0)); }});
  checks.push_back({"personality(PER_BSD)", EPERM, [=] { return errnoOf(::syscall(personality_nr, PER_BSD)); }});
  checks.push_back({"personality(0xffffffff) passes", kSentinel, [=] { return errnoOf(::syscall(personality_nr, 0xffffffffUL)); }});
  checks.push_back({"personality(0) passes", kSentinel, [=] { return errnoOf(::syscall(personality_nr, 0)); }});
  checks.push_back({"ioctl(0, TIOCSTI)", EPERM, [=] { return errnoOf(::syscall(ioctl_nr, 0, TIOCSTI, 0)); }});
  checks.push_back({"ioctl(0, TCGETS) passes", kSentinel, [=] { return errnoOf(::syscall(ioctl_nr, 0, TCGETS, 0)); }});
  // UDP and raw sockets of the internet families are refused, also with flags in the type or
  // a high bit in the domain register (the kernel reads an int); TCP and unix sockets pass.
  const long socket_nr = SYS_socket;
  checks.push_back({"socket(AF_INET, SOCK_DGRAM)", EACCES, [=] { return errnoOf(::syscall(socket_nr, AF_INET, SOCK_DGRAM, 0)); }});
  checks.push_back({"socket(AF_INET6, SOCK_DGRAM|SOCK_CLOEXEC)", EACCES,
                    [=] { return errnoOf(::syscall(socket_nr, AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0)); }});
  checks.push_back({"socket(AF_INET | 1<<32, SOCK_DGRAM)", EACCES,
                    [=] { return errnoOf(::syscall(socket_nr, (1UL << 32) | AF_INET, SOCK_DGRAM, 0)); }});
  checks.push_back({"socket(AF_INET, SOCK_RAW)", EACCES, [=] { return errnoOf(::syscall(socket_nr, AF_INET, SOCK_RAW, 1)); }});
  checks.push_back({"socket(AF_INET, SOCK_STREAM) passes", kSentinel,
                    [=] { return errnoOf(::syscall(socket_nr, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)); }});
  checks.push_back({"socket(AF_UNIX, SOCK_DGRAM) passes", kSentinel,
                    [=] { return errnoOf(::syscall(socket_nr, AF_UNIX, SOCK_DGRAM, 0)); }});

  // The sentinel filter first (older), then the job filter.
  const ChildRun run = runInChild(&program, checks, loadSentinelFilter);
  ASSERT_EQ(run.setup_error, 0) << errnoName(run.setup_error);
  ASSERT_EQ(run.results.size(), checks.size());
  for (size_t i = 0; i < checks.size(); ++i) {
    EXPECT_EQ(errnoName(run.results[i]), errnoName(checks[i].expected)) << checks[i].what;
  }
}

// Runs `call` on a second thread of a child under the filter (or without it) while the first
// thread waits for it; returns the child's wait status. A kill of only the calling thread would
// let the child exit normally: the filter must kill the whole process.
int waitStatusOfCall(bool filtered, void (*call)()) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (filtered && (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || loadSeccompProgram(jobSeccompProgram()) != 0)) {
      ::_exit(100);
    }
    pthread_t thread;
    auto body = [](void* function) -> void* {
      reinterpret_cast<void (*)()>(function)();
      return nullptr;
    };
    if (::pthread_create(&thread, nullptr, body, reinterpret_cast<void*>(call)) != 0) ::_exit(101);
    ::pthread_join(thread, nullptr);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(SandboxSeccomp, SyscallsOfAnotherAbiKillTheProcess) {
  ASSERT_EQ(jobSeccompProgram().problem, "");
  // x32: the x86_64 entry point with bit 30 set. This kernel has no x32 (ENOSYS), but the filter
  // must not depend on that: it sees the number first and must kill.
  const int x32 = waitStatusOfCall(true, [] { ::syscall(0x40000000L | SYS_getpid); });
  EXPECT_TRUE(WIFSIGNALED(x32) && WTERMSIG(x32) == SIGSYS) << "wait status " << x32;

  // int 0x80 (i386 getpid is 20). Where the kernel offers the i386 entry point at all, the
  // filter must kill a process that uses it; where it does not, the CPU faults first.
  auto int80 = [] {
    long result = 0;
    asm volatile("int $0x80" : "=a"(result) : "a"(20L) : "memory", "r8", "r9", "r10", "r11");
    (void)result;
  };
  const int unfiltered = waitStatusOfCall(false, int80);
  if (WIFEXITED(unfiltered)) {
    const int filtered = waitStatusOfCall(true, int80);
    EXPECT_TRUE(WIFSIGNALED(filtered) && WTERMSIG(filtered) == SIGSYS) << "wait status " << filtered;
  } else {
    EXPECT_TRUE(WIFSIGNALED(unfiltered) && WTERMSIG(unfiltered) == SIGSEGV)
        << "int 0x80 is unavailable here yet did not fault: wait status " << unfiltered;
  }
}

TEST(SandboxSeccomp, AProgramThatWasNotBuiltIsNotLoaded) {
  EXPECT_EQ(loadSeccompProgram(SeccompProgram{{}, "seccomp_init failed"}), EINVAL);
}

}  // namespace

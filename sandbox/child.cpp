#include "sandbox/child.h"

#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "sandbox/fds.h"
#include "sandbox/landlock.h"
#include "sandbox/seccomp.h"
#include "sandbox/user_ns.h"

namespace sandbox::internal {

[[noreturn]] void reportAndExit(const ChildPlan& plan, SetupStep step, int error, int detail) {
  const SetupFailureReport report{static_cast<int32_t>(step), error, detail};
  // A pipe write this small is atomic; retry only on EINTR.
  while (::write(plan.error_report_fd, &report, sizeof report) < 0 && errno == EINTR) {
  }
  ::_exit(kChildSetupFailedExitCode);
}

int resetSignalDispositions() noexcept {
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    // glibc refuses its two internal real-time signals (EINVAL); execve resets their handlers.
    if (::sigaction(sig, &default_action, nullptr) != 0 && errno != EINVAL) return errno;
  }
  return 0;
}

namespace {

int redirect(int from, int to) {
  while (::dup2(from, to) < 0) {
    if (errno != EINTR && errno != EBUSY) return errno;
  }
  return 0;
}

}  // namespace

bool waitForSupervisor(int go_fd) noexcept {
  char byte;
  for (;;) {
    ssize_t n = ::read(go_fd, &byte, 1);
    if (n == 1) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;  // EOF: the supervisor is gone, or gave up on this run
  }
}

void runChild(const ChildPlan& plan) noexcept {
  // 0. Wait until the supervisor has moved us into our cgroup, so that nothing we start can
  //    run outside it. EOF means it gave up on us.
  if (plan.go_fd >= 0 && !waitForSupervisor(plan.go_fd)) ::_exit(kChildSetupFailedExitCode);

  // 1. Own session and process group (pgid == our pid): the parent's kill(-pgid) then reaches
  //    every descendant that did not leave the group, and no terminal signals reach us.
  if (::setsid() < 0) reportAndExit(plan, SetupStep::kNewSession, errno);

  // 2. Die if the supervisor dies. PDEATHSIG fires when the *thread* that forked exits; that
  //    thread is blocked in runProcess until we are gone, so it is the right trigger. If the
  //    parent died before prctl, nobody will deliver the signal: check getppid() afterwards.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) reportAndExit(plan, SetupStep::kParentDeathSignal, errno);
  if (::getppid() != plan.supervisor_pid) ::_exit(kChildSetupFailedExitCode);

  // 3. Default dispositions: handlers vanish at execve anyway, but SIG_IGN (e.g. the agent's
  //    SIGPIPE) would be inherited and change how the tool behaves.
  if (int err = resetSignalDispositions()) reportAndExit(plan, SetupStep::kResetSignalDispositions, err);

  // 4. Working directory.
  if (::chdir(plan.working_dir) != 0) reportAndExit(plan, SetupStep::kChangeDirectory, errno);

  // 5. stdin from /dev/null: an untrusted tool must not read (or wait on) the agent's stdin.
  //    Opened without O_CLOEXEC: if it lands on fd 0 itself, dup2(0, 0) would not clear the flag.
  int dev_null = ::open("/dev/null", O_RDONLY);
  if (dev_null < 0) reportAndExit(plan, SetupStep::kOpenDevNull, errno);
  if (int err = redirect(dev_null, STDIN_FILENO)) reportAndExit(plan, SetupStep::kRedirectStdin, err);

  // 6. stdout and stderr onto one pipe, so the parent sees them merged in arrival order.
  //    The pipe end is >= 3 (see makePipe), so neither dup2 clobbers it.
  if (int err = redirect(plan.output_write_fd, STDOUT_FILENO)) reportAndExit(plan, SetupStep::kRedirectStdout, err);
  if (int err = redirect(plan.output_write_fd, STDERR_FILENO)) reportAndExit(plan, SetupStep::kRedirectStderr, err);

  // 7. Isolation (Landlock tier): the job's host ids when the agent is root, then no new
  //    privileges (a prerequisite of Landlock and seccomp), then the filesystem allowlist.
  if (plan.set_job_ids) {
    const char* failed_call = "";
    if (int err = becomeJobUser(plan.job_uid, plan.job_gid, plan.last_capability, &failed_call)) {
      reportAndExit(plan, SetupStep::kSetJobIds, err);
    }
  }
  if (plan.no_new_privs && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    reportAndExit(plan, SetupStep::kNoNewPrivs, errno);
  }
  if (plan.landlock_fd >= 0) {
    if (int err = restrictSelfWithLandlock(plan.landlock_fd)) reportAndExit(plan, SetupStep::kLandlock, err);
  }

  // 8. Close everything else the agent had open (sockets, files, other runs' pipes); only the
  //    CLOEXEC error pipe stays, and execve closes it.
  if (int err = closeAllFdsExcept(plan.error_report_fd)) reportAndExit(plan, SetupStep::kCloseOtherFds, err);

  // 9. Resource limits, after the fd work so that a small RLIMIT_NOFILE cannot break step 5.
  size_t failed_index = 0;
  if (int err = applyRlimits(*plan.rlimits, &failed_index)) {
    reportAndExit(plan, SetupStep::kSetRlimit, err, static_cast<int>(failed_index));
  }

  // 10. The syscall filter, last before exec: every call above is still allowed by it anyway.
  if (plan.seccomp) {
    if (int err = loadSeccompProgram(*plan.seccomp)) reportAndExit(plan, SetupStep::kSeccomp, err);
  }

  // 11. Unblock every signal (the parent blocked all of them around fork; the mask survives execve).
  sigset_t empty;
  sigemptyset(&empty);
  if (::sigprocmask(SIG_SETMASK, &empty, nullptr) != 0) reportAndExit(plan, SetupStep::kResetSignalMask, errno);

  // 12. Exactly this program, these arguments, this environment; no PATH search.
  ::execve(plan.executable, plan.argv, plan.envp);
  reportAndExit(plan, SetupStep::kExecve, errno);
}

}  // namespace sandbox::internal

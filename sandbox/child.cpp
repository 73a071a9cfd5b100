#include "sandbox/child.h"

#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "sandbox/fds.h"

namespace sandbox::internal {

namespace {

[[noreturn]] void reportAndExit(const ChildPlan& plan, SetupStep step, int error, int detail = 0) {
  const SetupFailureReport report{static_cast<int32_t>(step), error, detail};
  // A pipe write this small is atomic; retry only on EINTR.
  while (::write(plan.error_report_fd, &report, sizeof report) < 0 && errno == EINTR) {
  }
  ::_exit(kChildSetupFailedExitCode);
}

int resetSignalDispositions() {
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

int redirect(int from, int to) {
  while (::dup2(from, to) < 0) {
    if (errno != EINTR && errno != EBUSY) return errno;
  }
  return 0;
}

}  // namespace

void runChild(const ChildPlan& plan) noexcept {
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

  // 7. Close everything else the agent had open (sockets, files, other runs' pipes); only the
  //    CLOEXEC error pipe stays, and execve closes it.
  if (int err = closeAllFdsExcept(plan.error_report_fd)) reportAndExit(plan, SetupStep::kCloseOtherFds, err);

  // 8. Resource limits, after the fd work so that a small RLIMIT_NOFILE cannot break step 5.
  size_t failed_index = 0;
  if (int err = applyRlimits(*plan.rlimits, &failed_index)) {
    reportAndExit(plan, SetupStep::kSetRlimit, err, static_cast<int>(failed_index));
  }

  // 9. Unblock every signal (the parent blocked all of them around fork; the mask survives execve).
  sigset_t empty;
  sigemptyset(&empty);
  if (::sigprocmask(SIG_SETMASK, &empty, nullptr) != 0) reportAndExit(plan, SetupStep::kResetSignalMask, errno);

  // 10. Exactly this program, these arguments, this environment; no PATH search.
  ::execve(plan.executable, plan.argv, plan.envp);
  reportAndExit(plan, SetupStep::kExecve, errno);
}

}  // namespace sandbox::internal

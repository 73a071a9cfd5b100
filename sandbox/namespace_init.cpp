// PID 1 of a job's pid namespace (the namespaces tier). An ordered checklist, run in the
// clone()d child while it is still the host's root in fresh mount, pid, ipc and uts
// namespaces: build the job's root, enter a user namespace, become the job's user, then fork
// the workload and reap every process of the namespace until the workload has exited.
#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/child.h"
#include "sandbox/fds.h"
#include "sandbox/isolation.h"
#include "sandbox/mount_plan.h"
#include "sandbox/user_ns.h"

namespace sandbox::internal {

namespace {

void reportWorkloadStatus(int error_report_fd, int wait_status) {
  const SetupFailureReport report{static_cast<int32_t>(SetupStep::kWorkloadExited), 0, wait_status};
  while (::write(error_report_fd, &report, sizeof report) < 0 && errno == EINTR) {
  }
}

}  // namespace

void runNamespaceInit(const ChildPlan& plan) noexcept {
  // 1. Die with the supervising thread; a supervisor that died before this shows as EOF on
  //    the go pipe below.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) reportAndExit(plan, SetupStep::kParentDeathSignal, errno);
  if (::setsid() < 0) reportAndExit(plan, SetupStep::kNewSession, errno);

  // 2. Nothing of the agent's stays open here: the job's user can read /proc/1/fd of this
  //    process once it runs as that user. Our stdio becomes /dev/null.
  int keep[] = {plan.output_write_fd, plan.error_report_fd, plan.go_fd, plan.ready_fd, plan.netns_fd};
  if (int err = closeAllFdsExceptThese(keep, sizeof keep / sizeof keep[0])) {
    reportAndExit(plan, SetupStep::kCloseOtherFds, err);
  }
  int dev_null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (dev_null < 0) reportAndExit(plan, SetupStep::kOpenDevNull, errno);
  for (int fd = 0; fd <= 2; ++fd) {
    if (::dup2(dev_null, fd) < 0) reportAndExit(plan, SetupStep::kRedirectStdin, errno);
  }
  ::close(dev_null);

  // 3. Default dispositions. As PID 1 of the namespace, a signal without a handler that comes
  //    from inside the namespace is dropped: the job cannot kill its init.
  if (int err = resetSignalDispositions()) reportAndExit(plan, SetupStep::kResetSignalDispositions, err);

  // 4. The supervisor has put us into the job's cgroup.
  if (!waitForSupervisor(plan.go_fd)) ::_exit(kChildSetupFailedExitCode);
  if (plan.new_cgroup_namespace && ::unshare(CLONE_NEWCGROUP) != 0) {
    reportAndExit(plan, SetupStep::kNewCgroupNamespace, errno);
  }
  // The job's network: loopback and the agent's proxy listener. Joined while we are the host's
  // root (setns needs CAP_SYS_ADMIN over the namespace), and before /proc is mounted so that
  // /proc/net shows this namespace.
  if (plan.netns_fd >= 0) {
    if (::setns(plan.netns_fd, CLONE_NEWNET) != 0) reportAndExit(plan, SetupStep::kJoinNetworkNamespace, errno);
    ::close(plan.netns_fd);
  }

  // 5. The job's root, built while we are still the host's root (so every host path can be
  //    reached), then pivot_root into it.
  if (int err = dropSupplementaryGroups()) reportAndExit(plan, SetupStep::kDropGroups, err);
  size_t failed_op = 0;
  if (int err = applyMountPlan(*plan.mounts, &failed_op)) {
    reportAndExit(plan, SetupStep::kMountPlan, err, static_cast<int>(failed_op));
  }
  static const char kHostname[] = "job";
  if (::sethostname(kHostname, sizeof kHostname - 1) != 0) reportAndExit(plan, SetupStep::kSetHostname, errno);

  // 6. A user namespace of our own: the supervisor maps the job's inside ids to its host ids.
  if (::unshare(CLONE_NEWUSER) != 0) reportAndExit(plan, SetupStep::kNewUserNamespace, errno);
  const char ready = 'u';
  while (::write(plan.ready_fd, &ready, 1) < 0) {
    if (errno != EINTR) reportAndExit(plan, SetupStep::kSignalSupervisor, errno);
  }
  if (!waitForSupervisor(plan.go_fd)) ::_exit(kChildSetupFailedExitCode);
  const char* failed_call = "";
  if (int err = becomeJobUser(Isolation::kInsideUid, Isolation::kInsideGid, plan.last_capability, &failed_call)) {
    reportAndExit(plan, SetupStep::kBecomeJobUser, err);
  }
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) reportAndExit(plan, SetupStep::kNoNewPrivs, errno);

  // 7. The workload, with the ordinary checklist (own session, stdio, rlimits, seccomp, exec).
  ChildPlan workload = plan;
  workload.go_fd = -1;
  workload.supervisor_pid = 1;  // its parent is us, PID 1 of the namespace
  workload.set_job_ids = false;
  workload.landlock_fd = -1;
  const pid_t pid = ::_Fork();
  if (pid < 0) reportAndExit(plan, SetupStep::kForkWorkload, errno);
  if (pid == 0) runChild(workload);
  ::close(plan.output_write_fd);  // the supervisor sees EOF once the workload's tree closes it
  ::close(plan.go_fd);
  ::close(plan.ready_fd);

  // 8. Reap every process of the namespace (orphans are re-parented to us) until the
  //    workload itself has exited. Our exit then makes the kernel kill whatever is left, so
  //    nothing started by the job outlives it, not even a process that called setsid().
  for (;;) {
    int status = 0;
    const pid_t reaped = ::waitpid(-1, &status, __WALL);
    if (reaped == pid) {
      reportWorkloadStatus(plan.error_report_fd, status);
      ::_exit(0);
    }
    if (reaped < 0 && errno != EINTR) ::_exit(kChildSetupFailedExitCode);
  }
}

}  // namespace sandbox::internal

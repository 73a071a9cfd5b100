#include "sandbox/process_group.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <ctime>
#include <mutex>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace sandbox::internal {

int becomeChildSubreaperOnce() {
  static std::once_flag once;
  static int result = 0;
  std::call_once(once, [] { result = ::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0 ? 0 : errno; });
  return result;
}

UniqueFd openPidFd(pid_t pid) {
  return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}

void killProcessGroup(pid_t leader) {
  ::kill(-leader, SIGKILL);
  ::kill(leader, SIGKILL);
}

ChildState peekChildState(pid_t pid) {
  for (;;) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0) {
      return info.si_pid == 0 ? ChildState::kRunning : ChildState::kExited;
    }
    if (errno != EINTR) return ChildState::kLost;
  }
}

bool reapChild(pid_t pid, int* wait_status) {
  for (;;) {
    if (::waitpid(pid, wait_status, 0) == pid) return true;
    if (errno != EINTR) return false;
  }
}

bool reapGroupUntilGone(pid_t pgid, std::chrono::milliseconds budget) {
  const auto give_up_at = std::chrono::steady_clock::now() + budget;
  long nap_ns = 100'000;  // killed processes usually vanish within a millisecond
  for (;;) {
    int status;
    while (::waitpid(-pgid, &status, WNOHANG) > 0) {
    }
    // Signal 0 only checks existence. Zombies still count as members until reaped, so this
    // is true only once every member is gone for good.
    if (::kill(-pgid, 0) != 0 && errno == ESRCH) return true;
    if (std::chrono::steady_clock::now() >= give_up_at) return false;
    // Members are still dying, or their zombies are on the way to being re-parented to us.
    const timespec nap{0, nap_ns};
    ::nanosleep(&nap, nullptr);
    nap_ns = std::min(nap_ns * 2, 10'000'000L);
  }
}

}  // namespace sandbox::internal

// Killing and reaping the child's process group without ever signalling a recycled pid.
#pragma once

#include <chrono>
#include <sys/types.h>

#include "sandbox/fds.h"

namespace sandbox::internal {

// Makes this process a child subreaper (once per process): descendants orphaned by a run are
// re-parented to the agent instead of to PID 1, so reapGroupUntilGone can reap them. Without it,
// a PID 1 that does not reap (common in containers and micro-VMs) keeps every killed grandchild
// as a zombie forever. Process-wide side effect: orphans of *any* child of the agent now
// become its children. Returns 0 or errno (the runner works without it, just less cleanly).
int becomeChildSubreaperOnce();

// A pidfd becomes readable when the process exits; lets poll() notice the exit at once.
// Invalid on kernels before 5.3; the caller then notices the exit at its next poll timeout.
UniqueFd openPidFd(pid_t pid);

// SIGKILL to the process group `leader` leads and to the leader itself (in case it has not
// reached setsid yet). Only safe while `leader` is not yet reaped: the unreaped leader pins
// its pid, so the group id cannot belong to anyone else.
void killProcessGroup(pid_t leader);

enum class ChildState { kRunning, kExited, kLost };

// Has `pid` exited? Does not reap it (WNOWAIT), so the pid stays pinned for killProcessGroup.
// kLost: it was reaped behind our back (SIGCHLD set to SIG_IGN, or a waitpid(-1) elsewhere).
ChildState peekChildState(pid_t pid);

// Reaps `pid`; returns true and its wait status, or false if it was lost (see above).
bool reapChild(pid_t pid, int* wait_status);

// After the group was killed: reaps members re-parented to us and waits until no process is
// left in group `pgid`, for at most `budget` (a process stuck in uninterruptible sleep can
// take long to die). Returns true if the group is gone.
bool reapGroupUntilGone(pid_t pgid, std::chrono::milliseconds budget);

}  // namespace sandbox::internal

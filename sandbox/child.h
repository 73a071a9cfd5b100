// What the forked child does between fork and execve: an ordered checklist of setup steps.
// Everything here is async-signal-safe and allocation-free, because the parent may have other
// threads holding malloc or stdio locks at the moment of fork.
#pragma once

#include <cstdint>
#include <sys/types.h>

#include "sandbox/rlimits.h"

namespace sandbox::internal {

class MountPlan;
struct SeccompProgram;

// The checklist, in the order the child runs it. Values travel over the error pipe.
enum class SetupStep : int32_t {
  kWaitForSupervisor = 1,   // read(go): the supervisor has put us in our cgroup (and wrote id maps)
  kNewSession,                       // setsid(): own session and process group, so kill(-pgid) reaches all
  kParentDeathSignal,       // prctl(PR_SET_PDEATHSIG, SIGKILL): die with the supervising thread
  kResetSignalDispositions, // sigaction(SIG_DFL): SIG_IGN would survive execve
  kChangeDirectory,         // chdir(working_dir)
  kOpenDevNull,             // open("/dev/null") for stdin
  kRedirectStdin,           // dup2(/dev/null, 0)
  kRedirectStdout,          // dup2(pipe, 1)
  kRedirectStderr,          // dup2(pipe, 2): same pipe, so both streams merge in arrival order
  kCloseOtherFds,           // close_range(3, ~0): nothing of the agent leaks in
  kSetRlimit,               // setrlimit(...) per RlimitPlan entry
  kSetJobIds,               // landlock tier as root: setresuid/setresgid to the job's host ids
  kNoNewPrivs,              // prctl(PR_SET_NO_NEW_PRIVS, 1): no setuid or file-capability gains
  kLandlock,                // landlock_restrict_self(ruleset)
  kSeccomp,                 // prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, program)
  kResetSignalMask,         // sigprocmask(SIG_SETMASK, {}): the mask survives execve too
  kExecve,                  // execve(executable, argv, envp)
  // The namespaces tier's PID 1 (namespace_init.cpp), before it forks the workload:
  kNewCgroupNamespace = 50, // unshare(CLONE_NEWCGROUP): the job sees its own cgroup as the root
  kJoinNetworkNamespace = 60,  // setns(netns, CLONE_NEWNET): loopback and the egress proxy only
  kDropGroups,              // setgroups(0, NULL) while still the host's root
  kMountPlan,               // detail: index of the failing MountPlan op
  kSetHostname,             // sethostname("job")
  kNewUserNamespace,        // unshare(CLONE_NEWUSER)
  kSignalSupervisor,        // write(ready): asks the supervisor for the id maps
  kBecomeJobUser,           // setresuid/setresgid to the inside ids, all capabilities dropped
  kForkWorkload,            // fork() of the job's command under PID 1
  // Not a failure: PID 1 reports how the workload ended (detail: its wait status).
  kWorkloadExited = 100,
};

// Written by the child to the CLOEXEC error pipe when a step fails; EOF means execve succeeded.
struct SetupFailureReport {
  int32_t step = 0;    // SetupStep
  int32_t error = 0;   // errno
  int32_t detail = 0;  // kSetRlimit: index into the RlimitPlan; kMountPlan: op index; kWorkloadExited: wait status
};

// Everything the child needs, prepared before fork.
struct ChildPlan {
  const char* executable;
  char* const* argv;
  char* const* envp;
  const char* working_dir;
  int output_write_fd;   // >= 3
  int error_report_fd;   // >= 3, CLOEXEC
  pid_t supervisor_pid;  // getpid() of the parent, to detect that it died before PDEATHSIG was set
  const RlimitPlan* rlimits;
  int go_fd = -1;        // >= 0: wait for one byte on it first (cgroup attach); namespaces: a second one (id maps)
  // Isolation (Landlock and namespaces tiers); nullptr / -1 / false when not used.
  bool no_new_privs = false;
  bool set_job_ids = false;          // landlock tier run by root: take job_uid/job_gid
  uid_t job_uid = 0;
  gid_t job_gid = 0;
  int landlock_fd = -1;
  const SeccompProgram* seccomp = nullptr;
  // Namespaces tier only.
  const MountPlan* mounts = nullptr;
  int ready_fd = -1;                 // write end: "the user namespace exists, write its maps"
  bool new_cgroup_namespace = false;
  int netns_fd = -1;                 // >= 0: join this network namespace before the mounts
  int last_capability = 40;
};

// Runs the checklist and execs. Never returns: on failure it reports and _exit()s.
// Expects every signal to be blocked on entry (the parent blocks them around fork so that no
// handler of the agent runs in the child before the dispositions are reset).
[[noreturn]] void runChild(const ChildPlan& plan) noexcept;

// The namespaces tier: the clone()d child is PID 1 of a new pid namespace. It builds the
// job's root, enters a user namespace, drops to the job's ids, forks the workload (which runs
// runChild's checklist) and reaps every process until the workload exits; its own exit then
// kills whatever is left in the namespace. It reports the workload's wait status over the
// error pipe (kWorkloadExited). Never returns.
[[noreturn]] void runNamespaceInit(const ChildPlan& plan) noexcept;

// Exit code of a child whose setup failed (the report, not this code, is what counts).
inline constexpr int kChildSetupFailedExitCode = 127;

// Shared by both checklists. Async-signal-safe.
[[noreturn]] void reportAndExit(const ChildPlan& plan, SetupStep step, int error, int detail = 0);
int resetSignalDispositions() noexcept;        // every signal to SIG_DFL; 0 or errno
bool waitForSupervisor(int go_fd) noexcept;   // one byte, or false at EOF

}  // namespace sandbox::internal

// What the forked child does between fork and execve: an ordered checklist of setup steps.
// Everything here is async-signal-safe and allocation-free, because the parent may have other
// threads holding malloc or stdio locks at the moment of fork.
#pragma once

#include <cstdint>
#include <sys/types.h>

#include "sandbox/rlimits.h"

namespace sandbox::internal {

// The checklist, in the order the child runs it. Values travel over the error pipe.
enum class SetupStep : int32_t {
  kNewSession = 1,          // setsid(): own session and process group, so kill(-pgid) reaches all
  kParentDeathSignal,       // prctl(PR_SET_PDEATHSIG, SIGKILL): die with the supervising thread
  kResetSignalDispositions, // sigaction(SIG_DFL): SIG_IGN would survive execve
  kChangeDirectory,         // chdir(working_dir)
  kOpenDevNull,             // open("/dev/null") for stdin
  kRedirectStdin,           // dup2(/dev/null, 0)
  kRedirectStdout,          // dup2(pipe, 1)
  kRedirectStderr,          // dup2(pipe, 2): same pipe, so both streams merge in arrival order
  kCloseOtherFds,           // close_range(3, ~0): nothing of the agent leaks in
  kSetRlimit,               // setrlimit(...) per RlimitPlan entry
  kResetSignalMask,         // sigprocmask(SIG_SETMASK, {}): the mask survives execve too
  kExecve,                  // execve(executable, argv, envp)
};

// Written by the child to the CLOEXEC error pipe when a step fails; EOF means execve succeeded.
struct SetupFailureReport {
  int32_t step = 0;    // SetupStep
  int32_t error = 0;   // errno
  int32_t detail = 0;  // kSetRlimit: index into the RlimitPlan
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
};

// Runs the checklist and execs. Never returns: on failure it reports and _exit()s.
// Expects every signal to be blocked on entry (the parent blocks them around fork so that no
// handler of the agent runs in the child before the dispositions are reset).
[[noreturn]] void runChild(const ChildPlan& plan) noexcept;

// Exit code of a child whose setup failed (the report, not this code, is what counts).
inline constexpr int kChildSetupFailedExitCode = 127;

}  // namespace sandbox::internal

#include "sandbox/setup_errors.h"

#include "sandbox/mount_plan.h"

#include <cerrno>
#include <csignal>
#include <cstring>

namespace sandbox::internal {

namespace {

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string hintForChdir(int error) {
  switch (error) {
    case ENOENT: return "create the directory or point ProcessSpec::working_dir at an existing one";
    case ENOTDIR: return "ProcessSpec::working_dir (or one of its parents) is not a directory";
    case EACCES: return "every directory on the path needs search (x) permission for the agent's user";
    default: return "";
  }
}

std::string hintForExecve(int error, const ProcessSpec& spec) {
  switch (error) {
    case ENOENT:
      return "no such file (no PATH search is done: give the absolute path of an installed "
             "program); for a script, also check that its #! interpreter exists";
    case EACCES:
      return "make the file executable (chmod +x) and check that its filesystem is not mounted noexec";
    case ENOEXEC: return "the file is neither an ELF binary nor a script starting with #!";
    case ETXTBSY: return "the file is still open for writing (is it being installed right now?)";
    case E2BIG: return "the arguments plus environment are too large; pass data through a file";
    case ENOMEM:
      return spec.limits.addressSpaceBytes() != 0
                 ? "the address-space limit (Limits::addressSpaceBytes) is too small to even load "
                   "the program; raise it"
                 : "the machine is out of memory";
    case EAGAIN: return "RLIMIT_NPROC (Limits::processes) is already reached by this user";
    default: return "";
  }
}

std::string hintForSetrlimit(int error, const RlimitSetting& setting) {
  if (error == EPERM) {
    std::string hint = std::string("the value of ") + setting.limits_field +
                       " exceeds the agent's own hard limit (check `ulimit -H`; raising it needs "
                       "root or CAP_SYS_RESOURCE)";
    if (setting.resource == RLIMIT_NOFILE) hint += "; RLIMIT_NOFILE can never exceed fs.nr_open";
    return hint;
  }
  if (error == EINVAL) return std::string("invalid value for ") + setting.limits_field;
  return "";
}

std::string limitValue(rlim_t value) {
  return value == RLIM_INFINITY ? std::string("RLIM_INFINITY") : std::to_string(value);
}

}  // namespace

std::string describeSupervisorFailure(std::string_view call, int error) {
  std::string hint;
  if (error == EMFILE || error == ENFILE) {
    hint = "the agent ran out of file descriptors; raise `ulimit -n` or look for an fd leak";
  } else if (error == EAGAIN) {
    hint = "the agent's user hit its process limit (ulimit -u, cgroup pids.max, kernel.pid_max)";
  } else if (error == ENOMEM) {
    hint = "the machine is out of memory";
  }
  return describeSyscallFailure(call, error, hint);
}

std::string describeChildSetupFailure(const SetupFailureReport& report, const ProcessSpec& spec,
                                      const RlimitPlan& rlimits, const MountPlan* mounts) {
  const int error = report.error;
  constexpr const char* kNamespacesFix =
      "the namespaces tier needs the agent to run as root with CAP_SYS_ADMIN and namespaces "
      "allowed: in Docker use --cap-add SYS_ADMIN --security-opt seccomp=unconfined "
      "--security-opt apparmor=unconfined (or --privileged), in Kubernetes a securityContext "
      "with SYS_ADMIN and an Unconfined seccomp profile; check sysctl user.max_user_namespaces > 0 "
      "and kernel.unprivileged_userns_clone; or choose --sandbox=landlock";
  switch (static_cast<SetupStep>(report.step)) {
    case SetupStep::kWaitForSupervisor:
      return describeSyscallFailure("read(go pipe)", error, "");
    case SetupStep::kSetJobIds:
      return describeSyscallFailure("setresuid/setresgid(" + std::to_string(spec.isolation.hostUid()) + ", " +
                                        std::to_string(spec.isolation.hostGid()) + ")",
                                    error, "the agent must run as root to run jobs as another user");
    case SetupStep::kNoNewPrivs:
      return describeSyscallFailure("prctl(PR_SET_NO_NEW_PRIVS, 1)", error, "the kernel is older than 3.5");
    case SetupStep::kLandlock:
      return describeSyscallFailure("landlock_restrict_self(ruleset)", error,
                                    "the kernel refused the Landlock ruleset; boot with lsm=...,landlock or "
                                    "choose another --sandbox tier");
    case SetupStep::kSeccomp:
      return describeSyscallFailure("prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)", error,
                                    error == EINVAL ? "the kernel lacks CONFIG_SECCOMP_FILTER" : "");
    case SetupStep::kNewCgroupNamespace:
      return describeSyscallFailure("unshare(CLONE_NEWCGROUP)", error, kNamespacesFix);
    case SetupStep::kJoinNetworkNamespace:
      return describeSyscallFailure("setns(netns, CLONE_NEWNET)", error, kNamespacesFix);
    case SetupStep::kDropGroups:
      return describeSyscallFailure("setgroups(0, NULL)", error, kNamespacesFix);
    case SetupStep::kMountPlan: {
      if (!mounts) break;
      const size_t index = static_cast<size_t>(report.detail);
      std::string hint = mounts->hint(index, error);
      return describeSyscallFailure(mounts->describe(index), error, hint.empty() ? kNamespacesFix : hint);
    }
    case SetupStep::kSetHostname:
      return describeSyscallFailure("sethostname(\"job\")", error, kNamespacesFix);
    case SetupStep::kNewUserNamespace:
      return describeSyscallFailure("unshare(CLONE_NEWUSER)", error,
                                    error == ENOSPC ? "user.max_user_namespaces is reached or 0; raise it "
                                                      "(sysctl -w user.max_user_namespaces=10000)"
                                                    : kNamespacesFix);
    case SetupStep::kSignalSupervisor:
      return describeSyscallFailure("write(ready pipe)", error, "");
    case SetupStep::kBecomeJobUser:
      return describeSyscallFailure("setresuid/setresgid/capset in the job's user namespace", error, "");
    case SetupStep::kForkWorkload:
      return describeSyscallFailure("fork() of the workload under PID 1", error,
                                    error == EAGAIN ? "the job's pids limit is too small to start it" : "");
    case SetupStep::kWorkloadExited:
      break;
    case SetupStep::kNewSession:
      return describeSyscallFailure("setsid()", error, "");
    case SetupStep::kParentDeathSignal:
      return describeSyscallFailure("prctl(PR_SET_PDEATHSIG, SIGKILL)", error, "");
    case SetupStep::kResetSignalDispositions:
      return describeSyscallFailure("sigaction(SIG_DFL)", error, "");
    case SetupStep::kChangeDirectory:
      return describeSyscallFailure("chdir(" + quoted(spec.working_dir) + ")", error,
                                    hintForChdir(error));
    case SetupStep::kOpenDevNull:
      return describeSyscallFailure("open(\"/dev/null\", O_RDONLY)", error,
                                    "the runner needs /dev/null for stdin; create it with "
                                    "`mknod -m 666 /dev/null c 1 3`");
    case SetupStep::kRedirectStdin:
      return describeSyscallFailure("dup2(/dev/null, 0)", error, "");
    case SetupStep::kRedirectStdout:
      return describeSyscallFailure("dup2(output pipe, 1)", error, "");
    case SetupStep::kRedirectStderr:
      return describeSyscallFailure("dup2(output pipe, 2)", error, "");
    case SetupStep::kCloseOtherFds:
      return describeSyscallFailure("close_range(3, ~0U)", error, "");
    case SetupStep::kSetRlimit: {
      if (report.detail < 0 || static_cast<size_t>(report.detail) >= rlimits.size()) break;
      const RlimitSetting& setting = rlimits[static_cast<size_t>(report.detail)];
      return describeSyscallFailure(std::string("setrlimit(") + setting.name + ", {soft " +
                                        limitValue(setting.soft) + ", hard " +
                                        limitValue(setting.hard) + "})",
                                    error, hintForSetrlimit(error, setting));
    }
    case SetupStep::kResetSignalMask:
      return describeSyscallFailure("sigprocmask(SIG_SETMASK, {})", error, "");
    case SetupStep::kExecve:
      return describeSyscallFailure("execve(" + quoted(spec.executable) + ")", error,
                                    hintForExecve(error, spec));
  }
  return "child setup failed at unknown step " + std::to_string(report.step) + ": " +
         errnoText(error);
}

std::string describeSignal(int signal, const Limits& limits) {
  const char* abbrev = ::sigabbrev_np(signal);
  const char* description = ::sigdescr_np(signal);
  std::string text = abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(signal);
  if (description) text += std::string(" (") + description + ")";
  if (signal == SIGXCPU && limits.cpuSeconds() != 0) {
    text += ": CPU time limit Limits::cpuSeconds = " + std::to_string(limits.cpuSeconds()) + " s reached";
  } else if (signal == SIGXFSZ && limits.fileSizeBytes() != 0) {
    text += ": file size limit Limits::fileSizeBytes = " + std::to_string(limits.fileSizeBytes()) +
            " bytes reached";
  } else if (signal == SIGKILL) {
    text += " not sent by the runner: the OOM killer, the CPU hard limit or another process";
  }
  return text;
}

}  // namespace sandbox::internal

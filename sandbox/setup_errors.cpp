#include "sandbox/setup_errors.h"

#include <cerrno>
#include <csignal>
#include <cstring>

namespace sandbox::internal {

namespace {

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string errnoText(int error) {
  // strerrordesc_np/strerrorname_np return static strings: thread-safe, unlike strerror.
  const char* description = ::strerrordesc_np(error);
  const char* name = ::strerrorname_np(error);
  std::string text = description ? description : "Unknown error " + std::to_string(error);
  if (name) text += std::string(" (") + name + ")";
  return text;
}

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

std::string describeSyscallFailure(std::string_view call, int error, std::string_view hint) {
  std::string text = std::string(call) + " failed: " + errnoText(error);
  if (!hint.empty()) text += ". Fix: " + std::string(hint);
  return text;
}

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
                                      const RlimitPlan& rlimits) {
  const int error = report.error;
  switch (static_cast<SetupStep>(report.step)) {
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

#include "sandbox/landlock.h"

#include "sandbox/syscall_error.h"

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace sandbox::internal {

namespace {

// The rights that apply to a file (the rest only to what is beneath a directory).
constexpr uint64_t kFileRights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                                 LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |
                                 LANDLOCK_ACCESS_FS_IOCTL_DEV;
constexpr uint64_t kReadOnlyRights =
    LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
constexpr uint64_t kReadWriteFileRights = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
                                          LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV;

struct Probe {
  int abi = 0;
  int error = 0;  // errno of the failed probe when abi is 0
};

const Probe& probe() {
  static const Probe result = [] {
    Probe p;
    const long version = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (version < 0) {
      p.error = errno;
    } else {
      p.abi = static_cast<int>(version);
    }
    return p;
  }();
  return result;
}


std::string hex(uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
  return text;
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

std::string unavailableFix(int error) {
  switch (error) {
    case ENOSYS:
      return "the kernel has no Landlock (it needs Linux >= 5.13 built with "
             "CONFIG_SECURITY_LANDLOCK=y); use a newer kernel or --sandbox=namespaces";
    case EOPNOTSUPP:
      return "Landlock is built into the kernel but not enabled at boot: add landlock to the lsm= "
             "kernel parameter (see CONFIG_LSM); or use --sandbox=namespaces";
    case EPERM:
      return "a seccomp profile (an old container runtime's default) refuses the landlock syscalls; "
             "update the runtime or allow landlock_create_ruleset, landlock_add_rule and "
             "landlock_restrict_self; or use --sandbox=namespaces";
    default:
      return "use --sandbox=namespaces";
  }
}

std::string openFix(int error) {
  switch (error) {
    case EACCES:
      return "the agent needs search (x) permission on every directory of the path; or remove the "
             "path from the sandbox's read-only or writable list";
    case ELOOP: return "the path has too many levels of symbolic links; list the real path instead";
    case EMFILE:
    case ENFILE: return "the agent ran out of file descriptors; raise `ulimit -n` or look for an fd leak";
    default: return "";
  }
}

// Adds one path-beneath rule; "" or the problem. A path that does not exist is skipped.
std::string addPathRule(int ruleset_fd, const std::string& path, uint64_t directory_rights,
                        uint64_t file_rights, uint64_t handled) {
  UniqueFd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!fd.valid()) {
    const int error = errno;
    if (error == ENOENT || error == ENOTDIR) return "";
    return describeSyscallFailure("open(" + quoted(path) + ", O_PATH|O_CLOEXEC) for a Landlock rule", error, openFix(error));
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) {
    return describeSyscallFailure("fstat(open(" + quoted(path) + ", O_PATH)) for a Landlock rule", errno, "");
  }
  landlock_path_beneath_attr rule{};
  rule.allowed_access = (S_ISDIR(info.st_mode) ? directory_rights : file_rights) & handled;
  rule.parent_fd = fd.get();
  if (rule.allowed_access == 0) return "";
  if (::syscall(SYS_landlock_add_rule, ruleset_fd, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) != 0) {
    const int error = errno;
    return describeSyscallFailure("landlock_add_rule(LANDLOCK_RULE_PATH_BENEATH, {allowed_access " +
                       hex(rule.allowed_access) + ", parent_fd " + quoted(path) + "}, 0)",
                   error,
                   error == EINVAL || error == ENOMSG
                       ? "the sandbox asked for rights the path cannot have; report this as a bug"
                       : "");
  }
  return "";
}

}  // namespace

size_t landlockRulesetAttrSize(int abi) {
  if (abi >= 6) return sizeof(LandlockRulesetAttr);
  if (abi >= 4) return offsetof(LandlockRulesetAttr, scoped);
  return offsetof(LandlockRulesetAttr, handled_access_net);
}

uint64_t landlockHandledFsAccess(int abi) {
  if (abi < 1) return 0;
  uint64_t rights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
                    LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
                    LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |
                    LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |
                    LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
                    LANDLOCK_ACCESS_FS_MAKE_SYM;
  if (abi >= 2) rights |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
  if (abi >= 5) rights |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
  return rights;
}

int landlockAbi() { return probe().abi; }

LandlockRuleset buildLandlockRuleset(const LandlockPolicy& policy) {
  LandlockRuleset ruleset;
  const Probe& kernel = probe();
  ruleset.abi = kernel.abi;
  if (kernel.abi < 1) {
    ruleset.problem = "Landlock is not available: " +
                      describeSyscallFailure("landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)",
                              kernel.error, unavailableFix(kernel.error));
    return ruleset;
  }

  LandlockRulesetAttr attr;
  attr.handled_access_fs = landlockHandledFsAccess(kernel.abi);
  if (kernel.abi >= 4 && policy.restrict_tcp) {
    attr.handled_access_net = LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP;
  }
  if (kernel.abi >= 6) {
    if (policy.scope_signals) attr.scoped |= LANDLOCK_SCOPE_SIGNAL;
    if (policy.scope_abstract_unix) attr.scoped |= LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET;
  }
  const size_t attr_size = landlockRulesetAttrSize(kernel.abi);
  UniqueFd fd(static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0)));
  if (!fd.valid()) {
    const int error = errno;
    ruleset.problem = describeSyscallFailure("landlock_create_ruleset({handled_access_fs " + hex(attr.handled_access_fs) +
                                  ", scoped " + hex(attr.scoped) + "}, " + std::to_string(attr_size) +
                                  ", 0) (Landlock ABI " + std::to_string(kernel.abi) + ")",
                              error,
                              error == EMFILE || error == ENFILE
                                  ? "the agent ran out of file descriptors; raise `ulimit -n`"
                                  : "");
    return ruleset;
  }
  // The kernel always returns the ruleset fd with O_CLOEXEC: it does not leak into the job.

  const uint64_t handled = attr.handled_access_fs;
  for (const std::string& path : policy.read_only) {
    if (auto problem = addPathRule(fd.get(), path, kReadOnlyRights, kReadOnlyRights & kFileRights, handled);
        !problem.empty()) {
      ruleset.problem = std::move(problem);
      return ruleset;
    }
  }
  for (const std::string& path : policy.read_write) {
    if (auto problem = addPathRule(fd.get(), path, handled, kReadWriteFileRights, handled); !problem.empty()) {
      ruleset.problem = std::move(problem);
      return ruleset;
    }
  }

  if (attr.handled_access_net) {
    for (uint16_t port : policy.tcp_connect_ports) {
      landlock_net_port_attr rule{};
      rule.allowed_access = LANDLOCK_ACCESS_NET_CONNECT_TCP;
      rule.port = port;
      if (::syscall(SYS_landlock_add_rule, fd.get(), LANDLOCK_RULE_NET_PORT, &rule, 0) != 0) {
        ruleset.problem = describeSyscallFailure("landlock_add_rule(LANDLOCK_RULE_NET_PORT, {connect, port " +
                                      std::to_string(port) + "})",
                                  errno, "");
        return ruleset;
      }
    }
  }

  ruleset.fd = std::move(fd);
  ruleset.facilities.push_back("landlock_fs(abi " + std::to_string(kernel.abi) + ")");
  if (attr.handled_access_net) ruleset.facilities.push_back("landlock_tcp_ports");
  if (handled & LANDLOCK_ACCESS_FS_TRUNCATE) ruleset.facilities.push_back("landlock_truncate");
  if (handled & LANDLOCK_ACCESS_FS_IOCTL_DEV) ruleset.facilities.push_back("landlock_ioctl_dev");
  if (attr.scoped & LANDLOCK_SCOPE_SIGNAL) ruleset.facilities.push_back("landlock_signal_scope");
  if (attr.scoped & LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET) {
    ruleset.facilities.push_back("landlock_abstract_unix_scope");
  }
  return ruleset;
}

int restrictSelfWithLandlock(int ruleset_fd) noexcept {
  if (::syscall(SYS_landlock_restrict_self, ruleset_fd, 0) != 0) return errno;
  return 0;
}

}  // namespace sandbox::internal

// Landlock: the filesystem allowlist of the landlock tier (and, from ABI 6, signal and
// abstract-unix-socket scoping). The ruleset is built in the parent before fork; the child only
// calls landlock_restrict_self on it, after no_new_privs and before execve.
#pragma once

#include <cstddef>
#include <cstdint>
#include <linux/landlock.h>
#include <string>
#include <sys/syscall.h>
#include <vector>

#include "sandbox/fds.h"

// Debian 12's <linux/landlock.h> (linux-libc-dev 6.1) stops at ABI 2. The values below are the
// kernel's UAPI; each is defined only where the installed header lacks it.
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444  // the same number on every architecture but alpha
#endif
#ifndef SYS_landlock_add_rule
#define SYS_landlock_add_rule 445
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif
#ifndef LANDLOCK_CREATE_RULESET_VERSION
#define LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#endif
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)  // ABI 2
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)  // ABI 3
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)  // ABI 5
#endif
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP  // ABI 4; the header that has these also has the struct and rule type
#define LANDLOCK_ACCESS_NET_BIND_TCP (1ULL << 0)
#define LANDLOCK_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#define LANDLOCK_RULE_NET_PORT 2  // an enumerator of enum landlock_rule_type in newer headers
struct landlock_net_port_attr {
  __u64 allowed_access;
  __u64 port;  // host byte order
};
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)  // ABI 6
#endif
#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)  // ABI 6
#endif

namespace sandbox::internal {

// struct landlock_ruleset_attr as of ABI 6. The kernel takes the size it is given: pass
// landlockRulesetAttrSize(abi) so that an older kernel is never shown fields it does not know.
struct LandlockRulesetAttr {
  uint64_t handled_access_fs = 0;   // ABI 1
  uint64_t handled_access_net = 0;  // ABI 4
  uint64_t scoped = 0;              // ABI 6
};
size_t landlockRulesetAttrSize(int abi);

// Every filesystem access right the given ABI knows (what a ruleset for it should handle).
uint64_t landlockHandledFsAccess(int abi);

// The highest Landlock ABI of the running kernel, probed once (thread-safe) with
// landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION); 0 if unavailable (the
// kernel lacks it (ENOSYS), it is not enabled at boot (EOPNOTSUPP), or a seccomp profile of a
// container refuses the call).
int landlockAbi();

struct LandlockPolicy {
  // Read and execute files, list directories. A directory covers everything beneath it.
  std::vector<std::string> read_only;
  // Directories: every right the ruleset handles (create, remove, rename across directories,
  // write, truncate, execute, device ioctls). Files (e.g. /dev/null): read, write, truncate and
  // device ioctls.
  std::vector<std::string> read_write;
  bool scope_signals = true;        // ABI >= 6: no signals to processes outside the domain
  bool scope_abstract_unix = true;  // ABI >= 6: no connecting to abstract unix sockets outside it
  // ABI >= 4, when `restrict_tcp`: TCP connect() only to these ports, and no TCP bind() at all.
  bool restrict_tcp = false;
  std::vector<uint16_t> tcp_connect_ports;
};

struct LandlockRuleset {
  UniqueFd fd;  // O_CLOEXEC: the child restricts itself before execve. Invalid if problem is set.
  int abi = 0;
  // What this ruleset enforces, for reports: "landlock_fs(abi 7)", "landlock_truncate" (ABI 3),
  // "landlock_ioctl_dev" (ABI 5), "landlock_tcp_ports" (ABI 4, when asked), "landlock_signal_scope",
  // "landlock_abstract_unix_scope" (ABI 6, when the policy asks for them).
  std::vector<std::string> facilities;
  std::string problem;  // names the syscall, the path, errno and a fix
};

// Built in the parent before fork: opens each path with O_PATH|O_CLOEXEC and adds a path-beneath
// rule with the rights of its list that apply (file rights only, for a non-directory). Handles
// every filesystem right the ABI knows, so what no rule grants is denied. TCP is handled only
// when the policy asks (restrict_tcp) and the ABI is 4 or later. A path that does not exist is
// skipped.
LandlockRuleset buildLandlockRuleset(const LandlockPolicy& policy);

// Async-signal-safe, in the child after prctl(PR_SET_NO_NEW_PRIVS, 1) (without it, or
// CAP_SYS_ADMIN, the kernel answers EPERM): landlock_restrict_self(ruleset_fd, 0). Returns 0 or errno.
int restrictSelfWithLandlock(int ruleset_fd) noexcept;

}  // namespace sandbox::internal

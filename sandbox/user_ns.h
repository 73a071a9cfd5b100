// The user namespace of the namespaces tier and the ids a job runs as. The supervisor writes
// the id maps of the job's namespace (it has CAP_SETUID where the job's ids live); the child
// then takes the inside ids and gives up every capability.
#pragma once

#include <string>
#include <sys/types.h>

namespace sandbox::internal {

// Supervisor side: maps Isolation::kInsideUid/Gid of `pid`'s user namespace to the host ids.
// Returns 0 or errno; `what` names the file that failed.
int writeIdMaps(pid_t pid, uid_t host_uid, gid_t host_gid, std::string& what);

// Highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap), read before fork.
int lastCapability();

// Child side, async-signal-safe: setgroups(0, NULL) as a raw syscall. 0 or errno.
int dropSupplementaryGroups() noexcept;

// Child side, async-signal-safe. Takes `uid`/`gid` (and no supplementary groups), then empties
// the bounding, ambient, effective, permitted and inheritable sets. Returns 0 or errno, and in
// *failed_call the name of the call that failed.
int becomeJobUser(uid_t uid, gid_t gid, int last_capability, const char** failed_call) noexcept;

}  // namespace sandbox::internal

// What a run may see and use: the tier that isolates it, the filesystem view, the id it runs
// as, and its cgroup limits. Built by the caller per run; runProcess turns it into kernel
// calls (namespaces: mount_plan, user_ids, pid_init; landlock: landlock; both: seccomp, cgroup).
#pragma once

#include <cstdint>
#include <utility>
#include <string>
#include <sys/types.h>
#include <vector>

namespace sandbox {

enum class Tier {
  kNone,        // the process runner alone: own session, clean environment, rlimits
  kLandlock,    // + Landlock filesystem allowlist (and signal scoping), seccomp, no_new_privs, job uid
  kNamespaces,  // + user, mount, pid, ipc, uts and cgroup namespaces with a fresh root
};

const char* tierName(Tier tier);

// The host paths Node, npm and the CLI need read-only: system libraries and binaries, the
// dynamic loader's cache, CA certificates, name resolution files. Not the rest of /etc.
std::vector<std::string> systemReadOnlyPaths();

// The filesystem a run sees. In the namespaces tier this is literally all there is (a fresh
// tmpfs root holding these mounts); in the Landlock tier the same host paths are the allowlist
// and `writable` binds are used at their host paths (Landlock cannot move a path).
struct FilesystemView {
  struct Bind {
    std::string host;    // absolute host path
    std::string inside;  // absolute path in the job's root (namespaces tier only)
  };
  // Exposed read-only at the same path: system libraries, the toolchain, CA certificates.
  // A path that does not exist on the host is skipped; a symlink (merged-/usr's /bin) is
  // recreated as the same symlink.
  std::vector<std::string> read_only;
  // Exposed read-write: the job's own folder.
  std::vector<Bind> writable;
  // Read-only lower layer + private upper layer, merged at `inside` (namespaces tier): the
  // shared npm cache, which a job may read but never change for the next job.
  struct Overlay {
    std::string lower, upper, work, inside;
  };
  std::vector<Overlay> overlays;
  // A fresh /tmp of this size when no writable bind provides /tmp (0 = 64 MiB).
  uint64_t tmp_bytes = 0;
  // Contents of /etc/passwd and /etc/group in the job's root (namespaces tier); empty = a
  // single "job" entry for the job's inside ids.
  std::string etc_passwd;
  std::string etc_group;
};

// A small builder for the isolation of one run.
class Isolation {
 public:
  Isolation& tier(Tier v) { tier_ = v; return *this; }
  Isolation& filesystem(FilesystemView v) { fs_ = std::move(v); return *this; }
  // The host ids the job runs as when the agent is root (the namespaces tier maps them to
  // kInsideUid/kInsideGid). Ignored when the agent is not root: the job keeps the agent's ids.
  Isolation& hostIds(uid_t uid, gid_t gid) { host_uid_ = uid; host_gid_ = gid; return *this; }
  // Per-run cgroup limits; 0 = unlimited. Applied where a cgroup hierarchy is writable.
  Isolation& memoryBytes(uint64_t v) { memory_bytes_ = v; return *this; }
  Isolation& maxProcesses(uint64_t v) { max_processes_ = v; return *this; }
  // Landlock tier, ABI >= 4: TCP connect() only to these ports, no TCP bind(). Landlock
  // filters by port, not by address.
  Isolation& tcpConnectPorts(std::vector<uint16_t> v) { tcp_ports_ = std::move(v); restrict_tcp_ = true; return *this; }
  // Namespaces tier: the run joins this network namespace (sandbox/net_ns.h) instead of the
  // agent's. Not owned: the caller keeps it open until the run has started. -1 = the agent's.
  Isolation& networkNamespace(int netns_fd) { netns_fd_ = netns_fd; return *this; }

  Tier tier() const { return tier_; }
  const FilesystemView& filesystem() const { return fs_; }
  uid_t hostUid() const { return host_uid_; }
  gid_t hostGid() const { return host_gid_; }
  uint64_t memoryBytes() const { return memory_bytes_; }
  uint64_t maxProcesses() const { return max_processes_; }
  bool restrictsTcp() const { return restrict_tcp_; }
  const std::vector<uint16_t>& tcpConnectPorts() const { return tcp_ports_; }
  int networkNamespace() const { return netns_fd_; }

  // The ids the job has inside its user namespace (what `id` prints in a job).
  static constexpr uid_t kInsideUid = 1000;
  static constexpr gid_t kInsideGid = 1000;

 private:
  Tier tier_ = Tier::kNone;
  FilesystemView fs_;
  uid_t host_uid_ = 60000;
  gid_t host_gid_ = 60000;
  uint64_t memory_bytes_ = 0;
  uint64_t max_processes_ = 0;
  bool restrict_tcp_ = false;
  std::vector<uint16_t> tcp_ports_;
  int netns_fd_ = -1;
};

}  // namespace sandbox

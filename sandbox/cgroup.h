// Per-run cgroups: a memory limit the kernel enforces with its OOM killer inside the run's
// group, a process-count limit that makes fork() fail with EAGAIN, usage counters for the
// report, and a kill that reaches every process of the run (setsid() and double forks cannot
// escape a cgroup). Works on cgroup v2 (memory and pids delegated to a subtree the agent can
// write) and on cgroup v1 (per-controller memory and pids hierarchies, e.g. a hybrid host).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace sandbox::internal {

struct CgroupLimits {
  uint64_t memory_bytes = 0;   // 0 = no memory limit
  uint64_t max_processes = 0;  // 0 = no limit on processes (and threads)
};

// What this host offers, probed once per process.
struct CgroupSupport {
  enum class Kind { kNone, kV1, kV2 } kind = Kind::kNone;
  // "cgroup_v1_memory", "cgroup_v1_memsw" (swap counted in the memory limit), "cgroup_v1_pids";
  // "cgroup_v2_memory", "cgroup_v2_swap" (memory.swap.max present), "cgroup_v2_pids",
  // "cgroup_v2_kill" (cgroup.kill present).
  std::vector<std::string> facilities;
  // When kNone, why; when a controller is missing, why that one is. Names the file, the errno
  // and a fix. Empty when everything is there.
  std::string unavailable_reason;
  // The agent's parent groups for runs ("<agent's own group>/deploy-agent"), one per controller;
  // empty when that controller is unavailable. On v2 both are the same directory.
  std::string memory_base;
  std::string pids_base;
  // v2 only: when the agent's own group held processes, the agent moved itself into this leaf
  // ("<own>/agent") so that controllers could be enabled for its siblings. Empty otherwise.
  std::string agent_leaf;

  bool has(std::string_view facility) const;
};

// Probes on first call (thread-safe; later calls return the same object). Side effects of the
// first call: creates the "deploy-agent" base groups, and on v2 may move the agent into a leaf
// group of its own cgroup (see agent_leaf). Call it at start-up, before the agent spawns
// anything: on v2 a child of the agent still in the agent's group makes the set-up fail.
const CgroupSupport& cgroupSupport();

// One run's cgroup(s): <base>/<name> in each available controller.
class RunCgroup {
 public:
  // Makes the groups and sets the limits (v1: memory.limit_in_bytes, memory.memsw.limit_in_bytes
  // when present, oom_kill_disable 0, pids.max; v2: memory.max, memory.swap.max 0 when present,
  // pids.max). `name` is one path component of [A-Za-z0-9._:@-], not starting with '.', and
  // must not be in use. A limit whose controller is unavailable is a failure, not ignored: the
  // caller decides the degrade (check cgroupSupport().has(...) and pass 0). A group is made
  // in every available controller even for a 0 limit: killAll and usage need it. A base group
  // removed since the probe (by a clean-up script) is made again.
  // On failure returns null and sets `problem` (names the file, the errno and a fix).
  static std::unique_ptr<RunCgroup> create(const std::string& name, const CgroupLimits& limits,
                                           std::string& problem);

  RunCgroup(const RunCgroup&) = delete;
  RunCgroup& operator=(const RunCgroup&) = delete;
  ~RunCgroup();  // destroy(); never throws

  // Moves `pid` (all its threads) into every group (cgroup.procs). 0 or errno; on error the
  // process may already be in some of the groups. Called by the parent while the child waits.
  int attach(pid_t pid);

  // Text for a failed attach: "write(\"<dir>/cgroup.procs\", \"<pid>\") failed: ... Fix: ...".
  std::string describeAttachFailure(pid_t pid, int error) const;

  struct Usage {
    uint64_t oom_kills = 0;          // processes the kernel OOM-killed for this group's limit
    uint64_t pids_limit_hits = 0;    // forks refused because pids.max was reached
    uint64_t memory_peak_bytes = 0;  // 0 when the kernel does not report it
  };
  // v1: memory.oom_control "oom_kill", memory.max_usage_in_bytes, pids.events "max";
  // v2: memory.events "oom_kill", memory.peak, pids.events "max". Missing files count as 0.
  Usage usage() const;

  // SIGKILLs every process in the groups and waits (up to about 5 s) until none is left.
  // v2: cgroup.kill when present. Otherwise rounds of: read cgroup.procs, pidfd_open each pid,
  // re-read cgroup.procs, signal the pidfds still listed (never a recycled pid). Returns true
  // when the groups are empty.
  bool killAll();

  // killAll, then rmdir each group (retrying briefly on EBUSY while the processes exit).
  // Returns false and sets `problem` when a group could not be removed. Idempotent.
  bool destroy(std::string& problem);

  // The groups' directories, e.g. {"/sys/fs/cgroup/memory/.../deploy-agent/<name>",
  // "/sys/fs/cgroup/pids/deploy-agent/<name>"} on v1, one directory on v2.
  const std::vector<std::string>& directories() const { return dirs_; }

 private:
  RunCgroup() = default;
  std::vector<int> listProcesses() const;

  CgroupSupport::Kind kind_ = CgroupSupport::Kind::kNone;
  std::string memory_dir_;  // empty when memory is unavailable
  std::string pids_dir_;    // empty when pids is unavailable
  std::vector<std::string> dirs_;     // distinct directories, creation order
  std::vector<std::string> pending_;  // those not removed yet
  std::string attach_failed_dir_;
};

// Exposed for tests. Where this process's group of one hierarchy is in the filesystem, from
// the text of /proc/self/mountinfo and /proc/self/cgroup. `controller` is a v1 controller
// ("memory", "pids") or "" for the v2 unified hierarchy. Returns false and sets `problem`
// when that hierarchy is not mounted or the mount does not show this process's group.
bool locateOwnCgroup(std::string_view mountinfo, std::string_view proc_self_cgroup,
                     std::string_view controller, std::string& dir, std::string& problem);

}  // namespace sandbox::internal

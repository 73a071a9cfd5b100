// Runs one untrusted command (npm, the Convex CLI) as a child process tree with an
// environment built from nothing, its own process group, resource limits and a wall-clock
// deadline, isolated as ProcessSpec::isolation says (sandbox/isolation.h).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/isolation.h"

namespace sandbox {

// Small builder for the limits of one run; zero means "no limit" for every field.
class Limits {
 public:
  Limits& wallTime(std::chrono::milliseconds v) { wall_time_ = v; return *this; }
  Limits& cpuSeconds(uint64_t v) { cpu_seconds_ = v; return *this; }
  Limits& addressSpaceBytes(uint64_t v) { address_space_bytes_ = v; return *this; }
  Limits& fileSizeBytes(uint64_t v) { file_size_bytes_ = v; return *this; }
  Limits& openFiles(uint64_t v) { open_files_ = v; return *this; }
  // RLIMIT_NPROC: counts every process of the real user id, not just this run's, and the
  // kernel does not enforce it for root. A real per-run bound needs a cgroup (pids.max).
  Limits& processes(uint64_t v) { processes_ = v; return *this; }
  // Output beyond this many bytes is dropped (the run continues) and RunResult::output_truncated is set.
  Limits& outputBytes(uint64_t v) { output_bytes_ = v; return *this; }

  std::chrono::milliseconds wallTime() const { return wall_time_; }
  uint64_t cpuSeconds() const { return cpu_seconds_; }
  uint64_t addressSpaceBytes() const { return address_space_bytes_; }
  uint64_t fileSizeBytes() const { return file_size_bytes_; }
  uint64_t openFiles() const { return open_files_; }
  uint64_t processes() const { return processes_; }
  uint64_t outputBytes() const { return output_bytes_; }

 private:
  std::chrono::milliseconds wall_time_{0};
  uint64_t cpu_seconds_ = 0;
  uint64_t address_space_bytes_ = 0;
  uint64_t file_size_bytes_ = 0;
  uint64_t open_files_ = 0;
  uint64_t processes_ = 0;
  uint64_t output_bytes_ = 0;
};

struct ProcessSpec {
  std::string executable;               // absolute path; no PATH search is done
  std::vector<std::string> args;        // argv[1..]; argv[0] is the executable
  std::map<std::string, std::string> env;  // the complete environment; nothing is inherited
  std::string working_dir;              // must exist (in the namespaces tier: inside the job's root)
  Limits limits;
  Isolation isolation;                  // default: Tier::kNone
};

enum class Status {
  kOk,              // exited with code 0
  kExitedNonZero,   // exited with a non-zero code
  kSignaled,        // killed by a signal it did not get from us
  kTimedOut,        // wall-clock deadline passed; the whole process group was killed
  kCancelled,       // the cancel flag was raised; the whole process group was killed
  kSetupFailed,     // could not be started (fork, pipe, chdir, exec...): reason names the call
};

const char* statusName(Status s);

// First cause wins: a run that timed out and was then killed by SIGKILL is kTimedOut.
struct RunResult {
  Status status = Status::kSetupFailed;
  std::string reason;        // human readable; for kSetupFailed names the syscall, its argument and errno
  int exit_code = -1;        // valid for kOk / kExitedNonZero
  int signal = 0;            // valid for kSignaled (and the signal we sent for kTimedOut/kCancelled)
  bool output_truncated = false;
  std::chrono::milliseconds wall_time{0};
  // Set when the run's cgroup says a limit was hit: "memory" (an OOM kill in the group) or
  // "processes" (a fork refused at pids.max). The status still says how the process ended.
  std::string limit_exceeded;
};

// Receives the child's stdout and stderr, merged in arrival order, in chunks.
using OutputSink = std::function<void(std::string_view chunk)>;

// Blocks until the process and every process in its group has gone. Never throws.
// Thread-safe: runs may proceed concurrently from several threads.
//
// Process-wide effects the rest of the agent should know about:
//  - The first call makes the agent a child subreaper (PR_SET_CHILD_SUBREAPER): descendants
//    orphaned by a run are re-parented to the agent, so that the run can reap its killed
//    group. Orphans of other children of the agent now come to it too.
//  - Leave SIGCHLD at SIG_DFL and never waitpid(-1) / wait(): either steals the exit status
//    (the run then reports kSignaled with an explanation).
//  - PR_SET_PDEATHSIG ties the child to the calling thread: if that thread dies, the child is
//    killed (it cannot happen while runProcess blocks, but don't run it on a thread that is
//    torn down underneath it).
// Tier kNone and kLandlock: a descendant that leaves the process group (setsid/setpgid) is
// killed only through the run's cgroup, where one is writable; otherwise only its hold on the
// output pipe is cut off. Tier kNamespaces: the run is PID 1 of its own pid namespace, and
// when the command exits everything left in the namespace dies with it.
RunResult runProcess(const ProcessSpec& spec, const OutputSink& sink,
                     const std::atomic<bool>* cancel = nullptr);

}  // namespace sandbox

// runProcess: prepare everything, fork, supervise (output, deadline, cancel), then kill and
// reap the whole process group. The child side lives in child.cpp.
#include "sandbox/process.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <exception>
#include <memory>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/cgroup.h"
#include "sandbox/child.h"
#include "sandbox/exec_image.h"
#include "sandbox/fds.h"
#include "sandbox/landlock.h"
#include "sandbox/mount_plan.h"
#include "sandbox/output_pump.h"
#include "sandbox/process_group.h"
#include "sandbox/rlimits.h"
#include "sandbox/seccomp.h"
#include "sandbox/setup_errors.h"
#include "sandbox/user_ns.h"

namespace sandbox {

const char* statusName(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kExitedNonZero: return "exited_non_zero";
    case Status::kSignaled: return "signaled";
    case Status::kTimedOut: return "timed_out";
    case Status::kCancelled: return "cancelled";
    case Status::kSetupFailed: return "setup_failed";
  }
  return "unknown";
}

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using namespace sandbox::internal;

// The cancel flag must be noticed within this time, and without a pidfd this is also how
// late we may notice the child's exit.
constexpr milliseconds kMaxPollInterval{100};
// How long killed group members may take to disappear before we stop waiting for them.
constexpr milliseconds kGroupExitBudget{2000};

milliseconds elapsedSince(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
}

// Kills and reaps the child if we leave runProcess early (an exception after fork), so that
// nothing outlives the call.
class ChildGuard {
 public:
  explicit ChildGuard(pid_t pid) : pid_(pid) {}
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;
  ~ChildGuard() {
    if (pid_ <= 0) return;
    killProcessGroup(pid_);
    int status;
    reapChild(pid_, &status);
  }
  void release() { pid_ = -1; }

 private:
  pid_t pid_;
};

// Blocks every signal in the calling thread for its lifetime: a fork inside then starts the
// child with all signals blocked, so no agent signal handler can run in the child before it
// resets the dispositions.
class AllSignalsBlocked {
 public:
  AllSignalsBlocked() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous_);
  }
  ~AllSignalsBlocked() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
  AllSignalsBlocked(const AllSignalsBlocked&) = delete;
  AllSignalsBlocked& operator=(const AllSignalsBlocked&) = delete;

 private:
  sigset_t previous_;
};

// The namespaces tier mounts each job's root tmpfs on this directory, inside the job's own
// mount namespace: one empty directory serves every concurrent run.
std::string jobRootMountpoint(std::string& problem) {
  static const std::string path = "/tmp/.deploy-agent-root-" + std::to_string(::geteuid());
  ::mkdir(path.c_str(), 0700);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid()) {
    problem = "the namespaces tier's mount point " + path +
              " is not a directory owned by the agent's user. Fix: remove it and retry";
  }
  return path;
}

// What the isolated tiers prepare before fork: after fork the child may not allocate.
struct IsolationPrep {
  std::unique_ptr<MountPlan> mounts;
  LandlockRuleset landlock;
  const SeccompProgram* seccomp = nullptr;
  std::unique_ptr<RunCgroup> cgroup;
  Pipe go;     // supervisor -> child: "you are in your cgroup" (and, namespaces: "your id maps are written")
  Pipe ready;  // namespaces: child -> supervisor: "my user namespace exists"
  bool uses_go() const { return go.write_end.valid(); }
};

LandlockPolicy landlockPolicyFor(const Isolation& isolation) {
  const FilesystemView& view = isolation.filesystem();
  LandlockPolicy policy;
  policy.restrict_tcp = isolation.restrictsTcp();
  policy.tcp_connect_ports = isolation.tcpConnectPorts();
  policy.read_only = view.read_only;
  policy.read_only.push_back("/proc");  // Node reads /proc/self/*; other processes stay behind ptrace checks
  for (const auto& bind : view.writable) policy.read_write.push_back(bind.host);
  for (const char* device : {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}) {
    policy.read_write.push_back(device);
  }
  return policy;
}

std::atomic<uint64_t> g_run_counter{0};

class Run {
 public:
  Run(const ProcessSpec& spec, const OutputSink& sink, const std::atomic<bool>* cancel)
      : spec_(spec), sink_(sink), cancel_(cancel), started_(Clock::now()),
        rlimits_(RlimitPlan::fromLimits(spec.limits)) {
    if (spec.limits.wallTime().count() > 0) deadline_ = started_ + spec.limits.wallTime();
  }

  RunResult execute();

 private:
  enum class StopCause { kNone, kTimedOut, kCancelled };

  RunResult setupFailed(std::string reason) const;
  std::string prepareIsolation(IsolationPrep& prep) const;
  std::string handshake(pid_t pid, const UniqueFd& pidfd, IsolationPrep& prep) const;
  bool cancelRequested() const { return cancel_ && cancel_->load(std::memory_order_acquire); }
  ChildState superviseUntilChildExits(pid_t pid, const UniqueFd& pidfd, OutputPump& pump);
  int pollTimeoutMs() const;
  RunResult buildResult(pid_t pid, bool reaped, int wait_status, const OutputPump& pump,
                        const UniqueFd& error_report_read, bool group_gone, const IsolationPrep& prep) const;

  const ProcessSpec& spec_;
  const OutputSink& sink_;
  const std::atomic<bool>* cancel_;
  const Clock::time_point started_;
  const RlimitPlan rlimits_;  // built before fork: the child walks it without allocating
  std::optional<Clock::time_point> deadline_;
  StopCause stop_cause_ = StopCause::kNone;
};

RunResult Run::setupFailed(std::string reason) const {
  RunResult result;
  result.status = Status::kSetupFailed;
  result.reason = std::move(reason);
  result.wall_time = elapsedSince(started_);
  return result;
}

std::string Run::prepareIsolation(IsolationPrep& prep) const {
  const Isolation& isolation = spec_.isolation;
  if (isolation.memoryBytes() || isolation.maxProcesses()) {
    const CgroupSupport& support = cgroupSupport();
    if (support.kind != CgroupSupport::Kind::kNone) {
      // A controller this host lacks degrades to no limit (the tier's facilities say so).
      const bool memory = support.has("cgroup_v1_memory") || support.has("cgroup_v2_memory");
      const bool pids = support.has("cgroup_v1_pids") || support.has("cgroup_v2_pids");
      std::string problem;
      const std::string name = "run-" + std::to_string(::getpid()) + "-" + std::to_string(++g_run_counter);
      prep.cgroup = RunCgroup::create(
          name, {memory ? isolation.memoryBytes() : 0, pids ? isolation.maxProcesses() : 0}, problem);
      if (!prep.cgroup) return problem;
    }
  }
  if (isolation.tier() != Tier::kNone) {
    prep.seccomp = &jobSeccompProgram();
    if (!prep.seccomp->problem.empty()) return prep.seccomp->problem;
  }
  if (isolation.tier() == Tier::kLandlock) {
    prep.landlock = buildLandlockRuleset(landlockPolicyFor(isolation));
    if (!prep.landlock.problem.empty()) return prep.landlock.problem;
  }
  if (isolation.tier() == Tier::kNamespaces) {
    std::string problem;
    const std::string root = jobRootMountpoint(problem);
    if (!problem.empty()) return problem;
    prep.mounts = std::make_unique<MountPlan>(isolation.filesystem(), root);
    if (int err = makePipe(prep.ready)) return describeSupervisorFailure("pipe2(ready)", err);
  }
  if (prep.cgroup || isolation.tier() == Tier::kNamespaces) {
    if (int err = makePipe(prep.go)) return describeSupervisorFailure("pipe2(go)", err);
  }
  return "";
}

// After fork: put the child into its cgroup, and in the namespaces tier write the id maps of
// the user namespace it creates. Returns a problem, or "" (also when the child died early: its
// own report then says why).
std::string Run::handshake(pid_t pid, const UniqueFd& pidfd, IsolationPrep& prep) const {
  prep.go.read_end.reset();
  prep.ready.write_end.reset();
  if (!prep.uses_go()) return "";
  if (prep.cgroup) {
    if (int err = prep.cgroup->attach(pid)) {
      return describeSyscallFailure("moving pid " + std::to_string(pid) + " into its cgroup (cgroup.procs)", err,
                                    "the agent needs write access to its cgroup hierarchy");
    }
  }
  const char go = 'g';
  if (::write(prep.go.write_end.get(), &go, 1) != 1) return "";  // the child is gone; its report says why
  if (!prep.mounts) return "";

  constexpr milliseconds kReadyBudget{10000};
  const auto give_up = Clock::now() + kReadyBudget;
  for (;;) {
    pollfd fds[2] = {{prep.ready.read_end.get(), POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
    const int left = static_cast<int>(std::chrono::ceil<milliseconds>(give_up - Clock::now()).count());
    if (left <= 0) {
      return "PID 1 of the job did not create its user namespace within " +
             std::to_string(kReadyBudget.count()) + " ms (a mount hung?)";
    }
    int ready = ::poll(fds, pidfd.valid() ? 2 : 1, std::min(left, 100));
    if (ready < 0 && errno != EINTR) return describeSupervisorFailure("poll(ready pipe)", errno);
    if (fds[0].revents != 0) {
      char byte;
      if (::read(prep.ready.read_end.get(), &byte, 1) != 1) return "";  // EOF: it failed and reported
      break;
    }
    if (peekChildState(pid) != ChildState::kRunning) return "";
  }
  const bool root = ::geteuid() == 0;
  const uid_t uid = root ? spec_.isolation.hostUid() : ::getuid();
  const gid_t gid = root ? spec_.isolation.hostGid() : ::getgid();
  std::string file;
  if (int err = writeIdMaps(pid, uid, gid, file)) {
    return describeSyscallFailure("write(" + file + ")", err,
                                  "the agent needs CAP_SETUID and CAP_SETGID to map the job's ids");
  }
  if (::write(prep.go.write_end.get(), &go, 1) != 1) return "";
  prep.go.write_end.reset();
  return "";
}

RunResult Run::execute() {
  if (cancelRequested()) {
    RunResult result;
    result.status = Status::kCancelled;
    result.reason = "cancelled before the process was started";
    return result;
  }

  // Everything the child needs is prepared here: after fork it may not allocate.
  ExecImage image(spec_);
  if (!image.problem().empty()) return setupFailed(image.problem());
  becomeChildSubreaperOnce();

  Pipe output;
  if (int err = makePipe(output)) return setupFailed(describeSupervisorFailure("pipe2(output)", err));
  Pipe error_report;
  if (int err = makePipe(error_report)) {
    return setupFailed(describeSupervisorFailure("pipe2(error report)", err));
  }
  if (int err = setNonBlocking(output.read_end.get())) {
    return setupFailed(describeSupervisorFailure("fcntl(output, O_NONBLOCK)", err));
  }
  if (int err = setNonBlocking(error_report.read_end.get())) {
    return setupFailed(describeSupervisorFailure("fcntl(error report, O_NONBLOCK)", err));
  }
  IsolationPrep prep;
  if (std::string problem = prepareIsolation(prep); !problem.empty()) return setupFailed(problem);

  const Tier tier = spec_.isolation.tier();
  ChildPlan plan{image.path(),
                 image.argv(),
                 image.envp(),
                 image.workingDir(),
                 output.write_end.get(),
                 error_report.write_end.get(),
                 ::getpid(),
                 &rlimits_};
  plan.go_fd = prep.go.read_end.valid() ? prep.go.read_end.get() : -1;
  plan.no_new_privs = tier != Tier::kNone;
  plan.set_job_ids = tier == Tier::kLandlock && ::geteuid() == 0;
  plan.job_uid = spec_.isolation.hostUid();
  plan.job_gid = spec_.isolation.hostGid();
  plan.landlock_fd = prep.landlock.fd.valid() ? prep.landlock.fd.get() : -1;
  plan.seccomp = prep.seccomp;
  plan.mounts = prep.mounts.get();
  plan.ready_fd = prep.ready.write_end.valid() ? prep.ready.write_end.get() : -1;
  plan.new_cgroup_namespace = prep.cgroup != nullptr;
  plan.netns_fd = tier == Tier::kNamespaces ? spec_.isolation.networkNamespace() : -1;
  plan.last_capability = lastCapability();

  pid_t pid;
  int fork_error;
  const char* fork_call = "fork()";
  {
    AllSignalsBlocked blocked;
    if (tier == Tier::kNamespaces) {
      // A raw clone, like fork but into new mount, pid, ipc and uts namespaces: the child is
      // PID 1 of its namespace. It only makes async-signal-safe calls (see namespace_init.cpp).
      fork_call = "clone(CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWIPC|CLONE_NEWUTS)";
      pid = static_cast<pid_t>(::syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD,
                                         nullptr, nullptr, nullptr, nullptr));
      if (pid == 0) runNamespaceInit(plan);
    } else {
      // _Fork, not fork: no pthread_atfork handlers of other libraries run in the child, and
      // the child only makes async-signal-safe calls before execve.
      pid = ::_Fork();
      if (pid == 0) runChild(plan);
    }
    fork_error = errno;
  }
  if (pid < 0) {
    std::string reason = describeSupervisorFailure(fork_call, fork_error);
    if (tier == Tier::kNamespaces && (fork_error == EPERM || fork_error == EINVAL)) {
      reason += ". Fix: the namespaces tier needs the agent to run as root with CAP_SYS_ADMIN; in Docker "
                "add --cap-add SYS_ADMIN --security-opt seccomp=unconfined (its default profile refuses "
                "namespace flags), or choose --sandbox=landlock";
    }
    return setupFailed(reason);
  }
  ChildGuard guard(pid);

  // Our copies of the write ends must go, or the pipes would never report EOF.
  output.write_end.reset();
  error_report.write_end.reset();
  prep.landlock.fd.reset();
  const UniqueFd pidfd = openPidFd(pid);
  if (std::string problem = handshake(pid, pidfd, prep); !problem.empty()) return setupFailed(problem);
  OutputPump pump(std::move(output.read_end), sink_, spec_.limits.outputBytes());

  const ChildState final_state = superviseUntilChildExits(pid, pidfd, pump);
  guard.release();

  int wait_status = 0;
  bool reaped = false;
  bool group_gone = true;
  if (final_state == ChildState::kExited) {
    // The leader has exited but is not reaped, so its pid still names only its group: kill
    // the rest of the group (e.g. a daemonized grandchild holding the pipe), then reap.
    killProcessGroup(pid);
    reaped = reapChild(pid, &wait_status);
    group_gone = reapGroupUntilGone(pid, kGroupExitBudget);
  }
  // kLost: the pid may already be recycled, so we must not signal its group any more.
  pump.drainWithoutWaiting();
  RunResult result = buildResult(pid, reaped, wait_status, pump, error_report.read_end, group_gone, prep);
  if (prep.cgroup) {
    const auto usage = prep.cgroup->usage();
    if (usage.oom_kills > 0) {
      result.limit_exceeded = "memory";
    } else if (usage.pids_limit_hits > 0) {
      result.limit_exceeded = "processes";
    }
    prep.cgroup.reset();  // kills whatever escaped the process group, removes the group
  }
  return result;
}

int Run::pollTimeoutMs() const {
  milliseconds timeout = kMaxPollInterval;
  if (deadline_ && stop_cause_ == StopCause::kNone) {
    const auto remaining = std::chrono::ceil<milliseconds>(*deadline_ - Clock::now());
    timeout = std::clamp(remaining, milliseconds{0}, timeout);
  }
  return static_cast<int>(timeout.count());
}

ChildState Run::superviseUntilChildExits(pid_t pid, const UniqueFd& pidfd, OutputPump& pump) {
  for (;;) {
    if (stop_cause_ == StopCause::kNone) {
      // First cause wins: once we have killed the group, nothing changes the verdict.
      if (deadline_ && Clock::now() >= *deadline_) {
        stop_cause_ = StopCause::kTimedOut;
      } else if (cancelRequested()) {
        stop_cause_ = StopCause::kCancelled;
      }
      if (stop_cause_ != StopCause::kNone) killProcessGroup(pid);
    }

    pollfd fds[2];
    nfds_t count = 0;
    if (pump.open()) fds[count++] = {pump.fd(), POLLIN, 0};
    if (pidfd.valid()) fds[count++] = {pidfd.get(), POLLIN, 0};
    if (::poll(fds, count, pollTimeoutMs()) > 0 && pump.open() && fds[0].revents != 0) {
      pump.readOnce();
    }
    // EINTR or a poll failure just lead to another round; the checks above still run.

    if (const ChildState state = peekChildState(pid); state != ChildState::kRunning) return state;
  }
}

RunResult Run::buildResult(pid_t pid, bool reaped, int wait_status, const OutputPump& pump,
                           const UniqueFd& error_report_read, bool group_gone, const IsolationPrep& prep) const {
  RunResult result;
  result.output_truncated = pump.truncated();

  // Children write their reports before _exit, so they are in the pipe by now. The first
  // failure wins; in the namespaces tier PID 1 also reports how the workload ended.
  SetupFailureReport report{};
  bool setup_failed = false;
  SetupFailureReport entry;
  while (::read(error_report_read.get(), &entry, sizeof entry) == static_cast<ssize_t>(sizeof entry)) {
    if (entry.step == static_cast<int32_t>(SetupStep::kWorkloadExited)) {
      if (reaped) wait_status = entry.detail;  // the workload's status, not PID 1's
    } else if (!setup_failed) {
      setup_failed = true;
      report = entry;
    }
  }

  if (setup_failed) {
    result.status = Status::kSetupFailed;
    result.reason = describeChildSetupFailure(report, spec_, rlimits_, prep.mounts.get());
  } else if (stop_cause_ == StopCause::kTimedOut) {
    result.status = Status::kTimedOut;
    result.signal = SIGKILL;
    result.reason = "wall-clock limit of " + std::to_string(spec_.limits.wallTime().count()) +
                    " ms exceeded; sent SIGKILL to process group " + std::to_string(pid);
  } else if (stop_cause_ == StopCause::kCancelled) {
    result.status = Status::kCancelled;
    result.signal = SIGKILL;
    result.reason = "cancelled; sent SIGKILL to process group " + std::to_string(pid);
  } else if (!reaped) {
    result.status = Status::kSignaled;
    result.reason = "exit status lost: the child was reaped elsewhere in the agent (SIGCHLD set "
                    "to SIG_IGN, or a waitpid(-1)?). Fix: leave SIGCHLD at SIG_DFL and wait only "
                    "for specific pids";
  } else if (WIFEXITED(wait_status)) {
    result.exit_code = WEXITSTATUS(wait_status);
    result.status = result.exit_code == 0 ? Status::kOk : Status::kExitedNonZero;
    result.reason = "exited with code " + std::to_string(result.exit_code);
  } else {
    result.status = Status::kSignaled;
    result.signal = WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0;
    result.reason = "killed by " + describeSignal(result.signal, spec_.limits);
  }

  if (!pump.sinkError().empty()) {
    result.reason += "; the output sink threw (" + pump.sinkError() + "), later output was dropped";
  }
  if (!group_gone) {
    result.reason += "; some processes of group " + std::to_string(pid) + " were still exiting after " +
                     std::to_string(kGroupExitBudget.count()) + " ms";
  }
  result.wall_time = elapsedSince(started_);
  return result;
}

}  // namespace

RunResult runProcess(const ProcessSpec& spec, const OutputSink& sink,
                     const std::atomic<bool>* cancel) {
  const auto started = Clock::now();
  try {
    return Run(spec, sink, cancel).execute();
  } catch (const std::exception& e) {
    RunResult result;
    result.reason = std::string("internal error in the process runner: ") + e.what();
    result.wall_time = elapsedSince(started);
    return result;
  } catch (...) {
    RunResult result;
    result.reason = "internal error in the process runner";
    result.wall_time = elapsedSince(started);
    return result;
  }
}

}  // namespace sandbox

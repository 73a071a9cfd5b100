// runProcess: prepare everything, fork, supervise (output, deadline, cancel), then kill and
// reap the whole process group. The child side lives in child.cpp.
#include "sandbox/process.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <exception>
#include <poll.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/child.h"
#include "sandbox/exec_image.h"
#include "sandbox/fds.h"
#include "sandbox/output_pump.h"
#include "sandbox/process_group.h"
#include "sandbox/rlimits.h"
#include "sandbox/setup_errors.h"

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
  bool cancelRequested() const { return cancel_ && cancel_->load(std::memory_order_acquire); }
  ChildState superviseUntilChildExits(pid_t pid, const UniqueFd& pidfd, OutputPump& pump);
  int pollTimeoutMs() const;
  RunResult buildResult(pid_t pid, bool reaped, int wait_status, const OutputPump& pump,
                        const UniqueFd& error_report_read, bool group_gone) const;

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

  const ChildPlan plan{image.path(),
                       image.argv(),
                       image.envp(),
                       image.workingDir(),
                       output.write_end.get(),
                       error_report.write_end.get(),
                       ::getpid(),
                       &rlimits_};
  pid_t pid;
  int fork_error;
  {
    AllSignalsBlocked blocked;
    // _Fork, not fork: no pthread_atfork handlers of other libraries run in the child, and the
    // child only makes async-signal-safe calls before execve.
    pid = ::_Fork();
    if (pid == 0) runChild(plan);
    fork_error = errno;
  }
  if (pid < 0) return setupFailed(describeSupervisorFailure("fork()", fork_error));
  ChildGuard guard(pid);

  // Our copies of the write ends must go, or the pipes would never report EOF.
  output.write_end.reset();
  error_report.write_end.reset();
  const UniqueFd pidfd = openPidFd(pid);
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
  return buildResult(pid, reaped, wait_status, pump, error_report.read_end, group_gone);
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
                           const UniqueFd& error_report_read, bool group_gone) const {
  RunResult result;
  result.output_truncated = pump.truncated();

  // The child writes its report before _exit, so it is in the pipe by now if there is one.
  SetupFailureReport report;
  const bool setup_failed = ::read(error_report_read.get(), &report, sizeof report) ==
                            static_cast<ssize_t>(sizeof report);

  if (setup_failed) {
    result.status = Status::kSetupFailed;
    result.reason = describeChildSetupFailure(report, spec_, rlimits_);
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

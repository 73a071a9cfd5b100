// A bounded queue of accepted deploys and the worker threads that run them. Nothing a job
// throws leaves a worker: the job is reported failed (internal_error) and the worker goes on.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "jobs/deploy_pipeline.h"

namespace da {

class JobRunner {
 public:
  // Runs one job to a terminal report (DeployPipeline::run; tests pass their own).
  using RunJob = std::function<void(const DeployJob&, const std::atomic<bool>& cancel)>;

  JobRunner(const Settings& settings, JobStore& store, const DeployPipeline& pipeline);
  JobRunner(const Settings& settings, JobStore& store, RunJob run_job);
  ~JobRunner();

  void start();
  // Cancels running jobs (their process groups are killed) and fails queued ones, then joins.
  void stop();

  // False when the queue is full; the caller answers 503 and keeps nothing.
  bool submit(DeployJob job);

  enum class CancelOutcome {
    kDequeued,    // it was waiting: it is cancelled now, with nothing left behind
    kStopping,    // it is running: it was told to stop and will end `cancelled`
    kNotHere,     // not queued or running here (finished, or unknown)
  };
  // Cancels a job for a caller; idempotent.
  CancelOutcome cancel(const std::string& id);
  size_t queuedCount() const;
  size_t runningCount() const;
  // Whether submit would find room now: lets intake refuse before receiving an upload it
  // could not queue. submit still decides, since room can go while the upload arrives.
  bool hasRoom() const;

 private:
  // What a running job is told: stop (the agent stops, or a caller cancelled it).
  struct RunningJob {
    std::atomic<bool> cancel{false};
    std::shared_ptr<std::atomic<bool>> by_request = std::make_shared<std::atomic<bool>>(false);
  };

  void work();
  // Ends a job that will not (or did not) finish normally with `status` (failed or cancelled),
  // unless already terminal, and removes its work folder and upload (unless keep_workdirs).
  // Never throws.
  void fail(const DeployJob& job, const DeployError& error, DeployStatus status = DeployStatus::kFailed) noexcept;

  const Settings& settings_;
  JobStore& store_;
  RunJob run_job_;
  mutable std::mutex mutex_;
  std::condition_variable available_;
  std::deque<DeployJob> queue_;
  std::map<std::string, std::shared_ptr<RunningJob>> running_;  // by job id
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> workers_;
};

}  // namespace da

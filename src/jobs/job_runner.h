// A bounded queue of accepted deploys and the worker threads that run them.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "jobs/deploy_pipeline.h"

namespace da {

class JobRunner {
 public:
  JobRunner(const Settings& settings, JobStore& store, const DeployPipeline& pipeline);
  ~JobRunner();

  void start();
  // Cancels running jobs (their process groups are killed) and fails queued ones, then joins.
  void stop();

  // False when the queue is full; the caller answers 503 and keeps nothing.
  bool submit(DeployJob job);

 private:
  void work();

  const Settings& settings_;
  JobStore& store_;
  const DeployPipeline& pipeline_;
  std::mutex mutex_;
  std::condition_variable available_;
  std::deque<DeployJob> queue_;
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> workers_;
};

}  // namespace da

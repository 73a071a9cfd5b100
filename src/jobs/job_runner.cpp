#include "jobs/job_runner.h"

#include <spdlog/spdlog.h>

#include "util/ids.h"

namespace da {

JobRunner::JobRunner(const Settings& settings, JobStore& store, const DeployPipeline& pipeline)
    : settings_(settings), store_(store), pipeline_(pipeline) {}

JobRunner::~JobRunner() { stop(); }

void JobRunner::start() {
  for (unsigned i = 0; i < std::max(1u, settings_.workers); ++i) {
    workers_.emplace_back([this] { work(); });
  }
}

void JobRunner::stop() {
  if (stopping_.exchange(true)) return;
  available_.notify_all();
  for (auto& worker : workers_) worker.join();
  workers_.clear();
  std::lock_guard lock(mutex_);
  for (const auto& job : queue_) {
    // Its unpacked app and upload go as a finished job's do; nothing will ever read them.
    std::error_code ignored;
    std::filesystem::remove_all(job.job_dir / "work", ignored);
    std::filesystem::remove(job.job_dir / "bundle.upload", ignored);
    if (auto report = store_.get(job.id)) {
      report->status = DeployStatus::kFailed;
      report->error = DeployError{"agent_stopped", "the agent stopped before this deploy started"};
      report->finished_at_ms = nowUnixMillis();
      store_.put(*report);
    }
  }
  queue_.clear();
}

bool JobRunner::submit(DeployJob job) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || queue_.size() >= settings_.max_queued_jobs) return false;
    queue_.push_back(std::move(job));
  }
  available_.notify_one();
  return true;
}

void JobRunner::work() {
  while (true) {
    DeployJob job;
    {
      std::unique_lock lock(mutex_);
      available_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    spdlog::info("deploy {} started (target {})", job.id, targetName(job.target));
    pipeline_.run(job, stopping_);
    if (auto report = store_.get(job.id)) {
      spdlog::info("deploy {} {}{}", job.id, statusName(report->status),
                   report->error ? " (" + report->error->reason + ")" : "");
    }
  }
}

}  // namespace da

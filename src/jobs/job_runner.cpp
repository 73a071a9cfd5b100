#include "jobs/job_runner.h"

#include <spdlog/spdlog.h>

#include "util/ids.h"

namespace da {

JobRunner::JobRunner(const Settings& settings, JobStore& store, const DeployPipeline& pipeline)
    : JobRunner(settings, store, [&pipeline](const DeployJob& job, const std::atomic<bool>& cancel) {
        pipeline.run(job, cancel);
      }) {}

JobRunner::JobRunner(const Settings& settings, JobStore& store, RunJob run_job)
    : settings_(settings), store_(store), run_job_(std::move(run_job)) {}

JobRunner::~JobRunner() { stop(); }

void JobRunner::start() {
  for (unsigned i = 0; i < std::max(1u, settings_.workers); ++i) {
    workers_.emplace_back([this] { work(); });
  }
}

void JobRunner::stop() {
  {
    // Set under the lock: a worker between checking the flag and waiting cannot miss it.
    std::lock_guard lock(mutex_);
    if (stopping_.exchange(true)) return;
    for (auto& [id, running] : running_) {
      running->cancel = true;
      running->cancel.notify_all();  // for a job waiting on its flag
    }
  }
  available_.notify_all();
  for (auto& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
  workers_.clear();
  std::deque<DeployJob> abandoned;
  {
    std::lock_guard lock(mutex_);
    abandoned.swap(queue_);
  }
  for (const auto& job : abandoned) {
    fail(job, DeployError{"agent_stopped", "the agent stopped before this deploy started", "", true});
  }
}

JobRunner::CancelOutcome JobRunner::cancel(const std::string& id) {
  std::optional<DeployJob> dequeued;
  {
    std::lock_guard lock(mutex_);
    if (auto running = running_.find(id); running != running_.end()) {
      *running->second->by_request = true;  // before the flag: the job reads it once it stops
      running->second->cancel = true;
      running->second->cancel.notify_all();
      return CancelOutcome::kStopping;
    }
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (it->id == id) {
        dequeued = std::move(*it);
        queue_.erase(it);
        break;
      }
    }
  }
  if (!dequeued) return CancelOutcome::kNotHere;
  fail(*dequeued, DeployError{"cancelled", "cancelled by request before it started"}, DeployStatus::kCancelled);
  spdlog::info("deploy {} cancelled before it started", id);
  return CancelOutcome::kDequeued;
}

size_t JobRunner::queuedCount() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

size_t JobRunner::runningCount() const {
  std::lock_guard lock(mutex_);
  return running_.size();
}

bool JobRunner::hasRoom() const {
  std::lock_guard lock(mutex_);
  return !stopping_ && queue_.size() < settings_.max_queued_jobs;
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
    auto running = std::make_shared<RunningJob>();
    {
      std::unique_lock lock(mutex_);
      available_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      running_[job.id] = running;
    }
    job.cancelled_by_request = running->by_request;
    try {
      spdlog::info("deploy {} started (target {})", job.id, targetName(job.target));
      run_job_(job, running->cancel);
      // A run leaves a terminal report; one that did not would read "running" until a restart.
      fail(job, DeployError{"internal_error", "the deploy ended without a result"});
    } catch (const std::exception& e) {
      spdlog::error("deploy {} failed inside the agent: {}", job.id, e.what());
      fail(job, DeployError{"internal_error", "the agent failed while running this deploy"});
    } catch (...) {
      spdlog::error("deploy {} failed inside the agent: an exception of unknown type", job.id);
      fail(job, DeployError{"internal_error", "the agent failed while running this deploy"});
    }
    {
      std::lock_guard lock(mutex_);
      running_.erase(job.id);
    }
    try {
      if (auto report = store_.get(job.id)) {
        spdlog::info("deploy {} {}{}", job.id, statusName(report->status),
                     report->error ? " (" + report->error->reason + ")" : "");
      }
    } catch (...) {
    }
  }
}

void JobRunner::fail(const DeployJob& job, const DeployError& error, DeployStatus status) noexcept {
  try {
    auto report = store_.get(job.id);
    // A finished job was cleaned up by its pipeline; only an unfinished one is ours to end.
    if (report && isTerminal(report->status)) return;
    // Its unpacked app and upload go as a finished job's do; nothing will ever read them.
    if (!settings_.keep_workdirs) {
      std::error_code ignored;
      std::filesystem::remove_all(job.job_dir / "work", ignored);
      std::filesystem::remove(job.job_dir / "bundle.upload", ignored);
    }
    if (report) {
      report->status = status;
      report->error = error;
      report->finished_at_ms = nowUnixMillis();
      store_.put(*report);
    }
  } catch (const std::exception& e) {
    spdlog::error("cannot mark deploy {} failed: {}", job.id, e.what());
  } catch (...) {
    spdlog::error("cannot mark deploy {} failed", job.id);
  }
}

}  // namespace da

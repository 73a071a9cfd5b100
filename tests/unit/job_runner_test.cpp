// The worker pool: one job's exception never ends a worker (or the agent), and every job the
// runner took ends with a terminal report.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <stdexcept>

#include "jobs/job_runner.h"
#include "util/ids.h"

namespace fs = std::filesystem;

namespace {

constexpr auto kWait = std::chrono::seconds(30);

class JobRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_ = fs::temp_directory_path() / ("da-runner-" + da::newDeployId());
    settings_.state_dir = state_;
    settings_.toolchain.node = "/nonexistent/node";
    settings_.toolchain.npm_cli = "/nonexistent/npm-cli.js";
    settings_.toolchain.convex_cli = "/nonexistent/main.js";
    settings_.toolchain.convex_cli_version = "1.49.0";
    settings_.npm_cache = state_ / "npm-cache";
    settings_.workers = 1;  // one worker: a later job finishing proves it survived an earlier one
    store_ = std::make_unique<da::JobStore>(state_ / "jobs");
  }
  void TearDown() override { fs::remove_all(state_); }

  // An accepted job: its report is stored and its unpacked app is in place.
  da::DeployJob accepted() {
    da::DeployJob job;
    job.id = da::newDeployId();
    job.target = da::Target::kProd;
    job.deploy_key = "prod:a-b-1|caller-secret-0123456789";
    job.job_dir = store_->jobDir(job.id);
    job.app_dir = job.job_dir / "work/bundle";
    fs::create_directories(job.app_dir);
    std::ofstream(job.app_dir / "package.json") << R"({"name":"a","dependencies":{"convex":"1.49.0"}})";
    da::DeployReport report;
    report.id = job.id;
    report.target = job.target;
    report.created_at_ms = da::nowUnixMillis();
    report.cli_version = settings_.toolchain.convex_cli_version;
    store_->put(report);
    return job;
  }

  void succeed(const da::DeployJob& job) {
    auto report = store_->get(job.id).value();
    report.status = da::DeployStatus::kSucceeded;
    report.phase = "done";
    store_->put(report);
  }

  da::DeployReport waitFor(const std::string& id) {
    auto report = store_->waitForTerminal(id, kWait);
    EXPECT_TRUE(report) << id;
    EXPECT_TRUE(report && da::isTerminal(report->status)) << id << " did not finish";
    return report.value_or(da::DeployReport{});
  }

  fs::path state_;
  da::Settings settings_;
  std::unique_ptr<da::JobStore> store_;
};

TEST_F(JobRunnerTest, AJobThatThrowsIsFailedAndTheWorkerGoesOn) {
  auto throws_std = accepted();
  auto throws_other = accepted();
  auto returns_early = accepted();
  auto fine = accepted();
  da::JobRunner runner(settings_, *store_, [&](const da::DeployJob& job, const std::atomic<bool>&) {
    if (job.id == throws_std.id) throw std::runtime_error("boom");
    if (job.id == throws_other.id) throw 42;
    if (job.id == returns_early.id) return;  // no terminal report
    succeed(job);
  });
  runner.start();
  for (const auto* job : {&throws_std, &throws_other, &returns_early, &fine}) ASSERT_TRUE(runner.submit(*job));

  for (const auto* job : {&throws_std, &throws_other, &returns_early}) {
    auto report = waitFor(job->id);
    EXPECT_EQ(report.status, da::DeployStatus::kFailed);
    ASSERT_TRUE(report.error);
    EXPECT_EQ(report.error->reason, "internal_error");
    EXPECT_FALSE(fs::exists(job->job_dir / "work")) << "a failed job's unpacked app goes";
  }
  EXPECT_EQ(waitFor(fine.id).status, da::DeployStatus::kSucceeded);
  runner.stop();
}

TEST_F(JobRunnerTest, TheRealPipelineThrowingDoesNotEndTheWorker) {
  da::Redactor redactor;
  da::DeployPipeline pipeline(settings_, *store_, redactor);
  da::JobRunner runner(settings_, *store_, pipeline);
  runner.start();
  // A job whose report is gone (discarded meanwhile): DeployPipeline::run throws before its
  // own try block. This used to reach std::terminate.
  auto unknown = accepted();
  store_->discard(unknown.id);
  ASSERT_TRUE(runner.submit(unknown));
  // The next job still runs, and fails honestly: the toolchain does not exist.
  auto next = accepted();
  ASSERT_TRUE(runner.submit(next));
  auto report = waitFor(next.id);
  EXPECT_EQ(report.status, da::DeployStatus::kFailed);
  ASSERT_TRUE(report.error);
  EXPECT_EQ(report.error->reason, "sandbox_setup_failed");
  EXPECT_FALSE(store_->get(unknown.id));
  runner.stop();
}

TEST_F(JobRunnerTest, AReportThatCannotBeStoredDoesNotEndTheWorker) {
  da::Redactor redactor;
  da::DeployPipeline pipeline(settings_, *store_, redactor);
  da::JobRunner runner(settings_, *store_, pipeline);
  runner.start();
  // Review finding: every write of this job's report fails (here: a non-empty directory where
  // report.json goes), which used to throw out of the pipeline's catch block.
  auto blocked = accepted();
  fs::remove(blocked.job_dir / "report.json");
  fs::create_directories(blocked.job_dir / "report.json" / "in-the-way");
  ASSERT_TRUE(runner.submit(blocked));
  auto next = accepted();
  ASSERT_TRUE(runner.submit(next));
  auto blocked_report = waitFor(blocked.id);  // answered from memory
  EXPECT_EQ(blocked_report.status, da::DeployStatus::kFailed);
  EXPECT_EQ(blocked_report.error->reason, "sandbox_setup_failed");
  EXPECT_EQ(waitFor(next.id).status, da::DeployStatus::kFailed);
  runner.stop();
}

TEST_F(JobRunnerTest, StopCancelsTheRunningJobAndFailsQueuedOnes) {
  auto running = accepted();
  auto queued = accepted();
  auto blocked = accepted();  // queued, and its report cannot be stored
  fs::remove(blocked.job_dir / "report.json");
  fs::create_directories(blocked.job_dir / "report.json" / "in-the-way");
  std::promise<void> started;
  da::JobRunner runner(settings_, *store_, [&](const da::DeployJob& job, const std::atomic<bool>& cancel) {
    started.set_value();
    cancel.wait(false);  // until stop()
    EXPECT_FALSE(job.cancelled_by_request && *job.cancelled_by_request) << "the agent stopped it, no caller";
    auto report = store_->get(job.id).value();
    report.status = da::DeployStatus::kFailed;
    report.error = da::DeployError{"agent_stopped", "cancelled"};
    store_->put(report);
  });
  runner.start();
  for (const auto* job : {&running, &queued, &blocked}) ASSERT_TRUE(runner.submit(*job));
  started.get_future().wait();
  runner.stop();
  EXPECT_FALSE(runner.submit(accepted())) << "a stopped runner takes nothing";
  for (const auto* job : {&running, &queued, &blocked}) {
    auto report = store_->get(job->id).value();
    EXPECT_EQ(report.status, da::DeployStatus::kFailed) << job->id;
    ASSERT_TRUE(report.error);
    EXPECT_EQ(report.error->reason, "agent_stopped");
  }
  EXPECT_FALSE(fs::exists(queued.job_dir / "work"));
}

TEST_F(JobRunnerTest, CancelDequeuesAWaitingJobAndTellsARunningOneWhy) {
  auto running = accepted();
  auto waiting = accepted();
  std::promise<void> started;
  std::promise<bool> told_by_request;
  da::JobRunner runner(settings_, *store_, [&](const da::DeployJob& job, const std::atomic<bool>& cancel) {
    started.set_value();
    cancel.wait(false);
    told_by_request.set_value(job.cancelled_by_request && *job.cancelled_by_request);
    auto report = store_->get(job.id).value();
    report.status = da::DeployStatus::kCancelled;
    store_->put(report);
  });
  runner.start();
  ASSERT_TRUE(runner.submit(running));
  ASSERT_TRUE(runner.submit(waiting));
  started.get_future().wait();
  EXPECT_EQ(runner.runningCount(), 1u);
  EXPECT_EQ(runner.queuedCount(), 1u);

  EXPECT_EQ(runner.cancel(waiting.id), da::JobRunner::CancelOutcome::kDequeued);
  auto dequeued = store_->get(waiting.id).value();
  EXPECT_EQ(dequeued.status, da::DeployStatus::kCancelled);
  ASSERT_TRUE(dequeued.error);
  EXPECT_EQ(dequeued.error->reason, "cancelled");
  EXPECT_FALSE(fs::exists(waiting.job_dir / "work")) << "nothing of it is left behind";
  EXPECT_EQ(runner.cancel(waiting.id), da::JobRunner::CancelOutcome::kNotHere);

  EXPECT_EQ(runner.cancel(running.id), da::JobRunner::CancelOutcome::kStopping);
  EXPECT_TRUE(told_by_request.get_future().get()) << "a caller's cancel, not the agent stopping";
  EXPECT_EQ(waitFor(running.id).status, da::DeployStatus::kCancelled);
  runner.stop();
}

}  // namespace

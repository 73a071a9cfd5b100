#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "jobs/job_store.h"
#include "util/ids.h"

namespace fs = std::filesystem;

namespace {

fs::path freshDir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("da-jobstore-" + name + "-" + da::newDeployId());
  fs::remove_all(dir);
  return dir;
}

da::DeployReport queuedReport() {
  da::DeployReport report;
  report.id = da::newDeployId();
  report.target = da::Target::kProd;
  report.deployment_name = "happy-otter-123";
  report.created_at_ms = da::nowUnixMillis();
  return report;
}

}  // namespace

TEST(JobStore, PersistsReportsAtomically) {
  auto dir = freshDir("persist");
  da::JobStore store(dir);
  auto report = queuedReport();
  store.put(report);
  EXPECT_TRUE(fs::exists(dir / report.id / "report.json"));
  EXPECT_FALSE(fs::exists(dir / report.id / "report.json.tmp"));
  std::ifstream in(dir / report.id / "report.json");
  auto stored = nlohmann::json::parse(in);
  EXPECT_EQ(stored["status"], "queued");
  EXPECT_EQ(stored["deployment"]["name"], "happy-otter-123");
  fs::remove_all(dir);
}

TEST(JobStore, RecoveryFailsInterruptedJobsAndKeepsFinishedOnes) {
  auto dir = freshDir("recover");
  auto running = queuedReport();
  running.status = da::DeployStatus::kRunning;
  running.phase = "push";
  auto done = queuedReport();
  done.status = da::DeployStatus::kSucceeded;
  {
    da::JobStore store(dir);
    store.put(running);
    store.put(done);
  }
  // What a crash leaves: the interrupted job's unpacked app, a finished job's trash.
  fs::create_directories(dir / running.id / "work/bundle/node_modules");
  fs::create_directories(dir / done.id / da::kTrashDirName / "bundle");
  da::JobStore restarted(dir);
  EXPECT_EQ(restarted.recover(), 1u);
  auto recovered = restarted.get(running.id);
  ASSERT_TRUE(recovered);
  EXPECT_EQ(recovered->status, da::DeployStatus::kFailed);
  ASSERT_TRUE(recovered->error);
  EXPECT_EQ(recovered->error->reason, "agent_restarted");
  EXPECT_EQ(recovered->created_at_ms, running.created_at_ms);
  EXPECT_EQ(restarted.get(done.id)->status, da::DeployStatus::kSucceeded);
  EXPECT_FALSE(fs::exists(dir / running.id / "work"));
  EXPECT_FALSE(fs::exists(dir / done.id / da::kTrashDirName));
  EXPECT_TRUE(fs::exists(dir / running.id / "report.json"));
  fs::remove_all(dir);
}

TEST(JobStore, RecoveryRemovesUploadsThatWereNeverAccepted) {
  auto dir = freshDir("orphan");
  const std::string never_accepted = da::newDeployId();
  auto done = queuedReport();
  done.status = da::DeployStatus::kFailed;
  {
    da::JobStore store(dir);
    store.put(done);
  }
  // A crash mid-upload: a job folder without a report; and a stop that left an upload.
  fs::create_directories(dir / never_accepted / "work/bundle");
  std::ofstream(dir / never_accepted / "bundle.upload") << "half an archive";
  std::ofstream(dir / done.id / "bundle.upload") << "archive";
  fs::create_directories(dir / "not-a-job");

  da::JobStore restarted(dir);
  EXPECT_EQ(restarted.recover(), 0u);
  EXPECT_FALSE(fs::exists(dir / never_accepted));
  EXPECT_FALSE(restarted.get(never_accepted));
  EXPECT_FALSE(fs::exists(dir / done.id / "bundle.upload"));
  EXPECT_TRUE(fs::exists(dir / done.id / "report.json"));
  EXPECT_TRUE(fs::exists(dir / "not-a-job")) << "only folders named like a job are the store's";
  fs::remove_all(dir);
}

TEST(JobStore, WaitForTerminalWakesOnCompletion) {
  auto dir = freshDir("wait");
  da::JobStore store(dir);
  auto report = queuedReport();
  store.put(report);
  std::thread finisher([&] {
    auto finished = report;
    finished.status = da::DeployStatus::kSucceeded;
    store.put(finished);
  });
  auto seen = store.waitForTerminal(report.id, std::chrono::seconds(30));
  finisher.join();
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->status, da::DeployStatus::kSucceeded);
  fs::remove_all(dir);
}

TEST(JobStore, DiscardRemovesEverything) {
  auto dir = freshDir("discard");
  da::JobStore store(dir);
  auto report = queuedReport();
  store.put(report);
  store.discard(report.id);
  EXPECT_FALSE(store.get(report.id));
  EXPECT_FALSE(fs::exists(dir / report.id));
  fs::remove_all(dir);
}

#include <gtest/gtest.h>

#include <algorithm>
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

std::vector<std::string> entryNames(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

nlohmann::json storedReport(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
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
  EXPECT_EQ(entryNames(dir / report.id), (std::vector<std::string>{"events.jsonl", "report.json"}))
      << "no temporary file stays";
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

// Review finding: a directory at the old fixed temporary path (or a full or read-only disk)
// made put() throw, which killed a worker thread and with it the agent.
TEST(JobStore, SomethingAtAnOldTemporaryPathDoesNotBlockWrites) {
  auto dir = freshDir("tmp-in-the-way");
  da::JobStore store(dir);
  auto report = queuedReport();
  store.put(report);
  fs::create_directories(dir / report.id / "report.json.tmp");
  report.status = da::DeployStatus::kSucceeded;
  EXPECT_TRUE(store.put(report));
  EXPECT_EQ(storedReport(dir / report.id / "report.json")["status"], "succeeded");
  fs::remove_all(dir);
}

TEST(JobStore, AReportThatCannotBeWrittenIsKeptInMemoryAndWakesWaiters) {
  auto dir = freshDir("unwritable");
  da::JobStore store(dir);
  auto report = queuedReport();
  store.put(report);
  // A non-empty directory where report.json goes: no rename can replace it, not even root's.
  fs::remove(dir / report.id / "report.json");
  fs::create_directories(dir / report.id / "report.json" / "in-the-way");
  auto finished = report;
  finished.status = da::DeployStatus::kFailed;
  finished.error = da::DeployError{"push_rejected", "nope"};
  bool stored = true;
  std::thread finisher([&] { stored = store.put(finished); });
  auto seen = store.waitForTerminal(report.id, std::chrono::seconds(30));
  finisher.join();
  EXPECT_FALSE(stored);
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->status, da::DeployStatus::kFailed);
  EXPECT_EQ(store.get(report.id)->error->reason, "push_rejected");
  EXPECT_EQ(entryNames(dir / report.id), (std::vector<std::string>{"events.jsonl", "report.json"}))
      << "a failed write removes its temporary file";
  fs::remove_all(dir);
}

TEST(JobStore, AJobFolderThatCannotBeCreatedDoesNotThrow) {
  auto dir = freshDir("folder-is-a-file");
  da::JobStore store(dir);
  auto report = queuedReport();
  std::ofstream(dir / report.id) << "a regular file where the job folder goes";
  bool stored = true;
  EXPECT_NO_THROW(stored = store.put(report));
  EXPECT_FALSE(stored);
  ASSERT_TRUE(store.get(report.id));
  EXPECT_EQ(store.get(report.id)->status, da::DeployStatus::kQueued);
  fs::remove_all(dir);
}

TEST(JobStore, ReportsThatCannotBeEncodedAsUtf8AreStillStored) {
  auto dir = freshDir("utf8");
  da::JobStore store(dir);
  auto report = queuedReport();
  report.status = da::DeployStatus::kFailed;
  report.error = da::DeployError{"install_failed", "npm said \xff\xfe"};  // CLI output is bytes
  EXPECT_TRUE(store.put(report));
  EXPECT_EQ(storedReport(dir / report.id / "report.json")["error"]["reason"], "install_failed");
  fs::remove_all(dir);
}

TEST(JobStore, RecoveryFailsJobsWhoseReportIsUnreadable) {
  auto dir = freshDir("unreadable");
  const std::string empty = da::newDeployId();      // a crash between rename and write-back
  const std::string corrupt = da::newDeployId();
  const std::string misplaced = da::newDeployId();  // holds another job's report
  auto other = queuedReport();
  other.status = da::DeployStatus::kSucceeded;
  {
    da::JobStore store(dir);
    store.put(other);
  }
  fs::create_directories(dir / empty / "work/bundle");
  std::ofstream(dir / empty / "report.json");
  fs::create_directories(dir / corrupt);
  std::ofstream(dir / corrupt / "report.json") << R"({"id": ")" << corrupt << R"(", "sta)";
  fs::create_directories(dir / misplaced);
  fs::copy_file(dir / other.id / "report.json", dir / misplaced / "report.json");
  fs::create_directories(dir / "not-a-job");
  std::ofstream(dir / "not-a-job" / "report.json") << "garbage";

  da::JobStore restarted(dir);
  size_t interrupted = 0;
  EXPECT_NO_THROW(interrupted = restarted.recover());
  EXPECT_EQ(interrupted, 3u);
  for (const auto& id : {empty, corrupt, misplaced}) {
    auto recovered = restarted.get(id);
    ASSERT_TRUE(recovered) << id;
    EXPECT_EQ(recovered->status, da::DeployStatus::kFailed);
    ASSERT_TRUE(recovered->error);
    EXPECT_EQ(recovered->error->reason, "agent_restarted");
    auto stored = storedReport(dir / id / "report.json");  // rewritten, so the next start reads it
    EXPECT_EQ(stored["id"], id);
    EXPECT_EQ(stored["status"], "failed");
    EXPECT_EQ(stored["error"]["reason"], "agent_restarted");
  }
  EXPECT_FALSE(fs::exists(dir / empty / "work"));
  EXPECT_EQ(restarted.get(other.id)->status, da::DeployStatus::kSucceeded);
  EXPECT_FALSE(restarted.get("not-a-job"));
  EXPECT_TRUE(fs::exists(dir / "not-a-job" / "report.json")) << "only folders named like a job are the store's";
  fs::remove_all(dir);
}

TEST(JobStore, RecoveryNeverThrowsBecauseOfOneBadFolder) {
  auto dir = freshDir("bad-folders");
  auto running = queuedReport();
  running.status = da::DeployStatus::kRunning;
  running.phase = "install";
  auto done = queuedReport();
  done.status = da::DeployStatus::kSucceeded;
  {
    da::JobStore store(dir);
    store.put(running);
    store.put(done);
  }
  // Unreadable and unwritable: a non-empty directory where the report goes.
  const std::string blocked = da::newDeployId();
  fs::create_directories(dir / blocked / "report.json" / "in-the-way");
  // A job folder that cannot even be examined: a symlink to itself (ELOOP).
  fs::create_directory_symlink(dir / "dep_loop", dir / "dep_loop");
  // Leftover temporary files of a crash mid-write, and the old fixed temporary path.
  std::ofstream(dir / done.id / "report.json.tmp-0123456789abcdef") << "{";
  fs::create_directories(dir / done.id / "report.json.tmp");

  da::JobStore restarted(dir);
  size_t interrupted = 0;
  EXPECT_NO_THROW(interrupted = restarted.recover());
  EXPECT_EQ(interrupted, 2u);  // running, blocked
  auto lost = restarted.get(blocked);
  ASSERT_TRUE(lost) << "the job is answered from memory though its report cannot be stored";
  EXPECT_EQ(lost->status, da::DeployStatus::kFailed);
  EXPECT_EQ(lost->error->reason, "agent_restarted");
  EXPECT_EQ(restarted.get(running.id)->error->reason, "agent_restarted");
  EXPECT_EQ(restarted.get(done.id)->status, da::DeployStatus::kSucceeded);
  EXPECT_EQ(entryNames(dir / done.id), (std::vector<std::string>{"events.jsonl", "report.json"}));
  EXPECT_EQ(entryNames(dir / blocked), (std::vector<std::string>{"events.jsonl", "report.json"}));
  fs::remove_all(dir);
}

namespace {

da::DeployReport finishedReport(int64_t created_at_ms, da::DeployStatus status = da::DeployStatus::kSucceeded) {
  da::DeployReport report = queuedReport();
  report.created_at_ms = created_at_ms;
  report.finished_at_ms = created_at_ms + 1000;
  report.status = status;
  return report;
}

}  // namespace

TEST(JobStore, ListIsNewestFirstFilteredAndPagedByPosition) {
  da::JobStore store(freshDir("list"));
  std::vector<da::DeployReport> reports;
  for (int i = 0; i < 5; ++i) {
    reports.push_back(finishedReport(1700000000000 + i * 1000, i % 2 ? da::DeployStatus::kFailed : da::DeployStatus::kSucceeded));
    store.put(reports.back());
  }
  auto first = store.list(std::nullopt, 2, std::nullopt);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].id, reports[4].id);
  EXPECT_EQ(first[1].id, reports[3].id);
  // A job arriving between pages does not shift the next page: the cursor is a position.
  store.put(finishedReport(1700000009000));
  auto second = store.list(std::nullopt, 2, da::JobStore::ListPosition{first[1].created_at_ms, first[1].id});
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[0].id, reports[2].id);
  EXPECT_EQ(second[1].id, reports[1].id);
  auto failed = store.list(da::DeployStatus::kFailed, 10, std::nullopt);
  ASSERT_EQ(failed.size(), 2u);
  EXPECT_EQ(failed[0].id, reports[3].id);
  EXPECT_EQ(failed[1].id, reports[1].id);
}

TEST(JobStore, RemoveTakesOnlyFinishedJobsAndLeavesNothing) {
  const fs::path dir = freshDir("remove");
  da::JobStore store(dir);
  auto running = queuedReport();
  running.status = da::DeployStatus::kRunning;
  store.put(running);
  auto done = finishedReport(da::nowUnixMillis());
  store.put(done);
  std::ofstream(dir / done.id / "cli.log") << "output";
  EXPECT_EQ(store.remove(running.id), da::JobStore::RemoveResult::kNotFinished);
  EXPECT_TRUE(fs::exists(dir / running.id / "report.json"));
  EXPECT_EQ(store.remove(done.id), da::JobStore::RemoveResult::kRemoved);
  EXPECT_FALSE(store.get(done.id));
  EXPECT_EQ(entryNames(dir), std::vector<std::string>{running.id});
  EXPECT_EQ(store.remove(done.id), da::JobStore::RemoveResult::kNotFound);
  // A removal cut short by a crash is finished at the next start.
  fs::create_directories(dir / (std::string(da::kTrashDirName) + "-" + done.id) / "work");
  da::JobStore restarted(dir);
  restarted.recover();
  EXPECT_EQ(entryNames(dir), std::vector<std::string>{running.id});
}

TEST(JobStore, RetentionRemovesOldJobsThenWorkFoldersThenOldestJobsOverBudget) {
  const fs::path dir = freshDir("retention");
  da::JobStore store(dir);
  const int64_t now = da::nowUnixMillis();
  auto ancient = finishedReport(now - 10LL * 24 * 3600 * 1000);
  auto old_one = finishedReport(now - 3000);
  auto recent = finishedReport(now - 2000);
  auto running = queuedReport();
  running.status = da::DeployStatus::kRunning;
  for (const auto* report : {&ancient, &old_one, &recent, &running}) store.put(*report);
  const std::string megabyte(1 << 20, 'x');
  for (const auto* report : {&old_one, &recent}) {
    fs::create_directories(dir / report->id / "work");
    std::ofstream(dir / report->id / "work/node_modules.bin") << megabyte;
    std::ofstream(dir / report->id / "cli.log") << std::string(100 * 1024, 'l');
  }
  // A week's age: the ancient job goes; under a generous budget nothing else does.
  EXPECT_EQ(store.enforceRetention(std::chrono::hours(24 * 7), 64ull << 20), 1u);
  EXPECT_FALSE(store.get(ancient.id));
  EXPECT_TRUE(fs::exists(dir / old_one.id / "work"));
  // Over a budget of 1 MiB: both work folders go first, and then no whole job needs to.
  EXPECT_EQ(store.enforceRetention(std::chrono::hours(24 * 7), 1ull << 20), 0u);
  EXPECT_FALSE(fs::exists(dir / old_one.id / "work"));
  EXPECT_FALSE(fs::exists(dir / recent.id / "work"));
  EXPECT_TRUE(fs::exists(dir / old_one.id / "cli.log"));
  // A budget below the logs: the oldest finished job goes, the newer one and the running one stay.
  EXPECT_EQ(store.enforceRetention(std::chrono::hours(24 * 7), 150 * 1024), 1u);
  EXPECT_FALSE(store.get(old_one.id));
  EXPECT_TRUE(store.get(recent.id));
  EXPECT_TRUE(store.get(running.id));
}

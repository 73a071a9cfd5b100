// Deletions the agent owes the Convex cloud: persisted before they are owed, carried out when
// due, retried while retryable, resumed after a restart, never persisted for a caller's token.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <mutex>

#include <nlohmann/json.hpp>

#include "jobs/cleanup_queue.h"
#include "support/scratch_dir.h"
#include "util/ids.h"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

struct Recorder {
  std::mutex mutex;
  std::vector<std::string> calls;  // "<kind>:<what>:<token>"
  std::vector<da::CleanupResult> script;  // answers in order; then kDone
  da::CleanupExecutor executor() {
    return [this](const da::CleanupTask& task, const std::string& token, std::string&) {
      std::lock_guard lock(mutex);
      calls.push_back(task.kind + ":" + (task.kind == "project" ? std::to_string(task.project_id) : task.key_name) +
                      ":" + token);
      if (script.empty()) return da::CleanupResult::kDone;
      auto answer = script.front();
      script.erase(script.begin());
      return answer;
    };
  }
  std::vector<std::string> seen() {
    std::lock_guard lock(mutex);
    return calls;
  }
};

size_t filesIn(const fs::path& dir) {
  return fs::exists(dir) ? std::distance(fs::directory_iterator(dir), fs::directory_iterator()) : 0;
}

TEST(CleanupQueue, AKeyDeletionIsStoredFirstAndCarriedOutWhenItsJobEnds) {
  testsupport::ScratchDir scratch("cleanup");
  Recorder recorder;
  da::CleanupQueue queue(scratch.path(), "team-token", recorder.executor());
  ASSERT_EQ(queue.start(), "");
  da::CleanupTask task;
  task.kind = "deploy_key";
  task.deployment = "happy-otter-123";
  task.key_name = "deploy-agent dep_1";
  task.due_at_ms = da::nowUnixMillis() + 3600 * 1000;
  std::string error;
  ASSERT_TRUE(queue.add(task, "", error)) << error;
  EXPECT_EQ(filesIn(scratch.path()), 1u) << "stored before the key is used";
  EXPECT_TRUE(queue.waitUntilSettled(da::nowUnixMillis(), 2s));
  EXPECT_TRUE(recorder.seen().empty()) << "not due yet";
  queue.dueNow(task.id);
  ASSERT_TRUE(queue.waitUntilSettled(da::nowUnixMillis() + 1000, 5s));
  EXPECT_EQ(recorder.seen(), std::vector<std::string>{"deploy_key:deploy-agent dep_1:team-token"});
  EXPECT_EQ(filesIn(scratch.path()), 0u);
  // The file never held a key or a token.
}

TEST(CleanupQueue, APendingDeletionSurvivesARestartAndRunsWhenDue) {
  testsupport::ScratchDir scratch("cleanup");
  da::CleanupTask task;
  task.kind = "project";
  task.project_id = 42;
  task.due_at_ms = da::nowUnixMillis() - 1;  // its TTL passed while the agent was down
  {
    da::CleanupQueue first(scratch.path(), "team-token", [](const da::CleanupTask&, const std::string&, std::string&) {
      return da::CleanupResult::kRetryLater;
    });
    std::string error;
    task.due_at_ms = da::nowUnixMillis() + 3600 * 1000;
    ASSERT_TRUE(first.add(task, "", error)) << error;
  }  // the agent stops before the task is due
  std::ifstream stored(scratch.path() / (task.id + ".json"));
  std::string text((std::istreambuf_iterator<char>(stored)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.find("team-token"), std::string::npos);
  // Edit the due time as if the TTL had passed during the downtime.
  auto json = nlohmann::json::parse(text);
  json["due_at_ms"] = da::nowUnixMillis() - 1;
  std::ofstream(scratch.path() / (task.id + ".json")) << json.dump();

  Recorder recorder;
  da::CleanupQueue second(scratch.path(), "team-token", recorder.executor());
  ASSERT_EQ(second.start(), "");
  ASSERT_TRUE(second.waitUntilSettled(da::nowUnixMillis() + 1000, 5s));
  EXPECT_EQ(recorder.seen(), std::vector<std::string>{"project:42:team-token"});
  EXPECT_EQ(filesIn(scratch.path()), 0u);
}

TEST(CleanupQueue, AtStartUpAMintedKeyIsDueAtOnceAndAProjectKeepsItsTime) {
  testsupport::ScratchDir scratch("cleanup");
  da::CleanupTask key;
  key.kind = "deploy_key";
  key.deployment = "happy-otter-123";
  key.key_name = "deploy-agent dep_2";
  key.due_at_ms = da::nowUnixMillis() + 3600 * 1000;  // the key's expiry
  da::CleanupTask project;
  project.kind = "project";
  project.project_id = 9;
  project.due_at_ms = da::nowUnixMillis() + 3600 * 1000;  // its TTL
  {
    da::CleanupQueue first(scratch.path(), "team-token", [](const da::CleanupTask&, const std::string&, std::string&) {
      return da::CleanupResult::kRetryLater;
    });
    std::string error;
    ASSERT_TRUE(first.add(key, "", error)) << error;
    ASSERT_TRUE(first.add(project, "", error)) << error;
  }  // the agent stops while the key's job runs: that job is over after any restart

  Recorder recorder;
  da::CleanupQueue second(scratch.path(), "team-token", recorder.executor());
  ASSERT_EQ(second.start(), "");
  ASSERT_TRUE(second.waitUntilSettled(da::nowUnixMillis() + 1000, 5s));
  EXPECT_EQ(recorder.seen(), std::vector<std::string>{"deploy_key:deploy-agent dep_2:team-token"});
  ASSERT_EQ(second.pending().size(), 1u);
  EXPECT_EQ(second.pending()[0].project_id, 9);
  EXPECT_EQ(filesIn(scratch.path()), 1u);
}

TEST(CleanupQueue, ACallersTokenIsNeverWrittenAndItsTaskLivesInMemory) {
  testsupport::ScratchDir scratch("cleanup");
  Recorder recorder;
  da::CleanupQueue queue(scratch.path(), "", recorder.executor());
  ASSERT_EQ(queue.start(), "");
  da::CleanupTask task;
  task.kind = "project";
  task.project_id = 7;
  task.due_at_ms = da::nowUnixMillis();
  std::string error;
  ASSERT_TRUE(queue.add(task, "team:acme|user-grant", error));
  ASSERT_TRUE(queue.waitUntilSettled(da::nowUnixMillis() + 1000, 5s));
  EXPECT_EQ(recorder.seen(), std::vector<std::string>{"project:7:team:acme|user-grant"});
  EXPECT_EQ(filesIn(scratch.path()), 0u);
}

TEST(CleanupQueue, RetryableFailuresAreRetriedWithBackoffAndOthersDropped) {
  EXPECT_EQ(da::CleanupQueue::backoffMs(1), 2000);
  EXPECT_EQ(da::CleanupQueue::backoffMs(2), 4000);
  EXPECT_EQ(da::CleanupQueue::backoffMs(30), 600000);
  testsupport::ScratchDir scratch("cleanup");
  Recorder recorder;
  recorder.script = {da::CleanupResult::kRetryLater};
  da::CleanupQueue queue(scratch.path(), "team-token", recorder.executor());
  ASSERT_EQ(queue.start(), "");
  da::CleanupTask task;
  task.kind = "project";
  task.project_id = 9;
  task.due_at_ms = da::nowUnixMillis();
  std::string error;
  ASSERT_TRUE(queue.add(task, "", error));
  ASSERT_TRUE(queue.waitUntilSettled(da::nowUnixMillis() + 500, 5s));
  ASSERT_EQ(recorder.seen().size(), 1u);
  auto pending = queue.pending();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].attempts, 1);
  EXPECT_GE(pending[0].due_at_ms, da::nowUnixMillis() + 1000) << "backed off";
  EXPECT_EQ(filesIn(scratch.path()), 1u) << "still owed, still stored";
  queue.dueNow(task.id);
  ASSERT_TRUE(queue.waitUntilSettled(da::nowUnixMillis() + 1000, 5s));
  EXPECT_EQ(recorder.seen().size(), 2u);
  EXPECT_TRUE(queue.pending().empty());

  recorder.script = {da::CleanupResult::kGaveUp};
  da::CleanupTask hopeless = task;
  hopeless.id.clear();
  ASSERT_TRUE(queue.add(hopeless, "", error));
  ASSERT_TRUE(queue.waitUntilSettled(da::nowUnixMillis() + 1000, 5s));
  EXPECT_TRUE(queue.pending().empty()) << "a non-retryable failure is logged and dropped";
  EXPECT_EQ(filesIn(scratch.path()), 0u);
}

}  // namespace

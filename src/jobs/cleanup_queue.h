// Deletions the agent owes the Convex cloud: a deploy key or preview deploy key it minted, at the
// end of its job (whatever the outcome), and a project it created, when its time to live is up. A deletion is
// written to disk before the thing it deletes is used, so a restart in between resumes it; one
// thread carries them out when due, retrying with backoff while the failure is retryable.
//
// Only deletions made with the agent's configured team token are persisted: a caller's token
// (Convex-Access-Token) is never written anywhere, so its deletions live in memory and a
// restart loses them (the job's report says so).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace da {

struct CleanupTask {
  std::string id;
  std::string kind;          // "deploy_key", "preview_deploy_key" or "project"
  std::string deployment;    // deploy_key: the key's deployment
  std::string key_name;      // either key: its name (the API deletes by name; the key is never stored)
  int64_t project_id = 0;    // project, preview_deploy_key
  std::string job_id;        // for logs
  int64_t due_at_ms = 0;
  int attempts = 0;
};

enum class CleanupResult {
  kDone,        // deleted, or already gone
  kRetryLater,  // a retryable failure (network, 429, 5xx)
  kGaveUp,      // a failure that retrying cannot fix (401, 403, ...): logged and dropped
};

// Carries out one task with `token`; `detail` says what happened, for the log (no secrets).
using CleanupExecutor = std::function<CleanupResult(const CleanupTask& task, const std::string& token, std::string& detail)>;

// The real executor: deletes through the Management API at settings.convex_url; a deletion that
// finds nothing (404) is done. `cancel` ends calls in flight when the agent stops.
struct Settings;
CleanupExecutor managementApiCleanup(const Settings& settings, const std::atomic<bool>* cancel);

class CleanupQueue {
 public:
  // `dir` holds one JSON file per persisted task. `team_token` may be empty (then only tasks
  // with a caller's token can run).
  CleanupQueue(std::filesystem::path dir, std::string team_token, CleanupExecutor executor);
  ~CleanupQueue();
  CleanupQueue(const CleanupQueue&) = delete;
  CleanupQueue& operator=(const CleanupQueue&) = delete;

  // Loads the persisted tasks (a restart resumes them) and starts the thread. Returns a problem or "".
  std::string start();
  void stop();

  // Schedules a task. `caller_token` empty: the team token, and the task is persisted first
  // (false + `error` when it cannot be: then the caller must not create what it would delete).
  bool add(CleanupTask& task, const std::string& caller_token, std::string& error);
  // Makes a task due now (its job ended); unknown ids are ignored.
  void dueNow(const std::string& id);
  // Carries a task out in the calling thread now, so its job's report can say how it went;
  // a retryable failure leaves it to the queue's thread. Unknown or running ids: kRetryLater.
  CleanupResult runNow(const std::string& id, std::string& detail);

  std::vector<CleanupTask> pending() const;
  // Blocks until no task is due at or before `until_ms`, or `timeout` passes (tests). True if so.
  bool waitUntilSettled(int64_t until_ms, std::chrono::milliseconds timeout) const;

  // Delay before attempt `attempts + 1` of a retryable failure: 2 s doubling to 10 min.
  static int64_t backoffMs(int attempts);

 private:
  struct Entry {
    CleanupTask task;
    std::string caller_token;  // empty: the team token
  };
  void run();
  CleanupResult execute(const Entry& entry, std::string& detail) const;  // without the lock
  // Records the outcome of an attempt (under the lock).
  void settle(const std::string& id, CleanupResult result, const std::string& detail);
  bool persist(const CleanupTask& task, std::string& error) const;
  void forget(const std::string& id) const;

  std::filesystem::path dir_;
  std::string team_token_;
  CleanupExecutor executor_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::map<std::string, Entry> entries_;
  int running_ = 0;  // tasks being executed right now
  std::set<std::string> busy_;  // their ids
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace da

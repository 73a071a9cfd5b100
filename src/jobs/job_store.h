// Reports of every accepted deploy, in memory and persisted as <state>/jobs/<id>/report.json
// (written to a uniquely named temporary file, fsynced and renamed, so a crash never leaves
// half a report). A job that was queued or running when the agent stopped is marked failed on
// the next start: accepted work is never silently lost. A report that cannot be written (disk
// full, read-only disk, something in the way) is logged, never thrown: the in-memory report
// stays the truth for as long as the process lives.
#pragma once

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "report/deploy_report.h"

namespace da {

// A finished job's work folder is renamed to this before it is deleted.
inline constexpr const char* kTrashDirName = ".trash";

// Replaces `target` with `content` through a temporary file next to it with a unique name
// (<name>.tmp-<16 hex>), fsynced before the rename, and fsyncs the folder after it: a crash
// leaves the old file or the new one, never a torn or empty one, and nothing left at a
// temporary path can block a write. Never throws; on failure removes the temporary file,
// sets `error` (naming the path and the OS error) and returns false.
bool replaceFileDurably(const std::filesystem::path& target, std::string_view content,
                        std::string& error);

class JobStore {
 public:
  explicit JobStore(std::filesystem::path jobs_dir);

  // Reads every report.json; marks interrupted jobs failed and deletes work folders a stop
  // left behind. A job whose report is unreadable (empty, corrupt, not a file) is treated as
  // interrupted: it gets a fresh failed report. Never throws: a folder it cannot handle is
  // logged and skipped. Returns how many jobs were interrupted.
  size_t recover();

  std::filesystem::path jobDir(const std::string& id) const { return jobs_dir_ / id; }

  // A job's events, for GET /v1/deploys/{id}/events: `phase` (each change of status or phase),
  // `log` (a redacted line of npm's or the CLI's output) and, last, `report` (the final report).
  // Numbered from 1 per job and appended to <job>/events.jsonl, so a finished job's events are
  // served again after a restart.
  struct Event {
    uint64_t id = 0;
    std::string type;
    nlohmann::json data;
  };
  void appendEvent(const std::string& job_id, const std::string& type, nlohmann::json data);
  // Events after `after_id`, at most `limit`; waits up to `timeout` for one when there are none
  // yet and the job is not finished. `finished` says whether the last event (`report`) is among
  // them or was before.
  std::vector<Event> eventsAfter(const std::string& job_id, uint64_t after_id, size_t limit,
                                 std::chrono::milliseconds timeout, bool& finished) const;

  // Wakes every eventsAfter and waitForTerminal at once, for good: the server is stopping, and
  // long polls and event streams answer with what they have.
  void closeWaiters();

  // Called (outside the store's lock, before the finished report is visible) each time a job
  // becomes terminal through put: metrics.
  void onFinished(std::function<void(const DeployReport&)> observer) { on_finished_ = std::move(observer); }
  // Called (outside the lock) once the finished report is stored and visible: what acts on a
  // finished job (its webhook) reads and updates the report as everyone else sees it.
  void afterFinished(std::function<void(const DeployReport&)> observer) { after_finished_ = std::move(observer); }

  // Create or replace, persist, wake waiters. Never throws; false when the report could not be
  // persisted (logged; the in-memory report is updated regardless).
  bool put(const DeployReport& report);
  std::optional<DeployReport> get(const std::string& id) const;
  // Changes a finished job's report (its callback's delivery attempts), persists it and wakes
  // waiters. False when the job is not (or no longer) here: deleted, or removed by retention.
  bool update(const std::string& id, const std::function<void(DeployReport&)>& change);
  // Forgets a job that was never accepted (the queue refused it) and removes its directory.
  void discard(const std::string& id);

  // Reports newest first (created_at, then id, descending), optionally of one status, at most
  // `limit`, starting after the position `after` names (a cursor from a previous page).
  struct ListPosition {
    int64_t created_at_ms = 0;
    std::string id;
  };
  std::vector<DeployReport> list(std::optional<DeployStatus> status, size_t limit,
                                 const std::optional<ListPosition>& after) const;

  enum class RemoveResult { kRemoved, kNotFound, kNotFinished };
  // Forgets a finished job and deletes its folder (report, logs, anything left).
  RemoveResult remove(const std::string& id);
  // Deletes the work folders of finished jobs (kept by --keep-workdirs) and then whole finished
  // jobs, oldest first, until the jobs folder holds at most `budget_bytes`; and every finished
  // job older than `max_age`. Returns how many jobs were removed.
  size_t enforceRetention(std::chrono::milliseconds max_age, uint64_t budget_bytes);

  // Blocks until the job is terminal or `timeout` passes; returns the latest report.
  std::optional<DeployReport> waitForTerminal(const std::string& id,
                                              std::chrono::milliseconds timeout) const;
  // Blocks until `done` holds for the job's report (or it is gone) or `timeout` passes.
  std::optional<DeployReport> waitUntil(const std::string& id, const std::function<bool(const DeployReport&)>& done,
                                        std::chrono::milliseconds timeout) const;

 private:
  bool persist(const DeployReport& report) const;  // logs a failure, never throws
  bool recoverJob(const std::filesystem::path& job_dir);  // true when now marked failed

  std::filesystem::path jobs_dir_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::map<std::string, DeployReport> reports_;
  std::function<void(const DeployReport&)> on_finished_;
  std::function<void(const DeployReport&)> after_finished_;
  // Per job: how many events exist (loaded from events.jsonl on first use).
  mutable std::map<std::string, uint64_t> event_counts_;
  bool streams_closed_ = false;
  uint64_t eventCountLocked(const std::string& job_id) const;
  std::mutex events_mutex_;  // serialises appends to one file
};

}  // namespace da

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
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

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

  // Create or replace, persist, wake waiters. Never throws; false when the report could not be
  // persisted (logged; the in-memory report is updated regardless).
  bool put(const DeployReport& report);
  std::optional<DeployReport> get(const std::string& id) const;
  // Forgets a job that was never accepted (the queue refused it) and removes its directory.
  void discard(const std::string& id);

  // Blocks until the job is terminal or `timeout` passes; returns the latest report.
  std::optional<DeployReport> waitForTerminal(const std::string& id,
                                              std::chrono::milliseconds timeout) const;

 private:
  bool persist(const DeployReport& report) const;  // logs a failure, never throws
  bool recoverJob(const std::filesystem::path& job_dir);  // true when now marked failed

  std::filesystem::path jobs_dir_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::map<std::string, DeployReport> reports_;
};

}  // namespace da

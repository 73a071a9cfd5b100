// Reports of every accepted deploy, in memory and persisted as <state>/jobs/<id>/report.json
// (written to a temporary file and renamed, so a crash never leaves half a report). A job
// that was queued or running when the agent stopped is marked failed on the next start:
// accepted work is never silently lost.
#pragma once

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "report/deploy_report.h"

namespace da {

// A finished job's work folder is renamed to this before it is deleted.
inline constexpr const char* kTrashDirName = ".trash";

class JobStore {
 public:
  explicit JobStore(std::filesystem::path jobs_dir);

  // Reads every report.json; marks interrupted jobs failed and deletes work folders a stop
  // left behind. Returns how many jobs were interrupted.
  size_t recover();

  std::filesystem::path jobDir(const std::string& id) const { return jobs_dir_ / id; }

  void put(const DeployReport& report);  // create or replace, then persist
  std::optional<DeployReport> get(const std::string& id) const;
  // Forgets a job that was never accepted (the queue refused it) and removes its directory.
  void discard(const std::string& id);

  // Blocks until the job is terminal or `timeout` passes; returns the latest report.
  std::optional<DeployReport> waitForTerminal(const std::string& id,
                                              std::chrono::milliseconds timeout) const;

 private:
  void persist(const DeployReport& report) const;

  std::filesystem::path jobs_dir_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::map<std::string, DeployReport> reports_;
};

}  // namespace da

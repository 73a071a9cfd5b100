#include "jobs/job_store.h"

#include <fstream>

#include <spdlog/spdlog.h>

#include "util/ids.h"

namespace da {

namespace fs = std::filesystem;

JobStore::JobStore(fs::path jobs_dir) : jobs_dir_(std::move(jobs_dir)) {
  fs::create_directories(jobs_dir_);
}

size_t JobStore::recover() {
  size_t interrupted = 0;
  for (const auto& entry : fs::directory_iterator(jobs_dir_)) {
    const fs::path report_path = entry.path() / "report.json";
    if (!entry.is_directory()) continue;
    if (!fs::exists(report_path)) {
      // The agent died while receiving or unpacking this upload: it was never accepted (no
      // id was answered), so nobody can ask for it and nothing of it is kept.
      if (isValidDeployId(entry.path().filename().string())) {
        spdlog::info("removing {}: an upload the agent never accepted", entry.path().string());
        std::error_code ignored;
        fs::remove_all(entry.path(), ignored);
      }
      continue;
    }
    DeployReport report;
    try {
      std::ifstream in(report_path);
      report = DeployReport::fromJson(nlohmann::json::parse(in));
    } catch (const std::exception& e) {
      spdlog::warn("skipping unreadable report {}: {}", report_path.string(), e.what());
      continue;
    }
    std::error_code ignored;
    fs::remove_all(entry.path() / kTrashDirName, ignored);
    // The upload is needed only until the job ends; one left behind was cut off mid-cleanup.
    fs::remove(entry.path() / "bundle.upload", ignored);
    if (!isTerminal(report.status)) {
      fs::remove_all(entry.path() / "work", ignored);
      // The deploy key lived only in memory, so the job cannot be resumed; say so plainly.
      report.status = DeployStatus::kFailed;
      report.error = DeployError{"agent_restarted",
                                 "the agent stopped while this deploy was " + report.phase +
                                     "; it was not completed and can be submitted again"};
      report.finished_at_ms = nowUnixMillis();
      ++interrupted;
      persist(report);
    }
    std::lock_guard lock(mutex_);
    reports_[report.id] = report;
  }
  return interrupted;
}

void JobStore::put(const DeployReport& report) {
  persist(report);
  {
    std::lock_guard lock(mutex_);
    reports_[report.id] = report;
  }
  changed_.notify_all();
}

std::optional<DeployReport> JobStore::get(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = reports_.find(id);
  if (it == reports_.end()) return std::nullopt;
  return it->second;
}

void JobStore::discard(const std::string& id) {
  {
    std::lock_guard lock(mutex_);
    reports_.erase(id);
  }
  std::error_code ignored;
  fs::remove_all(jobs_dir_ / id, ignored);
  changed_.notify_all();
}

std::optional<DeployReport> JobStore::waitForTerminal(const std::string& id,
                                                      std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, timeout, [&] {
    auto it = reports_.find(id);
    return it == reports_.end() || isTerminal(it->second.status);
  });
  auto it = reports_.find(id);
  if (it == reports_.end()) return std::nullopt;
  return it->second;
}

void JobStore::persist(const DeployReport& report) const {
  const fs::path dir = jobs_dir_ / report.id;
  fs::create_directories(dir);
  const fs::path temp = dir / "report.json.tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << report.toStoredJson().dump(2) << '\n';
    out.flush();
    if (!out) throw std::runtime_error("cannot write " + temp.string());
  }
  fs::rename(temp, dir / "report.json");
}

}  // namespace da

#include "jobs/cleanup_queue.h"

#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "config/settings.h"
#include "convex/management_client.h"
#include "jobs/job_store.h"
#include "report/deploy_report.h"
#include "util/ids.h"

namespace da {

namespace fs = std::filesystem;

namespace {

nlohmann::json toJson(const CleanupTask& task) {
  return {{"id", task.id},           {"kind", task.kind},       {"deployment", task.deployment},
          {"key_name", task.key_name}, {"project_id", task.project_id}, {"job_id", task.job_id},
          {"due_at_ms", task.due_at_ms}, {"attempts", task.attempts}};
}

std::optional<CleanupTask> fromJson(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("id") || !j["id"].is_string() || !j.contains("kind") || !j["kind"].is_string()) {
    return std::nullopt;
  }
  CleanupTask task;
  task.id = j["id"];
  task.kind = j["kind"];
  task.deployment = j.value("deployment", "");
  task.key_name = j.value("key_name", "");
  task.project_id = j.value("project_id", int64_t{0});
  task.job_id = j.value("job_id", "");
  task.due_at_ms = j.value("due_at_ms", int64_t{0});
  task.attempts = j.value("attempts", 0);
  if (task.kind != "deploy_key" && task.kind != "preview_deploy_key" && task.kind != "project") return std::nullopt;
  return task;
}

std::string describe(const CleanupTask& task) {
  if (task.kind == "project") return "project " + std::to_string(task.project_id);
  if (task.kind == "preview_deploy_key") {
    return "preview deploy key '" + task.key_name + "' of project " + std::to_string(task.project_id);
  }
  return "deploy key '" + task.key_name + "' of " + task.deployment;
}

}  // namespace

CleanupExecutor managementApiCleanup(const Settings& settings, const std::atomic<bool>* cancel) {
  return [&settings, cancel](const CleanupTask& task, const std::string& token, std::string& detail) {
    convex::HttpOptions http = convex::httpOptionsFromEnvironment(settings.env_passthrough, settings.convex_url);
    http.cancel = cancel;
    convex::ManagementClient client(settings.convex_url, token, http);
    const convex::DeleteResult result =
        task.kind == "project"              ? client.deleteProject(task.project_id)
        : task.kind == "preview_deploy_key" ? client.deletePreviewDeployKey(task.project_id, task.key_name)
                                            : client.deleteDeployKey(task.deployment, task.key_name);
    if (!result.error) {
      detail = result.already_gone ? "it was already gone" : "";
      return CleanupResult::kDone;
    }
    const auto& e = *result.error;
    detail = e.reason + (e.http_status ? " HTTP " + std::to_string(e.http_status) : "") +
             (e.code.empty() ? "" : " " + e.code) + ": " + e.message;
    return e.retryable || e.reason == "cancelled" ? CleanupResult::kRetryLater : CleanupResult::kGaveUp;
  };
}

CleanupQueue::CleanupQueue(fs::path dir, std::string team_token, CleanupExecutor executor)
    : dir_(std::move(dir)), team_token_(std::move(team_token)), executor_(std::move(executor)) {}

CleanupQueue::~CleanupQueue() { stop(); }

int64_t CleanupQueue::backoffMs(int attempts) {
  int64_t delay = 2000;
  for (int i = 1; i < attempts && delay < 600000; ++i) delay *= 2;
  return std::min<int64_t>(delay, 600000);
}

std::string CleanupQueue::start() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return "cannot create " + dir_.string() + ": " + ec.message();
  {
    std::lock_guard lock(mutex_);
    for (const auto& entry : fs::directory_iterator(dir_, ec)) {
      if (entry.path().extension() != ".json") continue;
      std::ifstream in(entry.path());
      auto parsed = nlohmann::json::parse(in, nullptr, false);
      auto task = fromJson(parsed);
      if (!task) {
        spdlog::warn("cleanup: ignoring unreadable {}", entry.path().string());
        continue;
      }
      // No job survives a restart, so the job a minted key was for has ended: its key goes now.
      if (task->kind != "project") task->due_at_ms = std::min(task->due_at_ms, nowUnixMillis());
      spdlog::info("cleanup: resuming the deletion of {} (job {})", describe(*task), task->job_id);
      entries_[task->id] = Entry{*task, ""};
    }
    stopping_ = false;
  }
  thread_ = std::thread([this] { run(); });
  return "";
}

void CleanupQueue::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool CleanupQueue::persist(const CleanupTask& task, std::string& error) const {
  return replaceFileDurably(dir_ / (task.id + ".json"), toJson(task).dump(), error);
}

void CleanupQueue::forget(const std::string& id) const {
  std::error_code ignored;
  fs::remove(dir_ / (id + ".json"), ignored);
}

bool CleanupQueue::add(CleanupTask& task, const std::string& caller_token, std::string& error) {
  if (task.id.empty()) task.id = newDeployId();
  if (caller_token.empty() && !persist(task, error)) return false;
  {
    std::lock_guard lock(mutex_);
    entries_[task.id] = Entry{task, caller_token};
  }
  changed_.notify_all();
  return true;
}

void CleanupQueue::dueNow(const std::string& id) {
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return;
    it->second.task.due_at_ms = std::min(it->second.task.due_at_ms, nowUnixMillis());
    if (it->second.caller_token.empty()) {
      std::string ignored;
      persist(it->second.task, ignored);
    }
  }
  changed_.notify_all();
}

std::vector<CleanupTask> CleanupQueue::pending() const {
  std::lock_guard lock(mutex_);
  std::vector<CleanupTask> tasks;
  for (const auto& [id, entry] : entries_) tasks.push_back(entry.task);
  return tasks;
}

bool CleanupQueue::waitUntilSettled(int64_t until_ms, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] {
    if (running_ > 0) return false;
    return std::none_of(entries_.begin(), entries_.end(),
                        [&](const auto& entry) { return entry.second.task.due_at_ms <= until_ms; });
  });
}

void CleanupQueue::settle(const std::string& id, CleanupResult result, const std::string& detail) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  const CleanupTask task = it->second.task;
  if (result == CleanupResult::kRetryLater) {
    it->second.task.attempts += 1;
    it->second.task.due_at_ms = nowUnixMillis() + backoffMs(it->second.task.attempts);
    spdlog::warn("cleanup: deleting {} (job {}) failed, attempt {}: {}; retrying later", describe(task), task.job_id,
                 it->second.task.attempts, detail);
    if (it->second.caller_token.empty()) {
      std::string ignored;
      persist(it->second.task, ignored);
    }
    return;
  }
  if (result == CleanupResult::kDone) {
    spdlog::info("cleanup: deleted {} (job {}){}", describe(task), task.job_id, detail.empty() ? "" : ": " + detail);
  } else {
    spdlog::error("cleanup: giving up deleting {} (job {}): {}", describe(task), task.job_id, detail);
  }
  forget(id);
  entries_.erase(it);
}

CleanupResult CleanupQueue::execute(const Entry& entry, std::string& detail) const {
  const std::string& token = entry.caller_token.empty() ? team_token_ : entry.caller_token;
  if (token.empty()) {
    detail = "no token to delete it with (the agent has no team token configured)";
    return CleanupResult::kGaveUp;
  }
  try {
    return executor_(entry.task, token, detail);
  } catch (const std::exception& e) {
    detail = e.what();
    return CleanupResult::kRetryLater;
  }
}

CleanupResult CleanupQueue::runNow(const std::string& id, std::string& detail) {
  Entry entry;
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(id);
    if (it == entries_.end() || busy_.count(id)) {
      detail = "not pending here";
      return CleanupResult::kRetryLater;
    }
    entry = it->second;
    busy_.insert(id);
    ++running_;
  }
  const CleanupResult result = execute(entry, detail);
  {
    std::lock_guard lock(mutex_);
    --running_;
    busy_.erase(id);
    settle(id, result, detail);
  }
  changed_.notify_all();
  return result;
}

void CleanupQueue::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    const int64_t now = nowUnixMillis();
    Entry* due = nullptr;
    int64_t next_due = INT64_MAX;
    for (auto& [id, entry] : entries_) {
      if (busy_.count(id)) continue;
      if (entry.task.due_at_ms <= now) {
        if (!due || entry.task.due_at_ms < due->task.due_at_ms) due = &entry;
      } else {
        next_due = std::min(next_due, entry.task.due_at_ms);
      }
    }
    if (!due) {
      if (next_due == INT64_MAX) {
        changed_.wait(lock);
      } else {
        changed_.wait_for(lock, std::chrono::milliseconds(std::min<int64_t>(next_due - now, 60000)));
      }
      continue;
    }
    const Entry entry = *due;
    ++running_;
    busy_.insert(entry.task.id);
    lock.unlock();
    std::string detail;
    const CleanupResult result = execute(entry, detail);
    lock.lock();
    --running_;
    busy_.erase(entry.task.id);
    settle(entry.task.id, result, detail);
    changed_.notify_all();
  }
}

}  // namespace da

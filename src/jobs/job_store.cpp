#include "jobs/job_store.h"

#include "jobs/job_sandbox.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <random>
#include <system_error>

#include <spdlog/spdlog.h>

#include "util/ids.h"

namespace da {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kTempMarker = ".tmp-";
constexpr size_t kTempSuffixLength = 16;

std::string osError(int err) { return std::error_code(err, std::generic_category()).message(); }

std::string randomHex() {
  std::random_device random;  // the kernel's random source on Linux
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  while (hex.size() < kTempSuffixLength) {
    for (unsigned bits = random(), i = 0; i < 8 && hex.size() < kTempSuffixLength; ++i, bits >>= 4) {
      hex.push_back(kHex[bits & 0xF]);
    }
  }
  return hex;
}

bool writeAll(int fd, std::string_view content) {
  while (!content.empty()) {
    const ssize_t written = ::write(fd, content.data(), content.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    content.remove_prefix(static_cast<size_t>(written));
  }
  return true;
}

// What replaceFileDurably (<name>.tmp-<hex>) or an older agent (<name>.tmp) leaves when it dies
// between creating and renaming its temporary file.
bool isLeftoverTemporary(const std::string& name) {
  if (name.size() > 4 && name.ends_with(".tmp")) return true;
  const size_t tail = kTempMarker.size() + kTempSuffixLength;
  if (name.size() <= tail || name.compare(name.size() - tail, kTempMarker.size(), kTempMarker) != 0) {
    return false;
  }
  for (size_t i = name.size() - kTempSuffixLength; i < name.size(); ++i) {
    if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return false;
  }
  return true;
}

void removeLeftoverTemporaries(const fs::path& job_dir) {
  std::error_code ec;
  std::vector<fs::path> leftovers;
  for (fs::directory_iterator it(job_dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (isLeftoverTemporary(it->path().filename().string())) leftovers.push_back(it->path());
  }
  for (const auto& path : leftovers) {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
}

}  // namespace

bool replaceFileDurably(const fs::path& target, std::string_view content, std::string& error) {
  try {
    fs::path temp;
    int fd = -1;
    // O_EXCL: a file, directory or symlink already at the name is never reused; try another.
    for (int attempt = 0; attempt < 4 && fd < 0; ++attempt) {
      temp = target;
      temp += std::string(kTempMarker) + randomHex();
      fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
      if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
      error = "cannot create " + temp.string() + ": " + osError(errno);
      return false;
    }
    bool written = writeAll(fd, content) && ::fsync(fd) == 0;
    int err = errno;
    if (::close(fd) != 0 && written) {
      written = false;
      err = errno;
    }
    if (!written) {
      ::unlink(temp.c_str());
      error = "cannot write " + temp.string() + ": " + osError(err);
      return false;
    }
    if (::rename(temp.c_str(), target.c_str()) != 0) {
      err = errno;
      ::unlink(temp.c_str());
      error = "cannot rename " + temp.string() + " to " + target.string() + ": " + osError(err);
      return false;
    }
    // The rename is durable only once the folder is.
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool synced = dir_fd >= 0 && (::fsync(dir_fd) == 0 || errno == EINVAL);  // EINVAL: cannot sync folders
    err = errno;
    if (dir_fd >= 0) ::close(dir_fd);
    if (!synced) {
      error = "cannot sync " + dir.string() + ": " + osError(err) + " (" + target.string() +
              " is replaced but may not survive a crash)";
      return false;
    }
    return true;
  } catch (const std::exception& e) {
    error = "cannot replace " + target.string() + ": " + e.what();
    return false;
  }
}

JobStore::JobStore(fs::path jobs_dir) : jobs_dir_(std::move(jobs_dir)) {
  fs::create_directories(jobs_dir_);
}

size_t JobStore::recover() {
  size_t interrupted = 0;
  std::error_code ec;
  for (fs::directory_iterator it(jobs_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path job_dir = it->path();
    try {
      if (recoverJob(job_dir)) ++interrupted;
    } catch (const std::exception& e) {
      spdlog::error("skipping {} on recovery: {}", job_dir.string(), e.what());
    }
  }
  if (ec) {
    spdlog::error("cannot list {} completely ({}); deploys not listed are unknown to this run",
                  jobs_dir_.string(), ec.message());
  }
  return interrupted;
}

bool JobStore::recoverJob(const fs::path& job_dir) {
  std::error_code ec;
  if (!fs::is_directory(job_dir, ec)) {
    if (ec) spdlog::warn("skipping {} on recovery: {}", job_dir.string(), ec.message());
    return false;
  }
  // A crash leaves the job's volume mounted on its work folder; nothing could delete it.
  if (unmountLeftoverJobVolume(job_dir)) spdlog::info("unmounted the job volume left on {}", job_dir.string());
  const std::string id = job_dir.filename().string();
  // A removal (DELETE, retention) the agent died in the middle of.
  if (id.rfind(std::string(kTrashDirName) + "-", 0) == 0) {
    std::error_code ignored;
    fs::remove_all(job_dir, ignored);
    return false;
  }
  const bool named_like_a_job = isValidDeployId(id);
  const fs::path report_path = job_dir / "report.json";
  const auto report_status = fs::symlink_status(report_path, ec);
  if (report_status.type() == fs::file_type::not_found) {
    // The agent died while receiving or unpacking this upload: it was never accepted (no
    // id was answered), so nobody can ask for it and nothing of it is kept.
    if (named_like_a_job) {
      spdlog::info("removing {}: an upload the agent never accepted", job_dir.string());
      std::error_code ignored;
      fs::remove_all(job_dir, ignored);
    }
    return false;
  }

  std::optional<DeployReport> report;
  std::string unreadable;
  if (ec) {
    unreadable = ec.message();
  } else {
    try {
      std::ifstream in(report_path);
      if (!in) throw std::runtime_error("cannot open it");
      report = DeployReport::fromJson(nlohmann::json::parse(in));
      if (report->id != id) {
        unreadable = "it names deploy '" + report->id + "'";
        report.reset();
      }
    } catch (const std::exception& e) {
      unreadable = e.what();
      report.reset();
    }
  }
  const bool lost = !report;
  if (lost) {
    if (!named_like_a_job) {
      spdlog::warn("skipping {} on recovery: unreadable report ({})", report_path.string(), unreadable);
      return false;
    }
    // Empty or torn by a crash, or damaged since: what happened to the deploy is unknown, so
    // it is reported as interrupted rather than left unanswerable.
    spdlog::error("the report {} is unreadable ({}); deploy {} is marked failed", report_path.string(),
                  unreadable, id);
    report.emplace();
    report->id = id;
    report->phase = "unknown";
    report->status = DeployStatus::kFailed;
    report->error = DeployError{"agent_restarted",
                                "the agent restarted and could not read this deploy's report; whether "
                                "it completed is unknown, and it can be submitted again",
                                "", true};
  }

  std::error_code ignored;
  fs::remove_all(job_dir / kTrashDirName, ignored);
  // The upload is needed only until the job ends; one left behind was cut off mid-cleanup.
  fs::remove(job_dir / "bundle.upload", ignored);
  removeLeftoverTemporaries(job_dir);
  bool interrupted = false;
  if (lost || !isTerminal(report->status)) {
    fs::remove_all(job_dir / "work", ignored);
    if (!lost) {
      // The deploy key lived only in memory, so the job cannot be resumed; say so plainly.
      report->status = DeployStatus::kFailed;
      report->error = DeployError{"agent_restarted",
                                  "the agent stopped while this deploy was " + report->phase +
                                      "; it was not completed and can be submitted again",
                                  "", true};
    }
    report->finished_at_ms = nowUnixMillis();
    interrupted = true;
    persist(*report);  // a failure is logged; this run answers from memory either way
  }
  {
    std::lock_guard lock(mutex_);
    reports_[report->id] = *report;
  }
  if (interrupted) {
    // A client following its events, before the restart or after, sees how it ended.
    appendEvent(report->id, "phase", {{"status", statusName(report->status)}, {"phase", report->phase}});
    appendEvent(report->id, "report", report->toJson());
  }
  return interrupted;
}

bool JobStore::put(const DeployReport& report) {
  const bool stored = persist(report);
  bool finished_now = false;
  bool moved = false;
  {
    std::lock_guard lock(mutex_);
    auto found = reports_.find(report.id);
    moved = found == reports_.end() || found->second.status != report.status || found->second.phase != report.phase;
    finished_now = isTerminal(report.status) && (found == reports_.end() || !isTerminal(found->second.status));
  }
  // Before anyone can see the job finished (waiters, GET, events): whoever does, sees it counted.
  if (finished_now && on_finished_) {
    try {
      on_finished_(report);
    } catch (const std::exception& e) {
      spdlog::error("the finish observer of deploy {} failed: {}", report.id, e.what());
    }
  }
  {
    std::lock_guard lock(mutex_);
    reports_[report.id] = report;
  }
  if (moved) appendEvent(report.id, "phase", {{"status", statusName(report.status)}, {"phase", report.phase}});
  if (finished_now) appendEvent(report.id, "report", report.toJson());
  changed_.notify_all();
  if (finished_now && after_finished_) {
    try {
      after_finished_(report);
    } catch (const std::exception& e) {
      spdlog::error("the after-finish observer of deploy {} failed: {}", report.id, e.what());
    }
  }
  return stored;
}

bool JobStore::update(const std::string& id, const std::function<void(DeployReport&)>& change) {
  {
    // Persisted under the lock: a remove() between the change and the write would otherwise see
    // its folder written back.
    std::lock_guard lock(mutex_);
    auto it = reports_.find(id);
    if (it == reports_.end()) return false;
    change(it->second);
    persist(it->second);
  }
  changed_.notify_all();
  return true;
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

std::vector<DeployReport> JobStore::list(std::optional<DeployStatus> status, size_t limit,
                                         const std::optional<ListPosition>& after) const {
  auto newer = [](const DeployReport& a, const DeployReport& b) {
    return a.created_at_ms != b.created_at_ms ? a.created_at_ms > b.created_at_ms : a.id > b.id;
  };
  std::vector<DeployReport> matching;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, report] : reports_) {
      if (status && report.status != *status) continue;
      if (after && !(after->created_at_ms != report.created_at_ms ? report.created_at_ms < after->created_at_ms
                                                                   : report.id < after->id)) {
        continue;
      }
      matching.push_back(report);
    }
  }
  const size_t kept = std::min(limit, matching.size());
  std::partial_sort(matching.begin(), matching.begin() + static_cast<std::ptrdiff_t>(kept), matching.end(), newer);
  matching.resize(kept);
  return matching;
}

JobStore::RemoveResult JobStore::remove(const std::string& id) {
  {
    std::lock_guard lock(mutex_);
    auto it = reports_.find(id);
    if (it == reports_.end()) return RemoveResult::kNotFound;
    if (!isTerminal(it->second.status)) return RemoveResult::kNotFinished;
    reports_.erase(it);
  }
  changed_.notify_all();
  // Renamed first, so a crash halfway never leaves a job folder without its report.
  std::error_code ignored;
  const fs::path doomed = jobs_dir_ / (std::string(kTrashDirName) + "-" + id);
  fs::rename(jobs_dir_ / id, doomed, ignored);
  fs::remove_all(doomed, ignored);
  fs::remove_all(jobs_dir_ / id, ignored);
  return RemoveResult::kRemoved;
}

namespace {

uint64_t treeBytes(const fs::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    std::error_code size_error;
    if (it->is_regular_file(size_error)) {
      const auto size = it->file_size(size_error);
      if (!size_error) total += size;
    }
  }
  return total;
}

}  // namespace

size_t JobStore::enforceRetention(std::chrono::milliseconds max_age, uint64_t budget_bytes) {
  struct Finished {
    int64_t finished_at_ms;
    std::string id;
  };
  std::vector<Finished> finished;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, report] : reports_) {
      if (isTerminal(report.status)) finished.push_back({report.finished_at_ms, id});
    }
  }
  std::sort(finished.begin(), finished.end(),
            [](const Finished& a, const Finished& b) { return a.finished_at_ms < b.finished_at_ms; });
  size_t removed = 0;
  const int64_t oldest_kept = nowUnixMillis() - max_age.count();
  std::vector<Finished> young;
  for (const auto& job : finished) {
    if (job.finished_at_ms < oldest_kept) {
      if (remove(job.id) == RemoveResult::kRemoved) ++removed;
    } else {
      young.push_back(job);
    }
  }
  uint64_t used = treeBytes(jobs_dir_);
  if (used <= budget_bytes) return removed;
  // Work folders first: they are the bulk and nobody needs them once a job is done.
  std::error_code ignored;
  for (const auto& job : young) {
    if (used <= budget_bytes) break;
    const fs::path work = jobs_dir_ / job.id / "work";
    if (!fs::exists(work, ignored)) continue;
    const uint64_t bytes = treeBytes(work);
    fs::remove_all(work, ignored);
    used -= std::min(used, bytes);
  }
  // Then whole jobs, oldest first: reports and logs are kept longest.
  for (const auto& job : young) {
    if (used <= budget_bytes) break;
    const uint64_t bytes = treeBytes(jobs_dir_ / job.id);
    if (remove(job.id) == RemoveResult::kRemoved) {
      ++removed;
      used -= std::min(used, bytes);
    }
  }
  return removed;
}

uint64_t JobStore::eventCountLocked(const std::string& job_id) const {
  auto it = event_counts_.find(job_id);
  if (it != event_counts_.end()) return it->second;
  // First use since start: the file has what earlier runs appended (a torn last line, from a
  // crash mid-write, is not counted: its number is given again).
  uint64_t count = 0;
  std::ifstream in(jobs_dir_ / job_id / "events.jsonl", std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    if (!in.eof() && !line.empty()) ++count;
  }
  event_counts_[job_id] = count;
  return count;
}

void JobStore::appendEvent(const std::string& job_id, const std::string& type, nlohmann::json data) {
  std::lock_guard append_lock(events_mutex_);
  uint64_t id = 0;
  {
    std::lock_guard lock(mutex_);
    id = eventCountLocked(job_id) + 1;
  }
  const std::string line =
      nlohmann::json{{"id", id}, {"type", type}, {"data", std::move(data)}}.dump(-1, ' ', false,
                                                                               nlohmann::json::error_handler_t::replace) +
      "\n";
  std::error_code ec;
  fs::create_directories(jobs_dir_ / job_id, ec);
  std::ofstream out(jobs_dir_ / job_id / "events.jsonl", std::ios::app | std::ios::binary);
  out << line;
  out.flush();
  if (!out) {
    spdlog::error("cannot store event {} of deploy {}; it is not served", id, job_id);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    event_counts_[job_id] = id;
  }
  changed_.notify_all();
}

void JobStore::closeWaiters() {
  {
    std::lock_guard lock(mutex_);
    streams_closed_ = true;
  }
  changed_.notify_all();
}

std::vector<JobStore::Event> JobStore::eventsAfter(const std::string& job_id, uint64_t after_id, size_t limit,
                                                   std::chrono::milliseconds timeout, bool& finished) const {
  {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, timeout, [&] {
      auto report = reports_.find(job_id);
      return streams_closed_ || report == reports_.end() || eventCountLocked(job_id) > after_id;
    });
  }
  std::vector<Event> events;
  finished = false;
  std::ifstream in(jobs_dir_ / job_id / "events.jsonl", std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // a line still being written
    try {
      auto j = nlohmann::json::parse(line);
      Event event{j.at("id").get<uint64_t>(), j.at("type").get<std::string>(), j.at("data")};
      if (event.type == "report") finished = true;
      if (event.id > after_id && events.size() < limit) events.push_back(std::move(event));
    } catch (const std::exception&) {
      // A torn line from a crash: skipped.
    }
  }
  // `finished` only when nothing after the report is still to be sent.
  if (finished && !events.empty() && events.back().type != "report") finished = false;
  return events;
}

std::optional<DeployReport> JobStore::waitForTerminal(const std::string& id,
                                                      std::chrono::milliseconds timeout) const {
  return waitUntil(id, [](const DeployReport& report) { return isTerminal(report.status); }, timeout);
}

std::optional<DeployReport> JobStore::waitUntil(const std::string& id,
                                                const std::function<bool(const DeployReport&)>& done,
                                                std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, timeout, [&] {
    auto it = reports_.find(id);
    return streams_closed_ || it == reports_.end() || done(it->second);
  });
  auto it = reports_.find(id);
  if (it == reports_.end()) return std::nullopt;
  return it->second;
}

bool JobStore::persist(const DeployReport& report) const {
  const fs::path dir = jobs_dir_ / report.id;
  std::string error;
  try {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
      error = "cannot create " + dir.string() + ": " + ec.message();
    } else {
      // Output of npm or the CLI quoted in an error need not be UTF-8; it must not make the
      // report unstorable.
      const std::string text =
          report.toStoredJson().dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + '\n';
      if (replaceFileDurably(dir / "report.json", text, error)) return true;
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  spdlog::error("cannot store the report of deploy {} ({}): {}; it is kept in memory only",
                report.id, statusName(report.status), error);
  return false;
}

}  // namespace da

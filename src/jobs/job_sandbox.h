// How one job's npm and CLI runs are isolated: the paths they see, the filesystem view and
// limits of their sandbox, and the job-lifetime resources behind them (the job volume, the
// private npm cache layer). Built once per job, used by every run of the job. The network of
// each run is added by RunEgress (jobs/job_network.h).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "config/settings.h"
#include "sandbox/isolation.h"
#include "sandbox/job_volume.h"

namespace da {

// The job's folders as its processes see them: host paths in tiers none and landlock, fixed
// paths under /job in the namespaces tier.
struct JobPaths {
  std::string work;       // the job's writable folder (host: <job>/work)
  std::string app;        // the working directory of npm and the CLI
  std::string home;
  std::string tmp;
  std::string npm_cache;
};

// Paths only: no filesystem access (exposed for tests).
JobPaths jobPathsFor(const Settings& settings, const std::filesystem::path& job_dir,
                     const std::filesystem::path& app_dir);

// The environment of npm and the CLI, built from nothing (exposed for tests).
std::map<std::string, std::string> baseChildEnvironment(const Settings& settings, const JobPaths& paths);

class JobSandbox {
 public:
  // Creates the job's folders (home, tmp, the npm cache layer), mounts its volume where the
  // tier has one, and hands the folder to the job's user. Throws std::runtime_error with a
  // message that names what failed.
  JobSandbox(const Settings& settings, const std::filesystem::path& job_dir, const std::filesystem::path& app_dir);
  ~JobSandbox();
  JobSandbox(const JobSandbox&) = delete;
  JobSandbox& operator=(const JobSandbox&) = delete;

  const JobPaths& paths() const { return paths_; }
  const sandbox::Isolation& isolation() const { return isolation_; }
  // After a failed run: the job's writable space is (nearly) full.
  bool diskFull() const { return volume_ && volume_->nearlyFull(); }
  uint64_t diskBytes() const { return volume_ ? volume_->sizeBytes() : 0; }

 private:
  const Settings& settings_;
  std::filesystem::path work_dir_;
  JobPaths paths_;
  sandbox::Isolation isolation_;
  std::unique_ptr<sandbox::JobVolume> volume_;
  std::optional<uint32_t> uid_offset_;  // Landlock tier as root: this job's place in the uid pool
};

// The job volume of a job folder left mounted by a crash, for start-up recovery.
bool unmountLeftoverJobVolume(const std::filesystem::path& job_dir);

// Once at start-up, as root: in the namespaces tier, gives the shared npm cache to the jobs'
// host user so that, seen through a job's overlay, npm can add entries to its directories (in
// the job's private upper layer; jobs never see the cache's host path); in the Landlock tier,
// lets jobs pass through the state and jobs folders to their own. Returns a problem or "".
std::string prepareStateForJobs(const Settings& settings);

}  // namespace da

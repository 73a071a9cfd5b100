// One deploy, after intake: install dependencies, obtain a deploy key, run the Convex CLI,
// judge what it did. Every phase updates the stored report; nothing throws out of run().
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "config/settings.h"
#include "jobs/deployment_locks.h"
#include "jobs/job_store.h"
#include "report/deploy_report.h"
#include "util/redactor.h"

namespace da {

class JobSandbox;
class CleanupQueue;

struct DeployJob {
  std::string id;
  Target target = Target::kDev;
  std::string deployment_name;       // requested by the caller; may be empty with a key
  std::string deploy_key;            // secret; empty means "mint one with the team token"
  std::string access_token;          // secret, never stored: a caller's token replacing the team token
  std::string admin_key;             // secret: a self-hosted backend's admin key
  std::optional<int64_t> project_id;
  std::string create_project;
  std::optional<int64_t> ttl_seconds;
  std::string preview;
  std::string self_hosted_url;
  std::map<std::string, std::string> env;  // values are secrets
  std::filesystem::path job_dir;
  std::filesystem::path app_dir;     // the inspected app root inside job_dir
  std::string typecheck = "try";     // the CLI's --typecheck
  // Raised with the cancel flag when a caller cancelled the job (not the agent stopping): the
  // job then ends `cancelled`, not failed. Set by the runner; may be null.
  std::shared_ptr<const std::atomic<bool>> cancelled_by_request;
};

class DeployPipeline {
 public:
  // `cleanup` (optional) deletes what a job creates for itself: minted keys, projects with a TTL.
  DeployPipeline(const Settings& settings, JobStore& store, const Redactor& redactor, CleanupQueue* cleanup = nullptr);

  // Runs every phase and leaves a terminal report in the store.
  void run(const DeployJob& job, const std::atomic<bool>& cancel) const;

 private:
  struct PhaseResult;
  // Appends each line of a run's output to the job's events as `log` events of `phase`.
  std::function<void(const std::string&)> logEvents(const std::string& job_id, const std::string& phase) const;
  PhaseResult install(const DeployJob& job, const JobSandbox& job_sandbox, DeployReport& report,
                      const Redactor& redactor, const std::atomic<bool>& cancel) const;
  // Where this job pushes, and with what key: the caller's key, or one minted for the
  // deployment the options name (creating a project first for create_project).
  struct PushTarget;
  PhaseResult resolveTarget(const DeployJob& job, DeployReport& report, PushTarget& target, Redactor& redactor,
                            const std::atomic<bool>& cancel) const;
  // A preview deploy: claims the preview deployment with the caller's preview deploy key, or with
  // one minted for project=<id>, and pushes to it with the deployment's own admin key.
  PhaseResult resolvePreview(const DeployJob& job, DeployReport& report, PushTarget& target, Redactor& redactor,
                             const std::atomic<bool>& cancel) const;
  PhaseResult setEnvironment(const DeployJob& job, DeployReport& report, PushTarget& target,
                             const std::atomic<bool>& cancel) const;
  PhaseResult push(const DeployJob& job, const JobSandbox& job_sandbox, DeployReport& report,
                   const PushTarget& target, const Redactor& redactor, const std::atomic<bool>& cancel) const;

  const Settings& settings_;
  JobStore& store_;
  const Redactor& redactor_;
  CleanupQueue* cleanup_;
  mutable DeploymentLocks push_locks_;  // shared by every worker running this pipeline
};


}  // namespace da

// One deploy, after intake: install dependencies, obtain a deploy key, run the Convex CLI,
// judge what it did. Every phase updates the stored report; nothing throws out of run().
#pragma once

#include <atomic>
#include <filesystem>
#include <optional>
#include <string>

#include "config/settings.h"
#include "jobs/deployment_locks.h"
#include "jobs/job_store.h"
#include "report/deploy_report.h"
#include "util/redactor.h"

namespace da {

class JobSandbox;

struct DeployJob {
  std::string id;
  Target target = Target::kDev;
  std::string deployment_name;       // requested by the caller; may be empty with a key
  std::string deploy_key;            // secret; empty means "mint one with the team token"
  std::filesystem::path job_dir;
  std::filesystem::path app_dir;     // the inspected app root inside job_dir
  std::string typecheck = "try";     // the CLI's --typecheck
};

class DeployPipeline {
 public:
  DeployPipeline(const Settings& settings, JobStore& store, const Redactor& redactor);

  // Runs every phase and leaves a terminal report in the store.
  void run(const DeployJob& job, const std::atomic<bool>& cancel) const;

 private:
  struct PhaseResult;
  PhaseResult install(const DeployJob& job, const JobSandbox& job_sandbox, DeployReport& report,
                      const Redactor& redactor, const std::atomic<bool>& cancel) const;
  PhaseResult obtainDeployKey(const DeployJob& job, DeployReport& report, std::string& key,
                              const std::atomic<bool>& cancel) const;
  PhaseResult push(const DeployJob& job, const JobSandbox& job_sandbox, DeployReport& report,
                   const std::string& key, const Redactor& redactor, const std::atomic<bool>& cancel) const;

  const Settings& settings_;
  JobStore& store_;
  const Redactor& redactor_;
  mutable DeploymentLocks push_locks_;  // shared by every worker running this pipeline
};


}  // namespace da

#include "sandbox/tier_probe.h"

#include <unistd.h>

#include "sandbox/cgroup.h"
#include "sandbox/landlock.h"
#include "sandbox/process.h"

namespace sandbox {

namespace {

std::string tryTier(Tier tier, Isolation isolation) {
  FilesystemView view;
  view.read_only = systemReadOnlyPaths();
  isolation.tier(tier).filesystem(view);
  ProcessSpec spec;
  spec.executable = ::access("/usr/bin/true", X_OK) == 0 ? "/usr/bin/true" : "/bin/true";
  spec.working_dir = "/";
  spec.limits.wallTime(std::chrono::seconds(20));
  spec.isolation = isolation;
  std::string output;
  const RunResult run = runProcess(spec, [&](std::string_view chunk) { output.append(chunk.substr(0, 4096)); });
  if (run.status == Status::kOk) return "";
  return std::string(tierName(tier)) + " tier: " + (run.reason.empty() ? statusName(run.status) : run.reason);
}

}  // namespace

std::vector<std::string> facilitiesOf(Tier tier, const Isolation& isolation) {
  std::vector<std::string> facilities;
  const bool root = ::geteuid() == 0;
  if (tier == Tier::kNamespaces) {
    facilities = {"user_ns", "mount_ns", "pid_ns", "ipc_ns", "uts_ns", "pivot_root", "pid1_reaper"};
  }
  if (tier == Tier::kLandlock) {
    // What a job's ruleset enforces at this ABI (the paths and ports do not change the list).
    internal::LandlockPolicy policy;
    policy.restrict_tcp = true;
    const auto ruleset = internal::buildLandlockRuleset(policy);
    facilities.insert(facilities.end(), ruleset.facilities.begin(), ruleset.facilities.end());
  }
  if (tier != Tier::kNone) {
    facilities.insert(facilities.end(), {"no_new_privs", "seccomp"});
    if (root) facilities.push_back("job_uid");
  }
  if (isolation.memoryBytes() || isolation.maxProcesses()) {
    const auto& support = internal::cgroupSupport();
    if (support.kind != internal::CgroupSupport::Kind::kNone) {
      if (tier == Tier::kNamespaces) facilities.push_back("cgroup_ns");
      facilities.insert(facilities.end(), support.facilities.begin(), support.facilities.end());
    }
  }
  facilities.push_back("rlimits");
  return facilities;
}

TierChoice chooseTier(const std::string& requested, const Isolation& isolation) {
  TierChoice choice;
  std::vector<Tier> candidates;
  if (requested == "auto") {
    candidates = {Tier::kNamespaces, Tier::kLandlock};
  } else if (requested == "namespaces") {
    candidates = {Tier::kNamespaces};
  } else if (requested == "landlock") {
    candidates = {Tier::kLandlock};
  } else if (requested == "none") {
    choice.tier = Tier::kNone;
    choice.ok = true;
    choice.facilities = facilitiesOf(Tier::kNone, isolation);
    return choice;
  } else {
    choice.problem = "sandbox must be auto, namespaces, landlock or none, got '" + requested + "'";
    return choice;
  }
  for (Tier tier : candidates) {
    if (tier == Tier::kLandlock && internal::landlockAbi() == 0) {
      choice.problem += std::string(choice.problem.empty() ? "" : "; ") +
                        "landlock tier: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) "
                        "reports no Landlock (ENOSYS/EOPNOTSUPP). Fix: a kernel >= 5.13 booted with "
                        "landlock in its lsm= list";
      continue;
    }
    std::string problem = tryTier(tier, isolation);
    if (problem.empty()) {
      choice.tier = tier;
      choice.ok = true;
      choice.facilities = facilitiesOf(tier, isolation);
      choice.problem.clear();
      return choice;
    }
    choice.problem += (choice.problem.empty() ? "" : "; ") + problem;
  }
  return choice;
}

}  // namespace sandbox

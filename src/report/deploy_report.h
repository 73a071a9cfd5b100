// The report of one deploy: what GET /v1/deploys/{id} returns and what is persisted as
// report.json in the job directory. It never holds a secret.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace da {

enum class DeployStatus { kQueued, kRunning, kSucceeded, kFailed };
const char* statusName(DeployStatus s);
std::optional<DeployStatus> parseStatus(const std::string& s);
inline bool isTerminal(DeployStatus s) {
  return s == DeployStatus::kSucceeded || s == DeployStatus::kFailed;
}

enum class Target { kDev, kProd };
const char* targetName(Target t);
std::optional<Target> parseTarget(const std::string& s);

struct DeployError {
  std::string reason;   // stable snake_case code, e.g. "bundle_error", "push_rejected"
  std::string message;  // short, human readable, redacted
};

struct BundleSummary {
  std::string format;
  uint64_t bytes = 0;
  uint64_t entries = 0;
  uint64_t unpacked_bytes = 0;
  std::vector<std::string> removed;
};

// Where a job's npm and CLI runs reached, through the agent's egress proxy (summed over runs).
struct NetworkReport {
  std::string enforcement;                // "network_namespace", "landlock_tcp_port", "none"; "" before any run
  std::vector<std::string> not_enforced;  // what the tier could not stop, in words
  struct Allowed {
    std::string host;                     // "host:port" as the job named it
    uint64_t connections = 0;
    uint64_t bytes_in = 0;                // from the destination to the job
    uint64_t bytes_out = 0;
  };
  struct Denied {
    std::string host;
    uint64_t attempts = 0;
    std::string reason;                   // of the first refusal: "not_allowed", ...
  };
  std::vector<Allowed> allowed;           // sorted by host
  std::vector<Denied> denied;
  uint64_t over_connection_limit = 0;     // connections answered 503: the run had too many open
};

struct DeployReport {
  std::string id;
  DeployStatus status = DeployStatus::kQueued;
  std::string phase = "queued";   // queued, deploy_key, install, push, done
  Target target = Target::kDev;
  std::string deployment_name;
  std::string deployment_url;
  std::string key_source;         // "header" or "management_api"
  std::optional<int> exit_code;
  std::optional<DeployError> error;
  std::vector<std::string> warnings;
  std::map<std::string, int64_t> timings_ms;  // per phase, plus "total"
  BundleSummary bundle;
  std::string cli_version;
  std::string app_convex_version;
  std::string sandbox_tier;                      // how npm and the CLI were isolated
  std::vector<std::string> sandbox_facilities;   // what that tier enforced on this host
  NetworkReport network;
  int64_t created_at_ms = 0;
  int64_t started_at_ms = 0;
  int64_t finished_at_ms = 0;

  nlohmann::json toJson() const;        // the API view
  nlohmann::json toStoredJson() const;  // the API view plus what a restart needs
  static DeployReport fromJson(const nlohmann::json& stored);
};

}  // namespace da

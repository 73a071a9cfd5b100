// The report of one deploy: what GET /v1/deploys/{id} returns and what is persisted as
// report.json in the job directory. It never holds a secret.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "report/diagnostics.h"

namespace da {

enum class DeployStatus { kQueued, kRunning, kSucceeded, kFailed, kCancelled };
const char* statusName(DeployStatus s);
std::optional<DeployStatus> parseStatus(const std::string& s);
inline bool isTerminal(DeployStatus s) {
  return s == DeployStatus::kSucceeded || s == DeployStatus::kFailed || s == DeployStatus::kCancelled;
}

enum class Target { kDev, kProd };
const char* targetName(Target t);
std::optional<Target> parseTarget(const std::string& s);

struct DeployError {
  DeployError() = default;
  DeployError(std::string reason_, std::string message_, std::string code_ = "", bool retryable_ = false)
      : reason(std::move(reason_)), message(std::move(message_)), code(std::move(code_)), retryable(retryable_) {}

  std::string reason;   // stable snake_case code, e.g. "bundle_error", "push_rejected"
  std::string message;  // short, human readable, redacted
  std::string code;     // Convex's own error code when the Convex API refused, e.g. "ProjectQuotaReached"
  bool retryable = false;  // the same request may succeed later (network, 429, 5xx, the agent stopped)
};

// One Management or deployment API call the agent made for a job, with every attempt.
struct ApiCallReport {
  std::string call;                   // "create_project", "create_deploy_key", ...
  int attempts = 0;
  std::vector<std::string> outcomes;  // per attempt: "HTTP 200", "HTTP 503 ...", "network: ..."
  bool ok = false;
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

// The project a job deployed into when it created one (create_project), or looked one up.
struct ProjectReport {
  int64_t id = 0;
  std::string name;
  std::string slug;
  bool created = false;          // by this job
  int64_t expires_at_ms = 0;     // when the agent deletes it (ttl_seconds); 0 = never
};

// The preview deployment a preview deploy claimed (POST /api/claim_preview_deployment).
struct PreviewReport {
  std::string name;              // the identifier the caller gave (preview=<name>)
  std::string reference;         // as Convex names it, e.g. "preview/<name>"
  bool is_new = false;           // the claim created it; false: taken after an unanswered claim
};

// What a successful push changed on the deployment, asked of the deployment before and after it
// (docs/design.md, "What was pushed"). Lists are sorted.
struct PushChanges {
  std::vector<std::string> created;
  std::vector<std::string> changed;
  std::vector<std::string> removed;
  uint64_t unchanged = 0;
};
struct PushedReport {
  PushChanges modules;                   // by module path, e.g. "messages.js"
  std::optional<PushChanges> functions;  // by identifier, e.g. "messages.js:list"; when listed
};

// The webhook of a job that gave callback_url: where its final report goes and every delivery
// attempt so far.
struct CallbackReport {
  std::string url;
  std::string status = "pending";   // pending (the job runs, or a retry is due), delivered, failed
  struct Attempt {
    int64_t at_ms = 0;
    int http_status = 0;            // 0: no answer
    std::string outcome;            // "HTTP 503", "network: Connection refused", "host not allowed ..."
    int64_t duration_ms = 0;
  };
  std::vector<Attempt> attempts;
  int64_t next_attempt_at_ms = 0;   // while pending after a failed attempt
};

struct DeployReport {
  std::string id;
  DeployStatus status = DeployStatus::kQueued;
  std::string phase = "queued";   // queued, deploy_key, install, env, push, done ("unknown": an unreadable report)
  Target target = Target::kDev;
  std::string deployment_name;
  std::string deployment_url;
  std::string key_source;         // "header", "management_api" or "admin_key"
  std::optional<bool> deploy_key_deleted;  // a minted key: deleted at the end of the job
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
  std::optional<ProjectReport> project;
  std::optional<PreviewReport> preview;          // preview deploys: which preview was claimed
  std::vector<std::string> env_names;            // env vars set before the push (never their values)
  std::vector<Diagnostic> diagnostics;           // what npm, esbuild, tsc and Convex said is wrong, by file
  std::vector<ApiCallReport> api_calls;
  std::optional<CallbackReport> callback;
  std::optional<PushedReport> pushed;            // succeeded pushes, when the deployment could be asked
  int64_t created_at_ms = 0;
  int64_t started_at_ms = 0;
  int64_t finished_at_ms = 0;

  nlohmann::json toJson() const;        // the API view
  nlohmann::json toStoredJson() const;  // the API view plus what a restart needs
  static DeployReport fromJson(const nlohmann::json& stored);
};

}  // namespace da

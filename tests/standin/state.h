// Everything the stand-in remembers: hosted deployments, minted keys, the app each deployment
// currently runs, the push history, the request log and pending fault injections.
// One mutex guards it all; the CLI's parallel requests only ever hold it briefly.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "standin/standin.h"

namespace standin {

int64_t nowMs();

struct ModuleHash {
  std::string path;
  std::string environment;  // "isolate" | "node"
  std::string sha256;       // lowercase hex of sha256(source ‖ sourceMap)
};

struct HostedDeployment {
  int64_t id = 0;
  std::string name;
  std::string type;  // "dev" | "prod" | "preview" | "custom"
  int64_t create_time_ms = 0;
};

// How the Management API and the provisioning API name a deployment within its project.
std::string deploymentReference(const HostedDeployment& deployment);
// Dev and prod deployments are their project's (or member's) default ones.
bool isDefaultDeployment(const HostedDeployment& deployment);

// What create_deploy_key was asked for; kept for the request log, never the secret itself.
struct DeployKeyGrant {
  std::string name;
  std::optional<std::vector<std::string>> allowed_actions;
  std::optional<int64_t> expires_at_ms;
};

// The functions a push installs on a deployment.
struct PushedApp {
  std::vector<ModuleHash> modules;
  bool has_schema = false;
  std::string functions_dir = "convex/";
  std::string udf_server_version;
  std::optional<std::string> node_version;
};

struct PushRecord {
  std::string id;
  std::string deployment;
  PushedApp app;
  bool dry_run = false;
  bool finished = false;   // finish_push was called for it
  bool committed = false;  // it replaced the deployment's app
};

// What finish_push needs to describe its diff.
struct FinishedPush {
  PushRecord push;
  std::optional<PushedApp> previous;  // the app it replaced, if there was one
};

struct Fault {
  std::optional<std::string> method;  // any method when absent
  std::string path;                   // exact request path, without the query
  std::optional<int> status;          // absent: delay and/or drop only, else serve normally
  std::string code;
  std::string message;
  int delay_ms = 0;
  bool drop_connection = false;
  int times = 1;  // how many requests it applies to; -1 = forever
};

struct RequestRecord {
  std::string method;
  std::string path;
  std::optional<std::string> deployment;
  int status = 0;          // 0 when the connection was dropped on purpose
  nlohmann::json details;  // extra fields merged into the record, e.g. a minted key's grant
};

class StandinState {
 public:
  explicit StandinState(const Options& options);

  const std::string& teamSlug() const { return team_slug_; }
  const std::string& projectSlug() const { return project_slug_; }
  // Set once, after binding and before serving.
  void setOrigin(std::string origin) { origin_ = std::move(origin); }
  const std::string& origin() const { return origin_; }

  // Index of an accepted Management API bearer token, for token_details.
  std::optional<std::size_t> teamTokenIndex(const std::string& token) const;
  int64_t tokensCreatedAtMs() const { return created_at_ms_; }

  std::optional<HostedDeployment> findDeployment(const std::string& name) const;
  std::optional<int64_t> lastDeployTimeMs(const std::string& deployment) const;

  // Returns "<type>:<name>|<secret>", or nullopt for an unknown deployment.
  std::optional<std::string> mintDeployKey(const std::string& deployment, DeployKeyGrant grant);
  std::optional<HostedDeployment> deploymentForKey(const std::string& key) const;
  // What the key was minted with (allowedActions, expiresAt), or nullopt for an unissued key.
  std::optional<DeployKeyGrant> grantForKey(const std::string& key) const;

  std::optional<PushedApp> currentApp(const std::string& deployment) const;
  // Records a started push and returns its id.
  std::string startPush(const std::string& deployment, PushedApp app, bool dry_run);
  // Marks the push finished and, unless it is a dry run, installs its app. Returns nullopt
  // when no such push was started for `deployment`.
  std::optional<FinishedPush> finishPush(const std::string& push_id, const std::string& deployment,
                                         bool dry_run);

  void addFault(Fault fault);
  // Consumes one use of the first fault matching the request, if any.
  std::optional<Fault> takeFault(const std::string& method, const std::string& path);

  // Sleeps for an injected delay, returning early once the server is stopping.
  void pause(std::chrono::milliseconds duration);
  void setStopping(bool stopping);

  void recordRequest(RequestRecord record);

  nlohmann::json pushesJson() const;
  nlohmann::json requestsJson() const;
  nlohmann::json faultsJson() const;

  // Forgets pushes, deployed apps, requests and faults. Deployments and minted keys stay, so
  // a running agent keeps working across test cases.
  void reset();

 private:
  struct MintedKey {
    std::string deployment;
    DeployKeyGrant grant;
  };

  std::string team_slug_;
  std::string project_slug_;
  std::vector<std::string> team_tokens_;
  std::vector<HostedDeployment> deployments_;
  int64_t created_at_ms_;
  std::string origin_;

  mutable std::mutex mutex_;
  std::map<std::string, MintedKey> keys_;
  std::map<std::string, PushedApp> apps_;            // by deployment name
  std::map<std::string, int64_t> last_deploy_ms_;    // by deployment name
  std::vector<PushRecord> pushes_;
  std::vector<RequestRecord> requests_;
  std::vector<Fault> faults_;
  uint64_t next_push_number_ = 1;
  std::condition_variable pause_interrupted_;
  bool stopping_ = false;
};

}  // namespace standin

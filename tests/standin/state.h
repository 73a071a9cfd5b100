// Everything the stand-in remembers: the team, its projects and deployments, access tokens
// (team, OAuth team, OAuth project), minted deploy keys and preview deploy keys, environment
// variables, the app each deployment currently runs, the push history, the request log and
// pending fault injections. One mutex guards it all; every request holds it only briefly.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "standin/standin.h"

namespace standin {

int64_t nowMs();

struct ModuleHash {
  std::string path;
  std::string environment;  // "isolate" | "node"
  std::string sha256;       // lowercase hex of sha256(source ‖ sourceMap)
  // The names the bundled module exports (its last `export { a as name, ... }` statement): the
  // stand-in does not run modules, so this is what it knows of their functions.
  std::vector<std::string> exports;
};

inline constexpr int64_t kTeamId = 1;

struct Project {
  int64_t id = 0;
  std::string name;
  std::string slug;
  int64_t create_time_ms = 0;
  bool deleted = false;
};

struct HostedDeployment {
  int64_t id = 0;
  std::string name;
  std::string type;  // "dev" | "prod" | "preview" | "custom"
  int64_t create_time_ms = 0;
  int64_t project_id = 0;  // 0: a self-hosted deployment, in no project
  std::string reference;
  bool is_default = false;
  std::optional<std::string> preview_identifier;
  std::string region = "aws-us-east-1";
  std::string deployment_class = "s16";
  std::optional<int64_t> expires_at_ms;
  bool self_hosted = false;
  bool deleted = false;
};

// How the Management API and the provisioning API name a deployment within its project.
std::string deploymentReference(const HostedDeployment& deployment);
// Whether it is its project's default prod (or the member's default dev) deployment.
bool isDefaultDeployment(const HostedDeployment& deployment);

// Management API credentials (§2 of the reference): what `Authorization: Bearer` may carry.
enum class TokenKind { Team, OAuthTeam, OAuthProject };
// "teamToken", "oauthTeamToken", "oauthProjectToken": the names used in the request log.
const char* tokenKindName(TokenKind kind);

struct AccessToken {
  int64_t id = 0;
  TokenKind kind = TokenKind::Team;
  std::string token;   // as presented
  std::string secret;  // after the last '|' (OAuth), else the whole token
  std::string name;
  int64_t create_time_ms = 0;
  std::optional<int64_t> project_id;  // OAuth project tokens only
  bool revoked = false;
};

// What create_deploy_key was asked for; kept for the request log, never the secret itself.
struct DeployKeyGrant {
  std::string name;
  std::optional<std::vector<std::string>> allowed_actions;
  std::optional<int64_t> expires_at_ms;
};

// A deploy key as list_deploy_keys shows it (never the secret).
struct DeployKeyInfo {
  int64_t id = 0;
  std::string unique_name;  // the name, suffixed when another live key shares it
  DeployKeyGrant grant;
  int64_t creation_time_ms = 0;
  std::optional<int64_t> last_used_ms;
  bool oauth_derived = false;
};

// What a credential sent to a deployment route (`Authorization: Convex <key>`) turned out to be.
struct DeploymentCredential {
  enum class Outcome {
    kOk,
    kUnknown,         // never issued: 401 BadAdminKey
    kRevoked,         // deleted deploy key or revoked OAuth grant: 403 BadDeployKey
    kExpired,         // past its expiresAt: 403 BadDeployKey
    kDeploymentGone,  // the deployment was deleted: 404 DeploymentNotFound
    kAmbiguous,       // a team-wide credential and nothing names the deployment: 400
  };
  Outcome outcome = Outcome::kUnknown;
  std::string kind;             // "deployKey" | "adminKey" | "teamToken" | "oauth...Token"
  std::string deployment_name;  // when known, also for kRevoked/kExpired/kDeploymentGone
  std::optional<HostedDeployment> deployment;
  std::optional<std::vector<std::string>> allowed_actions;  // nullopt: every action
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
  std::string path;                   // request path without the query; `{x}` matches a segment
  std::optional<int> status;          // absent: delay and/or drop only, else serve normally
  std::string code;
  std::string message;
  int delay_ms = 0;
  bool drop_connection = false;
  bool after_handling = false;  // run the route first, then delay/drop/answer the fault
  int times = 1;                // how many requests it applies to; -1 = forever
  std::string retry_after;      // sent as Retry-After with `status` when not empty
};

struct RequestRecord {
  std::string method;
  std::string path;
  std::optional<std::string> deployment;
  int status = 0;          // 0 when the connection was dropped on purpose
  nlohmann::json details;  // extra fields merged into the record, e.g. a minted key's grant
};

// create_deployment's request, already checked for types and enums.
struct NewDeployment {
  std::string type;
  std::optional<std::string> reference;  // as given (preview: the identifier)
  std::optional<bool> is_default;
  std::optional<std::string> deployment_class;
  std::optional<std::string> region;
  std::optional<int64_t> expires_at_ms;
};

// A preview deploy key, resolved.
struct PreviewKey {
  int64_t project_id = 0;
  std::string name;
  std::optional<int64_t> oauth_token_id;
};

struct PreviewClaim {
  HostedDeployment deployment;
  std::string admin_key;
  bool is_new = false;
};

class StandinState {
 public:
  explicit StandinState(const Options& options);

  const std::string& teamSlug() const { return team_slug_; }
  const std::string& projectSlug() const { return project_slug_; }
  // Set once, after binding and before serving.
  void setOrigin(std::string origin) { origin_ = std::move(origin); }
  const std::string& origin() const { return origin_; }

  // ---- access tokens ----
  // A live (not revoked) Management API token, or nullopt.
  std::optional<AccessToken> accessToken(const std::string& token) const;
  // Mints an OAuth token: `team:<team>|S`, or `project:<team>:<project>|S` for project_id.
  std::optional<AccessToken> mintOAuthToken(TokenKind kind, std::optional<int64_t> project_id);

  // ---- projects and deployments ----
  std::optional<Project> findProject(int64_t id) const;  // live projects only
  std::optional<Project> findProjectBySlug(const std::string& slug) const;
  std::vector<Project> projects(bool include_deleted) const;  // ascending id
  Project createProject(const std::string& name);
  // Deletes the project and all its deployments; false when there is no such live project.
  bool deleteProject(int64_t id);

  // Live deployments only (not deleted).
  std::optional<HostedDeployment> findDeployment(const std::string& name) const;
  std::vector<HostedDeployment> deploymentsOf(int64_t project_id) const;
  // Throws ApiError for reference conflicts; replaces a preview with the same identifier.
  HostedDeployment createDeployment(int64_t project_id, const NewDeployment& request);
  bool deleteDeployment(const std::string& name);
  std::optional<HostedDeployment> defaultDeployment(int64_t project_id,
                                                    const std::string& type) const;
  std::optional<HostedDeployment> deploymentByReference(int64_t project_id,
                                                        const std::string& reference) const;
  std::optional<int64_t> lastDeployTimeMs(const std::string& deployment) const;
  // The legacy admin key `<name>|<hex>` every deployment has.
  std::optional<std::string> adminKey(const std::string& deployment) const;

  // ---- deploy keys ----
  // Returns "<type>:<name>|<secret>", or nullopt for an unknown deployment. With an OAuth
  // token the key is that token's secret behind the deployment prefix (reference §9.2).
  std::optional<std::string> mintDeployKey(const std::string& deployment, DeployKeyGrant grant,
                                           const AccessToken* oauth = nullptr);
  std::optional<HostedDeployment> deploymentForKey(const std::string& key) const;
  // What the key was minted with (allowedActions, expiresAt), or nullopt for an unissued key.
  std::optional<DeployKeyGrant> grantForKey(const std::string& key) const;
  std::vector<DeployKeyInfo> deployKeys(const std::string& deployment) const;
  // By full key, its secret, or its (unique) name. Deleting an OAuth-derived key revokes the
  // OAuth grant itself. Returns false when no live key of the deployment matches.
  bool deleteDeployKey(const std::string& deployment, const std::string& id);
  // Resolves a deployment-route credential. `host_label` is the first label of the Host
  // header; it names the deployment for credentials that are not tied to one.
  DeploymentCredential resolveDeploymentCredential(const std::string& key,
                                                   const std::string& host_label);

  // ---- preview deploy keys ----
  std::string mintPreviewDeployKey(int64_t project_id, const std::string& name,
                                   std::optional<int64_t> expires_at_ms,
                                   const AccessToken* oauth = nullptr);
  // A live preview key (not deleted, expired or revoked with its OAuth grant), or nullopt.
  // Counts as a use: the listing's lastUsedTime.
  std::optional<PreviewKey> previewKey(const std::string& key);
  PreviewClaim claimPreview(int64_t project_id, const std::string& identifier, bool reuse);
  // The project's live preview keys as list_preview_deploy_keys shows them (never the secret),
  // oldest first. OAuth-derived keys count as managed (by the OAuth app) and are left out
  // unless `include_managed`.
  std::vector<DeployKeyInfo> previewDeployKeys(int64_t project_id, bool include_managed) const;
  // By full key, its secret, or its (unique) name; returns the deleted key's listing entry, or
  // nullopt when no live preview key of the project matches. Deleting an OAuth-derived key
  // revokes the OAuth grant itself, as for deploy keys (reference §9.2).
  std::optional<DeployKeyInfo> deletePreviewDeployKey(int64_t project_id, const std::string& id);

  // ---- environment variables ----
  std::map<std::string, std::string> environment(const std::string& deployment) const;
  // Applies name -> value (nullopt: delete) after the §5.1 checks; throws ApiError.
  void updateEnvironment(const std::string& deployment,
                         const std::vector<std::pair<std::string, std::optional<std::string>>>&
                             changes);

  // ---- pushes ----
  std::optional<PushedApp> currentApp(const std::string& deployment) const;
  // Records a started push and returns its id.
  std::string startPush(const std::string& deployment, PushedApp app, bool dry_run);
  // Marks the push finished and, unless it is a dry run, installs its app. Returns nullopt
  // when no such push was started for `deployment`.
  std::optional<FinishedPush> finishPush(const std::string& push_id, const std::string& deployment,
                                         bool dry_run);

  // ---- faults and the log ----
  void addFault(Fault fault);
  // Consumes one use of the first fault matching the request, if any.
  std::optional<Fault> takeFault(const std::string& method, const std::string& path);
  // Blocks until no fault is armed any more (each was taken by a request, which may still be
  // in its delay), or `timeout` passes. True if so.
  bool awaitFaultsTaken(std::chrono::milliseconds timeout) const;
  // Sleeps, but returns early once the server is stopping.
  void pause(std::chrono::milliseconds duration);
  void setStopping(bool stopping);

  void recordRequest(RequestRecord record);
  // Blocks until the log holds a request to a path matching `path_pattern` (as a fault's path)
  // with `method` (any if empty) and a status other than 0, or `timeout` passes, or the server
  // stops. True if it does: a test's bounded wait for something the agent does on its own time.
  bool awaitRequest(const std::string& method, const std::string& path_pattern,
                    std::chrono::milliseconds timeout) const;

  nlohmann::json pushesJson() const;
  nlohmann::json requestsJson() const;
  nlohmann::json faultsJson() const;
  nlohmann::json projectsJson(bool include_deleted) const;

  // Forgets pushes, deployed apps, environment variables, requests and faults. Projects,
  // deployments, tokens and minted keys stay, so a running agent keeps working across tests.
  void reset();

 private:
  struct MintedKey {
    int64_t id = 0;
    std::string deployment;
    std::string uid;  // tells keys with the same name apart in listings
    DeployKeyGrant grant;
    int64_t creation_time_ms = 0;
    std::optional<int64_t> last_used_ms;
    std::optional<int64_t> oauth_token_id;  // the key is that OAuth grant's secret
    bool admin = false;                     // the deployment's legacy admin key
    bool revoked = false;
  };
  struct MintedPreviewKey {
    int64_t id = 0;
    PreviewKey key;
    std::string uid;  // tells keys with the same name apart in listings
    int64_t creation_time_ms = 0;
    std::optional<int64_t> last_used_ms;
    std::optional<int64_t> expires_at_ms;
    bool revoked = false;
  };

  const HostedDeployment* findDeploymentLocked(const std::string& name) const;
  const Project* findProjectLocked(int64_t id) const;
  HostedDeployment& addDeploymentLocked(HostedDeployment deployment);
  std::string newDeploymentNameLocked();
  void deleteDeploymentLocked(HostedDeployment& deployment);
  void revokeOAuthLocked(int64_t token_id);
  const AccessToken* tokenByIdLocked(int64_t id) const;
  std::string mintKeyLocked(const HostedDeployment& deployment, DeployKeyGrant grant,
                            const AccessToken* oauth);
  // Live preview keys of a project (any expiry), by ascending id, with their listing entries.
  std::vector<std::pair<const std::string*, DeployKeyInfo>> previewKeysLocked(
      int64_t project_id) const;

  std::string team_slug_;
  std::string project_slug_;
  int64_t created_at_ms_;
  std::string origin_;

  mutable std::mutex mutex_;
  std::vector<AccessToken> tokens_;
  std::vector<Project> projects_;
  std::vector<HostedDeployment> deployments_;
  std::map<std::string, MintedKey> keys_;                 // by full key
  std::map<std::string, MintedPreviewKey> preview_keys_;  // by full key
  std::map<std::string, std::map<std::string, std::string>> env_;  // by deployment name
  std::map<std::string, PushedApp> apps_;          // by deployment name
  std::map<std::string, int64_t> last_deploy_ms_;  // by deployment name
  std::vector<PushRecord> pushes_;
  std::vector<RequestRecord> requests_;
  std::vector<Fault> faults_;
  int64_t next_token_id_ = 1;
  int64_t next_project_id_ = 1;
  int64_t next_deployment_id_ = 1;
  uint64_t next_push_number_ = 1;
  std::condition_variable pause_interrupted_;
  mutable std::condition_variable request_recorded_;
  bool stopping_ = false;
};

}  // namespace standin

// Client for the Convex Management API (https://api.convex.dev/v1 or a stand-in): the calls
// the agent makes with a team access token, plus the deployment API's env var update. Every
// call returns a typed result; nothing throws past this module, and no token, proxy password,
// minted key or env var value appears in an error message or an attempt outcome.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "convex/http_options.h"
#include "convex/retry_policy.h"

namespace da::convex {

struct ApiError {
  // "unauthorized", "not_found", "bad_request", "rate_limited" (429), "server_error",
  // "network_error", "bad_response", "cancelled", "config_error" (HttpOptions::config_error, or a
  // CA location that cannot be loaded, or an argument the call cannot send; nothing was sent),
  // "proxy_error" (the proxy refused us: HTTP 407 or another 4xx to CONNECT; not retried),
  // "ambiguous" (a non-idempotent call - create_project, create_deploy_key,
  // create_preview_deploy_key, claim_preview_deployment without reuse - reached the server and
  // then failed: a dropped connection, a timeout or a 5xx. It may have taken effect, so it was
  // not sent again: look it up, e.g. with findProjectsByName, before creating anything anew)
  std::string reason;
  int http_status = 0;     // 0 when no response came
  std::string code;        // the API's `code`, e.g. "DeploymentNotFound"
  std::string message;     // the API's `message`, or what went wrong on the wire
  // Sending the same request again may succeed and is safe: network errors (nothing or an
  // idempotent request sent), 429, 500, 502, 503 (e.g. OptimisticConcurrencyControlFailure),
  // 504. False for every other status (400, 401, 403, 404, ...), for config, proxy and
  // response-shape errors, for cancellation and for "ambiguous".
  bool retryable = false;
  bool ambiguous = false;  // as reason "ambiguous", or a cancel after a non-idempotent send
};

// One attempt of a call, for reports. Never holds a token, key, password or env value.
struct AttemptOutcome {
  int http_status = 0;                        // 0: no answer (see `error`)
  std::string error;                          // the network error, or the API's code (may be empty)
  std::chrono::milliseconds delay_after{0};   // the wait before the next attempt; 0: none followed
  // "HTTP 503 OptimisticConcurrencyControlFailure", "network: Connection refused"
  std::string describe() const;
};

// What every result below carries besides its value and error:
//   int attempts;                          // requests started (0: none, e.g. config_error)
//   std::vector<AttemptOutcome> outcomes;  // one per attempt, in order
//   bool ambiguous;                        // see ApiError::ambiguous

struct DeployKeyRequest {
  std::string deployment_name;
  std::string key_name;                     // shown in the dashboard's key list
  std::vector<std::string> allowed_actions;  // empty: the API's default (full access)
  std::optional<int64_t> expires_at_ms;
};

struct MintResult {
  std::optional<std::string> deploy_key;
  std::optional<ApiError> error;
  int attempts = 0;
  std::vector<AttemptOutcome> outcomes;
  bool ambiguous = false;
};

struct UrlResult {
  std::optional<std::string> url;
  std::optional<ApiError> error;
  int attempts = 0;
  std::vector<AttemptOutcome> outcomes;
  bool ambiguous = false;
};

// GET /token_details. `kind` is the response's `type` as sent ("teamToken", "projectToken", or
// whatever else the API says, e.g. for a PAT; empty when absent).
struct TokenDetails {
  std::string kind;
  std::optional<int64_t> team_id;
  std::optional<int64_t> project_id;
  std::optional<int64_t> id;  // absent in responses older than 2026-06
  std::string name;
};
struct TokenDetailsResult {
  std::optional<TokenDetails> details;
  std::optional<ApiError> error;
  int attempts = 0;
  std::vector<AttemptOutcome> outcomes;
  bool ambiguous = false;
};

struct ProjectCreated {
  int64_t project_id = 0;
  std::string slug;
  std::optional<std::string> deployment_name;  // only when a deployment was requested
  std::optional<std::string> deployment_url;
};
struct CreateProjectResult {
  std::optional<ProjectCreated> project;
  std::optional<ApiError> error;
  int attempts = 0;
  std::vector<AttemptOutcome> outcomes;
  bool ambiguous = false;
};

// ProjectResponse.
struct ProjectInfo {
  int64_t id = 0;
  std::string name;
  std::string slug;
  int64_t team_id = 0;
  std::string team_slug;
  std::optional<std::string> prod_deployment_name;
  std::optional<std::string> dev_deployment_name;  // the token owner's default dev deployment
};
struct ProjectResult {
  std::optional<ProjectInfo> project;
  std::optional<ApiError> error;
  int attempts = 0;
  std::vector<AttemptOutcome> outcomes;
  bool ambiguous = false;
};
struct ProjectListResult {
  std::vector<ProjectInfo> projects;  // exact-name matches, in the API's order (newest first)
  // False when the page bound was reached while the API still had more: there may be others.
  bool complete = true;
  int pages = 0;
  std::optional<ApiError> error;  // set: `projects` holds what the pages before the failure had
  int attempts = 0;               // summed over every page
  std::vector<AttemptOutcome> outcomes;
  bool ambiguous = false;
};

// PlatformDeploymentResponse (the fields the agent uses).
struct DeploymentInfo {
  std::string name;
  std::string deployment_url;   // empty for a non-cloud (e.g. "local") deployment
  std::string deployment_type;  // "dev", "prod", "preview", "custom", or an unknown value as sent
  int64_t project_id = 0;
  std::string kind;             // "cloud", "local", or as sent; empty when absent
};
struct DeploymentResult {
  std::optional<DeploymentInfo> deployment;
  std::optional<ApiError> error;
  int attempts = 0;
  std::vector<AttemptOutcome> outcomes;
  bool ambiguous = false;
};

struct PreviewKeyResult {
  std::optional<std::string> preview_deploy_key;
  std::optional<ApiError> error;
  int attempts = 0;
  std::vector<AttemptOutcome> outcomes;
  bool ambiguous = false;
};

// A delete: `deleted` on success; `already_gone` when the API said 404 (the thing did not exist,
// e.g. an earlier attempt or another client deleted it), which is success too.
struct DeleteResult {
  bool deleted = false;
  bool already_gone = false;
  std::optional<ApiError> error;
  int attempts = 0;
  std::vector<AttemptOutcome> outcomes;
  bool ambiguous = false;
};

// What POST /api/claim_preview_deployment hands back: the preview deployment to push to.
struct ClaimedPreview {
  std::string admin_key;        // secret: the key the CLI pushes with (`preview:<name>|…`)
  std::string instance_url;     // the deployment URL (may be a custom domain)
  std::string deployment_name;  // as sent; else from admin_key's prefix; else empty
  std::string reference;        // e.g. "preview/<identifier>"; empty when absent
  bool is_new = false;          // isNewDeployment: created by this claim (gates --preview-run)
};
struct PreviewClaimResult {
  std::optional<ClaimedPreview> preview;
  std::optional<ApiError> error;
  int attempts = 0;
  std::vector<AttemptOutcome> outcomes;
  bool ambiguous = false;
};

struct EnvVarChange {
  std::string name;
  std::optional<std::string> value;  // nullopt: delete the variable
};
struct EnvVarsResult {
  bool ok = false;
  std::optional<ApiError> error;
  int attempts = 0;
  std::vector<AttemptOutcome> outcomes;
  bool ambiguous = false;
};

// POST /api/deployment/url_for_key on the provisioning origin (the CLI's CONVEX_PROVISION_HOST,
// which is the Convex URL): the deployment URL a deploy key pushes to, asked exactly as the CLI
// asks (the key as bearer and in the body). The URL is never derived from the key's name: it
// may be a custom domain. Idempotent: retried on network errors, 429 and 5xx. Without a policy:
// RetryPolicy{} with max_attempts = options.attempts.
UrlResult deploymentUrlForKey(const std::string& provision_url, const std::string& deploy_key,
                              const HttpOptions& options);
UrlResult deploymentUrlForKey(const std::string& provision_url, const std::string& deploy_key,
                              const HttpOptions& options, const RetryPolicy& retry);

// POST /api/claim_preview_deployment on the provisioning origin, as the CLI's `deploy` does with
// a preview deploy key: `Authorization: Bearer <key>` and {"projectSelection": {"kind":
// "teamAndProjectSlugs", "teamSlug", "projectSlug"}, "identifier", "reuse"}, the slugs taken from
// the key's `preview:<team>:<project>|` prefix. A key not of that shape, or an empty identifier,
// is a config_error and sends nothing. reuse=true keeps an existing preview of that identifier
// and is retried like a GET; reuse=false replaces it, so, like createProject, it is retried only
// on 429 and before anything was sent, and is "ambiguous" when it may have reached the server.
// Without a policy: RetryPolicy{} with max_attempts = options.attempts.
PreviewClaimResult claimPreviewDeployment(const std::string& provision_url, const std::string& preview_deploy_key,
                                          const std::string& identifier, bool reuse, const HttpOptions& options);
PreviewClaimResult claimPreviewDeployment(const std::string& provision_url, const std::string& preview_deploy_key,
                                          const std::string& identifier, bool reuse, const HttpOptions& options,
                                          const RetryPolicy& retry);

// POST <deployment_url>/api/v1/update_environment_variables with `Authorization: Convex
// <auth_key>` (a deploy key or a token) and {"changes":[{"name","value"}]} (value null: delete).
// Success is a 2xx, an empty body included. Idempotent (the same changes give the same state),
// so it is retried like a GET, e.g. on 503 OptimisticConcurrencyControlFailure. No value and no
// key appears in any error message or attempt outcome. `options` should be made for
// `deployment_url` (its proxy may differ from the Management API's).
EnvVarsResult setEnvironmentVariables(const std::string& deployment_url, const std::string& auth_key,
                                      const std::vector<EnvVarChange>& changes, const HttpOptions& options);
EnvVarsResult setEnvironmentVariables(const std::string& deployment_url, const std::string& auth_key,
                                      const std::vector<EnvVarChange>& changes, const HttpOptions& options,
                                      const RetryPolicy& retry);

// POST /api/get_config_hashes on a deployment, as the CLI asks it before a push: the modules
// the deployment runs now (path, "isolate" or "node", sha256 of source and source map). Asked
// before and after a push, it says which modules the push created, changed and removed.
// Idempotent (it reads), retried like a GET.
struct ModuleHash {
  std::string path;          // e.g. "messages.js", relative to the functions folder
  std::string environment;   // "isolate" | "node"
  std::string hash;
};
struct ModuleHashesResult {
  std::optional<std::vector<ModuleHash>> modules;
  std::optional<ApiError> error;
  int attempts = 0;
  std::vector<AttemptOutcome> outcomes;
  bool ambiguous = false;
};
ModuleHashesResult moduleHashes(const std::string& deployment_url, const std::string& admin_key,
                                const std::string& cli_version, const HttpOptions& options);

// The deployment's functions, as `npx convex function-spec` lists them: the system query
// `_system/cli/modules:apiSpec`, asked through the deployment's HTTP query API
// (POST /api/query, admin auth), as the CLI's ConvexHttpClient asks. `signature` is everything
// but the identifier (type, visibility, validators) as JSON text, to tell a changed one.
struct FunctionSpec {
  std::string identifier;     // "messages.js:list"
  std::string function_type;  // "Query", "Mutation", "Action", "HttpAction"; "" when not said
  std::string signature;
};
struct FunctionSpecResult {
  std::optional<std::vector<FunctionSpec>> functions;
  std::optional<ApiError> error;
  int attempts = 0;
  std::vector<AttemptOutcome> outcomes;
  bool ambiguous = false;
};
FunctionSpecResult functionSpec(const std::string& deployment_url, const std::string& admin_key,
                                const HttpOptions& options);

// One POST of a webhook: `body` (JSON) with `headers` and no credential, to any http(s) URL,
// one attempt, redirects not followed (a 3xx is "bad_response"). Success is a 2xx; otherwise
// error.retryable says whether a later attempt may succeed (network errors, 429, 500/502/503/504).
struct WebhookPostResult {
  int http_status = 0;  // 0: no answer
  std::optional<ApiError> error;
  std::vector<AttemptOutcome> outcomes;
};
WebhookPostResult postWebhook(const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers,
                              const std::string& body, const HttpOptions& options);

// Idempotent calls (every GET, the deletes) are retried on network errors, 429 and 500/502/503/
// 504 as `retry` says. Non-idempotent ones (createProject, createDeployKey,
// createPreviewDeployKey) are retried only on 429 and on failures before anything was sent
// (connect refused or timed out, TLS handshake, a proxy's 5xx to CONNECT); once the request may
// have reached the server, a failure ends the call with reason "ambiguous".
class ManagementClient {
 public:
  // `base_url` is the Convex cloud origin, e.g. "https://api.convex.dev"; `/v1` is appended.
  // Without a policy: RetryPolicy{} with max_attempts = options.attempts.
  ManagementClient(std::string base_url, std::string team_token, HttpOptions options = {});
  ManagementClient(std::string base_url, std::string team_token, HttpOptions options, RetryPolicy retry);

  // GET /v1/token_details
  TokenDetailsResult tokenDetails() const;

  // POST /v1/teams/{team_id}/create_project {"projectName", "deploymentType"?}. An empty
  // `deployment_type` creates the project without a deployment; otherwise "dev", "prod", ...
  // Not idempotent: see the class comment and findProjectsByName.
  CreateProjectResult createProject(int64_t team_id, const std::string& name,
                                    const std::string& deployment_type) const;

  // GET /v1/teams/{team_id}/projects?q=<name>&limit=100[&cursor=...], following
  // pagination.nextCursor for at most `max_pages` pages; keeps the projects whose name is exactly
  // `name` (the API's `q` also matches slugs and is case-insensitive).
  ProjectListResult findProjectsByName(int64_t team_id, const std::string& name, int max_pages = 10) const;

  // GET /v1/projects/{project_id}
  ProjectResult getProject(int64_t project_id) const;

  // GET /v1/projects/{project_id}/deployment?defaultProd=true (type "prod") or
  // ?defaultDev=true (type "dev": the token owner's default dev deployment). Another type is a
  // config_error and sends nothing.
  DeploymentResult defaultDeployment(int64_t project_id, const std::string& type) const;

  // GET /v1/deployments/{name}
  DeploymentResult getDeployment(const std::string& name) const;

  // POST /v1/deployments/{name}/create_deploy_key
  MintResult createDeployKey(const DeployKeyRequest& request) const;

  // POST /v1/deployments/{name}/delete_deploy_key {"id"}: `id_or_key_or_name` is the full deploy
  // key, its encoded token, or the key's name. Any 404 is "already gone".
  DeleteResult deleteDeployKey(const std::string& deployment_name, const std::string& id_or_key_or_name) const;

  // POST /v1/projects/{project_id}/create_preview_deploy_key {"name", "expiresAt"?}
  PreviewKeyResult createPreviewDeployKey(int64_t project_id, const std::string& name,
                                          std::optional<int64_t> expires_at_ms = std::nullopt) const;

  // POST /v1/projects/{project_id}/delete_preview_deploy_key {"id"}: `id_or_key_or_name` is the
  // full preview key, its secret part, or the key's name. Retried like a GET. A 404 is "already
  // gone", except 404 ProjectNotFound, an error (reason not_found): the project is deleted (its
  // keys with it) or the token cannot see it, and only the caller can tell which. Deleting a key
  // an OAuth token minted revokes that OAuth grant (it is the same secret).
  DeleteResult deletePreviewDeployKey(int64_t project_id, const std::string& id_or_key_or_name) const;

  // POST /v1/projects/{project_id}/delete (deletes its deployments too). A 404 whose code is
  // ProjectNotFound (or that has no code) is "already gone"; another 404 (say, no such route at
  // a misconfigured base URL) is an error.
  DeleteResult deleteProject(int64_t project_id) const;

 private:
  std::string base_url_;
  std::string team_token_;
  HttpOptions options_;
  RetryPolicy retry_;
};

}  // namespace da::convex

// Client for the Convex Management API (https://api.convex.dev/v1 or a stand-in): the calls
// the agent makes with a team access token. Every call returns a typed result; nothing
// throws past this module, and no token, proxy password or minted key appears in an error
// message.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "convex/http_options.h"

namespace da::convex {

struct ApiError {
  // "unauthorized", "not_found", "bad_request", "server_error", "network_error",
  // "bad_response", "cancelled", "config_error" (HttpOptions::config_error, or a CA location
  // that cannot be loaded; nothing was sent), "proxy_error" (the proxy refused us: HTTP 407
  // or another 4xx to CONNECT; not retried)
  std::string reason;
  int http_status = 0;     // 0 when no response came
  std::string code;        // the API's `code`, e.g. "DeploymentNotFound"
  std::string message;     // the API's `message`, or what went wrong on the wire
};

struct DeployKeyRequest {
  std::string deployment_name;
  std::string key_name;                     // shown in the dashboard's key list
  std::vector<std::string> allowed_actions;  // empty: the API's default (full access)
  std::optional<int64_t> expires_at_ms;
};

struct MintResult {
  std::optional<std::string> deploy_key;
  std::optional<ApiError> error;
};

struct UrlResult {
  std::optional<std::string> url;
  std::optional<ApiError> error;
};

// POST /api/deployment/url_for_key on the provisioning origin (the CLI's CONVEX_PROVISION_HOST,
// which is the Convex URL): the deployment URL a deploy key pushes to, asked exactly as the CLI
// asks (the key as bearer and in the body). The URL is never derived from the key's name: it
// may be a custom domain.
UrlResult deploymentUrlForKey(const std::string& provision_url, const std::string& deploy_key,
                              const HttpOptions& options);

class ManagementClient {
 public:
  // `base_url` is the Convex cloud origin, e.g. "https://api.convex.dev"; `/v1` is appended.
  ManagementClient(std::string base_url, std::string team_token, HttpOptions options = {});

  // POST /v1/deployments/{name}/create_deploy_key
  MintResult createDeployKey(const DeployKeyRequest& request) const;

 private:
  std::string base_url_;
  std::string team_token_;
  HttpOptions options_;
};

}  // namespace da::convex

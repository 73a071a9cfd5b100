// The options of POST /v1/deploys: where to deploy and how, from the query string and, for
// structured ones, from a JSON `options` part of a multipart body. Checked completely before a
// job exists; a problem names the field (and both sources when they disagree). Env values are
// secrets: no problem ever repeats one.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "report/deploy_report.h"

namespace da::api {

struct DeployOptions {
  std::optional<Target> target;
  std::string deployment;                   // an existing deployment, by name
  std::optional<int64_t> project_id;        // a project's default prod / the token's default dev deployment
  std::string create_project;               // a new project of this name, in the token's team
  std::optional<int64_t> ttl_seconds;       // with create_project: delete it after this long
  std::string preview;                      // a preview deployment of this name (convex deploy --preview-create)
  std::string self_hosted_url;              // a self-hosted backend, with Convex-Admin-Key
  std::map<std::string, std::string> env;   // the deployment's environment variables (values are secrets)
  std::string typecheck = "try";
  std::string callback_url;                 // where the final report is POSTed, signed (webhook)

  std::set<std::string> given;              // option names the request set (query or JSON)
};

struct OptionsProblem {
  int status = 400;
  std::string reason;
  std::string detail;
  std::string field;
};

// The credentials that came as headers; only whether each is present matters here.
struct CallerCredentials {
  std::string deploy_key;    // Convex-Deploy-Key
  std::string access_token;  // Convex-Access-Token: a user's OAuth token or another team's token
  std::string admin_key;     // Convex-Admin-Key: a self-hosted backend's admin key
};

// The query string's options; unknown names are refused.
std::optional<OptionsProblem> optionsFromQuery(const std::map<std::string, std::string>& query, DeployOptions& options);

// The JSON `options` part, merged over the query's: a member that the query also set must say
// the same, or the problem names both.
std::optional<OptionsProblem> mergeJsonOptions(const nlohmann::json& json, DeployOptions& options);

// Whether the options name exactly one way to reach a deployment, and the request carries
// what that way needs (`has_team_token`: the agent's configured one).
std::optional<OptionsProblem> checkTargeting(const DeployOptions& options, const CallerCredentials& credentials,
                                             bool has_team_token);

// Everything that decides what a deploy does, credentials and env values included, as one
// deterministic string: what an Idempotency-Key's fingerprint is made of (never stored as is).
std::string canonicalRequest(const DeployOptions& options, const CallerCredentials& credentials);

// Limits of env names and values, as the deployment API enforces them, so a bad variable is
// refused before anything runs.
inline constexpr size_t kMaxEnvVars = 512;
inline constexpr size_t kMaxEnvNameBytes = 256;
inline constexpr size_t kMaxEnvValueBytes = 8192;
inline constexpr size_t kMaxCallbackUrlBytes = 2048;
inline constexpr int64_t kMinTtlSeconds = 1;
inline constexpr int64_t kMaxTtlSeconds = 30 * 24 * 3600;

}  // namespace da::api

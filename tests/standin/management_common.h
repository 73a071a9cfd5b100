// Pieces the Management API route files share: the auth columns of the reference's endpoint
// table, path-parameter parsing and the response shapes (ProjectResponse,
// PlatformDeploymentResponse) from management-openapi.json.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "standin/api_error.h"
#include "standin/route_handler.h"
#include "standin/state.h"

namespace standin {

// Auth columns (PATs are not modelled): "T OT OP" and "T OT".
inline const std::vector<TokenKind> kAnyToken = {TokenKind::Team, TokenKind::OAuthTeam,
                                                 TokenKind::OAuthProject};
inline const std::vector<TokenKind> kTeamWide = {TokenKind::Team, TokenKind::OAuthTeam};

// "Must be at least 30 minutes in the future." A few seconds of slack absorb transit time for
// a client that asks for exactly now + 30 min.
inline constexpr int64_t kMinLifetimeMs = 30 * 60 * 1000;
inline constexpr int64_t kClockSlackMs = 5 * 1000;

// PlatformCreateDeployKeyArgs.allowedActions enum, plus "deployment:aiGateway:use", which the
// live API accepts although the published spec lacks it.
inline constexpr std::array<std::string_view, 26> kDeployKeyActions = {
    "deployment:deploy",
    "deployment:env:view",
    "deployment:env:write",
    "deployment:pause",
    "deployment:unpause",
    "deployment:logs:view",
    "deployment:metrics:view",
    "deployment:integrations:view",
    "deployment:integrations:write",
    "deployment:data:view",
    "deployment:data:write",
    "deployment:backups:view",
    "deployment:backups:create",
    "deployment:backups:download",
    "deployment:backups:delete",
    "deployment:backups:import",
    "deployment:functions:actAsUser",
    "deployment:functions:runInternalQueries",
    "deployment:functions:runInternalMutations",
    "deployment:functions:runInternalActions",
    "deployment:functions:runTestQuery",
    "deployment:auditLog:view",
    "deployment:usageLimits:view",
    "deployment:usageLimits:write",
    "deployment:usage:view",
    "deployment:aiGateway:use",
};

// PlatformDeployKeyResponse for list_deploy_keys and list_preview_deploy_keys: metadata only,
// the secret cannot be read back.
nlohmann::json deployKeyJson(const DeployKeyInfo& info);

// A ProjectId/TeamId path parameter: a non-negative integer, else 400.
int64_t parseIdParam(const std::string& value, const std::string& what);
// 404 TeamNotFound unless `team_id` is this stand-in's team (id, or slug when allowed).
void requireTeam(const StandinState& state, const std::string& team_id, bool slug_allowed);
// Rejects an expiresAt (already parsed) that is under 30 minutes away.
void requireFutureExpiry(const std::optional<int64_t>& expires_at_ms);

// A query parameter of the request (decoded), or nullopt.
std::optional<std::string> queryParam(const Exchange& exchange, const std::string& name);
// A boolean query parameter: "true"/"false", else 400.
std::optional<bool> boolQueryParam(const Exchange& exchange, const std::string& name);

nlohmann::json projectJson(const StandinState& state, const Project& project);
// PlatformDeploymentResponse, kind "cloud". The live API shows previewIdentifier only in
// list and create responses.
nlohmann::json deploymentJson(const StandinState& state, const HostedDeployment& deployment,
                              bool show_preview_identifier);

}  // namespace standin

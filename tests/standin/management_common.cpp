#include "standin/management_common.h"

#include <algorithm>
#include <cctype>

#include <Poco/URI.h>

namespace standin {

int64_t parseIdParam(const std::string& value, const std::string& what) {
  const bool digits = !value.empty() && value.size() <= 18 &&
                      std::all_of(value.begin(), value.end(),
                                  [](unsigned char c) { return std::isdigit(c) != 0; });
  if (!digits) throw badRequest("`" + what + "` must be a non-negative integer, got " + value);
  return std::stoll(value);
}

void requireTeam(const StandinState& state, const std::string& team_id, bool slug_allowed) {
  const bool by_id = team_id == std::to_string(kTeamId);
  const bool by_slug = slug_allowed && team_id == state.teamSlug();
  if (by_id || by_slug) return;
  if (!slug_allowed) parseIdParam(team_id, "team_id");
  throw ApiError(404, "TeamNotFound", "The requested team does not exist");
}

void requireFutureExpiry(const std::optional<int64_t>& expires_at_ms) {
  if (expires_at_ms && *expires_at_ms < nowMs() + kMinLifetimeMs - kClockSlackMs) {
    throw badRequest("`expiresAt` must be at least 30 minutes in the future");
  }
}

std::optional<std::string> queryParam(const Exchange& exchange, const std::string& name) {
  Poco::URI::QueryParameters parameters;
  try {
    parameters = Poco::URI(exchange.request.getURI()).getQueryParameters();
  } catch (const Poco::Exception&) {
    throw badRequest("The query string is malformed");
  }
  for (const auto& [key, value] : parameters) {
    if (key == name) return value;
  }
  return std::nullopt;
}

std::optional<bool> boolQueryParam(const Exchange& exchange, const std::string& name) {
  const auto value = queryParam(exchange, name);
  if (!value) return std::nullopt;
  if (*value == "true") return true;
  if (*value == "false") return false;
  throw badRequest("Query parameter `" + name + "` must be true or false");
}

nlohmann::json deployKeyJson(const DeployKeyInfo& info) {
  using nlohmann::json;
  // A key minted without allowedActions is listed with all of them: the spec's enum, which
  // lacks the live API's extra (last) action.
  static const std::vector<std::string> every_action(kDeployKeyActions.begin(),
                                                     kDeployKeyActions.end() - 1);
  return {{"id", info.id},
          {"name", info.unique_name},
          {"creationTime", info.creation_time_ms},
          {"lastUsedTime", info.last_used_ms ? json(*info.last_used_ms) : json()},
          {"expiresAt", info.grant.expires_at_ms ? json(*info.grant.expires_at_ms) : json()},
          {"creator", 1},
          {"managedBy", info.oauth_derived ? json{{"oauthApp", "standin-oauth-app"}} : json()},
          {"allowedActions",
           info.grant.allowed_actions ? json(*info.grant.allowed_actions) : json(every_action)}};
}

nlohmann::json projectJson(const StandinState& state, const Project& project) {
  const auto prod = state.defaultDeployment(project.id, "prod");
  const auto dev = state.defaultDeployment(project.id, "dev");
  return {{"id", project.id},
          {"name", project.name},
          {"slug", project.slug},
          {"teamId", kTeamId},
          {"teamSlug", state.teamSlug()},
          {"createTime", project.create_time_ms},
          {"prodDeploymentName", prod ? nlohmann::json(prod->name) : nlohmann::json()},
          {"devDeploymentName", dev ? nlohmann::json(dev->name) : nlohmann::json()}};
}

nlohmann::json deploymentJson(const StandinState& state, const HostedDeployment& deployment,
                              bool show_preview_identifier) {
  const auto last_deploy = state.lastDeployTimeMs(deployment.name);
  const bool show_identifier = show_preview_identifier && deployment.preview_identifier;
  return {{"kind", "cloud"},
          {"id", deployment.id},
          {"name", deployment.name},
          {"createTime", deployment.create_time_ms},
          {"lastDeployTime", last_deploy ? nlohmann::json(*last_deploy) : nlohmann::json()},
          {"deploymentType", deployment.type},
          {"projectId", deployment.project_id},
          {"creator", deployment.type == "prod" ? nlohmann::json() : nlohmann::json(1)},
          {"previewIdentifier",
           show_identifier ? nlohmann::json(*deployment.preview_identifier) : nlohmann::json()},
          {"region", deployment.region},
          {"isDefault", deployment.is_default},
          {"reference", deployment.reference},
          {"dashboardEditConfirmation", nullptr},
          {"deploymentUrl", state.origin()},
          {"expiresAt",
           deployment.expires_at_ms ? nlohmann::json(*deployment.expires_at_ms) : nlohmann::json()},
          {"class", deployment.deployment_class},
          {"sendLogsToClient", nullptr}};
}

}  // namespace standin

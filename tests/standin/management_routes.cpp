// Management API (`https://api.convex.dev/v1`): the three operations an agent needs to mint
// deploy keys. Shapes follow management-openapi.json; errors follow the live API's
// `{code,message}` bodies.
#include <algorithm>
#include <array>
#include <string_view>

#include "standin/json_fields.h"
#include "standin/router.h"

namespace standin {
namespace {

// PlatformCreateDeployKeyArgs.allowedActions enum, plus "deployment:aiGateway:use", which the
// live API accepts although the published spec lacks it.
constexpr std::array<std::string_view, 26> kDeployKeyActions = {
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

// "Must be at least 30 minutes in the future." A few seconds of slack absorb transit time for
// a client that asks for exactly now + 30 min.
constexpr int64_t kMinKeyLifetimeMs = 30 * 60 * 1000;
constexpr int64_t kClockSlackMs = 5 * 1000;

HostedDeployment requireDeployment(const StandinState& state, const std::string& name) {
  auto deployment = state.findDeployment(name);
  if (!deployment) {
    throw ApiError(404, "DeploymentNotFound",
                   "The requested deployment " + name + " does not exist");
  }
  return *deployment;
}

DeployKeyGrant parseCreateDeployKeyArgs(const nlohmann::json& body) {
  DeployKeyGrant grant;
  grant.name = requireString(body, "name");
  // Stricter than the cloud, whose schema is not additionalProperties:false: a member it does
  // not know would be dropped silently there, so a misspelt field in the agent's request
  // (`expires_at` for `expiresAt`) fails here instead of minting a key that never expires.
  rejectUnknownFields(body, {"name", "allowedActions", "expiresAt"});

  if (body.contains("allowedActions") && !body["allowedActions"].is_null()) {
    const nlohmann::json& actions = requireArray(body, "allowedActions");
    std::vector<std::string> allowed;
    for (std::size_t i = 0; i < actions.size(); ++i) {
      const std::string where = "`allowedActions[" + std::to_string(i) + "]`";
      if (!actions[i].is_string()) throw badRequest(where + " must be a string");
      const auto action = actions[i].get<std::string>();
      if (std::find(kDeployKeyActions.begin(), kDeployKeyActions.end(), action) ==
          kDeployKeyActions.end()) {
        throw badRequest(where + " is not a known deploy key action: \"" + action + "\"");
      }
      allowed.push_back(action);
    }
    grant.allowed_actions = std::move(allowed);
  }

  grant.expires_at_ms = optionalInteger(body, "expiresAt");
  if (grant.expires_at_ms && *grant.expires_at_ms < nowMs() + kMinKeyLifetimeMs - kClockSlackMs) {
    throw badRequest("`expiresAt` must be at least 30 minutes in the future");
  }
  return grant;
}

nlohmann::json grantJson(const DeployKeyGrant& grant) {
  return {{"name", grant.name},
          {"allowedActions",
           grant.allowed_actions ? nlohmann::json(*grant.allowed_actions) : nlohmann::json()},
          {"expiresAt", grant.expires_at_ms ? nlohmann::json(*grant.expires_at_ms)
                                            : nlohmann::json()}};
}

// GET /v1/token_details -> PlatformTokenDetailsResponse (team token variant).
class TokenDetailsHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const std::size_t index = requireTeamToken(exchange);
    return {200,
            {{"type", "teamToken"},
             {"id", static_cast<int64_t>(index) + 1},
             {"teamId", 1},
             {"name", "standin-token-" + std::to_string(index + 1)},
             {"createTime", state().tokensCreatedAtMs()}}};
  }
};

// GET /v1/deployments/{name} -> PlatformDeploymentResponse (kind "cloud").
class GetDeploymentHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    requireTeamToken(exchange);
    const HostedDeployment deployment = requireDeployment(state(), exchange.params.at("name"));
    exchange.deployment = deployment.name;
    const auto last_deploy = state().lastDeployTimeMs(deployment.name);
    return {200,
            {{"kind", "cloud"},
             {"id", deployment.id},
             {"name", deployment.name},
             {"createTime", deployment.create_time_ms},
             {"lastDeployTime", last_deploy ? nlohmann::json(*last_deploy) : nlohmann::json()},
             {"deploymentType", deployment.type},
             {"projectId", 1},
             {"creator", deployment.type == "prod" ? nlohmann::json() : nlohmann::json(1)},
             {"previewIdentifier", nullptr},
             {"region", "aws-us-east-1"},
             {"isDefault", isDefaultDeployment(deployment)},
             {"reference", deploymentReference(deployment)},
             {"dashboardEditConfirmation", nullptr},
             {"deploymentUrl", state().origin()},
             {"expiresAt", nullptr},
             {"class", "s16"},
             {"sendLogsToClient", nullptr}}};
  }
};

// POST /v1/deployments/{name}/create_deploy_key, body PlatformCreateDeployKeyArgs.
class CreateDeployKeyHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    requireTeamToken(exchange);
    const std::string& name = exchange.params.at("name");
    if (state().findDeployment(name)) exchange.deployment = name;
    DeployKeyGrant grant = parseCreateDeployKeyArgs(exchange.jsonBody());
    const HostedDeployment deployment = requireDeployment(state(), name);
    exchange.log_details["deploy_key"] = grantJson(grant);
    const auto key = state().mintDeployKey(deployment.name, std::move(grant));
    if (!key) throw std::logic_error("deployment vanished while minting a key");
    return {200, {{"deployKey", *key}}};
  }
};

}  // namespace

void addManagementRoutes(RouteTable& table) {
  table.add<TokenDetailsHandler>("GET", "/v1/token_details");
  table.add<GetDeploymentHandler>("GET", "/v1/deployments/{name}");
  table.add<CreateDeployKeyHandler>("POST", "/v1/deployments/{name}/create_deploy_key");
}

}  // namespace standin

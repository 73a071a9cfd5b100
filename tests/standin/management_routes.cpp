// Management API (`https://api.convex.dev/v1`), deployment-scoped operations: token details,
// get/delete a deployment, and deploy keys (create, list, delete). Shapes follow
// management-openapi.json; errors follow the live API's `{code,message}` bodies.
#include <algorithm>
#include <array>
#include <string_view>

#include "standin/json_fields.h"
#include "standin/management_common.h"
#include "standin/router.h"

namespace standin {
namespace {

using nlohmann::json;

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
  requireFutureExpiry(grant.expires_at_ms);
  return grant;
}

nlohmann::json grantJson(const DeployKeyGrant& grant) {
  return {{"name", grant.name},
          {"allowedActions",
           grant.allowed_actions ? nlohmann::json(*grant.allowed_actions) : nlohmann::json()},
          {"expiresAt", grant.expires_at_ms ? nlohmann::json(*grant.expires_at_ms)
                                            : nlohmann::json()}};
}

// GET /v1/token_details -> PlatformTokenDetailsResponse: teamToken (team and OAuth team
// tokens) or projectToken (OAuth project tokens).
class TokenDetailsHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const AccessToken token = requireToken(exchange, kAnyToken);
    json details = {{"id", token.id}, {"name", token.name}, {"createTime", token.create_time_ms}};
    if (token.project_id) {
      details["type"] = "projectToken";
      details["projectId"] = *token.project_id;
    } else {
      details["type"] = "teamToken";
      details["teamId"] = kTeamId;
    }
    return {200, std::move(details)};
  }
};

// GET /v1/deployments/{name} -> PlatformDeploymentResponse (kind "cloud").
class GetDeploymentHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const AccessToken caller = requireToken(exchange, kAnyToken);
    const HostedDeployment deployment =
        requireDeployment(exchange, caller, exchange.params.at("name"));
    return {200, deploymentJson(state(), deployment, /*show_preview_identifier=*/false)};
  }
};

// POST /v1/deployments/{name}/delete: all its data goes; the project remains. Its keys stop
// working (404 DeploymentNotFound on deployment routes).
class DeleteDeploymentHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const AccessToken caller = requireToken(exchange, kAnyToken);
    const HostedDeployment deployment =
        requireDeployment(exchange, caller, exchange.params.at("name"));
    state().deleteDeployment(deployment.name);
    return emptyReply();
  }
};

// POST /v1/deployments/{name}/create_deploy_key, body PlatformCreateDeployKeyArgs. With an
// OAuth token the key is the OAuth secret behind the deployment prefix (reference §9.2).
class CreateDeployKeyHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const AccessToken caller = requireToken(exchange, kAnyToken);
    const std::string& name = exchange.params.at("name");
    if (const auto known = state().findDeployment(name)) exchange.deployment = known->name;
    DeployKeyGrant grant = parseCreateDeployKeyArgs(exchange.jsonBody());
    const HostedDeployment deployment = requireDeployment(exchange, caller, name);
    const bool oauth = caller.kind != TokenKind::Team;
    exchange.log_details["deploy_key"] = grantJson(grant);
    if (oauth) exchange.log_details["deploy_key"]["oauthDerived"] = true;
    const auto key = state().mintDeployKey(deployment.name, std::move(grant),
                                           oauth ? &caller : nullptr);
    if (!key) throw std::logic_error("deployment vanished while minting a key");
    return {200, {{"deployKey", *key}}};
  }
};

// GET /v1/deployments/{name}/list_deploy_keys -> bare array of PlatformDeployKeyResponse.
class ListDeployKeysHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const AccessToken caller = requireToken(exchange, kAnyToken);
    const HostedDeployment deployment =
        requireDeployment(exchange, caller, exchange.params.at("name"));
    json keys = json::array();
    for (const DeployKeyInfo& info : state().deployKeys(deployment.name)) {
      keys.push_back(deployKeyJson(info));
    }
    return {200, std::move(keys)};
  }
};

// POST /v1/deployments/{name}/delete_deploy_key {"id"} (strict): the full key, its secret or
// its name. Deleting an OAuth-derived key revokes the OAuth grant (the documented hazard).
class DeleteDeployKeyHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const AccessToken caller = requireToken(exchange, kAnyToken);
    const HostedDeployment deployment =
        requireDeployment(exchange, caller, exchange.params.at("name"));
    const json body = exchange.jsonBody();
    rejectUnknownFields(body, {"id"});
    const std::string id = requireString(body, "id");
    if (!state().deleteDeployKey(deployment.name, id)) {
      throw ApiError(404, "DeployKeyNotFound",
                     "No deploy key of deployment " + deployment.name + " matches that id");
    }
    return emptyReply();
  }
};

}  // namespace

void addManagementRoutes(RouteTable& table) {
  table.add<TokenDetailsHandler>("GET", "/v1/token_details");
  table.add<GetDeploymentHandler>("GET", "/v1/deployments/{name}");
  table.add<DeleteDeploymentHandler>("POST", "/v1/deployments/{name}/delete");
  table.add<CreateDeployKeyHandler>("POST", "/v1/deployments/{name}/create_deploy_key");
  table.add<ListDeployKeysHandler>("GET", "/v1/deployments/{name}/list_deploy_keys");
  table.add<DeleteDeployKeyHandler>("POST", "/v1/deployments/{name}/delete_deploy_key");
}

}  // namespace standin

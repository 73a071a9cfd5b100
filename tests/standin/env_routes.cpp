// The deployment admin API for environment variables (reference §5), on the deployment URL
// with `Authorization: Convex <key>`: a deploy key (held to deployment:env:write /
// deployment:env:view when minted with a restricted allowedActions list), an admin key, a team
// token or an OAuth token. Names and values are checked against §5.1 (the newer limits).
// The request log carries the names only, never values.
#include "standin/json_fields.h"
#include "standin/router.h"

namespace standin {
namespace {

using nlohmann::json;

using EnvChanges = std::vector<std::pair<std::string, std::optional<std::string>>>;

// UpdateEnvVarsRequest {changes: [{name, value?: string|null}]}; value null or absent deletes.
EnvChanges parseChanges(const json& body) {
  const json& changes = requireArray(body, "changes");
  EnvChanges parsed;
  for (std::size_t i = 0; i < changes.size(); ++i) {
    const std::string where = "changes[" + std::to_string(i) + "]";
    if (!changes[i].is_object()) throw badRequest("`" + where + "` must be an object");
    std::string name = requireString(changes[i], "name", where);
    parsed.emplace_back(std::move(name), optionalString(changes[i], "value", where));
  }
  return parsed;
}

// POST /api/v1/update_environment_variables and the legacy POST
// /api/update_environment_variables (what `npx convex env set` calls) -> 200, empty body.
class UpdateEnvironmentVariablesHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const HostedDeployment deployment =
        requireAdminKey(exchange, nullptr, "deployment:env:write");
    const EnvChanges changes = parseChanges(exchange.jsonBody());
    json set = json::array();
    json deleted = json::array();
    for (const auto& [name, value] : changes) (value ? set : deleted).push_back(name);
    exchange.log_details["env"] = {{"set", std::move(set)}, {"deleted", std::move(deleted)}};
    state().updateEnvironment(deployment.name, changes);
    return emptyReply();
  }
};

// GET /api/v1/list_environment_variables (and the legacy path without /v1).
class ListEnvironmentVariablesHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const HostedDeployment deployment =
        requireAdminKey(exchange, nullptr, "deployment:env:view");
    return {200, {{"environmentVariables", state().environment(deployment.name)}}};
  }
};

}  // namespace

void addEnvironmentRoutes(RouteTable& table) {
  table.add<UpdateEnvironmentVariablesHandler>("POST", "/api/v1/update_environment_variables");
  table.add<UpdateEnvironmentVariablesHandler>("POST", "/api/update_environment_variables");
  table.add<ListEnvironmentVariablesHandler>("GET", "/api/v1/list_environment_variables");
  table.add<ListEnvironmentVariablesHandler>("GET", "/api/list_environment_variables");
}

}  // namespace standin

// The CLI's internal provisioning API on CONVEX_PROVISION_HOST ("big brain"), and the version
// API the CLI consults on CONVEX_VERSION_API_ORIGIN. The CLI accepts provisioning answers only
// with status exactly 200.
#include "standin/json_fields.h"
#include "standin/router.h"

namespace standin {
namespace {

// Deploy keys are resolved from the body; the CLI's `Authorization: Bearer <key>` repeats it
// for dev:/prod: keys and is absent for other key kinds, so it is not required.
HostedDeployment requireDeployKey(const StandinState& state, Exchange& exchange) {
  const std::string key = requireString(exchange.jsonBody(), "deployKey");
  const auto deployment = state.deploymentForKey(key);
  if (!deployment) throw ApiError(401, "BadDeployKey", "The provided deploy key is not valid");
  exchange.deployment = deployment->name;
  return *deployment;
}

// POST /api/deployment/url_for_key -> the deployment URL as a bare JSON string. Every hosted
// deployment shares this server's origin; the key tells them apart on later calls.
class UrlForKeyHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    requireDeployKey(state(), exchange);
    return {200, state().origin()};
  }
};

// POST /api/deployment/team_and_project_for_key
class TeamAndProjectForKeyHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const HostedDeployment deployment = requireDeployKey(state(), exchange);
    return {200,
            {{"team", state().teamSlug()},
             {"project", state().projectSlug()},
             {"teamId", 1},
             {"projectId", 1},
             {"reference", deploymentReference(deployment)},
             {"isDefault", isDefaultDeployment(deployment)}}};
  }
};

// GET /v1/version: no update notice, no AI guideline hashes.
class VersionHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange&) override {
    return {200, {{"message", nullptr}, {"guidelinesHash", nullptr}, {"agentSkillsSha", nullptr}}};
  }
};

}  // namespace

void addProvisioningRoutes(RouteTable& table) {
  table.add<UrlForKeyHandler>("POST", "/api/deployment/url_for_key");
  table.add<TeamAndProjectForKeyHandler>("POST", "/api/deployment/team_and_project_for_key");
  table.add<VersionHandler>("GET", "/v1/version");
}

}  // namespace standin

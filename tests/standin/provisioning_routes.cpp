// The CLI's internal provisioning API on CONVEX_PROVISION_HOST ("big brain"), and the version
// API the CLI consults on CONVEX_VERSION_API_ORIGIN. The CLI accepts provisioning answers only
// with status exactly 200. Shapes: convex-cli-protocol.md §6.1.
#include "standin/json_fields.h"
#include "standin/router.h"

namespace standin {
namespace {

using nlohmann::json;

// Deploy keys are resolved from the body; the CLI's `Authorization: Bearer <key>` repeats it
// for dev:/prod: keys and is absent for other key kinds, so it is not required. Self-hosted
// deployments are unknown to the cloud.
HostedDeployment requireDeployKey(const StandinState& state, Exchange& exchange) {
  const std::string key = requireString(exchange.jsonBody(), "deployKey");
  const auto deployment = state.deploymentForKey(key);
  if (!deployment || deployment->self_hosted) {
    throw ApiError(401, "BadDeployKey", "The provided deploy key is not valid");
  }
  exchange.deployment = deployment->name;
  return *deployment;
}

// `Authorization: Bearer <team or OAuth token>` on the internal API.
AccessToken requireBearerToken(const StandinState& state, Exchange& exchange) {
  const std::string presented = authorizationCredentials(exchange.request, "Bearer");
  if (presented.empty()) {
    throw ApiError(401, "Unauthenticated", "Missing credentials: send `Authorization: Bearer`");
  }
  const auto token = state.accessToken(presented);
  if (!token) throw ApiError(401, "Unauthenticated", "The provided access token is not valid");
  exchange.log_details["auth"] = tokenKindName(token->kind);
  return *token;
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
    const auto project = state().findProject(deployment.project_id);
    if (!project) throw ApiError(401, "BadDeployKey", "The provided deploy key is not valid");
    return {200,
            {{"team", state().teamSlug()},
             {"project", project->slug},
             {"teamId", kTeamId},
             {"projectId", project->id},
             {"reference", deploymentReference(deployment)},
             {"isDefault", isDefaultDeployment(deployment)}}};
  }
};

// HEAD /api/authorize: 200 when the bearer credential (an OAuth project key, for `dev`) is
// accepted; the CLI starts its interactive login otherwise.
class AuthorizeHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    requireBearerToken(state(), exchange);
    return emptyReply();
  }
};

// POST /api/deployment/provision_and_authorize {"teamSlug","projectSlug","deploymentType"}
// with an OAuth project token (slugs null: the token's project) or a team-wide token (slugs
// given). Creates the project's default prod/dev deployment when absent.
class ProvisionAndAuthorizeHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const AccessToken caller = requireBearerToken(state(), exchange);
    const json body = exchange.jsonBody();
    const auto team_slug = optionalString(body, "teamSlug");
    const auto project_slug = optionalString(body, "projectSlug");
    const std::string type = requireString(body, "deploymentType");
    if (type != "prod" && type != "dev") {
      throw badRequest("`deploymentType` must be \"prod\" or \"dev\"");
    }
    if (team_slug && *team_slug != state().teamSlug()) {
      throw ApiError(404, "TeamNotFound", "The requested team does not exist");
    }
    std::optional<Project> project;
    if (caller.project_id) {
      project = state().findProject(*caller.project_id);
      if (project && project_slug && *project_slug != project->slug) project.reset();
    } else if (project_slug) {
      project = state().findProjectBySlug(*project_slug);
    } else {
      throw badRequest("`projectSlug` is required with a team-wide token");
    }
    if (!project) throw ApiError(404, "ProjectNotFound", "The requested project does not exist");

    auto deployment = state().defaultDeployment(project->id, type);
    if (!deployment) {
      NewDeployment request;
      request.type = type;
      try {
        deployment = state().createDeployment(project->id, request);
      } catch (const ApiError&) {
        // A concurrent call created it first.
        deployment = state().defaultDeployment(project->id, type);
        if (!deployment) throw;
      }
    }
    exchange.deployment = deployment->name;
    const bool oauth = caller.kind != TokenKind::Team;
    const auto key = state().mintDeployKey(deployment->name,
                                           DeployKeyGrant{"provision_and_authorize", {}, {}},
                                           oauth ? &caller : nullptr);
    if (!key) throw ApiError(404, "DeploymentNotFound", "The deployment was deleted meanwhile");
    return {200,
            {{"adminKey", *key},
             {"url", state().origin()},
             {"deploymentName", deployment->name},
             {"reference", deployment->reference},
             {"isDefault", deployment->is_default}}};
  }
};

// POST /api/claim_preview_deployment with `Authorization: Bearer preview:<team>:<project>|S`,
// {"projectSelection":{"kind":"teamAndProjectSlugs","teamSlug","projectSlug"},
//  "identifier","reuse"}. reuse:true (--preview-name) keeps an existing preview of that
// identifier; reuse:false (--preview-create) replaces it with a new deployment.
class ClaimPreviewDeploymentHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const std::string presented = authorizationCredentials(exchange.request, "Bearer");
    const auto preview_key = state().previewKey(presented);
    if (!preview_key) {
      throw ApiError(401, "Unauthenticated", "Invalid Convex preview deploy key");
    }
    exchange.log_details["auth"] = "previewDeployKey";
    const json body = exchange.jsonBody();
    const json& selection = requireObject(body, "projectSelection");
    if (requireString(selection, "kind", "projectSelection") != "teamAndProjectSlugs") {
      throw badRequest("`projectSelection.kind` must be \"teamAndProjectSlugs\"");
    }
    const std::string team_slug = requireString(selection, "teamSlug", "projectSelection");
    const std::string project_slug = requireString(selection, "projectSlug", "projectSelection");
    const std::string identifier = requireString(body, "identifier");
    if (identifier.empty()) throw badRequest("`identifier` must not be empty");
    const bool reuse = optionalBool(body, "reuse", false);

    const auto project = state().findProject(preview_key->project_id);
    if (!project || team_slug != state().teamSlug() || project_slug != project->slug) {
      throw ApiError(403, "NotAllowed",
                     "This preview deploy key does not belong to " + team_slug + ":" +
                         project_slug);
    }
    const PreviewClaim claim = state().claimPreview(project->id, identifier, reuse);
    exchange.deployment = claim.deployment.name;
    exchange.log_details["preview"] = {{"identifier", identifier},
                                       {"isNewDeployment", claim.is_new}};
    return {200,
            {{"adminKey", claim.admin_key},
             {"instanceUrl", state().origin()},
             {"deploymentName", claim.deployment.name},
             {"reference", claim.deployment.reference},
             {"isNewDeployment", claim.is_new}}};
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
  table.add<AuthorizeHandler>("HEAD", "/api/authorize");
  table.add<ProvisionAndAuthorizeHandler>("POST", "/api/deployment/provision_and_authorize");
  table.add<ClaimPreviewDeploymentHandler>("POST", "/api/claim_preview_deployment");
  table.add<VersionHandler>("GET", "/v1/version");
}

}  // namespace standin

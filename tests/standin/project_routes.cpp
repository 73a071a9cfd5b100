// Management API, team- and project-scoped operations: create/list/get/delete projects,
// create/list/find deployments in a project, and preview deploy keys (create, list, delete).
// Shapes follow management-openapi.json; strict bodies (additionalProperties:false) reject
// unknown members.
#include <algorithm>
#include <array>
#include <regex>
#include <string_view>

#include <Poco/String.h>

#include "standin/json_fields.h"
#include "standin/management_common.h"
#include "standin/router.h"

namespace standin {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 4> kDeploymentTypes = {"dev", "prod", "preview", "custom"};
// RegionName, plus the two regions the live API already had (the reference's "enum drift").
constexpr std::array<std::string_view, 4> kRegions = {"aws-us-east-1", "aws-eu-west-1",
                                                      "aws-ap-southeast-2", "aws-ca-central-1"};
constexpr std::array<std::string_view, 10> kReservedReferences = {
    "prod", "dev", "cloud", "local", "default", "name", "new", "existing", "deployment", "preview"};
// The team's preview retention entitlement (Pro and above).
constexpr int64_t kMaxDeploymentLifetimeMs = 14LL * 24 * 60 * 60 * 1000;
constexpr int64_t kDefaultPageSize = 100;

template <std::size_t N>
std::optional<std::string> optionalEnum(const json& body, std::string_view field,
                                        const std::array<std::string_view, N>& allowed) {
  auto value = optionalString(body, field);
  if (value && std::find(allowed.begin(), allowed.end(), *value) == allowed.end()) {
    throw badRequest("`" + std::string(field) + "` has an unknown value \"" + *value + "\"");
  }
  return value;
}

// The reference rules of PlatformUpdateDeploymentArgs.reference.
void requireValidReference(const std::string& reference) {
  static const std::regex kCharacters("^[a-z0-9/-]{3,100}$");
  static const std::regex kLooksLikeName("^[a-z]+-[a-z]+-[0-9]+$");
  const bool reserved = std::find(kReservedReferences.begin(), kReservedReferences.end(),
                                  reference) != kReservedReferences.end();
  if (!std::regex_match(reference, kCharacters) || std::regex_match(reference, kLooksLikeName) ||
      reference.rfind("local-", 0) == 0 || reserved) {
    throw ApiError(400, "InvalidDeploymentReference",
                   "`reference` must be 3-100 characters of a-z, 0-9, - and /, must not look "
                   "like a deployment name, start with local- or be a reserved word; got \"" +
                       reference + "\"");
  }
}

int64_t projectIdParam(const Exchange& exchange) {
  return parseIdParam(exchange.params.at("project_id"), "project_id");
}

// POST /v1/teams/{team_id}/create_project, body PlatformCreateProjectArgs (strict).
class CreateProjectHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    requireToken(exchange, kTeamWide);
    requireTeam(state(), exchange.params.at("team_id"), /*slug_allowed=*/false);
    const json body = exchange.jsonBody();
    rejectUnknownFields(body,
                        {"projectName", "deploymentType", "deploymentClass", "deploymentRegion"});
    const std::string name = requireString(body, "projectName");
    if (Poco::trim(name).empty()) throw badRequest("`projectName` must not be empty");
    const auto type = optionalEnum(body, "deploymentType", kDeploymentTypes);
    const auto deployment_class = optionalString(body, "deploymentClass");
    const auto region = optionalEnum(body, "deploymentRegion", kRegions);
    if (type == "preview") {
      // create_project takes no reference, which a preview deployment needs.
      throw ApiError(400, "MissingReference",
                     "A reference must be provided when creating a preview deployment");
    }

    const Project project = state().createProject(name);
    exchange.log_details["project"] = {
        {"id", project.id}, {"name", project.name}, {"slug", project.slug}};
    json reply = {{"projectId", project.id}, {"id", project.id}, {"slug", project.slug}};
    if (type) {
      NewDeployment request;
      request.type = *type;
      request.deployment_class = deployment_class;
      request.region = region;
      const HostedDeployment deployment = state().createDeployment(project.id, request);
      exchange.deployment = deployment.name;
      reply["deploymentName"] = deployment.name;
      reply["deploymentUrl"] = state().origin();
    }
    return {200, std::move(reply)};
  }
};

// GET /v1/teams/{team_id}/projects?cursor&limit&q: descending project id, `q` matches name or
// slug case-insensitively; `nextCursor` is the last id returned.
class ListProjectsHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    requireToken(exchange, kTeamWide);
    requireTeam(state(), exchange.params.at("team_id"), /*slug_allowed=*/false);
    int64_t limit = kDefaultPageSize;
    if (const auto given = queryParam(exchange, "limit")) {
      limit = parseIdParam(*given, "limit");
      if (limit < 1 || limit > 100) throw badRequest("`limit` must be between 1 and 100");
    }
    std::optional<int64_t> before;
    if (const auto cursor = queryParam(exchange, "cursor"); cursor && !cursor->empty()) {
      before = parseIdParam(*cursor, "cursor");
    }
    const std::string q = Poco::toLower(queryParam(exchange, "q").value_or(""));

    std::vector<Project> matching;
    for (const Project& project : state().projects(/*include_deleted=*/false)) {
      if (before && project.id >= *before) continue;
      if (!q.empty() && Poco::toLower(project.name).find(q) == std::string::npos &&
          Poco::toLower(project.slug).find(q) == std::string::npos) {
        continue;
      }
      matching.push_back(project);
    }
    std::sort(matching.begin(), matching.end(),
              [](const Project& a, const Project& b) { return a.id > b.id; });
    const bool has_more = static_cast<int64_t>(matching.size()) > limit;
    if (has_more) matching.resize(static_cast<std::size_t>(limit));
    json items = json::array();
    for (const Project& project : matching) items.push_back(projectJson(state(), project));
    json pagination = {{"hasMore", has_more},
                       {"nextCursor", has_more ? json(std::to_string(matching.back().id)) : json()}};
    return {200, {{"items", std::move(items)}, {"pagination", std::move(pagination)}}};
  }
};

// GET /v1/teams/{team_id}/list_projects (legacy, hidden from the spec): a bare array.
class LegacyListProjectsHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    requireToken(exchange, kTeamWide);
    requireTeam(state(), exchange.params.at("team_id"), /*slug_allowed=*/false);
    json items = json::array();
    for (const Project& project : state().projects(/*include_deleted=*/false)) {
      items.push_back(projectJson(state(), project));
    }
    return {200, std::move(items)};
  }
};

// GET /v1/projects/{project_id}
class GetProjectHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const AccessToken caller = requireToken(exchange, kAnyToken);
    return {200, projectJson(state(), requireProject(caller, projectIdParam(exchange)))};
  }
};

// GET /v1/teams/{team_id_or_slug}/projects/{project_slug}
class GetProjectBySlugHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    requireToken(exchange, kTeamWide);
    requireTeam(state(), exchange.params.at("team_id_or_slug"), /*slug_allowed=*/true);
    const auto project = state().findProjectBySlug(exchange.params.at("project_slug"));
    if (!project) throw ApiError(404, "ProjectNotFound", "The requested project does not exist");
    return {200, projectJson(state(), *project)};
  }
};

// POST /v1/projects/{project_id}/delete: the project and all its deployments.
class DeleteProjectHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const AccessToken caller = requireToken(exchange, kTeamWide);
    const Project project = requireProject(caller, projectIdParam(exchange));
    state().deleteProject(project.id);
    exchange.log_details["project"] = {
        {"id", project.id}, {"name", project.name}, {"slug", project.slug}};
    return emptyReply();
  }
};

// POST /v1/projects/{project_id}/create_deployment, body PlatformCreateDeploymentArgs (strict).
class CreateDeploymentHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const AccessToken caller = requireToken(exchange, kAnyToken);
    const Project project = requireProject(caller, projectIdParam(exchange));
    const json body = exchange.jsonBody();
    rejectUnknownFields(body, {"type", "class", "region", "reference", "isDefault", "expiresAt"});
    NewDeployment request;
    if (!optionalEnum(body, "type", kDeploymentTypes)) requireString(body, "type");
    request.type = requireString(body, "type");
    request.deployment_class = optionalString(body, "class");
    request.region = optionalEnum(body, "region", kRegions);
    request.reference = optionalString(body, "reference");
    if (request.reference) requireValidReference(*request.reference);
    if (body.contains("isDefault") && !body["isDefault"].is_null()) {
      request.is_default = optionalBool(body, "isDefault", false);
      if (request.type != "dev" && request.type != "prod") {
        throw badRequest("`isDefault` can only be set on dev and prod deployments");
      }
    }
    request.expires_at_ms = optionalInteger(body, "expiresAt");
    requireFutureExpiry(request.expires_at_ms);
    if (request.expires_at_ms && *request.expires_at_ms > nowMs() + kMaxDeploymentLifetimeMs) {
      throw badRequest("`expiresAt` is beyond the team's preview deployment retention");
    }
    const HostedDeployment deployment = state().createDeployment(project.id, request);
    exchange.deployment = deployment.name;
    return {200, deploymentJson(state(), deployment, /*show_preview_identifier=*/true)};
  }
};

// GET /v1/projects/{project_id}/list_deployments?isDefault&deploymentType -> bare array.
class ListDeploymentsHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const AccessToken caller = requireToken(exchange, kAnyToken);
    const Project project = requireProject(caller, projectIdParam(exchange));
    boolQueryParam(exchange, "includeLocal");  // no local deployments here
    const auto is_default = boolQueryParam(exchange, "isDefault");
    const auto type = queryParam(exchange, "deploymentType");
    if (type && std::find(kDeploymentTypes.begin(), kDeploymentTypes.end(), *type) ==
                    kDeploymentTypes.end()) {
      throw badRequest("`deploymentType` has an unknown value \"" + *type + "\"");
    }
    json list = json::array();
    for (const HostedDeployment& deployment : state().deploymentsOf(project.id)) {
      if (is_default && deployment.is_default != *is_default) continue;
      if (type && deployment.type != *type) continue;
      list.push_back(deploymentJson(state(), deployment, /*show_preview_identifier=*/true));
    }
    return {200, std::move(list)};
  }
};

// GET /v1/projects/{project_id}/deployment?reference=|defaultProd=true|defaultDev=true
class GetProjectDeploymentHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const AccessToken caller = requireToken(exchange, kAnyToken);
    const Project project = requireProject(caller, projectIdParam(exchange));
    const auto reference = queryParam(exchange, "reference");
    const bool default_prod = boolQueryParam(exchange, "defaultProd").value_or(false);
    const bool default_dev = boolQueryParam(exchange, "defaultDev").value_or(false);
    if (int(reference.has_value()) + int(default_prod) + int(default_dev) != 1) {
      throw badRequest("Give exactly one of `reference`, `defaultProd=true` or `defaultDev=true`");
    }
    const auto deployment = reference      ? state().deploymentByReference(project.id, *reference)
                            : default_prod ? state().defaultDeployment(project.id, "prod")
                                           : state().defaultDeployment(project.id, "dev");
    if (!deployment) {
      throw ApiError(404, "DeploymentNotFound", "The requested deployment does not exist");
    }
    exchange.deployment = deployment->name;
    return {200, deploymentJson(state(), *deployment, /*show_preview_identifier=*/false)};
  }
};

// POST /v1/projects/{project_id}/create_preview_deploy_key {"name", "expiresAt"?} ->
// {"previewDeployKey": "preview:<team>:<project>|<secret>"}. Stricter than the cloud: unknown
// members are a 400, as for create_deploy_key.
class CreatePreviewDeployKeyHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const AccessToken caller = requireToken(exchange, kAnyToken);
    const Project project = requireProject(caller, projectIdParam(exchange));
    const json body = exchange.jsonBody();
    rejectUnknownFields(body, {"name", "expiresAt"});
    const std::string name = requireString(body, "name");
    const auto expires_at = optionalInteger(body, "expiresAt");
    requireFutureExpiry(expires_at);
    const bool oauth = caller.kind != TokenKind::Team;
    exchange.log_details["preview_deploy_key"] = {
        {"name", name},
        {"expiresAt", expires_at ? json(*expires_at) : json()},
        {"oauthDerived", oauth}};
    const std::string key =
        state().mintPreviewDeployKey(project.id, name, expires_at, oauth ? &caller : nullptr);
    return {200, {{"previewDeployKey", key}}};
  }
};

// GET /v1/projects/{project_id}/list_preview_deploy_keys?includeManaged ->
// {"items": [PlatformDeployKeyResponse]}. includeManaged defaults to false; the keys an OAuth
// token minted are "managed" by its OAuth app (managedBy {"oauthApp"}), an inference from the
// spec's ManagedBy shape.
class ListPreviewDeployKeysHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const AccessToken caller = requireToken(exchange, kAnyToken);
    const Project project = requireProject(caller, projectIdParam(exchange));
    const bool include_managed = boolQueryParam(exchange, "includeManaged").value_or(false);
    json items = json::array();
    for (const DeployKeyInfo& info : state().previewDeployKeys(project.id, include_managed)) {
      items.push_back(deployKeyJson(info));
    }
    return {200, {{"items", std::move(items)}}};
  }
};

// POST /v1/projects/{project_id}/delete_preview_deploy_key {"id"} (strict): the full preview
// key, its secret or its name; 200 with an empty body. A key that is not (or no longer) there
// is 404 DeployKeyNotFound, as a second delete_deploy_key is. Deleting an OAuth-derived key
// revokes the OAuth grant, as the spec's wording matches create_deploy_key's (reference §9.2).
class DeletePreviewDeployKeyHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const AccessToken caller = requireToken(exchange, kAnyToken);
    const Project project = requireProject(caller, projectIdParam(exchange));
    const json body = exchange.jsonBody();
    rejectUnknownFields(body, {"id"});
    const std::string id = requireString(body, "id");
    const auto deleted = state().deletePreviewDeployKey(project.id, id);
    if (!deleted) {
      throw ApiError(404, "DeployKeyNotFound",
                     "No preview deploy key of project " + std::to_string(project.id) +
                         " matches that id");
    }
    exchange.log_details["preview_deploy_key"] = {{"name", deleted->grant.name},
                                                  {"oauthDerived", deleted->oauth_derived}};
    return emptyReply();
  }
};

}  // namespace

void addProjectRoutes(RouteTable& table) {
  table.add<CreateProjectHandler>("POST", "/v1/teams/{team_id}/create_project");
  table.add<ListProjectsHandler>("GET", "/v1/teams/{team_id}/projects");
  table.add<LegacyListProjectsHandler>("GET", "/v1/teams/{team_id}/list_projects");
  table.add<GetProjectBySlugHandler>("GET", "/v1/teams/{team_id_or_slug}/projects/{project_slug}");
  table.add<GetProjectHandler>("GET", "/v1/projects/{project_id}");
  table.add<DeleteProjectHandler>("POST", "/v1/projects/{project_id}/delete");
  table.add<CreateDeploymentHandler>("POST", "/v1/projects/{project_id}/create_deployment");
  table.add<ListDeploymentsHandler>("GET", "/v1/projects/{project_id}/list_deployments");
  table.add<GetProjectDeploymentHandler>("GET", "/v1/projects/{project_id}/deployment");
  table.add<CreatePreviewDeployKeyHandler>("POST",
                                           "/v1/projects/{project_id}/create_preview_deploy_key");
  table.add<ListPreviewDeployKeysHandler>("GET",
                                          "/v1/projects/{project_id}/list_preview_deploy_keys");
  table.add<DeletePreviewDeployKeyHandler>("POST",
                                           "/v1/projects/{project_id}/delete_preview_deploy_key");
}

}  // namespace standin

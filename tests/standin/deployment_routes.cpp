// The deployment side of `convex deploy` / `convex dev --once`: the push protocol under /api on
// the deployment URL, authenticated with `Authorization: Convex <key>`. The stand-in runs no
// code; it checks the push body, remembers module hashes and answers the shapes the CLI parses
// (see convex-cli-protocol.md §6).
#include <algorithm>
#include <iterator>
#include <set>

#include <Poco/DigestEngine.h>
#include <Poco/SHA2Engine.h>

#include "standin/json_fields.h"
#include "standin/router.h"

namespace standin {
namespace {

using nlohmann::json;

// Carries the push id through the CLI: it echoes schemaChange into wait_for_schema and the
// whole start_push response into finish_push (its zod schemas pass unknown fields through).
constexpr const char* kPushIdField = "standinPushId";

// The CLI's module hash: lowercase hex sha256 of the source followed by the source map.
std::string moduleSha256(const std::string& source, const std::string& source_map) {
  Poco::SHA2Engine engine(Poco::SHA2Engine::SHA_256);
  engine.update(source);
  engine.update(source_map);
  return Poco::DigestEngine::digestToHex(engine.digest());
}

std::string requireEnvironment(const json& module, const std::string& where) {
  std::string environment = requireString(module, "environment", where);
  if (environment != "isolate" && environment != "node") {
    throw badRequest("`" + fieldPath(where, "environment") + "` must be \"isolate\" or \"node\"");
  }
  return environment;
}

std::string requireModulePath(const json& module, const std::string& where) {
  std::string path = requireString(module, "path", where);
  if (path.empty()) throw badRequest("`" + fieldPath(where, "path") + "` must not be empty");
  return path;
}

// A ModuleConfig: {path, source, sourceMap?, environment}.
// The exported names of an esbuild ESM bundle: its last `export { local as name, other };`
// statement ("default" included). Anything else exports nothing the stand-in can see.
std::vector<std::string> bundleExports(const std::string& source) {
  std::vector<std::string> names;
  const size_t statement = source.rfind("export {");
  if (statement == std::string::npos) return names;
  const size_t end = source.find('}', statement);
  if (end == std::string::npos) return names;
  std::string list = source.substr(statement + 8, end - statement - 8);
  size_t start = 0;
  while (start < list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    std::string item = list.substr(start, comma - start);
    const size_t as = item.find(" as ");
    if (as != std::string::npos) item = item.substr(as + 4);
    item.erase(0, item.find_first_not_of(" \t\r\n"));
    item.erase(item.find_last_not_of(" \t\r\n") + 1);
    if (!item.empty()) names.push_back(item);
    start = comma + 1;
  }
  std::sort(names.begin(), names.end());
  return names;
}

ModuleHash hashModuleConfig(const json& module, const std::string& where) {
  if (!module.is_object()) throw badRequest("`" + where + "` must be an object");
  ModuleHash hash;
  hash.path = requireModulePath(module, where);
  const std::string source = requireString(module, "source", where);
  const std::string source_map = optionalString(module, "sourceMap", where).value_or("");
  hash.environment = requireEnvironment(module, where);
  hash.sha256 = moduleSha256(source, source_map);
  hash.exports = bundleExports(source);
  return hash;
}

// A ModuleHashConfig: {path, environment, sha256}, which must name a module the deployment
// already runs, since the CLI sends no source for it.
ModuleHash requireUnchangedModule(const json& entry, const std::string& where,
                                  const std::optional<PushedApp>& current,
                                  const std::string& deployment) {
  if (!entry.is_object()) throw badRequest("`" + where + "` must be an object");
  ModuleHash hash;
  hash.path = requireModulePath(entry, where);
  hash.environment = requireEnvironment(entry, where);
  hash.sha256 = requireString(entry, "sha256", where);
  const ModuleHash* deployed = nullptr;
  if (current) {
    for (const auto& module : current->modules) {
      if (module.path == hash.path && module.environment == hash.environment && module.sha256 == hash.sha256) {
        deployed = &module;
      }
    }
  }
  if (deployed) hash.exports = deployed->exports;
  if (!deployed) {
    throw ApiError(400, "UnknownUnchangedModule",
                   "`" + where + "` names " + hash.path + " (" + hash.environment + ", sha256 " +
                       hash.sha256 + "), which deployment " + deployment + " does not have");
  }
  return hash;
}

struct PushRequest {
  PushedApp app;
  bool dry_run = false;
  std::size_t changed_count = 0;    // modules sent with source
  std::size_t unchanged_count = 0;  // modules sent as hashes only
};

// Checks a start_push / evaluate_push body (StartPushRequest) and resolves its module list.
PushRequest parsePushRequest(const json& body, const std::optional<PushedApp>& current,
                             const std::string& deployment) {
  PushRequest push;
  requireString(body, "adminKey");
  push.dry_run = optionalBool(body, "dryRun", false);
  push.app.functions_dir = optionalString(body, "functions").value_or("convex/");
  push.app.node_version = optionalString(body, "nodeVersion");
  if (body.contains("componentDefinitions")) requireArray(body, "componentDefinitions");
  if (body.contains("nodeDependencies")) requireArray(body, "nodeDependencies");

  const json& app = requireObject(body, "appDefinition");
  const std::string where = "appDefinition";
  push.app.udf_server_version = requireString(app, "udfServerVersion", where);
  if (app.contains("definition") && !app["definition"].is_null()) {
    hashModuleConfig(app["definition"], where + ".definition");
  }
  push.app.has_schema = app.contains("schema") && !app["schema"].is_null();
  if (push.app.has_schema) hashModuleConfig(app["schema"], where + ".schema");

  std::set<std::string> seen_paths;
  auto add = [&](ModuleHash module, const std::string& module_where) {
    if (!seen_paths.insert(module.path).second) {
      throw badRequest("`" + module_where + "`: module " + module.path + " appears twice");
    }
    push.app.modules.push_back(std::move(module));
  };
  const json& changed = requireArray(app, "changedModules", where);
  push.changed_count = changed.size();
  for (std::size_t i = 0; i < changed.size(); ++i) {
    const std::string module_where = where + ".changedModules[" + std::to_string(i) + "]";
    add(hashModuleConfig(changed[i], module_where), module_where);
  }
  // Optional on the wire: CLIs up to 1.31.5 did not send it.
  if (app.contains("unchangedModuleHashes")) {
    const json& unchanged = requireArray(app, "unchangedModuleHashes", where);
    push.unchanged_count = unchanged.size();
    for (std::size_t i = 0; i < unchanged.size(); ++i) {
      const std::string module_where = where + ".unchangedModuleHashes[" + std::to_string(i) + "]";
      add(requireUnchangedModule(unchanged[i], module_where, current, deployment), module_where);
    }
  }
  std::sort(push.app.modules.begin(), push.app.modules.end(),
            [](const ModuleHash& a, const ModuleHash& b) { return a.path < b.path; });
  return push;
}

json emptyIndexDiff() {
  return {{"added_indexes", json::array()}, {"removed_indexes", json::array()}};
}

json schemaChangeJson(const std::optional<std::string>& push_id) {
  json change = {{"allocatedComponentIds", json::object()}, {"schemaIds", json::object()}};
  change["indexDiffs"][""] = emptyIndexDiff();
  if (push_id) change[kPushIdField] = *push_id;
  return change;
}

// StartPushResponse for the root component only (components are not modelled).
json startPushResponse(const PushedApp& app, const std::string& push_id) {
  json functions = json::object();
  for (const auto& module : app.modules) {
    functions[module.path] = {{"functions", json::array()},
                              {"httpRoutes", nullptr},
                              {"cronSpecs", nullptr},
                              {"sourceMapped", nullptr}};
  }
  json definition = {{"path", ""},
                     {"definitionType", {{"type", "app"}}},
                     {"childComponents", json::array()},
                     {"httpMounts", json::object()},
                     {"exports", {{"type", "branch"}, {"branch", json::array()}}}};
  json root_analysis = {
      {"definition", std::move(definition)},
      {"schema", app.has_schema ? json{{"tables", json::array()}, {"schemaValidation", true}}
                                : json()},
      {"functions", std::move(functions)},
      {"udfConfig",
       {{"serverVersion", app.udf_server_version},
        {"importPhaseRngSeed", nullptr},
        {"importPhaseUnixTimestamp", nullptr}}}};
  json analysis = json::object();
  analysis[""] = std::move(root_analysis);

  json checked_app = {{"definitionPath", ""},
                      {"componentPath", ""},
                      {"args", json::object()},
                      {"childComponents", json::object()},
                      {"httpRoutes", {{"httpModuleRoutes", nullptr}, {"mounts", json::array()}}},
                      {"exports", json::object()}};
  return {{"environmentVariables", json::object()},
          {"externalDepsId", nullptr},
          {"componentDefinitionPackages", json::object()},
          {"appAuth", json::array()},
          {"analysis", std::move(analysis)},
          {"app", std::move(checked_app)},
          {"schemaChange", schemaChangeJson(push_id)},
          {kPushIdField, push_id}};
}

std::optional<std::string> pushIdOf(const json& start_push) {
  if (start_push.contains(kPushIdField) && start_push[kPushIdField].is_string()) {
    return start_push[kPushIdField].get<std::string>();
  }
  const auto change = start_push.find("schemaChange");
  if (change != start_push.end() && change->is_object() && change->contains(kPushIdField) &&
      (*change)[kPushIdField].is_string()) {
    return (*change)[kPushIdField].get<std::string>();
  }
  return std::nullopt;
}

// FinishPushDiff for the root component: which module paths appeared or disappeared.
json finishPushDiff(const FinishedPush& finished) {
  std::set<std::string> before;
  if (finished.previous) {
    for (const auto& module : finished.previous->modules) before.insert(module.path);
  }
  std::set<std::string> after;
  for (const auto& module : finished.push.app.modules) after.insert(module.path);
  json added = json::array();
  json removed = json::array();
  std::set_difference(after.begin(), after.end(), before.begin(), before.end(),
                      std::back_inserter(added));
  std::set_difference(before.begin(), before.end(), after.begin(), after.end(),
                      std::back_inserter(removed));

  json udf_config_diff;
  const std::string& next_version = finished.push.app.udf_server_version;
  if (finished.previous && finished.previous->udf_server_version != next_version) {
    udf_config_diff = {{"previous_version", finished.previous->udf_server_version},
                       {"next_version", next_version}};
  }
  json root = {{"diffType", {{"type", "modify"}}},
               {"moduleDiff", {{"added", std::move(added)}, {"removed", std::move(removed)}}},
               {"udfConfigDiff", std::move(udf_config_diff)},
               {"cronDiff",
                {{"added", json::array()}, {"updated", json::array()}, {"deleted", json::array()}}},
               {"indexDiff", emptyIndexDiff()},
               {"schemaDiff", nullptr}};
  json component_diffs = json::object();
  component_diffs[""] = std::move(root);
  return {{"authDiff", {{"added", json::array()}, {"removed", json::array()}}},
          {"definitionDiffs", json::object()},
          {"componentDiffs", std::move(component_diffs)}};
}

// A deployment route with a JSON body, called with the deployment's admin key (header, or
// `adminKey` in the body): parsing and the key check happen once, here.
class AdminJsonRoute : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) final {
    const json body = exchange.jsonBody();
    const HostedDeployment deployment = requireAdminKey(exchange, &body, "deployment:deploy");
    return handleAdmin(exchange, deployment, body);
  }
  virtual Reply handleAdmin(Exchange& exchange, const HostedDeployment& deployment, const json& body) = 0;
};

// GET /api/v1/get_canonical_urls
class CanonicalUrlsHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    requireAdminKey(exchange);
    return {200, {{"convexCloudUrl", state().origin()}, {"convexSiteUrl", state().origin()}}};
  }
};

// GET /api/stream_function_logs?cursor=N. The real backend long-polls; answering at once with
// no entries keeps `dev` log tailing cheap and never delays a test.
class StreamFunctionLogsHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    requireAdminKey(exchange);
    return {200, {{"entries", json::array()}, {"newCursor", nowMs()}}};
  }
};

// POST /api/get_config_hashes: what the deployment runs now, so the CLI can skip unchanged
// modules. The hash field is named `hash` here but `sha256` in start_push.
class ConfigHashesHandler final : public AdminJsonRoute {
 public:
  using AdminJsonRoute::AdminJsonRoute;

 protected:
  Reply handleAdmin(Exchange& exchange, const HostedDeployment& deployment, const json& body) override {
    const auto app = state().currentApp(deployment.name);

    json config = {{"functions", app ? app->functions_dir : std::string("convex/")}};
    json module_hashes = json::array();
    json reply = {{"nodeDependencies", json::array()}, {"udfServerVersion", nullptr}};
    if (app) {
      for (const auto& module : app->modules) {
        module_hashes.push_back(
            {{"path", module.path}, {"environment", module.environment}, {"hash", module.sha256}});
      }
      reply["udfServerVersion"] = app->udf_server_version;
      if (app->node_version) {
        config["nodeVersion"] = *app->node_version;
        reply["nodeVersion"] = *app->node_version;
      }
    }
    reply["config"] = std::move(config);
    reply["moduleHashes"] = std::move(module_hashes);
    return {200, std::move(reply)};
  }
};

// POST /api/query {"path", "args", "format"} with admin auth, as ConvexHttpClient sends it.
// Only the system query `_system/cli/modules:apiSpec` (what `npx convex function-spec` runs)
// is known: one entry per exported function of the current app, `<module>:<export>`, from the
// modules' export statements (default exports, crons and the HTTP router, are not functions
// here). The stand-in cannot tell a function's type or validators: those fields are absent.
// Any other path: HTTP 560 {"status":"error"}, as a failed function.
class QueryHandler final : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const json body = exchange.jsonBody();
    const HostedDeployment deployment = requireAdminKey(exchange);
    const std::string path = requireString(body, "path");
    if (path != "_system/cli/modules:apiSpec") {
      return {560, {{"status", "error"}, {"errorMessage", "Could not find function for '" + path + "'"},
                    {"logLines", json::array()}}};
    }
    json functions = json::array();
    if (const auto app = state().currentApp(deployment.name)) {
      for (const auto& module : app->modules) {
        if (module.path.rfind("_deps/", 0) == 0) continue;
        for (const auto& name : module.exports) {
          if (name != "default") functions.push_back({{"identifier", module.path + ":" + name}});
        }
      }
    }
    return {200, {{"status", "success"}, {"value", std::move(functions)}, {"logLines", json::array()}}};
  }
};

// POST /api/deploy2/evaluate_schema: best effort for the CLI; "no tables, nothing to check".
class EvaluateSchemaHandler final : public AdminJsonRoute {
 public:
  using AdminJsonRoute::AdminJsonRoute;

 protected:
  Reply handleAdmin(Exchange& exchange, const HostedDeployment& deployment, const json& body) override {
    return {200,
            {{"componentSchemaEvaluations", json::object()},
             {"newComponentDefinitions", json::array()}}};
  }
};

// POST /api/deploy2/evaluate_push: start_push's checks without recording anything.
class EvaluatePushHandler final : public AdminJsonRoute {
 public:
  using AdminJsonRoute::AdminJsonRoute;

 protected:
  Reply handleAdmin(Exchange& exchange, const HostedDeployment& deployment, const json& body) override {
    parsePushRequest(body, state().currentApp(deployment.name), deployment.name);
    return {200, {{"schemaChange", schemaChangeJson(std::nullopt)}}};
  }
};

// POST /api/deploy2/start_push: records the push as started; finish_push commits it.
class StartPushHandler final : public AdminJsonRoute {
 public:
  using AdminJsonRoute::AdminJsonRoute;

 protected:
  Reply handleAdmin(Exchange& exchange, const HostedDeployment& deployment, const json& body) override {
    PushRequest push = parsePushRequest(body, state().currentApp(deployment.name), deployment.name);
    const std::string push_id = state().startPush(deployment.name, push.app, push.dry_run);
    exchange.log_details["push_id"] = push_id;
    exchange.log_details["changed_modules"] = push.changed_count;
    exchange.log_details["unchanged_modules"] = push.unchanged_count;
    return {200, startPushResponse(push.app, push_id)};
  }
};

// POST /api/deploy2/wait_for_schema: there is no data to validate, so the schema is ready.
class WaitForSchemaHandler final : public AdminJsonRoute {
 public:
  using AdminJsonRoute::AdminJsonRoute;

 protected:
  Reply handleAdmin(Exchange& exchange, const HostedDeployment& deployment, const json& body) override {
    requireObject(body, "schemaChange");
    optionalBool(body, "dryRun", false);
    optionalInteger(body, "timeoutMs");
    return {200, {{"type", "complete"}}};
  }
};

// POST /api/deploy2/finish_push: commits the push that start_push answered with `startPush`.
class FinishPushHandler final : public AdminJsonRoute {
 public:
  using AdminJsonRoute::AdminJsonRoute;

 protected:
  Reply handleAdmin(Exchange& exchange, const HostedDeployment& deployment, const json& body) override {
    const json& start_push = requireObject(body, "startPush");
    const bool dry_run = optionalBool(body, "dryRun", false);
    optionalString(body, "message");

    const auto push_id = pushIdOf(start_push);
    if (!push_id) {
      throw badRequest("`startPush` is not a start_push response from this deployment");
    }
    exchange.log_details["push_id"] = *push_id;
    const auto finished = state().finishPush(*push_id, deployment.name, dry_run);
    if (!finished) {
      throw ApiError(400, "UnknownPush",
                     "No push " + *push_id + " was started on deployment " + deployment.name);
    }
    return {200, finishPushDiff(*finished)};
  }
};

// POST /api/deploy2/report_push_completed: timing spans the stand-in has no use for.
class ReportPushCompletedHandler final : public AdminJsonRoute {
 public:
  using AdminJsonRoute::AdminJsonRoute;

 protected:
  Reply handleAdmin(Exchange& exchange, const HostedDeployment& deployment, const json& body) override {
    return {200, json::object()};
  }
};

}  // namespace

void addDeploymentRoutes(RouteTable& table) {
  table.add<CanonicalUrlsHandler>("GET", "/api/v1/get_canonical_urls");
  table.add<StreamFunctionLogsHandler>("GET", "/api/stream_function_logs");
  table.add<ConfigHashesHandler>("POST", "/api/get_config_hashes");
  table.add<QueryHandler>("POST", "/api/query");
  table.add<EvaluateSchemaHandler>("POST", "/api/deploy2/evaluate_schema");
  table.add<EvaluatePushHandler>("POST", "/api/deploy2/evaluate_push");
  table.add<StartPushHandler>("POST", "/api/deploy2/start_push");
  table.add<WaitForSchemaHandler>("POST", "/api/deploy2/wait_for_schema");
  table.add<FinishPushHandler>("POST", "/api/deploy2/finish_push");
  table.add<ReportPushCompletedHandler>("POST", "/api/deploy2/report_push_completed");
}

}  // namespace standin

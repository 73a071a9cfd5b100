// The control API under /_standin/: how tests inspect what the stand-in saw and make it
// misbehave. Unauthenticated (the stand-in is loopback-only), never fault-injected, never
// logged in /_standin/requests. Bodies are strict: an unknown field is a typo worth a 400.
#include <Poco/String.h>
#include <Poco/URI.h>

#include "standin/json_fields.h"
#include "standin/router.h"

namespace standin {
namespace {

using nlohmann::json;

class ControlHandler : public RouteHandler {
 public:
  using RouteHandler::RouteHandler;

 protected:
  bool isControlRoute() const override { return true; }
};

// GET /_standin/pushes
class PushesHandler final : public ControlHandler {
 public:
  using ControlHandler::ControlHandler;

 protected:
  Reply handle(Exchange&) override { return {200, state().pushesJson()}; }
};

// A query parameter naming how long a control call may wait: 0 to 60000 ms.
std::chrono::milliseconds waitParameter(const std::string& name, const std::string& value) {
  int64_t wait_ms = -1;
  try {
    wait_ms = std::stoll(value);
  } catch (const std::exception&) {
  }
  if (wait_ms < 0 || wait_ms > 60000) throw badRequest("`" + name + "` must be a number of milliseconds from 0 to 60000");
  return std::chrono::milliseconds(wait_ms);
}

// GET /_standin/requests[?path=PATTERN&method=M&wait_ms=N]: with `path`, first waits up to
// `wait_ms` (at most a minute) for a request matching it to be logged; 408 if none was.
class RequestsHandler final : public ControlHandler {
 public:
  using ControlHandler::ControlHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    std::string path, method;
    std::chrono::milliseconds wait{0};
    for (const auto& [name, value] : Poco::URI(exchange.request.getURI()).getQueryParameters()) {
      if (name == "path") {
        path = value;
      } else if (name == "method") {
        method = Poco::toUpper(value);
      } else if (name == "wait_ms") {
        wait = waitParameter(name, value);
      } else {
        throw badRequest("unknown query parameter `" + name + "`");
      }
    }
    if (!path.empty() && !state().awaitRequest(method, path, wait)) {
      return {408, {{"code", "RequestNotSeen"},
                    {"message", "no " + (method.empty() ? std::string("request") : method) + " to " + path +
                                    " within " + std::to_string(wait.count()) + " ms"}}};
    }
    return {200, state().requestsJson()};
  }
};

// GET /_standin/faults[?wait_until_taken_ms=N]: the faults still armed; with the parameter,
// first waits up to N ms (at most a minute) until a request has taken each (408 if not).
class ListFaultsHandler final : public ControlHandler {
 public:
  using ControlHandler::ControlHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    for (const auto& [name, value] : Poco::URI(exchange.request.getURI()).getQueryParameters()) {
      if (name != "wait_until_taken_ms") throw badRequest("unknown query parameter `" + name + "`");
      if (!state().awaitFaultsTaken(waitParameter(name, value))) {
        return {408, {{"code", "FaultsNotTaken"}, {"message", "faults are still armed after " + value + " ms"}}};
      }
    }
    return {200, state().faultsJson()};
  }
};

Fault parseFault(const json& body) {
  rejectUnknownFields(body, {"method", "path", "status", "code", "message", "delay_ms",
                             "drop_connection", "after_handling", "times", "retry_after"});
  Fault fault;
  fault.method = optionalString(body, "method");
  if (fault.method) fault.method = Poco::toUpper(*fault.method);
  fault.path = requireString(body, "path");
  if (fault.path.empty() || fault.path.front() != '/') {
    throw badRequest("`path` must be a request path starting with /, without the query");
  }
  if (const auto status = optionalInteger(body, "status")) {
    if (*status < 100 || *status > 599) throw badRequest("`status` must be an HTTP status");
    fault.status = static_cast<int>(*status);
  }
  fault.code = optionalString(body, "code").value_or("");
  fault.message = optionalString(body, "message").value_or("");
  fault.retry_after = optionalString(body, "retry_after").value_or("");
  const int64_t delay_ms = optionalInteger(body, "delay_ms").value_or(0);
  if (delay_ms < 0 || delay_ms > 10 * 60 * 1000) {
    throw badRequest("`delay_ms` must be between 0 and 600000");
  }
  fault.delay_ms = static_cast<int>(delay_ms);
  fault.drop_connection = optionalBool(body, "drop_connection", false);
  fault.after_handling = optionalBool(body, "after_handling", false);
  const int64_t times = optionalInteger(body, "times").value_or(1);
  if (times != -1 && (times < 1 || times > 1'000'000)) {
    throw badRequest("`times` must be a positive count, or -1 for forever");
  }
  fault.times = static_cast<int>(times);
  if (!fault.status && !fault.drop_connection && fault.delay_ms == 0) {
    throw badRequest("The fault does nothing: give `status`, `drop_connection` or `delay_ms`");
  }
  return fault;
}

// POST /_standin/faults {"method"?, "path", "status"?, "code"?, "message"?, "delay_ms"?,
// "drop_connection"?, "after_handling"?, "times"?}. A fault without status or drop only delays
// the real answer. With after_handling the route runs first (its effects stay), then the
// delay, drop or status replaces its answer.
class AddFaultHandler final : public ControlHandler {
 public:
  using ControlHandler::ControlHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    state().addFault(parseFault(exchange.jsonBody()));
    return {200, {{"faults", state().faultsJson()}}};
  }
};

// POST /_standin/reset
class ResetHandler final : public ControlHandler {
 public:
  using ControlHandler::ControlHandler;

 protected:
  Reply handle(Exchange&) override {
    state().reset();
    return {200, json::object()};
  }
};

// POST /_standin/deploy_keys {"deployment", "name"?, "allowedActions"?, "expiresAt"?} ->
// {"deployKey"}: a key without a team token, for tests that start from a deploy key. Unlike
// create_deploy_key, expiresAt may lie in the past: tests need an expired key.
class MintDeployKeyHandler final : public ControlHandler {
 public:
  using ControlHandler::ControlHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const json body = exchange.jsonBody();
    rejectUnknownFields(body, {"deployment", "name", "allowedActions", "expiresAt"});
    const std::string deployment = requireString(body, "deployment");
    DeployKeyGrant grant;
    grant.name = optionalString(body, "name").value_or("standin-control");
    if (body.contains("allowedActions")) {
      std::vector<std::string> actions;
      for (const json& action : requireArray(body, "allowedActions")) {
        if (!action.is_string()) throw badRequest("`allowedActions` must hold strings");
        actions.push_back(action.get<std::string>());
      }
      grant.allowed_actions = std::move(actions);
    }
    grant.expires_at_ms = optionalInteger(body, "expiresAt");
    const auto key = state().mintDeployKey(deployment, std::move(grant));
    if (!key) {
      throw ApiError(404, "DeploymentNotFound",
                     "The requested deployment " + deployment + " does not exist");
    }
    return {200, {{"deployKey", *key}}};
  }
};

// POST /_standin/oauth_tokens {"kind": "team"|"project", "project_id"?} -> {"token", "id"}:
// an OAuth token as the authorization-code flow would hand it out. project_id defaults to the
// seeded project.
class MintOAuthTokenHandler final : public ControlHandler {
 public:
  using ControlHandler::ControlHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const json body = exchange.jsonBody();
    rejectUnknownFields(body, {"kind", "project_id"});
    const std::string kind = requireString(body, "kind");
    const auto project_id = optionalInteger(body, "project_id");
    std::optional<AccessToken> token;
    if (kind == "team") {
      if (project_id) throw badRequest("`project_id` is only for project tokens");
      token = state().mintOAuthToken(TokenKind::OAuthTeam, std::nullopt);
    } else if (kind == "project") {
      token = state().mintOAuthToken(TokenKind::OAuthProject, project_id.value_or(1));
      if (!token) throw ApiError(404, "ProjectNotFound", "The requested project does not exist");
    } else {
      throw badRequest("`kind` must be \"team\" or \"project\"");
    }
    return {200, {{"token", token->token}, {"id", token->id}}};
  }
};

// GET /_standin/env/{deployment} -> {"deployment", "environmentVariables": {name: value}}.
// Values included: a test fixture checking what arrived.
class EnvironmentHandler final : public ControlHandler {
 public:
  using ControlHandler::ControlHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const std::string& name = exchange.params.at("deployment");
    if (!state().findDeployment(name)) {
      throw ApiError(404, "DeploymentNotFound",
                     "The requested deployment " + name + " does not exist");
    }
    return {200, {{"deployment", name}, {"environmentVariables", state().environment(name)}}};
  }
};

// GET /_standin/admin_keys/{deployment} -> {"adminKey": "<name>|<hex>"}.
class AdminKeyHandler final : public ControlHandler {
 public:
  using ControlHandler::ControlHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const std::string& name = exchange.params.at("deployment");
    const auto key = state().adminKey(name);
    if (!key) {
      throw ApiError(404, "DeploymentNotFound",
                     "The requested deployment " + name + " does not exist");
    }
    return {200, {{"adminKey", *key}}};
  }
};

// GET /_standin/projects[?deleted=true] -> every project with its deployments, ascending id.
class ProjectsHandler final : public ControlHandler {
 public:
  using ControlHandler::ControlHandler;

 protected:
  Reply handle(Exchange& exchange) override {
    const bool include_deleted =
        exchange.request.getURI().find("deleted=true") != std::string::npos;
    return {200, state().projectsJson(include_deleted)};
  }
};

}  // namespace

void addControlRoutes(RouteTable& table) {
  table.add<PushesHandler>("GET", "/_standin/pushes");
  table.add<RequestsHandler>("GET", "/_standin/requests");
  table.add<ListFaultsHandler>("GET", "/_standin/faults");
  table.add<AddFaultHandler>("POST", "/_standin/faults");
  table.add<ResetHandler>("POST", "/_standin/reset");
  table.add<MintDeployKeyHandler>("POST", "/_standin/deploy_keys");
  table.add<MintOAuthTokenHandler>("POST", "/_standin/oauth_tokens");
  table.add<EnvironmentHandler>("GET", "/_standin/env/{deployment}");
  table.add<AdminKeyHandler>("GET", "/_standin/admin_keys/{deployment}");
  table.add<ProjectsHandler>("GET", "/_standin/projects");
}

}  // namespace standin

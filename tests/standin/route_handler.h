// The request pipeline every stand-in route shares: read (and brotli-decode) the body, apply
// any injected fault, run the route, answer JSON, and log the request. Routes subclass
// RouteHandler and implement handle(); whatever they throw becomes a `{code,message}` body.
#pragma once

#include <map>
#include <optional>
#include <string>

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <nlohmann/json.hpp>

#include "standin/api_error.h"
#include "standin/state.h"

namespace standin {

using PathParams = std::map<std::string, std::string>;

// The real backend's push body limit (MAX_PUSH_BYTES); applied to raw and decoded bodies.
inline constexpr std::size_t kMaxBodyBytes = 200'000'000;

// One request as a route sees it.
struct Exchange {
  Poco::Net::HTTPServerRequest& request;
  std::string method;
  std::string path = {};  // without the query string
  PathParams params = {};
  std::string body = {};  // already brotli-decoded
  // Filled in by routes for the request log.
  std::optional<std::string> deployment = {};
  nlohmann::json log_details = nlohmann::json::object();

  nlohmann::json jsonBody() const;  // a JSON object, else 400
};

// The credentials of `Authorization: <scheme> <credentials>` (scheme case-insensitive), or "".
std::string authorizationCredentials(const Poco::Net::HTTPServerRequest& request,
                                     const std::string& scheme);

class RouteHandler : public Poco::Net::HTTPRequestHandler {
 public:
  RouteHandler(StandinState& state, PathParams params)
      : state_(state), params_(std::move(params)) {}

  void handleRequest(Poco::Net::HTTPServerRequest& request,
                     Poco::Net::HTTPServerResponse& response) final;

 protected:
  virtual Reply handle(Exchange& exchange) = 0;
  // The control API is the test harness's own channel: no fault injection, no request log.
  virtual bool isControlRoute() const { return false; }

  StandinState& state() const { return state_; }

  // Management API: `Authorization: Bearer <token>`. Unknown or revoked tokens get 401
  // Unauthenticated; a token kind outside `accepted` (the endpoint's auth column) gets 403
  // NotAllowed. Records the kind in the request log as "auth".
  AccessToken requireToken(Exchange& exchange, const std::vector<TokenKind>& accepted) const;
  // The project, if the caller may see it: 404 ProjectNotFound for a missing or deleted
  // project and for any project outside an OAuth project token's own.
  Project requireProject(const AccessToken& caller, int64_t project_id) const;
  // Same for a deployment (404 DeploymentNotFound); self-hosted ones are never visible.
  HostedDeployment requireDeployment(Exchange& exchange, const AccessToken& caller,
                                     const std::string& name) const;
  // Deployment API: `Authorization: Convex <key>`, else the body's `adminKey`. The key may be a
  // deploy key, an admin key, a team token or an OAuth token. Records the deployment on the
  // exchange for the log.
  // `required_action`: what the key's allowedActions must include (a key minted without
  // allowedActions may do everything), e.g. "deployment:deploy" for the push routes.
  HostedDeployment requireAdminKey(Exchange& exchange, const nlohmann::json* body = nullptr,
                                   const char* required_action = nullptr) const;

 private:
  // The reply to send, or nullopt when a fault drops the connection.
  std::optional<Reply> respond(Exchange& exchange, Poco::Net::HTTPServerResponse& response);
  Reply handleCatching(Exchange& exchange, std::string raw_body,
                       Poco::Net::HTTPServerResponse& response);
  std::optional<Reply> faultReply(Exchange& exchange, const Fault& fault);
  void nameDeploymentFromCredentials(Exchange& exchange) const;

  StandinState& state_;
  PathParams params_;
};

// Answers requests that no route matches: 404, or 405 when only the method is wrong.
class UnmatchedRouteHandler final : public RouteHandler {
 public:
  UnmatchedRouteHandler(StandinState& state, bool path_exists)
      : RouteHandler(state, {}), path_exists_(path_exists) {}

 protected:
  Reply handle(Exchange& exchange) override;

 private:
  bool path_exists_;
};

}  // namespace standin

// Maps (method, path) to a fresh RouteHandler. Patterns are literal path segments with
// `{name}` placeholders, e.g. "/v1/deployments/{name}/create_deploy_key".
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <Poco/Net/HTTPRequestHandlerFactory.h>

#include "standin/route_handler.h"

namespace standin {

class RouteTable {
 public:
  template <class Handler>
  void add(std::string method, const std::string& pattern) {
    routes_.push_back({std::move(method), splitPath(pattern),
                       [](StandinState& state, PathParams params) -> std::unique_ptr<RouteHandler> {
                         return std::make_unique<Handler>(state, std::move(params));
                       }});
  }

  // Never null: unmatched requests get an UnmatchedRouteHandler.
  std::unique_ptr<RouteHandler> create(StandinState& state, const std::string& method,
                                       const std::string& path) const;

  static std::vector<std::string> splitPath(const std::string& path);

 private:
  using HandlerMaker = std::function<std::unique_ptr<RouteHandler>(StandinState&, PathParams)>;
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    HandlerMaker make;
  };
  std::vector<Route> routes_;
};

// Each route group registers its handlers; they live in their own source files.
void addManagementRoutes(RouteTable& table);    // /v1/token_details, /v1/deployments/...
void addProjectRoutes(RouteTable& table);       // /v1/teams/..., /v1/projects/...
void addEnvironmentRoutes(RouteTable& table);   // deployment env vars (admin API)
void addProvisioningRoutes(RouteTable& table);  // /api/deployment/..., /v1/version
void addDeploymentRoutes(RouteTable& table);    // the push protocol (admin key)
void addControlRoutes(RouteTable& table);       // /_standin/... (tests only)

class RequestRouter final : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit RequestRouter(StandinState& state);
  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest& request) override;

 private:
  StandinState& state_;
  RouteTable table_;
};

}  // namespace standin

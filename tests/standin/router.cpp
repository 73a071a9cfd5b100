#include "standin/router.h"

#include <Poco/URI.h>

namespace standin {
namespace {

bool matches(const std::vector<std::string>& pattern, const std::vector<std::string>& segments,
             PathParams& params) {
  if (pattern.size() != segments.size()) return false;
  PathParams captured;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const std::string& expected = pattern[i];
    if (expected.size() > 2 && expected.front() == '{' && expected.back() == '}') {
      if (segments[i].empty()) return false;
      captured[expected.substr(1, expected.size() - 2)] = segments[i];
    } else if (expected != segments[i]) {
      return false;
    }
  }
  params = std::move(captured);
  return true;
}

}  // namespace

// Empty segments are kept, so "//api/x" (a provision host with a trailing slash) does not
// silently match "/api/x".
std::vector<std::string> RouteTable::splitPath(const std::string& path) {
  std::vector<std::string> segments;
  if (path.empty() || path.front() != '/') return segments;
  std::size_t start = 1;
  for (;;) {
    const std::size_t slash = path.find('/', start);
    segments.push_back(path.substr(start, slash == std::string::npos ? std::string::npos
                                                                      : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return segments;
}

std::unique_ptr<RouteHandler> RouteTable::create(StandinState& state, const std::string& method,
                                                 const std::string& path) const {
  const auto segments = splitPath(path);
  bool path_exists = false;
  for (const auto& route : routes_) {
    PathParams params;
    if (!matches(route.segments, segments, params)) continue;
    if (route.method == method) return route.make(state, std::move(params));
    path_exists = true;
  }
  return std::make_unique<UnmatchedRouteHandler>(state, path_exists);
}

RequestRouter::RequestRouter(StandinState& state) : state_(state) {
  addManagementRoutes(table_);
  addProjectRoutes(table_);
  addEnvironmentRoutes(table_);
  addProvisioningRoutes(table_);
  addDeploymentRoutes(table_);
  addControlRoutes(table_);
}

Poco::Net::HTTPRequestHandler* RequestRouter::createRequestHandler(
    const Poco::Net::HTTPServerRequest& request) {
  std::string path;
  try {
    path = Poco::URI(request.getURI()).getPath();
  } catch (const Poco::Exception&) {
    // Unparseable target: the unmatched handler answers 404 for it.
  }
  return table_.create(state_, request.getMethod(), path).release();
}

}  // namespace standin

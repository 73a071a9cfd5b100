// The local Convex stand-in: one loopback HTTP server that answers as the Convex cloud does
// (Management API under /v1, the CLI's provisioning API under /api/deployment/..., the
// version API at /v1/version) AND as every deployment it hosts (push protocol under /api/...).
// Deployments are told apart by the admin/deploy key they are called with, because the CLI
// builds deployment URLs as origins and all deployments share this one origin.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace standin {

struct DeploymentSeed {
  std::string name;        // e.g. "happy-otter-123"
  std::string type;        // "dev" | "prod" | "preview" | "custom"
};

struct Options {
  std::string host = "127.0.0.1";
  uint16_t port = 0;                        // 0: pick a free port
  std::vector<std::string> team_tokens;     // bearer tokens accepted by the Management API
  std::vector<DeploymentSeed> deployments;  // hosted deployments; a default set when empty
  std::string team_slug = "demo-team";
  std::string project_slug = "demo-project";
  // Accepted OAuth tokens: `team:<team_slug>|<secret>` and
  // `project:<team_slug>:<project_slug>|<secret>` (the seeded project).
  std::vector<std::string> oauth_team_tokens;
  std::vector<std::string> oauth_project_tokens;
  // Self-hosted deployments: reachable only with their admin key `<name>|<hex>`.
  std::vector<std::string> self_hosted;
};

class Standin {
 public:
  explicit Standin(Options options);
  ~Standin();
  Standin(const Standin&) = delete;
  Standin& operator=(const Standin&) = delete;

  void start();                 // binds and serves; throws on bind failure
  void stop();
  uint16_t port() const;
  std::string origin() const;   // "http://127.0.0.1:PORT"

  // Mints a deploy key for a hosted deployment, as create_deploy_key would.
  std::string mintDeployKey(const std::string& deployment);
  // The legacy admin key `<name>|<hex>` of a deployment (self-hosted or not).
  std::string adminKey(const std::string& deployment) const;
  // Mints an OAuth token, as POST /_standin/oauth_tokens does; project_id 0: team token.
  std::string mintOAuthToken(int64_t project_id = 0);
  nlohmann::json pushes() const;     // same document as GET /_standin/pushes
  nlohmann::json requests() const;   // same document as GET /_standin/requests
  nlohmann::json projects() const;   // same document as GET /_standin/projects

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace standin

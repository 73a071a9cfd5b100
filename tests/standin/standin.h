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
  nlohmann::json pushes() const;     // same document as GET /_standin/pushes
  nlohmann::json requests() const;   // same document as GET /_standin/requests

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace standin

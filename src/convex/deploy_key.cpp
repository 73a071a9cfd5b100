#include "convex/deploy_key.h"

#include "util/strings.h"

namespace da::convex {

KeyInfo classifyKey(std::string_view key) {
  KeyInfo info;
  size_t bar = key.find('|');
  if (bar == std::string_view::npos || bar == 0 || bar + 1 == key.size()) return info;
  std::string_view prefix = key.substr(0, bar);
  auto parts = da::splitOn(prefix, ':');
  if (parts.size() == 3 && parts[0] == "preview") {
    info.kind = KeyKind::kPreviewKey;
    info.type = "preview";
    return info;
  }
  if (parts[0] == "project") {
    info.kind = KeyKind::kProjectToken;
    return info;
  }
  info.kind = KeyKind::kDeployment;
  if (parts.size() == 1) {
    info.deployment_name = std::string(parts[0]);
  } else {
    info.type = std::string(parts[0]);
    info.deployment_name = std::string(prefix.substr(parts[0].size() + 1));
  }
  return info;
}

std::optional<std::string> keyTargetConflict(const KeyInfo& key, Target target,
                                             const std::string& requested_deployment) {
  switch (key.kind) {
    case KeyKind::kInvalid:
      return "the deploy key is not a Convex deploy key (expected TYPE:NAME|SECRET)";
    case KeyKind::kPreviewKey:
      return "a preview deploy key creates preview deployments: give preview=<name> with target=prod";
    case KeyKind::kProjectToken:
      // The CLI pushes with it to the project's default prod (deploy) or the token's default dev
      // (dev --once) deployment, which it provisions if needed.
      if (!requested_deployment.empty()) {
        return "an OAuth project token pushes to its project's default deployment; do not also give deployment=";
      }
      return std::nullopt;
    case KeyKind::kDeployment:
      break;
  }
  if (target == Target::kDev && key.type == "prod") {
    return "target=dev with a prod deploy key would push to production (the CLI does not guard "
           "against it); use target=prod or a dev deploy key";
  }
  if (target == Target::kProd && key.type == "dev") {
    return "target=prod with a dev deploy key would push to a dev deployment; use target=dev or "
           "a prod deploy key";
  }
  if (!requested_deployment.empty() && !key.deployment_name.empty() &&
      requested_deployment != key.deployment_name) {
    return "the deploy key is for deployment '" + key.deployment_name + "', not '" +
           requested_deployment + "'";
  }
  return std::nullopt;
}

bool isValidDeploymentName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return name.front() != '-' && name.back() != '-';
}

}  // namespace da::convex

// What a Convex deploy key says about itself, classified the way the CLI classifies it
// (convex 1.49.0, src/cli/lib/deployment.ts), so the agent can refuse a key that would push
// somewhere other than the caller asked before the CLI ever sees it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "report/deploy_report.h"

namespace da::convex {

enum class KeyKind {
  kDeployment,    // `prod:NAME|…`, `dev:NAME|…`, `preview:NAME|…`, `custom:NAME|…`, legacy `NAME|…`
  kPreviewKey,    // `preview:TEAM:PROJECT|…`: creates/claims preview deployments (`deploy` only)
  kProjectToken,  // `project:TEAM:PROJECT|…`: OAuth project token
  kInvalid,       // no `|`: the CLI exits 1
};

struct KeyInfo {
  KeyKind kind = KeyKind::kInvalid;
  std::string type;             // "prod", "dev", "preview", "custom", "" for legacy admin keys
  std::string deployment_name;  // empty unless kDeployment
};

KeyInfo classifyKey(std::string_view key);

// Why this key must not be used for `target` (and, when given, `deployment`), or nullopt.
// `dev --once` with a prod key pushes to prod with no guard in the CLI, so it is refused here.
std::optional<std::string> keyTargetConflict(const KeyInfo& key, Target target,
                                             const std::string& requested_deployment);

// Deployment names as the Management API issues them; also keeps them safe in URL paths.
bool isValidDeploymentName(std::string_view name);

}  // namespace da::convex

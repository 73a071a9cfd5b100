// Which modules a push created, changed and removed, from the deployment's module hashes asked
// before and after it (get_config_hashes). A module is the same when path, environment and hash
// all match, as the CLI decides which modules to upload. esbuild's shared chunks (`_deps/...`)
// hold no function of the app and are left out.
#pragma once

#include <vector>

#include "convex/management_client.h"
#include "report/deploy_report.h"

namespace da::convex {

// Lists sorted by path.
PushedReport moduleDiff(const std::vector<ModuleHash>& before, const std::vector<ModuleHash>& after);

}  // namespace da::convex

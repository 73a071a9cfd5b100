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
PushChanges moduleDiff(const std::vector<ModuleHash>& before, const std::vector<ModuleHash>& after);

// Which functions (by identifier, "<module>:<export>") a push created and removed, and which
// it changed: present before and after with another type, visibility or validators, or in a
// module the push changed (`changed_modules`, from moduleDiff). Convex compares code by module,
// so a function whose neighbour changed counts as changed too.
PushChanges functionDiff(const std::vector<FunctionSpec>& before, const std::vector<FunctionSpec>& after,
                         const std::vector<std::string>& changed_modules);

}  // namespace da::convex

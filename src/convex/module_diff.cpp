#include "convex/module_diff.h"

#include <algorithm>
#include <map>

namespace da::convex {

namespace {

// esbuild's shared chunks: they change with whatever imports them, and no function lives there.
bool isBundlerChunk(const ModuleHash& module) { return module.path.rfind("_deps/", 0) == 0; }

}  // namespace

PushedReport moduleDiff(const std::vector<ModuleHash>& before, const std::vector<ModuleHash>& after) {
  std::map<std::string, const ModuleHash*> earlier;
  for (const auto& module : before) {
    if (!isBundlerChunk(module)) earlier[module.path] = &module;
  }
  PushedReport diff;
  for (const auto& module : after) {
    if (isBundlerChunk(module)) continue;
    auto found = earlier.find(module.path);
    if (found == earlier.end()) {
      diff.created.push_back(module.path);
      continue;
    }
    if (found->second->hash == module.hash && found->second->environment == module.environment) {
      ++diff.unchanged;
    } else {
      diff.changed.push_back(module.path);
    }
    earlier.erase(found);
  }
  for (const auto& [path, module] : earlier) diff.removed.push_back(path);
  std::sort(diff.created.begin(), diff.created.end());
  std::sort(diff.changed.begin(), diff.changed.end());
  return diff;
}

}  // namespace da::convex

#include "convex/module_diff.h"

#include <algorithm>
#include <map>

namespace da::convex {

namespace {

// esbuild's shared chunks: they change with whatever imports them, and no function lives there.
bool isBundlerChunk(const ModuleHash& module) { return module.path.rfind("_deps/", 0) == 0; }

}  // namespace

PushChanges moduleDiff(const std::vector<ModuleHash>& before, const std::vector<ModuleHash>& after) {
  std::map<std::string, const ModuleHash*> earlier;
  for (const auto& module : before) {
    if (!isBundlerChunk(module)) earlier[module.path] = &module;
  }
  PushChanges diff;
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

PushChanges functionDiff(const std::vector<FunctionSpec>& before, const std::vector<FunctionSpec>& after,
                         const std::vector<std::string>& changed_modules) {
  std::map<std::string, const FunctionSpec*> earlier;
  for (const auto& function : before) earlier[function.identifier] = &function;
  auto moduleOf = [](const std::string& identifier) { return identifier.substr(0, identifier.find(':')); };
  PushChanges diff;
  for (const auto& function : after) {
    auto found = earlier.find(function.identifier);
    if (found == earlier.end()) {
      diff.created.push_back(function.identifier);
      continue;
    }
    const bool module_changed = std::find(changed_modules.begin(), changed_modules.end(),
                                          moduleOf(function.identifier)) != changed_modules.end();
    if (module_changed || found->second->signature != function.signature) {
      diff.changed.push_back(function.identifier);
    } else {
      ++diff.unchanged;
    }
    earlier.erase(found);
  }
  for (const auto& [identifier, function] : earlier) diff.removed.push_back(identifier);
  std::sort(diff.created.begin(), diff.created.end());
  std::sort(diff.changed.begin(), diff.changed.end());
  return diff;
}

}  // namespace da::convex

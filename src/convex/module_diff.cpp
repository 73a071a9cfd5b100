#include "convex/module_diff.h"

#include <algorithm>
#include <map>

namespace da::convex {

namespace {

// esbuild's shared chunks: they change with whatever imports them, and no function lives there.
bool isBundlerChunk(const ModuleHash& module) { return module.path.rfind("_deps/", 0) == 0; }

// Sorts `after` against `before` by `key`: new keys are created, missing ones removed, and a key
// on both sides is changed unless `same` holds for its two entries. Entries `skip` holds for are
// left out on both sides.
template <class Entry, class Key, class Same, class Skip>
PushChanges diffByKey(const std::vector<Entry>& before, const std::vector<Entry>& after, Key key, Same same,
                      Skip skip) {
  std::map<std::string, const Entry*> earlier;
  for (const auto& entry : before) {
    if (!skip(entry)) earlier[key(entry)] = &entry;
  }
  PushChanges diff;
  for (const auto& entry : after) {
    if (skip(entry)) continue;
    auto found = earlier.find(key(entry));
    if (found == earlier.end()) {
      diff.created.push_back(key(entry));
      continue;
    }
    if (same(*found->second, entry)) {
      ++diff.unchanged;
    } else {
      diff.changed.push_back(key(entry));
    }
    earlier.erase(found);
  }
  for (const auto& [name, entry] : earlier) diff.removed.push_back(name);
  std::sort(diff.created.begin(), diff.created.end());
  std::sort(diff.changed.begin(), diff.changed.end());
  return diff;
}

}  // namespace

PushChanges moduleDiff(const std::vector<ModuleHash>& before, const std::vector<ModuleHash>& after) {
  return diffByKey(
      before, after, [](const ModuleHash& module) { return module.path; },
      [](const ModuleHash& a, const ModuleHash& b) { return a.hash == b.hash && a.environment == b.environment; },
      isBundlerChunk);
}

PushChanges functionDiff(const std::vector<FunctionSpec>& before, const std::vector<FunctionSpec>& after,
                         const std::vector<std::string>& changed_modules) {
  auto inChangedModule = [&](const FunctionSpec& function) {
    const std::string module = function.identifier.substr(0, function.identifier.find(':'));
    return std::find(changed_modules.begin(), changed_modules.end(), module) != changed_modules.end();
  };
  return diffByKey(
      before, after, [](const FunctionSpec& function) { return function.identifier; },
      [&](const FunctionSpec& a, const FunctionSpec& b) { return a.signature == b.signature && !inChangedModule(b); },
      [](const FunctionSpec&) { return false; });
}

}  // namespace da::convex

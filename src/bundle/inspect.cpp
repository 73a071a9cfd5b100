// Inspection of an unpacked bundle: where the app is, what must be deleted before anything
// runs in it, and whether it is a Convex app the CLI can push without wiping a deployment.
#include <algorithm>
#include <fstream>
#include <functional>
#include <iterator>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "bundle/intake.h"
#include "bundle/refusal.h"
#include "util/strings.h"

namespace da::bundle {
namespace fs = std::filesystem;
using json = nlohmann::json;
using detail::refuse;

namespace {

constexpr std::string_view kMacMetadataDir = "__MACOSX";  // added by macOS "Compress"
constexpr std::string_view kDefaultFunctionsDir = "convex";
constexpr std::string_view kGeneratedDir = "_generated";  // written by codegen, not by the app
constexpr uintmax_t kMaxConfigFileBytes = 1 << 20;
constexpr uintmax_t kMaxLockfileBytes = 64 << 20;  // large apps' lockfiles run to megabytes
constexpr std::string_view kFunctionSourceExtensions[] = {".ts", ".js", ".tsx",
                                                          ".jsx", ".mjs", ".cjs"};
constexpr std::string_view kEmptyPushWarning =
    "; without functions the Convex CLI would push an EMPTY app and delete every function "
    "already deployed";

// Symlinks never count as files or directories here: the tree is untrusted, and following
// a link could read or judge something outside it.
bool isRegularFile(const fs::path& path) { return fs::is_regular_file(fs::symlink_status(path)); }
bool isRealDirectory(const fs::path& path) { return fs::is_directory(fs::symlink_status(path)); }

// Bundles are often zipped as one folder (`my-app/package.json`), sometimes with macOS
// metadata next to it.
fs::path locateAppRoot(const fs::path& root) {
  if (isRegularFile(root / "package.json")) return root;
  std::vector<fs::path> top_dirs;
  for (const fs::directory_entry& child : fs::directory_iterator(root)) {
    if (isRealDirectory(child.path()) && child.path().filename() != kMacMetadataDir) {
      top_dirs.push_back(child.path());
    }
  }
  if (top_dirs.size() == 1 && isRegularFile(top_dirs.front() / "package.json")) {
    return top_dirs.front();
  }
  refuse("missing_package_json",
         "no package.json at the bundle root or in its single top-level directory");
}

// A bundle's own node_modules is never trusted (it could hold anything, including native
// binaries and postinstall results); dependencies are installed fresh from the registry.
//
// An .npmrc is npm configuration the bundle would choose for the agent's host: `git=./x.sh`
// runs a program of the bundle's despite --ignore-scripts, and `registry=`, `proxy=` or
// `strict-ssl=false` redirect or unprotect the install. npm reads the one at the project
// root; every one goes, so none can take effect from a folder npm later treats as a root.
std::vector<fs::path> findNodeModulesAndNpmrc(const fs::path& app_root) {
  std::vector<fs::path> found;
  for (auto it = fs::recursive_directory_iterator(app_root); it != fs::recursive_directory_iterator();
       ++it) {
    const fs::path name = it->path().filename();
    if (name == "node_modules") {
      found.push_back(it->path());
      it.disable_recursion_pending();
    } else if (name == ".npmrc") {
      found.push_back(it->path());
    }
  }
  return found;
}

// The Convex CLI reads CONVEX_DEPLOYMENT / CONVEX_URL / deploy keys from .env, .env.local
// and friends in the app root. A bundle must not be able to choose which deployment the
// push goes to, so those files go before the CLI ever runs.
std::vector<fs::path> findEnvFiles(const fs::path& app_root) {
  std::vector<fs::path> found;
  for (const fs::directory_entry& child : fs::directory_iterator(app_root)) {
    const std::string name = child.path().filename().string();
    if (name == ".env" || name.rfind(".env.", 0) == 0) found.push_back(child.path());
  }
  return found;
}

std::vector<std::string> removeUntrustedContent(const fs::path& app_root) {
  std::vector<fs::path> doomed = findNodeModulesAndNpmrc(app_root);
  for (fs::path& env_file : findEnvFiles(app_root)) doomed.push_back(std::move(env_file));

  std::vector<std::string> removed;
  for (const fs::path& path : doomed) {
    fs::remove_all(path);  // never follows symlinks, removes the link itself
    removed.push_back(path.lexically_relative(app_root).generic_string());
  }
  std::sort(removed.begin(), removed.end());
  return removed;
}

// Reads a small JSON config file that must hold an object; refuses with `reason` otherwise,
// quoting the parser's line and column.
json readJsonObject(const fs::path& path, const std::string& reason,
                    uintmax_t max_bytes = kMaxConfigFileBytes) {
  const std::string name = path.filename().string();
  if (!isRegularFile(path)) refuse(reason, name + " is not a regular file", name);
  if (fs::file_size(path) > max_bytes) {
    refuse(reason, name + " is larger than " + std::to_string(max_bytes) + " bytes", name);
  }
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  json value;
  try {
    value = json::parse(text);
  } catch (const json::parse_error& e) {
    refuse(reason, name + " is not valid JSON: " + e.what(), name);
  }
  if (!value.is_object()) refuse(reason, name + " must contain a JSON object", name);
  return value;
}

std::string convexDependency(const json& package) {
  for (const char* section : {"dependencies", "devDependencies", "peerDependencies"}) {
    const auto deps = package.find(section);
    if (deps == package.end()) continue;
    if (!deps->is_object()) {
      refuse("invalid_package_json", std::string("package.json \"") + section + "\" must be an object",
             "package.json");
    }
    const auto convex = deps->find("convex");
    if (convex == deps->end()) continue;
    if (!convex->is_string()) {
      refuse("invalid_package_json",
             std::string("package.json \"") + section + "\".convex must be a version string",
             "package.json");
    }
    return convex->get<std::string>();
  }
  refuse("missing_convex_dependency",
         "package.json does not declare \"convex\" in dependencies, devDependencies or "
         "peerDependencies",
         "package.json");
}

// Every dependency must come from the npm registry. A local path (`file:`, `link:`, a
// workspace), a git repository, a tarball URL or an `npm:` alias lets the bundle choose what
// lands at node_modules/typescript, whose bin/tsc the Convex CLI *runs* to typecheck, on the
// agent's host with the deploy key in its environment; --ignore-scripts does not cover it.
// Registry specs (versions, ranges, dist-tags) never contain ':' or '/'.
bool isRegistrySpec(std::string_view spec) {
  return spec.find(':') == std::string_view::npos && spec.find('/') == std::string_view::npos &&
         spec.find('\\') == std::string_view::npos;
}

[[noreturn]] void refuseDependency(const std::string& file, const std::string& where,
                                   const std::string& spec) {
  refuse("non_registry_dependency",
         file + " " + where + " is \"" + spec +
             "\": only npm registry versions are installed (no file:, link:, git, URL or npm: "
             "alias specs)",
         file);
}

void requireRegistrySpecs(const json& package) {
  for (const char* section :
       {"dependencies", "devDependencies", "optionalDependencies", "peerDependencies"}) {
    const auto deps = package.find(section);
    if (deps == package.end()) continue;
    if (!deps->is_object()) {
      refuse("invalid_package_json", std::string("package.json \"") + section + "\" must be an object",
             "package.json");
    }
    for (const auto& [name, spec] : deps->items()) {
      const std::string where = std::string("\"") + section + "\"." + name;
      if (!spec.is_string()) {
        refuse("invalid_package_json", "package.json " + where + " must be a version string",
               "package.json");
      }
      if (!isRegistrySpec(spec.get<std::string>())) refuseDependency("package.json", where, spec);
    }
  }
  // overrides can swap any package anywhere in the tree, so they obey the same rule.
  std::function<void(const json&, const std::string&)> checkOverrides = [&](const json& node,
                                                                            const std::string& where) {
    if (node.is_string()) {
      const std::string spec = node.get<std::string>();
      // "$name" points at the root's own spec for that name, which was checked above.
      if (!(spec.size() > 1 && spec.front() == '$') && !isRegistrySpec(spec)) {
        refuseDependency("package.json", where, spec);
      }
    } else if (node.is_object()) {
      for (const auto& [key, value] : node.items()) checkOverrides(value, where + "." + key);
    }
  };
  if (const auto overrides = package.find("overrides"); overrides != package.end()) {
    checkOverrides(*overrides, "\"overrides\"");
  }
  if (package.contains("workspaces")) {
    refuse("non_registry_dependency",
           "package.json declares \"workspaces\": workspace packages are linked from the bundle "
           "into node_modules; only npm registry versions are installed",
           "package.json");
  }
}

// Whether a lockfile's `resolved` URL lies below `registry` (which ends in '/'). Compared as
// text, so the host must be followed by the registry's own path: "https://r.example.com.evil/"
// and "https://r.example.com@evil/" are not below "https://r.example.com/". What follows may
// not climb out of that path again: npm parses the URL (WHATWG rules), which turns `\` into
// `/` and resolves `.`/`..` segments, `%2e` spelling included.
bool isBelowRegistry(std::string_view url, std::string_view registry) {
  if (registry.empty() || registry.back() != '/' || url.substr(0, registry.size()) != registry) return false;
  const std::string_view rest = url.substr(registry.size());
  if (std::any_of(rest.begin(), rest.end(), [](unsigned char c) { return c <= 0x20 || c == 0x7f || c == '\\'; })) {
    return false;
  }
  const std::string_view path = rest.substr(0, rest.find_first_of("?#"));
  for (std::string_view segment : da::splitOn(path, '/')) {
    std::string decoded;
    for (size_t i = 0; i < segment.size(); ++i) {
      if (segment[i] == '%' && i + 2 < segment.size() && segment[i + 1] == '2' &&
          (segment[i + 2] == 'e' || segment[i + 2] == 'E')) {
        decoded += '.';
        i += 2;
      } else {
        decoded += segment[i];
      }
    }
    if (decoded == "." || decoded == "..") return false;
  }
  return true;
}

// A lockfile records where each package comes from, and npm ci installs exactly that. The
// configured registry is accepted, and so is the public one: npm replaces the host of a
// registry.npmjs.org URL with the configured registry's (its replace-registry-host default),
// so such an entry is fetched from the configured registry too.
void requireRegistryLockEntries(const json& lock, const std::string& file, const std::string& registry) {
  std::string accepted = registry;
  if (registry != kPublicNpmRegistry) accepted += " or " + std::string(kPublicNpmRegistry);
  auto checkEntry = [&](const std::string& path, const json& entry) {
    if (!entry.is_object()) return;
    if (entry.value("link", false)) refuseDependency(file, "\"" + path + "\"", "link: true");
    if (const auto resolved = entry.find("resolved"); resolved != entry.end() && resolved->is_string()) {
      const std::string url = resolved->get<std::string>();
      if (!isBelowRegistry(url, registry) && !isBelowRegistry(url, kPublicNpmRegistry)) {
        refuse("non_registry_dependency",
               file + " \"" + path + "\".resolved is \"" + url +
                   "\": packages are installed only from the npm registry (" + accepted + ")",
               file);
      }
    }
    if (const auto version = entry.find("version"); version != entry.end() && version->is_string()) {
      const std::string value = version->get<std::string>();
      if (value.find(':') != std::string::npos) refuseDependency(file, "\"" + path + "\".version", value);
    }
  };
  if (const auto packages = lock.find("packages"); packages != lock.end() && packages->is_object()) {
    for (const auto& [path, entry] : packages->items()) {
      if (!path.empty()) checkEntry(path, entry);
    }
  }
  // lockfileVersion 1 (and the compatibility copy in 2) nests "dependencies".
  std::function<void(const json&, const std::string&)> walk = [&](const json& deps, const std::string& prefix) {
    if (!deps.is_object()) return;
    for (const auto& [name, entry] : deps.items()) {
      checkEntry(prefix + name, entry);
      if (entry.is_object() && entry.contains("dependencies")) walk(entry["dependencies"], prefix + name + "/");
    }
  };
  if (const auto deps = lock.find("dependencies"); deps != lock.end()) walk(*deps, "");
}

[[noreturn]] void refuseFunctionsPath(const std::string& why) {
  refuse("invalid_convex_json", "convex.json \"functions\" " + why, "convex.json");
}

// "./src/convex/" -> "src/convex". The folder must be strictly inside the app root.
std::string normalizedFunctionsPath(std::string_view value) {
  if (value.empty()) refuseFunctionsPath("is empty");
  if (std::any_of(value.begin(), value.end(),
                  [](unsigned char c) { return c < 0x20 || c == 0x7f || c == '\\'; })) {
    refuseFunctionsPath("contains a control character or backslash");
  }
  if (value.front() == '/' || (value.size() >= 2 && value[1] == ':')) {
    refuseFunctionsPath("is an absolute path");
  }

  std::string normalized;
  for (std::string_view part : da::splitOn(value, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") refuseFunctionsPath("must stay inside the app (no '..')");
    if (!normalized.empty()) normalized += '/';
    normalized += part;
  }
  if (normalized.empty()) refuseFunctionsPath("must name a directory below the app root");
  return normalized;
}

std::string functionsDir(const fs::path& app_root) {
  const fs::path config = app_root / "convex.json";
  if (!fs::exists(fs::symlink_status(config))) return std::string(kDefaultFunctionsDir);
  const json settings = readJsonObject(config, "invalid_convex_json");
  const auto functions = settings.find("functions");
  if (functions == settings.end()) return std::string(kDefaultFunctionsDir);
  if (!functions->is_string()) {
    refuse("invalid_convex_json", "convex.json \"functions\" must be a string", "convex.json");
  }
  return normalizedFunctionsPath(functions->get<std::string>());
}

bool isFunctionSource(const fs::path& path) {
  const std::string name = path.filename().string();
  if (!isRegularFile(path) || name.front() == '.') return false;
  if (name.size() > 5 && name.compare(name.size() - 5, 5, ".d.ts") == 0) return false;  // types only
  const std::string extension = path.extension().string();
  return std::find(std::begin(kFunctionSourceExtensions), std::end(kFunctionSourceExtensions),
                   extension) != std::end(kFunctionSourceExtensions);
}

bool containsFunctionSource(const fs::path& dir) {
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator();
       ++it) {
    if (it.depth() == 0 && it->path().filename() == kGeneratedDir) {
      it.disable_recursion_pending();
      continue;
    }
    if (isFunctionSource(it->path())) return true;
  }
  return false;
}

// Every component must be a real directory: a symlinked functions folder could point the
// CLI at code outside the bundle.
void requireFunctionSources(const fs::path& app_root, const std::string& functions_dir) {
  fs::path current = app_root;
  for (std::string_view part : da::splitOn(functions_dir, '/')) {
    current /= part;
    const fs::file_status status = fs::symlink_status(current);
    if (fs::is_symlink(status)) {
      refuse("missing_functions_dir",
             "functions folder '" + functions_dir + "' is (or goes through) a symlink" +
                 std::string(kEmptyPushWarning),
             functions_dir);
    }
    if (!fs::is_directory(status)) {
      refuse("missing_functions_dir",
             "functions folder '" + functions_dir + "' does not exist" + std::string(kEmptyPushWarning),
             functions_dir);
    }
  }
  if (!containsFunctionSource(current)) {
    refuse("missing_functions_dir",
           "functions folder '" + functions_dir +
               "' has no .ts/.js/.tsx/.jsx/.mjs/.cjs file outside _generated" +
               std::string(kEmptyPushWarning),
           functions_dir);
  }
}

// npm gives npm-shrinkwrap.json precedence when both exist.
std::string lockfile(const fs::path& app_root) {
  for (const char* name : {"npm-shrinkwrap.json", "package-lock.json"}) {
    if (isRegularFile(app_root / name)) return name;
  }
  return "";
}

AppInspection inspect(const fs::path& extracted_root, const InspectOptions& options) {
  AppInspection app;
  app.app_root = locateAppRoot(extracted_root);
  app.removed = removeUntrustedContent(app.app_root);  // first: nothing below may count them
  const json package = readJsonObject(app.app_root / "package.json", "invalid_package_json");
  app.convex_dependency = convexDependency(package);
  requireRegistrySpecs(package);
  app.functions_dir = functionsDir(app.app_root);
  requireFunctionSources(app.app_root, app.functions_dir);
  app.lockfile = lockfile(app.app_root);
  if (!app.lockfile.empty()) {
    requireRegistryLockEntries(readJsonObject(app.app_root / app.lockfile, "invalid_lockfile", kMaxLockfileBytes),
                               app.lockfile, options.npm_registry);
  }
  return app;
}

}  // namespace

InspectionResult inspectApp(const fs::path& extracted_root, const InspectOptions& options) {
  InspectionResult result;
  try {
    result.app = inspect(extracted_root, options);
  } catch (const detail::Refusal& refusal) {
    result.error = refusal.error();
  } catch (const fs::filesystem_error& e) {
    result.error = IntakeError{"io_error", e.what(), {}, {}};
  } catch (const std::exception& e) {
    result.error = IntakeError{"internal_error", e.what(), {}, {}};
  } catch (...) {
    result.error = IntakeError{"internal_error", "unknown exception during inspection", {}, {}};
  }
  return result;
}

}  // namespace da::bundle

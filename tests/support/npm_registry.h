// A local npm registry for tests: a Poco HTTP server on 127.0.0.1 (a free port) that serves
// what the test registered, so npm installs from loopback and nothing reaches the public
// registry. It answers
//   GET /<name>                              the packument (also /@scope%2fname, /@scope/name)
//   GET /<name>/-/<basename>-<version>.tgz   a tarball (scoped: /@scope/name/-/name-1.0.0.tgz)
// and 404 for anything else. Every request's target is recorded for assertions.
//
// A packument holds, per version, the package.json inside the tarball plus `dist.tarball`
// (on this server) and `dist.integrity` ("sha512-<base64>", computed here);
// `dist-tags.latest` is the version registered last. Errors throw std::runtime_error.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace testsupport {

// A package's files by path below `package/` ("package.json", "bin/tsc", ...).
using PackageFiles = std::map<std::string, std::string>;

class NpmRegistry {
 public:
  NpmRegistry();
  ~NpmRegistry();  // stops serving
  NpmRegistry(const NpmRegistry&) = delete;
  NpmRegistry& operator=(const NpmRegistry&) = delete;

  // Binds 127.0.0.1:0 and serves until stop(); packages may be added before or after.
  void start();
  void stop();
  // "http://127.0.0.1:PORT/": what npm's --registry (and the agent's --npm-registry) take.
  std::string url() const;

  // Serves `tarball` (a gzip'd tar of package/...) as name@version; returns its integrity.
  std::string addPackage(const std::string& name, const std::string& version, std::string tarball);
  // Builds the tarball from `files` (entries under package/, mode 0755 below bin/, 0644
  // otherwise; a package.json naming name and version is added when `files` has none).
  std::string addPackageFromFiles(const std::string& name, const std::string& version,
                                  const PackageFiles& files);
  // Serves the real tarball an npm cache holds for `integrity` ("sha512-..."); throws when
  // the cache lacks it or its bytes do not match.
  std::string addPackageFromNpmCache(const std::filesystem::path& cache_dir, const std::string& name,
                                     const std::string& version, const std::string& integrity);
  // Every package of a package-lock.json (lockfileVersion 2 or 3), from the cache. An optional
  // package the cache lacks (another platform's binary, which npm skips) is left out; any
  // other missing package throws. Returns the name@version of each package registered.
  std::vector<std::string> servePackagesOfLockfile(const std::filesystem::path& lockfile_path,
                                                   const std::filesystem::path& cache_dir);

  // "/<name>/-/<basename>-<version>.tgz" and the same on this server.
  static std::string tarballPath(const std::string& name, const std::string& version);
  std::string tarballUrl(const std::string& name, const std::string& version) const;
  std::string integrityOf(const std::string& name, const std::string& version) const;

  // Request targets in arrival order, as sent (percent-encoding kept, query included).
  std::vector<std::string> requests() const;
  // How many requests asked for `path` exactly, or ended with ".tgz" when `path` is "*.tgz".
  size_t requestCount(const std::string& path) const;

  // From now on every request waits, unanswered, until releaseRequests() (or stop()): a test
  // holds an install in flight without timing anything.
  void holdRequests();
  void releaseRequests();
  // True once a request is waiting on the hold, false after `timeout`.
  bool waitUntilARequestIsHeld(std::chrono::milliseconds timeout) const;

  struct State;  // shared with the request handlers

 private:
  struct Impl;  // the server and its threads
  std::shared_ptr<State> state_;
  std::unique_ptr<Impl> impl_;
};

// "sha512-<base64 of the SHA-512 of bytes>", as npm writes `integrity`.
std::string npmIntegrity(const std::string& bytes);

// Where npm's cache (cacache) keeps the content whose integrity is `integrity`:
// <cache>/_cacache/content-v2/sha512/<hex[0:2]>/<hex[2:4]>/<hex[4:]>.
std::filesystem::path npmCacheContentPath(const std::filesystem::path& cache_dir, const std::string& integrity);

// ---- a crafted `typescript` for hostile tests ----------------------------------------------
// The Convex CLI typechecks by running node_modules/typescript/bin/tsc from the app, so these
// files make `script_js` run inside a deploy (with `typecheck=enable`, or `try`).
inline constexpr const char* kHostileTypescriptVersion = "5.9.9";

// package.json (name typescript, version 5.9.9, bin tsc) and bin/tsc: `#!/usr/bin/env node`,
// a prelude, then `script_js`. The CLI shows tsc's output only when its first, captured run
// (`--listFiles`) fails: it then runs tsc again with the output in its log, and goes on if
// that run exits 0. So the prelude answers `--version`, fails the `--listFiles` run without
// running the script, and `script_js` runs in the shown run; exiting 0 there lets the
// deploy continue to its push.
PackageFiles hostileTypescriptFiles(const std::string& script_js);

// JavaScript for hostileTypescriptFiles: prints HOSTILE_TSC_RAN, then for each path one line
// `READ <path>: ok` when it could read the file, or `READ <path>: error <code>` (EACCES,
// ENOENT, ...), then exits 0 (so the typecheck "passes").
std::string hostileReadScript(const std::vector<std::string>& paths_to_read);

// Writes a copy of `app_dir` (without node_modules) to `dest`, which must not exist, whose
// package.json and package-lock.json depend on typescript `version`, the lockfile entry
// node_modules/typescript resolved at `resolved` with `integrity`.
void writeAppWithTypescript(const std::filesystem::path& app_dir, const std::filesystem::path& dest,
                            const std::string& version, const std::string& resolved,
                            const std::string& integrity);

}  // namespace testsupport

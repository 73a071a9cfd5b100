// The test npm registry (tests/support/npm_registry.h): what it serves over real HTTP, and
// that the pinned npm installs the example app from it alone.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "sandbox/process.h"
#include "support/e2e.h"
#include "support/npm_registry.h"
#include "support/scratch_dir.h"
#include "support/server_process.h"

namespace fs = std::filesystem;
using testsupport::httpRequest;
using testsupport::NpmRegistry;
using Json = nlohmann::json;

namespace {


fs::path npmCache() { return fs::path(testsupport::toolchainDir()) / "npm-cache"; }
fs::path exampleLockfile() { return testsupport::exampleAppDir() / "package-lock.json"; }

Json lockEntry(const std::string& path) {
  std::ifstream in(exampleLockfile());
  return Json::parse(in)["packages"][path];
}

}  // namespace

TEST(NpmRegistry, ServesPackumentAndTarballWithMatchingIntegrity) {
  NpmRegistry registry;
  registry.start();
  const std::string integrity =
      registry.addPackageFromFiles("left-pad", "1.3.0", {{"index.js", "module.exports = (s) => s;\n"}});
  EXPECT_EQ(integrity.rfind("sha512-", 0), 0u);

  auto packument = httpRequest("GET", registry.url() + "left-pad");
  ASSERT_EQ(packument.status, 200) << packument.body;
  const Json doc = Json::parse(packument.body);
  EXPECT_EQ(doc["name"], "left-pad");
  EXPECT_EQ(doc["dist-tags"]["latest"], "1.3.0");
  const Json& dist = doc["versions"]["1.3.0"]["dist"];
  EXPECT_EQ(dist["integrity"], integrity);
  EXPECT_EQ(dist["tarball"], registry.url() + "left-pad/-/left-pad-1.3.0.tgz");

  auto tarball = httpRequest("GET", dist["tarball"].get<std::string>());
  ASSERT_EQ(tarball.status, 200);
  EXPECT_EQ(testsupport::npmIntegrity(tarball.body), integrity);

  EXPECT_EQ(httpRequest("GET", registry.url() + "right-pad").status, 404);
  EXPECT_EQ(httpRequest("GET", registry.url() + "left-pad/-/left-pad-9.9.9.tgz").status, 404);
  EXPECT_EQ(registry.requestCount("/left-pad"), 1u);
  EXPECT_EQ(registry.requestCount("*.tgz"), 2u);
  EXPECT_EQ(registry.requests().back(), "/left-pad/-/left-pad-9.9.9.tgz");
}

TEST(NpmRegistry, ServesRealPackagesFromTheNpmCacheScopedOnesToo) {
  NpmRegistry registry;
  registry.start();
  const Json convex = lockEntry("node_modules/convex");
  const Json esbuild_linux = lockEntry("node_modules/@esbuild/linux-x64");
  EXPECT_EQ(registry.addPackageFromNpmCache(npmCache(), "convex", "1.49.0", convex["integrity"]), convex["integrity"]);
  registry.addPackageFromNpmCache(npmCache(), "@esbuild/linux-x64", "0.27.0", esbuild_linux["integrity"]);

  // The packument carries the tarball's own package.json (here its bin and dependencies).
  const Json doc = Json::parse(httpRequest("GET", registry.url() + "convex").body);
  EXPECT_EQ(doc["versions"]["1.49.0"]["bin"]["convex"], "bin/main.js");
  EXPECT_EQ(doc["versions"]["1.49.0"]["dependencies"]["esbuild"], "0.27.0");

  // npm asks for scoped packuments with the slash encoded.
  for (const std::string path : {"@esbuild%2flinux-x64", "@esbuild%2Flinux-x64", "@esbuild/linux-x64"}) {
    auto scoped = httpRequest("GET", registry.url() + path);
    ASSERT_EQ(scoped.status, 200) << path;
    EXPECT_EQ(Json::parse(scoped.body)["versions"]["0.27.0"]["dist"]["tarball"],
              registry.url() + "@esbuild/linux-x64/-/linux-x64-0.27.0.tgz");
  }
  auto tarball = httpRequest("GET", registry.tarballUrl("@esbuild/linux-x64", "0.27.0"));
  ASSERT_EQ(tarball.status, 200);
  EXPECT_EQ(testsupport::npmIntegrity(tarball.body), esbuild_linux["integrity"]);

  EXPECT_THROW(registry.addPackageFromNpmCache(npmCache(), "x", "1.0.0", "sha512-" + std::string(86, 'A') + "=="),
               std::runtime_error);
}

TEST(NpmRegistry, HostileTypescriptHasAnExecutableTscScript) {
  const auto files = testsupport::hostileTypescriptFiles("console.log('hi');\n");
  EXPECT_EQ(files.at("bin/tsc").rfind("#!/usr/bin/env node\n", 0), 0u);
  EXPECT_EQ(Json::parse(files.at("package.json"))["version"], "5.9.9");
  NpmRegistry registry;
  registry.start();
  registry.addPackageFromFiles("typescript", "5.9.9", files);
  const Json doc = Json::parse(httpRequest("GET", registry.url() + "typescript").body);
  EXPECT_EQ(doc["versions"]["5.9.9"]["bin"]["tsc"], "bin/tsc");
}

// The pinned npm, with an empty cache and no config files, installs the example app from this
// registry alone: the public registry is never reachable from here.
TEST(NpmRegistry, PinnedNpmCiInstallsTheExampleAppFromIt) {
  testsupport::ScratchDir scratch("npm-registry-npm-ci");
  NpmRegistry registry;
  registry.start();
  const auto served = registry.servePackagesOfLockfile(exampleLockfile(), npmCache());
  EXPECT_NE(std::find(served.begin(), served.end(), "convex@1.49.0"), served.end());

  const fs::path app = scratch.path() / "app";
  fs::create_directories(app);
  for (const auto& entry : fs::directory_iterator(testsupport::exampleAppDir())) {
    if (entry.path().filename() != "node_modules") fs::copy(entry.path(), app / entry.path().filename(), fs::copy_options::recursive);
  }
  fs::create_directories(scratch.path() / "home");
  const std::string toolchain = testsupport::toolchainDir();

  sandbox::ProcessSpec spec;
  spec.executable = toolchain + "/bin/node";
  spec.args = {toolchain + "/node_modules/npm/bin/npm-cli.js", "ci", "--ignore-scripts", "--no-audit", "--no-fund",
               "--registry", registry.url(), "--cache", (scratch.path() / "cache").string()};
  spec.env = {{"PATH", toolchain + "/bin:/usr/bin:/bin"},
              {"HOME", (scratch.path() / "home").string()},
              {"npm_config_userconfig", (scratch.path() / "no-userconfig").string()},
              {"npm_config_globalconfig", (scratch.path() / "no-globalconfig").string()},
              {"npm_config_update_notifier", "false"}};
  spec.working_dir = app.string();
  spec.limits.wallTime(std::chrono::seconds(90));
  std::string output;
  const auto run = sandbox::runProcess(spec, [&](std::string_view chunk) { output += chunk; });
  ASSERT_EQ(run.status, sandbox::Status::kOk) << run.reason << "\n" << output;

  std::ifstream installed(app / "node_modules/convex/package.json");
  ASSERT_TRUE(installed) << output;
  EXPECT_EQ(Json::parse(installed)["version"], "1.49.0");
  EXPECT_EQ(registry.requestCount("/convex/-/convex-1.49.0.tgz"), 1u) << testing::PrintToString(registry.requests());
  EXPECT_GE(registry.requestCount("*.tgz"), 5u) << testing::PrintToString(registry.requests());
}

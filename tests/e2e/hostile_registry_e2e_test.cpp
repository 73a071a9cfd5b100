// End to end with a hostile registry package: the app's lockfile pins a crafted `typescript`
// served by a local npm registry, and the Convex CLI runs its bin/tsc to typecheck. That
// script runs inside the deploy, on the agent's host, and reports what it could read.
//
// The stand-in and the agent are real processes; the registry runs in this test process on
// loopback. The agent installs online (no --npm-offline) from that registry with an empty
// npm cache, so every package comes from it and nothing reaches the public registry.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "support/archive_builder.h"
#include "support/e2e.h"
#include "support/npm_registry.h"
#include "support/server_process.h"

namespace fs = std::filesystem;
using testsupport::ArchiveBuilder;
using testsupport::httpRequest;
using testsupport::NpmRegistry;
using testsupport::ServerProcess;
using Json = nlohmann::json;

namespace {

const std::string kAgentToken = "e2e-hostile-agent-token-0123456789";
const std::string kTeamToken = "e2e-hostile-team-token-abcdef0123";
const std::string kDeployment = "happy-otter-123";
const std::string kTypescript = "typescript";

class HostileRegistryE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      start();
    } catch (const std::exception& e) {
      setup_error_ = e.what();
    }
  }

  // A failed start fails every test (not skips it): a suite that cannot run must not pass.
  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  static void start() {
    dir_ = fs::temp_directory_path() / ("da-e2e-hostile-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);

    // The agent's own secret, in a file the hostile tsc will try to read.
    token_file_ = dir_ / "agent-token";
    std::ofstream(token_file_) << kAgentToken << "\n";
    fs::permissions(token_file_, fs::perms::owner_read | fs::perms::owner_write);

    registry_ = std::make_unique<NpmRegistry>();
    registry_->start();
    const fs::path cache = fs::path(testsupport::toolchainDir()) / "npm-cache";
    registry_->servePackagesOfLockfile(testsupport::exampleAppDir() / "package-lock.json", cache);
    const std::string integrity = registry_->addPackageFromFiles(
        kTypescript, testsupport::kHostileTypescriptVersion,
        testsupport::hostileTypescriptFiles(testsupport::hostileReadScript({token_file_.string()})));
    testsupport::writeAppWithTypescript(testsupport::exampleAppDir(), dir_ / "crafted-app",
                                        testsupport::kHostileTypescriptVersion,
                                        registry_->tarballUrl(kTypescript, testsupport::kHostileTypescriptVersion),
                                        integrity);

    standin_ = std::make_unique<ServerProcess>(
        testsupport::binaryDir() + "/bin/convex-standin",
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--team-token", kTeamToken, "--deployment",
                                 kDeployment + ":prod"},
        std::map<std::string, std::string>{});
    // Online, from the local registry only: an empty cache and no --npm-offline.
    fs::create_directories(dir_ / "npm-cache");
    agent_ = std::make_unique<ServerProcess>(
        testsupport::binaryDir() + "/bin/deploy-agent",
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--state-dir", (dir_ / "state").string(),
                                 "--convex-url", standin_->baseUrl(), "--toolchain", testsupport::toolchainDir(),
                                 "--npm-cache", (dir_ / "npm-cache").string(), "--npm-registry", registry_->url(),
                                 "--token-file", token_file_.string(), "--cli-timeout", "120",
                                 "--install-timeout", "300"},
        std::map<std::string, std::string>{{"CONVEX_TEAM_TOKEN", kTeamToken}});
  }

  static void TearDownTestSuite() {
    agent_.reset();
    standin_.reset();
    registry_.reset();
    fs::remove_all(dir_);
  }

  static std::string craftedBundle() {
    return ArchiveBuilder::fromDirectory(dir_ / "crafted-app").build(ArchiveBuilder::Format::kTarGz);
  }

  static testsupport::HttpResult agentGet(const std::string& path) {
    return httpRequest("GET", agent_->baseUrl() + path, {{"Authorization", "Bearer " + kAgentToken}});
  }

  // Long-polls the report until it is terminal (the agent wakes the request when it is).
  static Json waitForReport(const std::string& id) {
    for (int attempt = 0; attempt < 8; ++attempt) {
      auto result = agentGet("/v1/deploys/" + id + "?wait=60");
      EXPECT_EQ(result.status, 200) << result.body;
      Json report = Json::parse(result.body);
      if (report["status"] == "succeeded" || report["status"] == "failed") return report;
    }
    ADD_FAILURE() << "deploy " << id << " did not finish within 8 minutes";
    return {};
  }

  static std::string log(const std::string& id, const std::string& phase) {
    auto result = agentGet("/v1/deploys/" + id + "/log?phase=" + phase);
    return result.status == 200 ? result.body : "(no " + phase + " log: " + result.body + ")";
  }

  // The hostile tsc's `READ <path>: ok` / `READ <path>: error <code>` lines, by path.
  static std::map<std::string, std::string> readResults(const std::string& cli_log) {
    std::map<std::string, std::string> results;
    std::istringstream lines(cli_log);
    for (std::string line; std::getline(lines, line);) {
      const size_t at = line.find("READ ");
      const size_t colon = line.rfind(": ");
      if (at == std::string::npos || colon == std::string::npos || colon < at) continue;
      results[line.substr(at + 5, colon - at - 5)] = line.substr(colon + 2);
    }
    return results;
  }

  static inline std::string setup_error_;
  static inline fs::path dir_;
  static inline fs::path token_file_;
  static inline std::unique_ptr<NpmRegistry> registry_;
  static inline std::unique_ptr<ServerProcess> standin_;
  static inline std::unique_ptr<ServerProcess> agent_;
};

TEST_F(HostileRegistryE2E, CraftedTypescriptFromTheRegistryRunsAsTscDuringTheDeploy) {
  auto accepted = httpRequest("POST", agent_->baseUrl() + "/v1/deploys?target=prod&deployment=" + kDeployment +
                                          "&typecheck=enable",
                              {{"Authorization", "Bearer " + kAgentToken}, {"Content-Type", "application/gzip"}},
                              craftedBundle());
  ASSERT_EQ(accepted.status, 202) << "intake must accept a lockfile resolved on the configured registry: "
                                  << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  const Json report = waitForReport(id);
  const std::string install_log = log(id, "install");
  const std::string cli_log = log(id, "push");
  const std::string context = report.dump(2) + "\n--- install.log\n" + install_log + "\n--- cli.log\n" + cli_log;

  // npm installed from the local registry, crafted package included, and the CLI ran.
  ASSERT_TRUE(report["phase"] == "push" || report["phase"] == "done") << context;
  EXPECT_EQ(registry_->requestCount(NpmRegistry::tarballPath(kTypescript, testsupport::kHostileTypescriptVersion)), 1u)
      << testing::PrintToString(registry_->requests());
  EXPECT_NE(cli_log.find("HOSTILE_TSC_RAN"), std::string::npos) << context;

  // What the crafted tsc could read. Recorded, not yet judged: the sandbox's filesystem tier
  // will turn this into EXPECT_NE(reads[token], "ok") (the agent's token must stay unreadable).
  const auto reads = readResults(cli_log);
  const auto token_read = reads.find(token_file_.string());
  ASSERT_NE(token_read, reads.end()) << "no READ line for " << token_file_ << "\n" << context;
  RecordProperty("token_file_read", token_read->second);
  std::cout << "hostile tsc: READ " << token_read->first << ": " << token_read->second << "\n";
}

}  // namespace

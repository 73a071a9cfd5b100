// End to end: the stand-in and the agent run as real processes, bundles of the example app
// are built at test time and posted over real HTTP, and the real Convex CLI pushes them.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "support/archive_builder.h"
#include "support/e2e.h"
#include "support/secret_scan.h"
#include "support/server_process.h"

namespace fs = std::filesystem;
using testsupport::ArchiveBuilder;
using testsupport::HttpResult;
using testsupport::httpRequest;
using testsupport::ServerProcess;
using Json = nlohmann::json;

namespace {

const std::string kAgentToken = "e2e-agent-token-0123456789abcdef";
const std::string kTeamToken = "e2e-team-token-abcdef0123456789";
const std::string kProdDeployment = "happy-otter-123";
const std::string kDevDeployment = "brave-fox-456";

class DeployE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      startServers();
    } catch (const std::exception& e) {
      setup_error_ = e.what();
    }
  }

  // A failed start fails every test (not skips it): a suite that cannot run must not pass.
  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  static void startServers() {
    state_dir_ = fs::temp_directory_path() / ("da-e2e-" + std::to_string(getpid()));
    fs::remove_all(state_dir_);
    fs::create_directories(state_dir_);
    standin_ = std::make_unique<ServerProcess>(
        testsupport::binaryDir() + "/bin/convex-standin",
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--team-token", kTeamToken,
                                 "--deployment", kProdDeployment + ":prod", "--deployment",
                                 kDevDeployment + ":dev"},
        std::map<std::string, std::string>{});
    auto args = testsupport::offlineAgentArgs(state_dir_ / "state", standin_->baseUrl());
    args.insert(args.end(), {"--workers", "2", "--cli-timeout", "120"});
    agent_ = std::make_unique<ServerProcess>(testsupport::binaryDir() + "/bin/deploy-agent", args,
                                             std::map<std::string, std::string>{{"DEPLOY_AGENT_TOKEN", kAgentToken},
                                                                                {"CONVEX_TEAM_TOKEN", kTeamToken}},
                                             (state_dir_ / "agent.log").string());
    scan_ = std::make_unique<testsupport::SecretScan>();
    scan_->addSecret(kAgentToken);
    scan_->addSecret(kTeamToken);
  }

  // Every byte the agent wrote (state, log) or answered, for every key the tests handed it.
  static void TearDownTestSuite() {
    agent_.reset();
    standin_.reset();
    if (scan_) scan_->expectClean(state_dir_);
    scan_.reset();
    fs::remove_all(state_dir_);
  }

  static fs::path exampleApp() { return testsupport::exampleAppDir(); }

  static Json examplePackageJson() {
    std::ifstream in(exampleApp() / "package.json");
    return Json::parse(in);
  }

  static std::string exampleBundle(ArchiveBuilder::Format format = ArchiveBuilder::Format::kTarGz) {
    return testsupport::exampleAppArchive().build(format);
  }

  static HttpResult postDeploy(const std::string& query, const std::string& body,
                               std::map<std::string, std::string> headers = {}) {
    headers.emplace("Authorization", "Bearer " + kAgentToken);
    headers.emplace("Content-Type", "application/gzip");
    return httpRequest("POST", agent_->baseUrl() + "/v1/deploys?" + query, headers, body);
  }

  static Json getJson(const std::string& url) {
    auto result = httpRequest("GET", url, {{"Authorization", "Bearer " + kAgentToken}});
    EXPECT_EQ(result.status, 200) << result.body;
    return Json::parse(result.body);
  }

  // Long-polls the report until it is terminal (the agent wakes the request when it is).
  static Json waitForReport(const std::string& id) {
    for (int attempt = 0; attempt < 6; ++attempt) {
      Json report = getJson(agent_->baseUrl() + "/v1/deploys/" + id + "?wait=60");
      if (report["status"] == "succeeded" || report["status"] == "failed") return report;
    }
    ADD_FAILURE() << "deploy " << id << " did not finish within 6 minutes";
    return {};
  }

  static std::string deployLog(const std::string& id) {
    auto result = httpRequest("GET", agent_->baseUrl() + "/v1/deploys/" + id + "/log",
                              {{"Authorization", "Bearer " + kAgentToken}});
    EXPECT_EQ(result.status, 200);
    return result.body;
  }

  // The push went through the job's egress proxy to the stand-in (the Convex URL and, here,
  // the deployment's origin too), and the job tried nothing else.
  static void expectOnlyTheStandinWasReached(const Json& report) {
    const Json& network = report["network"];
    EXPECT_EQ(network["enforcement"], "network_namespace") << network.dump(2);
    EXPECT_EQ(network["denied"], Json::array()) << network.dump(2);
    ASSERT_EQ(network["allowed"].size(), 1u) << network.dump(2);
    EXPECT_EQ(network["allowed"][0]["host"], standin_->baseUrl().substr(std::string("http://").size()));
    EXPECT_GT(network["allowed"][0]["connections"].get<uint64_t>(), 0u);
    EXPECT_GT(network["allowed"][0]["bytes_out"].get<uint64_t>(), 1000u) << "the push's modules went out";
    EXPECT_GT(network["allowed"][0]["bytes_in"].get<uint64_t>(), 0u);
  }

  static Json standinPushes() { return Json::parse(httpRequest("GET", standin_->baseUrl() + "/_standin/pushes").body); }
  static Json standinRequests() { return Json::parse(httpRequest("GET", standin_->baseUrl() + "/_standin/requests").body); }

  static size_t pushesTo(const std::string& deployment, bool committed_only) {
    size_t count = 0;
    for (const auto& push : standinPushes()) {
      if (push["deployment"] == deployment && (!committed_only || push["committed"] == true)) ++count;
    }
    return count;
  }

  static std::string mintKey(const std::string& deployment) {
    std::string key = testsupport::mintStandinKey(standin_->baseUrl(), deployment);
    if (scan_) scan_->addSecret(key);
    return key;
  }

  // The module paths the CLI pushes for the example app: each function file as .js.
  static std::set<std::string> exampleModulePaths() {
    std::set<std::string> paths;
    for (const auto& entry : fs::directory_iterator(exampleApp() / "convex")) {
      const auto name = entry.path().filename().string();
      if (entry.path().extension() == ".ts" && name != "schema.ts") {
        paths.insert(entry.path().stem().string() + ".js");
      }
    }
    return paths;
  }

  static std::set<std::string> pushedFunctionModules(const Json& push) {
    std::set<std::string> paths;
    for (const auto& module : push["modules"]) {
      std::string path = module["path"];
      if (path.rfind("_deps/", 0) != 0) paths.insert(path);
    }
    return paths;
  }

  static Json lastCommittedPush(const std::string& deployment) {
    Json last;
    for (const auto& push : standinPushes()) {
      if (push["deployment"] == deployment && push["committed"] == true) last = push;
    }
    return last;
  }

  static void injectFault(const Json& fault) {
    auto result = httpRequest("POST", standin_->baseUrl() + "/_standin/faults", {}, fault.dump());
    ASSERT_EQ(result.status, 200) << result.body;
  }

  static inline std::string setup_error_;
  static inline fs::path state_dir_;
  static inline std::unique_ptr<ServerProcess> standin_;
  static inline std::unique_ptr<ServerProcess> agent_;
  static inline std::unique_ptr<testsupport::SecretScan> scan_;
};

TEST_F(DeployE2E, ProdDeployWithMintedKeyPushesExactlyTheAppsModules) {
  auto accepted = postDeploy("target=prod&deployment=" + kProdDeployment, exampleBundle());
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  EXPECT_EQ(accepted.headers["Location"], "/v1/deploys/" + id);

  Json report = waitForReport(id);
  ASSERT_EQ(report["status"], "succeeded") << report.dump(2) << deployLog(id);
  EXPECT_EQ(report["target"], "prod");
  EXPECT_EQ(report["phase"], "done");
  EXPECT_EQ(report["exit_code"], 0);
  EXPECT_EQ(report["key_source"], "management_api");
  EXPECT_EQ(report["deployment"]["name"], kProdDeployment);
  EXPECT_EQ(report["deployment"]["url"], standin_->baseUrl());
  EXPECT_TRUE(report["error"].is_null());
  expectOnlyTheStandinWasReached(report);
  for (const char* phase : {"install", "deploy_key", "push", "total"}) {
    EXPECT_TRUE(report["timings_ms"].contains(phase)) << phase;
  }

  Json push = lastCommittedPush(kProdDeployment);
  ASSERT_FALSE(push.is_null());
  EXPECT_EQ(pushedFunctionModules(push), exampleModulePaths());
  EXPECT_TRUE(push["has_schema"]);

  // The key was minted through the Management API with least privilege and a short life.
  Json grant;
  for (const auto& request : standinRequests()) {
    if (request["path"] == "/v1/deployments/" + kProdDeployment + "/create_deploy_key") grant = request["deploy_key"];
  }
  ASSERT_FALSE(grant.is_null()) << "no create_deploy_key call was recorded";
  EXPECT_EQ(grant["allowedActions"], Json::array({"deployment:deploy"}));
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count();
  ASSERT_TRUE(grant["expiresAt"].is_number_integer()) << grant.dump();
  EXPECT_GT(grant["expiresAt"].get<int64_t>(), now_ms + 50 * 60 * 1000);
  EXPECT_LT(grant["expiresAt"].get<int64_t>(), now_ms + 70 * 60 * 1000);
  EXPECT_NE(grant["name"].get<std::string>().find(id), std::string::npos) << grant.dump();
  EXPECT_NE(deployLog(id).find("Deployed Convex functions to"), std::string::npos);

  // What stays of a finished job: its report and logs; the app, node_modules, HOME and the
  // upload are gone (moved to .trash before the report is stored, and deleted right after).
  std::set<std::string> kept;
  for (const auto& entry : fs::directory_iterator(state_dir_ / "state/jobs" / id)) {
    if (entry.path().filename() != ".trash") kept.insert(entry.path().filename().string());
  }
  EXPECT_EQ(kept, (std::set<std::string>{"report.json", "install.log", "cli.log", "events.jsonl"}));
}

TEST_F(DeployE2E, TwoDeploysToOneDeploymentPushOneAtATime) {
  // Two workers install side by side; the pushes must not overlap, or the later one's schema
  // wait races the earlier one.
  // Only what these two deploys caused counts, whatever ran before in this process.
  const size_t requests_before = standinRequests().size();
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i) {
    auto accepted = postDeploy("target=prod&deployment=" + kProdDeployment, exampleBundle());
    ASSERT_EQ(accepted.status, 202) << accepted.body;
    ids.push_back(Json::parse(accepted.body)["id"]);
  }
  for (const auto& id : ids) EXPECT_EQ(waitForReport(id)["status"], "succeeded") << deployLog(id);
  int open_pushes = 0, most_open = 0, started = 0;
  const Json requests = standinRequests();
  for (size_t i = requests_before; i < requests.size(); ++i) {
    const Json& request = requests[i];
    if (request.value("deployment", "") != kProdDeployment) continue;
    if (request["path"] == "/api/deploy2/start_push") ++open_pushes, ++started;
    if (request["path"] == "/api/deploy2/finish_push") --open_pushes;
    most_open = std::max(most_open, open_pushes);
  }
  EXPECT_EQ(started, 2);
  EXPECT_EQ(most_open, 1) << "two pushes to " << kProdDeployment << " overlapped";
}

TEST_F(DeployE2E, DevDeployWithCallerKeySucceedsAndNeverEchoesTheKey) {
  const std::string key = mintKey(kDevDeployment);
  auto accepted = postDeploy("target=dev", exampleBundle(ArchiveBuilder::Format::kZip),
                             {{"Convex-Deploy-Key", key}, {"Content-Type", "application/zip"}});
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  Json report = waitForReport(id);
  ASSERT_EQ(report["status"], "succeeded") << report.dump(2) << deployLog(id);
  EXPECT_EQ(report["key_source"], "header");
  EXPECT_EQ(report["deployment"]["name"], kDevDeployment);
  expectOnlyTheStandinWasReached(report);
  EXPECT_EQ(pushedFunctionModules(lastCommittedPush(kDevDeployment)), exampleModulePaths());

  const std::string secret = key.substr(key.find('|') + 1);
  EXPECT_EQ(report.dump().find(secret), std::string::npos);
  EXPECT_EQ(deployLog(id).find(secret), std::string::npos);
  std::ifstream stored(state_dir_ / "state/jobs" / id / "report.json");
  std::string stored_text((std::istreambuf_iterator<char>(stored)), std::istreambuf_iterator<char>());
  EXPECT_EQ(stored_text.find(secret), std::string::npos);
}

TEST_F(DeployE2E, InstallScriptsOfTheBundleNeverRun) {
  // npm runs a project's own install lifecycle scripts unless told not to.
  const fs::path marker = state_dir_ / "postinstall-ran";
  Json package = examplePackageJson();
  package["scripts"] = {{"preinstall", "node -e \"require('fs').writeFileSync('" + marker.string() + "','pre')\""},
                        {"postinstall", "node -e \"require('fs').writeFileSync('" + marker.string() + "','post')\""}};
  auto bundle = testsupport::exampleAppArchive()
                    .replaceFile("package.json", package.dump(2))
                    .build(ArchiveBuilder::Format::kTarGz);
  auto accepted = postDeploy("target=prod&deployment=" + kProdDeployment, bundle);
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  Json report = waitForReport(id);
  EXPECT_EQ(report["status"], "succeeded") << report.dump(2);
  EXPECT_FALSE(fs::exists(marker)) << "a bundle's install script ran on the agent's host";
}

TEST_F(DeployE2E, BundleNpmrcDoesNotConfigureTheInstall) {
  // npm obeys a project .npmrc; with dry-run it would install nothing and the push would
  // have no convex library. Removed at intake, it changes nothing.
  auto bundle = testsupport::exampleAppArchive()
                    .addFile(".npmrc", "dry-run=true\n")
                    .build(ArchiveBuilder::Format::kTarGz);
  auto accepted = postDeploy("target=prod&deployment=" + kProdDeployment, bundle);
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  Json report = waitForReport(id);
  EXPECT_EQ(report["status"], "succeeded") << report.dump(2);
  EXPECT_EQ(report["bundle"]["removed"], Json::array({".npmrc"})) << report.dump(2);
}

TEST_F(DeployE2E, ALocalTypescriptPackageIsRefusedBeforeAnythingRuns) {
  // The CLI runs node_modules/typescript/bin/tsc to typecheck; a bundle that supplies its own
  // "typescript" would run its code on the agent's host with the deploy key. Refused at intake.
  const fs::path marker = state_dir_ / "bundle-tsc-ran";
  Json package = examplePackageJson();
  package["devDependencies"]["typescript"] = "file:tools/typescript";
  auto bundle = testsupport::exampleAppArchive()
                    .replaceFile("package.json", package.dump(2))
                    .removeEntry("package-lock.json")
                    .addFile("tools/typescript/package.json",
                             R"({"name":"typescript","version":"5.9.3","bin":{"tsc":"bin/tsc"}})")
                    .addFile("tools/typescript/bin/tsc",
                             "#!/usr/bin/env node\nrequire('fs').writeFileSync('" + marker.string() + "', 'ran');\n",
                             0755)
                    .build(ArchiveBuilder::Format::kTarGz);
  // Other tests of this process may have left finished jobs; only this request counts.
  auto jobFolders = [] {
    return fs::exists(state_dir_ / "state/jobs")
               ? std::distance(fs::directory_iterator(state_dir_ / "state/jobs"), fs::directory_iterator())
               : 0;
  };
  const auto folders_before = jobFolders();
  auto refused = postDeploy("target=prod&deployment=" + kProdDeployment, bundle);
  ASSERT_EQ(refused.status, 422) << refused.body;
  Json problem = Json::parse(refused.body);
  EXPECT_EQ(problem["reason"], "non_registry_dependency");
  EXPECT_EQ(problem["entry"], "package.json");
  EXPECT_NE(problem["detail"].get<std::string>().find("typescript"), std::string::npos) << refused.body;
  EXPECT_FALSE(fs::exists(marker));
  EXPECT_EQ(jobFolders(), folders_before) << "a refused bundle left a job folder";
}

TEST_F(DeployE2E, SyntaxErrorFailsWithTheCliErrorAndNoPush) {
  auto bundle = testsupport::exampleAppArchive()
                    .addFile("convex/broken.ts", "export const oops = ;\n")
                    .build(ArchiveBuilder::Format::kTarGz);
  const size_t pushes_before = standinPushes().size();
  auto accepted = postDeploy("target=prod&deployment=" + kProdDeployment, bundle);
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  Json report = waitForReport(id);
  ASSERT_EQ(report["status"], "failed");
  EXPECT_EQ(report["error"]["reason"], "bundle_error") << report.dump(2);
  EXPECT_EQ(report["error"]["retryable"], false) << "the bundle must change";
  EXPECT_EQ(report["phase"], "push");
  EXPECT_NE(report["error"]["message"].get<std::string>().find("convex/broken.ts"), std::string::npos)
      << report.dump(2);
  EXPECT_EQ(report["exit_code"], 1);
  EXPECT_NE(deployLog(id).find("[ERROR]"), std::string::npos);
  EXPECT_EQ(standinPushes().size(), pushes_before);
  // Where, exactly, for a generator to hand to its model: esbuild's 0-based column made 1-based.
  ASSERT_EQ(report["diagnostics"].size(), 1u) << report.dump(2);
  const Json& diagnostic = report["diagnostics"][0];
  EXPECT_EQ(diagnostic["file"], "convex/broken.ts");
  EXPECT_EQ(diagnostic["line"], 1);
  EXPECT_EQ(diagnostic["column"], 21);
  EXPECT_EQ(diagnostic["severity"], "error");
  EXPECT_EQ(diagnostic["tool"], "esbuild");
  EXPECT_EQ(diagnostic["message"], "Unexpected \";\"") << diagnostic.dump();
}

TEST_F(DeployE2E, ATypeErrorIsADiagnosticOfTscAtItsPlace) {
  auto bundle = testsupport::exampleAppArchive()
                    .addFile("convex/typed.ts", "export const count: number = \"three\";\n")
                    .build(ArchiveBuilder::Format::kTarGz);
  auto accepted = postDeploy("target=prod&deployment=" + kProdDeployment + "&typecheck=enable", bundle);
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  Json report = waitForReport(Json::parse(accepted.body)["id"]);
  ASSERT_EQ(report["status"], "failed") << report.dump(2);
  EXPECT_EQ(report["error"]["reason"], "typecheck_failed");
  ASSERT_FALSE(report["diagnostics"].empty()) << report.dump(2);
  const Json& diagnostic = report["diagnostics"][0];
  EXPECT_EQ(diagnostic["file"], "convex/typed.ts") << report.dump(2);
  EXPECT_EQ(diagnostic["line"], 1);
  EXPECT_EQ(diagnostic["column"], 14);
  EXPECT_EQ(diagnostic["tool"], "tsc");
  EXPECT_NE(diagnostic["message"].get<std::string>().find("TS2322"), std::string::npos) << diagnostic.dump();
}

TEST_F(DeployE2E, AnAbsoluteImportCannotPullAHostFileIntoThePush) {
  // esbuild bundles whatever path an import names. Outside the sandbox this pushed the host
  // file's content to the caller's deployment; in the job's own root the path does not exist.
  const fs::path host_file = state_dir_ / "host-secret.json";
  std::ofstream(host_file) << R"({"value": "host-secret-5d1f0c"})";
  auto bundle = testsupport::exampleAppArchive()
                    .addFile("convex/steal.ts", "import stolen from \"" + host_file.string() +
                                                     "\";\nexport const leaked = () => stolen.value;\n")
                    .build(ArchiveBuilder::Format::kTarGz);
  const size_t pushes_before = standinPushes().size();
  auto accepted = postDeploy("target=prod&deployment=" + kProdDeployment, bundle);
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  Json report = waitForReport(Json::parse(accepted.body)["id"]);
  EXPECT_EQ(report["status"], "failed") << report.dump(2);
  EXPECT_EQ(report["error"]["reason"], "bundle_error") << report.dump(2);
  EXPECT_NE(report["error"]["message"].get<std::string>().find("host-secret.json"), std::string::npos)
      << report.dump(2);
  EXPECT_EQ(standinPushes().size(), pushes_before);
  EXPECT_EQ(standinPushes().dump().find("host-secret-5d1f0c"), std::string::npos);
  EXPECT_EQ(report["sandbox"]["tier"], "namespaces") << report.dump(2);
}

TEST_F(DeployE2E, AKeyPrintedByTheCliIsRedactedFromLogAndReport) {
  // Generated code that embeds the key on a line esbuild quotes in its error's code frame.
  const std::string key = mintKey(kProdDeployment);
  const std::string secret = key.substr(key.find('|') + 1);
  auto bundle = testsupport::exampleAppArchive()
                    .addFile("convex/leaky.ts", "export const leaked = \"" + key + "\" +;\n")
                    .build(ArchiveBuilder::Format::kTarGz);
  auto accepted = postDeploy("target=prod", bundle, {{"Convex-Deploy-Key", key}});
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  Json report = waitForReport(id);
  EXPECT_EQ(report["error"]["reason"], "bundle_error") << report.dump(2);
  const std::string log = deployLog(id);
  EXPECT_NE(log.find("convex/leaky.ts"), std::string::npos) << log;
  EXPECT_NE(log.find("[REDACTED]"), std::string::npos) << log;
  EXPECT_EQ(log.find(secret), std::string::npos) << log;
  EXPECT_EQ(report.dump().find(secret), std::string::npos);
}

TEST_F(DeployE2E, WrongDeployKeyFailsForProdAndDev) {
  for (const auto& [target, key] : {std::pair{"prod", "prod:" + kProdDeployment + "|not-a-key-it-issued"},
                                    std::pair{"dev", "dev:" + kDevDeployment + "|not-a-key-it-issued"}}) {
    const size_t committed_before = pushesTo(target == std::string("prod") ? kProdDeployment : kDevDeployment, true);
    auto accepted = postDeploy(std::string("target=") + target, exampleBundle(), {{"Convex-Deploy-Key", key}});
    ASSERT_EQ(accepted.status, 202) << accepted.body;
    const std::string id = Json::parse(accepted.body)["id"];
    Json report = waitForReport(id);
    EXPECT_EQ(report["status"], "failed") << target << report.dump(2);
    EXPECT_EQ(report["error"]["reason"], "deploy_key_rejected") << target << report.dump(2);
    EXPECT_EQ(pushesTo(target == std::string("prod") ? kProdDeployment : kDevDeployment, true), committed_before);
    EXPECT_EQ(report.dump().find("not-a-key-it-issued"), std::string::npos);
  }
}

TEST_F(DeployE2E, DevOnceThatExitsZeroAfterARejectedPushIsReportedFailed) {
  injectFault({{"method", "POST"}, {"path", "/api/deploy2/start_push"}, {"status", 401},
               {"code", "BadAdminKey"}, {"message", "The provided admin key was invalid for this instance"},
               {"times", 1}});
  const std::string key = mintKey(kDevDeployment);
  const size_t committed_before = pushesTo(kDevDeployment, true);
  auto accepted = postDeploy("target=dev", exampleBundle(), {{"Convex-Deploy-Key", key}});
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  Json report = waitForReport(id);
  EXPECT_EQ(report["exit_code"], 0) << "the CLI's own exit code is 0 here: " << deployLog(id);
  EXPECT_EQ(report["status"], "failed") << report.dump(2);
  EXPECT_EQ(report["error"]["reason"], "push_rejected") << report.dump(2);
  EXPECT_EQ(pushesTo(kDevDeployment, true), committed_before);
}

TEST_F(DeployE2E, DevOnceWhoseFinishPushIsForbiddenIsReportedFailed) {
  // The push was started and its modules uploaded; only the commit is refused.
  injectFault({{"method", "POST"}, {"path", "/api/deploy2/finish_push"}, {"status", 403},
               {"code", "Forbidden"}, {"message", "This key may not deploy"}, {"times", 1}});
  const std::string key = mintKey(kDevDeployment);
  const size_t committed_before = pushesTo(kDevDeployment, true);
  auto accepted = postDeploy("target=dev", exampleBundle(), {{"Convex-Deploy-Key", key}});
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  Json report = waitForReport(id);
  EXPECT_EQ(report["status"], "failed") << report.dump(2) << deployLog(id);
  EXPECT_EQ(report["phase"], "push") << report.dump(2);
  EXPECT_EQ(report["error"]["reason"], "push_rejected") << report.dump(2);
  EXPECT_EQ(pushesTo(kDevDeployment, true), committed_before);
}

TEST_F(DeployE2E, SuccessTextQuotedByTheAppDoesNotMakeARejectedPushSucceed) {
  // esbuild quotes the app's own strings in its warnings: the success line must be the CLI's.
  auto bundle = testsupport::exampleAppArchive()
                    .addFile("convex/spoof.ts",
                             "export const spoof = { \"\xE2\x9C\x94 Convex functions ready!\": 1, "
                             "\"\xE2\x9C\x94 Convex functions ready!\": 2 };\n")
                    .build(ArchiveBuilder::Format::kTarGz);
  injectFault({{"method", "POST"}, {"path", "/api/deploy2/start_push"}, {"status", 401},
               {"code", "BadAdminKey"}, {"message", "The provided admin key was invalid for this instance"},
               {"times", 1}});
  const std::string key = mintKey(kDevDeployment);
  const size_t committed_before = pushesTo(kDevDeployment, true);
  auto accepted = postDeploy("target=dev", bundle, {{"Convex-Deploy-Key", key}});
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  Json report = waitForReport(id);
  EXPECT_EQ(report["status"], "failed") << report.dump(2) << deployLog(id);
  EXPECT_EQ(report["error"]["reason"], "push_rejected") << report.dump(2);
  EXPECT_EQ(pushesTo(kDevDeployment, true), committed_before);
}

TEST_F(DeployE2E, BundleWithoutFunctionsFolderIsRefusedBeforeAnyPush) {
  ArchiveBuilder builder;
  std::ifstream package(exampleApp() / "package.json");
  builder.addFile("package.json", std::string((std::istreambuf_iterator<char>(package)), std::istreambuf_iterator<char>()));
  builder.addFile("README.md", "no convex folder here\n");
  const size_t requests_before = standinRequests().size();
  const size_t jobs_before = std::distance(fs::directory_iterator(state_dir_ / "state/jobs"), fs::directory_iterator());
  auto refused = postDeploy("target=prod&deployment=" + kProdDeployment, builder.build(ArchiveBuilder::Format::kTarGz));
  EXPECT_EQ(refused.status, 422) << refused.body;
  EXPECT_EQ(refused.headers["Content-Type"], "application/problem+json");
  Json problem = Json::parse(refused.body);
  EXPECT_EQ(problem["reason"], "missing_functions_dir");
  EXPECT_EQ(standinRequests().size(), requests_before);
  EXPECT_EQ(std::distance(fs::directory_iterator(state_dir_ / "state/jobs"), fs::directory_iterator()), jobs_before);
}

TEST_F(DeployE2E, RequestsWithoutTheAgentTokenGet401) {
  auto health = httpRequest("GET", agent_->baseUrl() + "/healthz");
  EXPECT_EQ(health.status, 200);
  auto no_token = httpRequest("POST", agent_->baseUrl() + "/v1/deploys?target=prod&deployment=" + kProdDeployment,
                              {{"Content-Type", "application/gzip"}}, exampleBundle());
  EXPECT_EQ(no_token.status, 401);
  EXPECT_EQ(Json::parse(no_token.body)["reason"], "unauthorized");
  auto wrong_token = httpRequest("GET", agent_->baseUrl() + "/v1/deploys/dep_000000000000000000000000",
                                 {{"Authorization", "Bearer wrong-token-0123456789abcdef"}});
  EXPECT_EQ(wrong_token.status, 401);
}

TEST_F(DeployE2E, BadRequestsNameTheField) {
  auto no_target = postDeploy("deployment=" + kProdDeployment, exampleBundle());
  EXPECT_EQ(no_target.status, 400);
  EXPECT_EQ(Json::parse(no_target.body)["field"], "target");

  auto prod_key_for_dev = postDeploy("target=dev", exampleBundle(), {{"Convex-Deploy-Key", mintKey(kProdDeployment)}});
  EXPECT_EQ(prod_key_for_dev.status, 422);
  EXPECT_EQ(Json::parse(prod_key_for_dev.body)["reason"], "deploy_key_conflict");

  auto not_an_archive = postDeploy("target=prod&deployment=" + kProdDeployment, "just some text",
                                   {{"Content-Type", "text/plain"}});
  EXPECT_EQ(not_an_archive.status, 415);

  auto traversal = postDeploy("target=prod&deployment=" + kProdDeployment,
                              testsupport::exampleAppArchive()
                                  .addFile("../escape.txt", "x")
                                  .build(ArchiveBuilder::Format::kTarGz));
  EXPECT_EQ(traversal.status, 422);
  Json problem = Json::parse(traversal.body);
  EXPECT_EQ(problem["reason"], "path_traversal");
  EXPECT_EQ(problem["entry"], "../escape.txt");

  auto unknown = httpRequest("GET", agent_->baseUrl() + "/v1/deploys/dep_000000000000000000000000",
                             {{"Authorization", "Bearer " + kAgentToken}});
  EXPECT_EQ(unknown.status, 404);
}

}  // namespace

// The agent's limits and lifecycle, each test with its own stand-in and agent processes.
#include <gtest/gtest.h>

#include <chrono>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "support/archive_builder.h"
#include "support/e2e.h"
#include "support/secret_scan.h"
#include "support/server_process.h"

namespace fs = std::filesystem;
using testsupport::ArchiveBuilder;
using testsupport::httpRequest;
using testsupport::ServerProcess;
using Json = nlohmann::json;

namespace {

const std::string kAgentToken = "lifecycle-agent-token-0123456789";
const std::string kTeamToken = "lifecycle-team-token-0123456789";

class AgentLifecycle : public ::testing::Test {
 protected:
  void SetUp() override {
    state_dir_ = fs::temp_directory_path() / ("da-lifecycle-" + std::to_string(getpid()) + "-" +
                                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(state_dir_);
    standin_ = std::make_unique<ServerProcess>(testsupport::binaryDir() + "/bin/convex-standin",
                                               std::vector<std::string>{"--listen", "127.0.0.1:0", "--team-token", kTeamToken},
                                               std::map<std::string, std::string>{});
  }
  void TearDown() override {
    agent_.reset();
    standin_.reset();
    // Nothing the agent wrote or answered holds a secret it was given.
    scan_.addSecret(kAgentToken);
    scan_.addSecret(kTeamToken);
    scan_.expectClean(state_dir_);
    fs::remove_all(state_dir_);
  }

  void startAgent(std::vector<std::string> extra_args = {}, std::map<std::string, std::string> extra_env = {}) {
    auto args = testsupport::offlineAgentArgs(state_dir_ / "state", standin_->baseUrl());
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    extra_env.emplace("DEPLOY_AGENT_TOKEN", kAgentToken);
    fs::create_directories(state_dir_);
    agent_ = std::make_unique<ServerProcess>(testsupport::binaryDir() + "/bin/deploy-agent", args, extra_env,
                                             (state_dir_ / "agent.log").string());
  }

  std::string mintKey(const std::string& deployment) {
    std::string key = testsupport::mintStandinKey(standin_->baseUrl(), deployment);
    scan_.addSecret(key);
    return key;
  }

  testsupport::HttpResult post(const std::string& query, const std::string& body, const std::string& key) {
    return httpRequest("POST", agent_->baseUrl() + "/v1/deploys?" + query,
                       {{"Authorization", "Bearer " + kAgentToken}, {"Content-Type", "application/gzip"},
                        {"Convex-Deploy-Key", key}},
                       body);
  }

  Json report(const std::string& id, int wait_seconds) {
    auto result = httpRequest("GET", agent_->baseUrl() + "/v1/deploys/" + id + "?wait=" + std::to_string(wait_seconds),
                              {{"Authorization", "Bearer " + kAgentToken}});
    EXPECT_EQ(result.status, 200) << result.body;
    return Json::parse(result.body);
  }

  size_t jobCount() {
    const fs::path jobs = state_dir_ / "state/jobs";
    return fs::exists(jobs) ? std::distance(fs::directory_iterator(jobs), fs::directory_iterator()) : 0;
  }

  static std::string exampleBundle() {
    return testsupport::exampleAppArchive().build(ArchiveBuilder::Format::kTarGz);
  }

  fs::path state_dir_;
  std::unique_ptr<ServerProcess> standin_;
  std::unique_ptr<ServerProcess> agent_;
  testsupport::SecretScan scan_;
};

TEST_F(AgentLifecycle, SecretsAreGoneFromTheStartupEnvironmentAndHealthzNamesTheSandbox) {
  startAgent({}, {{"CONVEX_TEAM_TOKEN", kTeamToken}});
  // What a process of the same user would read (the agent is also non-dumpable, so it can't).
  std::ifstream in("/proc/" + std::to_string(agent_->pid()) + "/environ");
  const std::string environ((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(environ.empty());
  EXPECT_EQ(environ.find(kAgentToken), std::string::npos);
  EXPECT_EQ(environ.find(kTeamToken), std::string::npos);
  const Json health = Json::parse(httpRequest("GET", agent_->baseUrl() + "/healthz").body);
  EXPECT_EQ(health["sandbox"]["tier"], "namespaces") << health.dump();  // CI: root, namespaces allowed
  EXPECT_EQ(health["network"]["enforcement"], "network_namespace") << health.dump();
  const auto& facilities = health["sandbox"]["facilities"];
  for (const char* facility : {"user_ns", "mount_ns", "pid_ns", "seccomp", "no_new_privs"}) {
    EXPECT_NE(std::find(facilities.begin(), facilities.end(), facility), facilities.end()) << facility;
  }
}

TEST_F(AgentLifecycle, SandboxNoneMustBeChosenByNameAndIsWarnedInEveryReport) {
  startAgent({"--sandbox", "none"});
  EXPECT_EQ(Json::parse(httpRequest("GET", agent_->baseUrl() + "/healthz").body)["sandbox"]["tier"], "none");
  auto accepted = post("target=prod", testsupport::exampleAppArchive().build(ArchiveBuilder::Format::kTarGz),
                       mintKey("happy-otter-123"));
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const Json queued = Json::parse(accepted.body);
  const Json first = report(queued["id"], 0);
  EXPECT_EQ(first["sandbox"]["tier"], "none");
  ASSERT_FALSE(first["warnings"].empty()) << first.dump(2);
  EXPECT_NE(first["warnings"][0].get<std::string>().find("--sandbox=none"), std::string::npos) << first.dump(2);
}

TEST_F(AgentLifecycle, AHostNetworkMustBeChosenByNameAndIsWarnedInEveryReport) {
  startAgent({"--job-network", "host"});
  const Json health = Json::parse(httpRequest("GET", agent_->baseUrl() + "/healthz").body);
  EXPECT_EQ(health["network"]["enforcement"], "none") << health.dump();
  auto accepted = post("target=prod", testsupport::exampleAppArchive().build(ArchiveBuilder::Format::kTarGz),
                       mintKey("happy-otter-123"));
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const Json finished = report(Json::parse(accepted.body)["id"], 60);
  EXPECT_EQ(finished["status"], "succeeded") << finished.dump(2);
  EXPECT_EQ(finished["network"]["enforcement"], "none");
  EXPECT_EQ(finished["network"]["allowed"], Json::array()) << "no proxy ran, so none counted";
  ASSERT_FALSE(finished["warnings"].empty()) << finished.dump(2);
  EXPECT_NE(finished["warnings"].dump().find("--job-network=host"), std::string::npos) << finished.dump(2);
}

TEST_F(AgentLifecycle, ALandlockTierDeploySucceedsFromAPrivateStateDirectory) {
  // The Landlock tier's jobs reach their folder at its host path as their own uid, so the
  // agent lets them pass through (o+x) a state directory an operator made private, but not
  // list it (no o+r).
  const fs::path state = state_dir_ / "state";
  fs::create_directories(state);
  fs::permissions(state, fs::perms::owner_all, fs::perm_options::replace);
  startAgent({"--sandbox", "landlock"});
  auto accepted = post("target=prod", testsupport::exampleAppArchive().build(ArchiveBuilder::Format::kTarGz),
                       mintKey("happy-otter-123"));
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  Json done = report(Json::parse(accepted.body)["id"], 60);
  for (int attempt = 0; attempt < 3 && done.value("status", "") != "succeeded" && done.value("status", "") != "failed";
       ++attempt) {
    done = report(done["id"], 60);
  }
  EXPECT_EQ(done.value("status", ""), "succeeded") << done.dump(2);
  EXPECT_EQ(done.value("/sandbox/tier"_json_pointer, ""), "landlock");
  const auto perms = fs::status(state).permissions();
  EXPECT_NE(perms & fs::perms::others_exec, fs::perms::none);
  EXPECT_EQ(perms & fs::perms::others_read, fs::perms::none);
}

TEST_F(AgentLifecycle, AnUnknownSandboxTierIsAConfigError) {
  EXPECT_THROW(startAgent({"--sandbox", "chroot"}), std::runtime_error);
}

TEST_F(AgentLifecycle, OversizedBundleIsRefusedNamingTheLimitAndLeavesNothing) {
  startAgent({"--max-bundle-bytes", "1000"});
  auto refused = post("target=prod", exampleBundle(), mintKey("happy-otter-123"));
  EXPECT_EQ(refused.status, 413) << refused.body;
  Json problem = Json::parse(refused.body);
  EXPECT_EQ(problem["reason"], "too_large");
  EXPECT_EQ(problem["limit"], "max_archive_bytes");
  EXPECT_EQ(jobCount(), 0u);
}

TEST_F(AgentLifecycle, TooManyEntriesIsRefusedNamingTheLimit) {
  startAgent({"--max-entries", "5"});
  auto refused = post("target=prod", exampleBundle(), mintKey("happy-otter-123"));
  EXPECT_EQ(refused.status, 413) << refused.body;
  EXPECT_EQ(Json::parse(refused.body)["limit"], "max_entries");
  EXPECT_EQ(jobCount(), 0u);
}

TEST_F(AgentLifecycle, AcceptedDeployInterruptedByACrashIsReportedAfterRestart) {
  startAgent();
  auto accepted = post("target=prod", exampleBundle(), mintKey("happy-otter-123"));
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  // SIGKILL: no chance to finish or clean up, as in a crash or an OOM kill.
  kill(agent_->pid(), SIGKILL);
  agent_->stop();
  startAgent();
  Json after = report(id, 0);
  EXPECT_EQ(after["status"], "failed") << after.dump(2);
  EXPECT_EQ(after["error"]["reason"], "agent_restarted");
  EXPECT_EQ(after["target"], "prod");
}

TEST_F(AgentLifecycle, StopCancelsRunningDeploysAndReportsThem) {
  startAgent();
  auto accepted = post("target=prod", exampleBundle(), mintKey("happy-otter-123"));
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  EXPECT_EQ(agent_->stop(), 0);  // SIGTERM: a clean stop, npm's process group killed
  startAgent();
  Json after = report(id, 0);
  EXPECT_EQ(after["status"], "failed") << after.dump(2);
  EXPECT_EQ(after["error"]["reason"], "agent_stopped") << after.dump(2);
  EXPECT_FALSE(fs::exists(state_dir_ / "state/jobs" / id / "work"));
}

TEST_F(AgentLifecycle, RejectedTeamTokenFailsFastWithoutInstallingOrEchoingIt) {
  const std::string wrong_token = "not-the-stand-ins-team-token-42";
  startAgent({}, {{"CONVEX_TEAM_TOKEN", wrong_token}});
  auto accepted = httpRequest("POST", agent_->baseUrl() + "/v1/deploys?target=prod&deployment=happy-otter-123",
                              {{"Authorization", "Bearer " + kAgentToken}, {"Content-Type", "application/gzip"}},
                              exampleBundle());
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  Json done = report(Json::parse(accepted.body)["id"], 60);
  EXPECT_EQ(done["status"], "failed") << done.dump(2);
  EXPECT_EQ(done["phase"], "deploy_key");
  EXPECT_EQ(done["error"]["reason"], "deploy_key_unavailable");
  EXPECT_NE(done["error"]["message"].get<std::string>().find("HTTP 401"), std::string::npos) << done.dump(2);
  EXPECT_FALSE(done["timings_ms"].contains("install"));
  EXPECT_EQ(done.dump().find(wrong_token), std::string::npos);
}

TEST_F(AgentLifecycle, DevOnceRetryingForeverIsKilledAtTheCliTimeout) {
  // dev --once retries a 500 on start_push forever; only the agent's deadline ends it.
  auto fault = httpRequest("POST", standin_->baseUrl() + "/_standin/faults", {},
                           Json{{"method", "POST"}, {"path", "/api/deploy2/start_push"}, {"status", 500},
                                {"code", "InternalServerError"}, {"message", "try again"}, {"times", -1}}
                               .dump());
  ASSERT_EQ(fault.status, 200) << fault.body;
  startAgent({"--cli-timeout", "12"});
  auto accepted = post("target=dev", exampleBundle(), mintKey("brave-fox-456"));
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];

  // While the CLI is still retrying, GET /log already shows what it printed so far. The
  // report's own long poll (wait=1) paces the loop; it returns early once the deploy ends.
  bool saw_live_retry = false;
  for (int i = 0; i < 40 && !saw_live_retry; ++i) {
    Json now = report(id, 1);
    if (now["status"] != "running") continue;
    auto log = httpRequest("GET", agent_->baseUrl() + "/v1/deploys/" + id + "/log",
                           {{"Authorization", "Bearer " + kAgentToken}});
    saw_live_retry = log.status == 200 && log.body.find("retrying") != std::string::npos &&
                     report(id, 0)["status"] == "running";
  }
  EXPECT_TRUE(saw_live_retry) << "the push log was not readable while the CLI ran";

  Json done = report(id, 60);
  EXPECT_EQ(done["status"], "failed") << done.dump(2);
  EXPECT_EQ(done["error"]["reason"], "cli_timeout") << done.dump(2);
  EXPECT_EQ(done["error"]["retryable"], true) << "a deployment that is down now may be up later";
  EXPECT_TRUE(done["exit_code"].is_null());
}

TEST_F(AgentLifecycle, StopDuringAHungKeyMintIsPromptAndReported) {
  // The Management API takes the call and answers only after ten minutes.
  auto fault = httpRequest("POST", standin_->baseUrl() + "/_standin/faults", {},
                           Json{{"method", "POST"},
                                {"path", "/v1/deployments/happy-otter-123/create_deploy_key"},
                                {"delay_ms", 600000}}
                               .dump());
  ASSERT_EQ(fault.status, 200) << fault.body;
  startAgent({"--workers", "1"}, {{"CONVEX_TEAM_TOKEN", kTeamToken}});
  auto accepted = httpRequest("POST", agent_->baseUrl() + "/v1/deploys?target=prod&deployment=happy-otter-123",
                              {{"Authorization", "Bearer " + kAgentToken}, {"Content-Type", "application/gzip"}},
                              exampleBundle());
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  // With one worker, a second deploy waits in the queue behind the hung one.
  auto queued = post("target=prod", exampleBundle(), mintKey("happy-otter-123"));
  ASSERT_EQ(queued.status, 202) << queued.body;
  const std::string queued_id = Json::parse(queued.body)["id"];

  // The stand-in disarms the fault when the mint arrives; the report's long poll paces this.
  bool mint_in_flight = false;
  for (int i = 0; i < 30 && !mint_in_flight; ++i) {
    Json now = report(id, 1);
    ASSERT_NE(now["status"], "failed") << now.dump(2);
    mint_in_flight = Json::parse(httpRequest("GET", standin_->baseUrl() + "/_standin/faults").body).empty();
  }
  ASSERT_TRUE(mint_in_flight) << "the agent never called create_deploy_key";

  // Without cancellation the stop would wait out the HTTP timeout on every attempt (90 s).
  const auto stopping = std::chrono::steady_clock::now();
  EXPECT_EQ(agent_->stop(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, std::chrono::seconds(10));
  startAgent();
  Json after = report(id, 0);
  EXPECT_EQ(after["status"], "failed") << after.dump(2);
  EXPECT_EQ(after["phase"], "deploy_key") << after.dump(2);
  EXPECT_EQ(after["error"]["reason"], "agent_stopped") << after.dump(2);
  EXPECT_NE(after["error"]["message"].get<std::string>().find("minted"), std::string::npos) << after.dump(2);
  EXPECT_EQ(after.dump().find(kTeamToken), std::string::npos);

  Json never_started = report(queued_id, 0);
  EXPECT_EQ(never_started["status"], "failed") << never_started.dump(2);
  EXPECT_EQ(never_started["error"]["reason"], "agent_stopped") << never_started.dump(2);
  // What stays of either: the report (and the logs of what ran), never the upload or app.
  for (const std::string& job : {id, queued_id}) {
    EXPECT_FALSE(fs::exists(state_dir_ / "state/jobs" / job / "work")) << job;
    EXPECT_FALSE(fs::exists(state_dir_ / "state/jobs" / job / "bundle.upload")) << job;
    EXPECT_TRUE(fs::exists(state_dir_ / "state/jobs" / job / "report.json")) << job;
  }
}

}  // namespace

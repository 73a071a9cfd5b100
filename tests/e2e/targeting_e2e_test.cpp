// Every way a deploy names its target, end to end: the agent and the stand-in as processes,
// the real Convex CLI pushing. Each test checks what the Convex side saw (the stand-in's
// request log, projects, keys and env vars), not only the report, and that no secret the test
// handed over is in anything the agent wrote.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "support/agent_e2e.h"

namespace fs = std::filesystem;
using testsupport::httpRequest;
using Json = nlohmann::json;

namespace {

const std::string kAgentToken = "targeting-agent-token-0123456789";
const std::string kTeamToken = "targeting-team-token-0123456789";
const std::string kEnvSecret = "sk-targeting-env-value-5f2c91";
const std::string kSelfHosted = "own-backend";

class Targeting : public testsupport::AgentE2E {
 protected:
  Targeting() : AgentE2E("targeting", kAgentToken, kTeamToken, {"--self-hosted", kSelfHosted}) {}
  void SetUp() override {
    AgentE2E::SetUp();
    secrets_.push_back(kEnvSecret);
  }

  std::string oauthToken(const std::string& kind) {
    Json minted = standinPost("/_standin/oauth_tokens", {{"kind", kind}});
    secrets_.push_back(minted["token"]);
    return minted["token"];
  }

  static bool hasCall(const Json& report, const std::string& call) {
    return std::any_of(report["api_calls"].begin(), report["api_calls"].end(),
                       [&](const Json& entry) { return entry["call"] == call; });
  }
};

TEST_F(Targeting, AMintedKeyIsDeletedWhenTheJobEndsAlsoWhenThePushFails) {
  startAgent(true);
  const Json succeeded = deploy({{"target", "prod"}, {"deployment", "happy-otter-123"}});
  ASSERT_EQ(succeeded["status"], "succeeded") << succeeded.dump(2);
  EXPECT_EQ(succeeded["key_source"], "management_api");
  EXPECT_EQ(succeeded["deploy_key_deleted"], true) << succeeded.dump(2);
  EXPECT_TRUE(committedPushTo("happy-otter-123"));

  // The push is refused for good: the key minted for it goes all the same.
  addFault({{"path", "/api/deploy2/start_push"}, {"status", 400}, {"code", "BadPush"}, {"times", -1}});
  const Json failed = deploy({{"target", "prod"}, {"deployment", "happy-otter-123"}});
  ASSERT_EQ(failed["status"], "failed") << failed.dump(2);
  EXPECT_EQ(failed["phase"], "push") << failed.dump(2);
  EXPECT_EQ(failed["deploy_key_deleted"], true) << failed.dump(2);

  const auto deletions = requestsTo("/delete_deploy_key");
  ASSERT_EQ(deletions.size(), 2u);
  for (const auto& deletion : deletions) EXPECT_EQ(deletion["status"], 200) << deletion.dump();
  const Json keys = standinGet("/v1/deployments/happy-otter-123/list_deploy_keys", kTeamToken);
  for (const auto& key : keys) {
    const std::string name = key["name"];
    EXPECT_EQ(name.rfind("deploy-agent ", 0), std::string::npos) << "left behind: " << name;
  }
}

TEST_F(Targeting, ASessionProjectIsCreatedWithItsEnvAndItsUrlIsInTheReport) {
  startAgent(true);
  const Json finished = deploy({{"target", "prod"},
                                {"create_project", "session-4711"},
                                {"ttl_seconds", 3600},
                                {"env", {{"OPENAI_API_KEY", kEnvSecret}, {"APP_MODE", "preview"}}}});
  ASSERT_EQ(finished["status"], "succeeded") << finished.dump(2);
  ASSERT_TRUE(finished["project"].is_object()) << finished.dump(2);
  EXPECT_EQ(finished["project"]["name"], "session-4711");
  EXPECT_EQ(finished["project"]["created"], true);
  EXPECT_TRUE(finished["project"]["expires_at"].is_string()) << finished.dump(2);
  const std::string deployment = finished["deployment"]["name"];
  EXPECT_NE(deployment, "happy-otter-123");
  EXPECT_TRUE(finished["deployment"]["url"].is_string()) << finished.dump(2);
  EXPECT_EQ(finished["env"]["names"], Json({"APP_MODE", "OPENAI_API_KEY"})) << finished.dump(2);

  // The project exists once, holds the deployment, and the values reached it before the push.
  const Json projects = standinGet("/_standin/projects");
  const auto named = std::count_if(projects.begin(), projects.end(),
                                   [](const Json& p) { return p["name"] == "session-4711"; });
  EXPECT_EQ(named, 1);
  EXPECT_EQ(finished["project"]["id"], projects.back()["id"]);
  EXPECT_EQ(projects.back()["deployments"][0]["name"], deployment);
  const Json env = standinGet("/_standin/env/" + deployment);
  EXPECT_EQ(env["environmentVariables"]["OPENAI_API_KEY"], kEnvSecret);
  EXPECT_EQ(env["environmentVariables"]["APP_MODE"], "preview");
  EXPECT_TRUE(committedPushTo(deployment));
  EXPECT_EQ(finished.dump().find(kEnvSecret), std::string::npos);
  EXPECT_EQ(finished["deploy_key_deleted"], true);
}

TEST_F(Targeting, AnUnansweredCreateProjectIsFoundByNameAndNeverCreatedTwice) {
  startAgent(true);
  // The project is created, then the connection drops before the answer.
  addFault({{"path", "/v1/teams/{team}/create_project"}, {"drop_connection", true}, {"after_handling", true}});
  const Json finished = deploy({{"target", "dev"}, {"create_project", "flaky-session"}});
  ASSERT_EQ(finished["status"], "succeeded") << finished.dump(2);
  EXPECT_TRUE(hasCall(finished, "find_project")) << finished.dump(2);
  const Json projects = standinGet("/_standin/projects");
  EXPECT_EQ(std::count_if(projects.begin(), projects.end(), [](const Json& p) { return p["name"] == "flaky-session"; }), 1)
      << projects.dump(2);
  EXPECT_EQ(requestsTo("/create_project").size(), 1u);
  EXPECT_EQ(finished["project"]["id"], projects.back()["id"]);
  // No TTL asked for: no expiry, and the project stays.
  EXPECT_TRUE(finished["project"]["expires_at"].is_null());
}

TEST_F(Targeting, ProjectIdGoesToItsDefaultProdOrTheTokensDefaultDevDeployment) {
  startAgent(true);
  const Json prod = deploy({{"target", "prod"}, {"project", 1}});
  ASSERT_EQ(prod["status"], "succeeded") << prod.dump(2);
  EXPECT_EQ(prod["deployment"]["name"], "happy-otter-123");
  EXPECT_EQ(prod["project"]["id"], 1);
  const Json dev = deploy({{"target", "dev"}, {"project", "1"}});
  ASSERT_EQ(dev["status"], "succeeded") << dev.dump(2);
  EXPECT_EQ(dev["deployment"]["name"], "brave-fox-456");
  EXPECT_TRUE(committedPushTo("happy-otter-123"));
  EXPECT_TRUE(committedPushTo("brave-fox-456"));
  EXPECT_TRUE(hasCall(prod, "default_deployment"));
}

TEST_F(Targeting, ASelfHostedBackendIsPushedWithItsAdminKeyAndNoManagementApi) {
  startAgent(false);
  const std::string admin_key = standinGet("/_standin/admin_keys/" + kSelfHosted)["adminKey"];
  secrets_.push_back(admin_key);
  const Json finished = deploy({{"target", "prod"},
                                {"self_hosted_url", standin_->baseUrl()},
                                {"env", {{"OPENAI_API_KEY", kEnvSecret}}}},
                               {{"Convex-Admin-Key", admin_key}});
  ASSERT_EQ(finished["status"], "succeeded") << finished.dump(2);
  EXPECT_EQ(finished["key_source"], "admin_key");
  EXPECT_TRUE(committedPushTo(kSelfHosted));
  EXPECT_EQ(standinGet("/_standin/env/" + kSelfHosted)["environmentVariables"]["OPENAI_API_KEY"], kEnvSecret);
  for (const auto& request : standinGet("/_standin/requests")) {
    const std::string path = request["path"];
    EXPECT_NE(path.rfind("/v1/", 0), 0u) << "a Management API call: " << path;
    EXPECT_NE(path.rfind("/api/deployment/", 0), 0u) << "a provisioning call: " << path;
  }
}

TEST_F(Targeting, AUsersOAuthTeamTokenIsUsedPerRequestAndItsKeyIsNeverDeleted) {
  startAgent(false);  // no team token of its own: the request brings the user's
  const std::string token = oauthToken("team");
  const Json finished = deploy({{"target", "prod"}, {"deployment", "happy-otter-123"}}, {{"Convex-Access-Token", token}});
  ASSERT_EQ(finished["status"], "succeeded") << finished.dump(2);
  EXPECT_FALSE(finished.contains("deploy_key_deleted") && finished["deploy_key_deleted"] == true) << finished.dump(2);
  EXPECT_TRUE(requestsTo("/delete_deploy_key").empty());
  // The grant still works: deleting the "key" would have revoked it.
  EXPECT_EQ(httpRequest("GET", standin_->baseUrl() + "/v1/token_details", {{"Authorization", "Bearer " + token}}).status, 200);
  EXPECT_TRUE(committedPushTo("happy-otter-123"));

  // A user's token can also create the session project, in the token's own team.
  const Json created = deploy({{"target", "dev"}, {"create_project", "oauth-session"}}, {{"Convex-Access-Token", token}});
  ASSERT_EQ(created["status"], "succeeded") << created.dump(2);
  EXPECT_TRUE(hasCall(created, "token_details"));
}

TEST_F(Targeting, AnOAuthProjectTokenIsTheDeployKeyItself) {
  startAgent(false);
  const std::string token = oauthToken("project");
  const Json finished = deploy({{"target", "prod"}}, {{"Convex-Deploy-Key", token}});
  ASSERT_EQ(finished["status"], "succeeded") << finished.dump(2);
  EXPECT_EQ(finished["key_source"], "header");
  EXPECT_TRUE(committedPushTo("happy-otter-123"));
}

TEST_F(Targeting, ARateLimitIsRetriedAfterRetryAfterAndEveryAttemptIsCounted) {
  startAgent(true);
  addFault({{"path", "/v1/deployments/happy-otter-123/create_deploy_key"}, {"status", 429}, {"retry_after", "1"}});
  addFault({{"path", "/api/v1/update_environment_variables"}, {"status", 503}});
  const Json finished = deploy({{"target", "prod"}, {"deployment", "happy-otter-123"}, {"env", {{"A_KEY", kEnvSecret}}}});
  ASSERT_EQ(finished["status"], "succeeded") << finished.dump(2);
  for (const char* call : {"create_deploy_key", "update_environment_variables"}) {
    const auto entry = std::find_if(finished["api_calls"].begin(), finished["api_calls"].end(),
                                    [&](const Json& e) { return e["call"] == call; });
    ASSERT_NE(entry, finished["api_calls"].end()) << call << finished.dump(2);
    EXPECT_EQ((*entry)["attempts"], 2) << entry->dump();
    EXPECT_EQ((*entry)["ok"], true);
  }
  const auto mint = *std::find_if(finished["api_calls"].begin(), finished["api_calls"].end(),
                                  [](const Json& e) { return e["call"] == "create_deploy_key"; });
  const std::string first = mint["outcomes"][0];
  EXPECT_NE(first.find("HTTP 429"), std::string::npos) << first;
  EXPECT_NE(first.find("retried after 1000 ms"), std::string::npos) << first;  // Retry-After: 1
}

TEST_F(Targeting, ConvexsErrorCodeIsKeptAndSaysWhetherARetryCanHelp) {
  startAgent(true);
  addFault({{"path", "/v1/teams/{team}/create_project"},
            {"status", 400},
            {"code", "ProjectQuotaReached"},
            {"message", "Team has reached its project quota"}});
  const Json quota = deploy({{"target", "prod"}, {"create_project", "one-too-many"}});
  ASSERT_EQ(quota["status"], "failed") << quota.dump(2);
  EXPECT_EQ(quota["error"]["code"], "ProjectQuotaReached");
  EXPECT_EQ(quota["error"]["retryable"], false);
  EXPECT_NE(quota["error"]["message"].get<std::string>().find("project quota"), std::string::npos) << quota.dump(2);
  EXPECT_EQ(requestsTo("/create_project").size(), 1u);  // a 400 is not retried
  EXPECT_EQ(standinGet("/_standin/projects").size(), 1u);  // only the seeded one

  const Json unknown = deploy({{"target", "prod"}, {"deployment", "no-such-deployment"}});
  ASSERT_EQ(unknown["status"], "failed") << unknown.dump(2);
  EXPECT_EQ(unknown["error"]["code"], "DeploymentNotFound") << unknown.dump(2);
  EXPECT_EQ(unknown["error"]["retryable"], false);

  const std::string bogus_token = "not-a-token-of-this-team-93ae1f";
  secrets_.push_back(bogus_token);
  const Json unauthenticated = deploy({{"target", "prod"}, {"deployment", "happy-otter-123"}},
                                      {{"Convex-Access-Token", bogus_token}});
  ASSERT_EQ(unauthenticated["status"], "failed") << unauthenticated.dump(2);
  EXPECT_EQ(unauthenticated["error"]["code"], "Unauthenticated") << unauthenticated.dump(2);
  EXPECT_EQ(unauthenticated["error"]["retryable"], false);

  // A Management API that stays down is retryable, and the agent gives up in bounded time.
  const size_t mints_before = requestsTo("/happy-otter-123/create_deploy_key").size();
  addFault({{"path", "/v1/deployments/happy-otter-123/create_deploy_key"}, {"status", 502}, {"times", -1}});
  const Json down = deploy({{"target", "prod"}, {"deployment", "happy-otter-123"}});
  ASSERT_EQ(down["status"], "failed") << down.dump(2);
  EXPECT_EQ(down["error"]["retryable"], true) << down.dump(2);
  EXPECT_EQ(requestsTo("/happy-otter-123/create_deploy_key").size(), mints_before + 1)
      << "a mint that may have happened is not repeated";
}

TEST_F(Targeting, APreviewIsClaimedWithTheCallersPreviewKeyAndPushedToAlone) {
  startAgent(false);
  const std::string preview_key =
      standinPost("/v1/projects/1/create_preview_deploy_key", {{"name", "ci"}}, kTeamToken)["previewDeployKey"];
  secrets_.push_back(preview_key);
  const Json finished = deploy({{"target", "prod"}, {"preview", "feature-login"}}, {{"Convex-Deploy-Key", preview_key}});
  ASSERT_EQ(finished["status"], "succeeded") << finished.dump(2);
  EXPECT_EQ(finished["preview"]["name"], "feature-login") << finished.dump(2);
  EXPECT_EQ(finished["preview"]["is_new"], true);
  const std::string deployment = finished["deployment"]["name"];
  EXPECT_NE(deployment, "happy-otter-123");
  EXPECT_TRUE(committedPushTo(deployment));
  EXPECT_FALSE(committedPushTo("happy-otter-123"));
  const Json projects = standinGet("/_standin/projects");
  bool found = false;
  for (const auto& d : projects[0]["deployments"]) {
    if (d["name"] == deployment) {
      found = true;
      EXPECT_EQ(d["type"], "preview");
      EXPECT_EQ(d["previewIdentifier"], "feature-login");
    }
  }
  EXPECT_TRUE(found) << projects.dump(2);

  // The same name again replaces that preview, as --preview-create does; when that claim gets
  // no answer, the agent takes what it made instead of replacing it once more.
  addFault({{"path", "/api/claim_preview_deployment"}, {"drop_connection", true}, {"after_handling", true}});
  const Json again = deploy({{"target", "prod"}, {"preview", "feature-login"}}, {{"Convex-Deploy-Key", preview_key}});
  ASSERT_EQ(again["status"], "succeeded") << again.dump(2);
  EXPECT_NE(again["deployment"]["name"], deployment);
  EXPECT_EQ(again["preview"]["is_new"], false) << again.dump(2);
  int live_previews = 0;
  const Json after = standinGet("/_standin/projects");
  for (const auto& d : after[0]["deployments"]) {
    if (d["previewIdentifier"] == "feature-login") ++live_previews;
  }
  EXPECT_EQ(live_previews, 1);
  EXPECT_TRUE(committedPushTo(again["deployment"]["name"]));
}

TEST_F(Targeting, APreviewForAProjectMintsAPreviewKeyAndDeletesIt) {
  startAgent(true);
  const Json finished = deploy({{"target", "prod"}, {"project", 1}, {"preview", "pr-17"}, {"env", {{"A_KEY", kEnvSecret}}}});
  ASSERT_EQ(finished["status"], "succeeded") << finished.dump(2);
  EXPECT_EQ(finished["preview"]["name"], "pr-17");
  EXPECT_EQ(finished["deploy_key_deleted"], true) << finished.dump(2);
  const std::string deployment = finished["deployment"]["name"];
  EXPECT_TRUE(committedPushTo(deployment));
  EXPECT_EQ(standinGet("/_standin/env/" + deployment)["environmentVariables"]["A_KEY"], kEnvSecret);
  ASSERT_EQ(requestsTo("/create_preview_deploy_key").size(), 1u);
  const auto deletions = requestsTo("/delete_preview_deploy_key");
  ASSERT_EQ(deletions.size(), 1u);
  EXPECT_EQ(deletions[0]["status"], 200);
  EXPECT_TRUE(standinGet("/v1/projects/1/list_preview_deploy_keys", kTeamToken)["items"].empty());
}

TEST_F(Targeting, AProjectsTimeToLiveAndAMintedKeyOutliveAKilledAgent) {
  startAgent(true);
  auto accepted = postWithOptions({{"target", "prod"}, {"create_project", "short-lived"}, {"ttl_seconds", 8}});
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  // Killed once the project exists and its key is minted (the job is installing by then).
  ASSERT_TRUE(standinSaw("POST", "/v1/deployments/{name}/create_deploy_key"));
  agent_->kill();
  ASSERT_TRUE(requestsTo("/delete").empty()) << "nothing was deleted before the crash";

  startAgent(true);
  const Json after = report(id, 0);
  EXPECT_EQ(after["status"], "failed") << after.dump(2);
  EXPECT_EQ(after["error"]["reason"], "agent_restarted") << after.dump(2);
  // The key goes at start-up; the project when its time is up, a few seconds later.
  ASSERT_TRUE(standinSaw("POST", "/v1/projects/{id}/delete", 40000));
  const auto key_deletions = requestsTo("/delete_deploy_key");
  ASSERT_EQ(key_deletions.size(), 1u);
  EXPECT_EQ(key_deletions[0]["status"], 200);
  const Json projects = standinGet("/_standin/projects?deleted=true");
  const auto project = std::find_if(projects.begin(), projects.end(), [](const Json& p) { return p["name"] == "short-lived"; });
  ASSERT_NE(project, projects.end());
  EXPECT_EQ((*project)["deleted"], true);
  // Done deletions are forgotten: nothing is left to resume at the next start.
  EXPECT_TRUE(fs::is_empty(state_dir_ / "state/cleanups")) << "pending deletions left";
}

TEST_F(Targeting, ConflictingTargetsAreRefusedNamingBothAndLeaveNothing) {
  startAgent(true);
  auto both = postWithOptions({{"target", "prod"}, {"deployment", "happy-otter-123"}}, {}, "deployment=brave-fox-456");
  EXPECT_EQ(both.status, 400) << both.body;
  EXPECT_NE(both.body.find("options.deployment"), std::string::npos) << both.body;
  auto two_targets = postWithOptions({{"target", "prod"}, {"deployment", "happy-otter-123"}, {"create_project", "x"}});
  EXPECT_EQ(two_targets.status, 400) << two_targets.body;
  EXPECT_NE(two_targets.body.find("create_project,deployment"), std::string::npos) << two_targets.body;
  auto env_secret = postWithOptions({{"target", "prod"}, {"deployment", "happy-otter-123"}, {"env", {{"1BAD", kEnvSecret}}}});
  EXPECT_EQ(env_secret.status, 400) << env_secret.body;
  EXPECT_EQ(env_secret.body.find(kEnvSecret), std::string::npos) << env_secret.body;
  EXPECT_TRUE(standinGet("/_standin/requests").empty()) << "a refused request reached Convex";
  const fs::path jobs = state_dir_ / "state/jobs";
  EXPECT_TRUE(!fs::exists(jobs) || fs::is_empty(jobs));
}

}  // namespace

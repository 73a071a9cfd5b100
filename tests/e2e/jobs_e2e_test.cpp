// The life of a job as a caller sees it, end to end: cancel in every phase (and what is left
// after), idempotent retries across a restart, and kill -9 with nothing finished lost.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>

#include "support/agent_e2e.h"
#include "support/npm_registry.h"

namespace fs = std::filesystem;
using testsupport::httpRequest;
using Json = nlohmann::json;

namespace {

const std::string kAgentToken = "jobs-agent-token-0123456789";
const std::string kTeamToken = "jobs-team-token-0123456789";

class Jobs : public testsupport::AgentE2E {
 protected:
  Jobs() : AgentE2E("jobs", kAgentToken, kTeamToken) {}

  std::string accept(const Json& options, std::map<std::string, std::string> headers = {}) {
    auto accepted = postWithOptions(options, std::move(headers));
    EXPECT_EQ(accepted.status, 202) << accepted.body;
    return accepted.status == 202 ? Json::parse(accepted.body)["id"].get<std::string>() : std::string();
  }

  Json cancel(const std::string& id) {
    auto answer = agentCall("POST", "/v1/deploys/" + id + "/cancel");
    EXPECT_EQ(answer.status, 200) << answer.body;
    return answer.status == 200 ? Json::parse(answer.body) : Json::object();
  }

  void expectCancelledIn(const Json& report, const std::string& phase) {
    EXPECT_EQ(report["status"], "cancelled") << report.dump(2);
    EXPECT_EQ(report["phase"], phase) << report.dump(2);
    EXPECT_EQ(report["error"]["reason"], "cancelled") << report.dump(2);
    const std::string id = report["id"];
    EXPECT_FALSE(fs::exists(state_dir_ / "state/jobs" / id / "work")) << "its workspace is left";
    EXPECT_FALSE(fs::exists(state_dir_ / "state/jobs" / id / "bundle.upload"));
  }
};

TEST_F(Jobs, CancelWhileQueuedAndWhileTheKeyIsBeingMinted) {
  // The mint hangs; with one worker the second deploy waits behind the first.
  addFault({{"method", "POST"}, {"path", "/v1/deployments/happy-otter-123/create_deploy_key"}, {"delay_ms", 600000}});
  startAgent(true, {"--workers", "1"});
  const std::string minting = accept({{"target", "prod"}, {"deployment", "happy-otter-123"}});
  const std::string queued = accept({{"target", "prod"}, {"deployment", "happy-otter-123"}});
  ASSERT_TRUE(faultsTaken()) << "the agent never called create_deploy_key";

  expectCancelledIn(cancel(queued), "queued");
  const Json stopped = cancel(minting);
  expectCancelledIn(stopped, "deploy_key");
  EXPECT_EQ(stopped["deploy_key_deleted"], true) << "its pending deletion was carried out: " << stopped.dump(2);
  // Idempotent: the same report again, nothing changed.
  EXPECT_EQ(cancel(minting), stopped);
  EXPECT_TRUE(standinGet("/_standin/pushes").empty());
}

TEST_F(Jobs, CancelDuringInstallStopsNpm) {
  testsupport::NpmRegistry registry;
  registry.start();
  const fs::path cache = fs::path(testsupport::toolchainDir()) / "npm-cache";
  registry.servePackagesOfLockfile(testsupport::exampleAppDir() / "package-lock.json", cache);
  registry.holdRequests();
  // Online from the held registry, with an empty npm cache: install waits on its first request.
  startAgent(false, {"--npm-registry", registry.url(), "--npm-cache", (state_dir_ / "npm-cache").string()}, false);
  const std::string id = accept({{"target", "prod"}}, {{"Convex-Deploy-Key", mintKey("happy-otter-123")}});
  ASSERT_TRUE(registry.waitUntilARequestIsHeld(std::chrono::seconds(60))) << "npm never asked the registry";
  expectCancelledIn(cancel(id), "install");
  registry.releaseRequests();
  EXPECT_TRUE(standinGet("/_standin/pushes").empty());
}

TEST_F(Jobs, CancelWhileTheEnvironmentIsBeingSetAbandonsTheCallAndPushesNothing) {
  const std::string value = "env-value-that-is-a-secret-0123456789";
  secrets_.push_back(value);
  addFault({{"method", "POST"}, {"path", "/api/v1/update_environment_variables"}, {"delay_ms", 600000}});
  startAgent(true);
  const std::string id = accept({{"target", "prod"}, {"deployment", "happy-otter-123"}, {"env", {{"OPENAI_API_KEY", value}}}});
  ASSERT_TRUE(faultsTaken()) << "the agent never set the environment";
  const Json stopped = cancel(id);
  expectCancelledIn(stopped, "env");
  EXPECT_EQ(stopped["deploy_key_deleted"], true) << stopped.dump(2);
  EXPECT_TRUE(standinGet("/_standin/pushes").empty()) << "nothing was pushed";
}

TEST_F(Jobs, CancelDuringThePushKillsTheCliAndDeletesWhatTheJobCreated) {
  // The CLI's upload to the deployment hangs: the push is under way.
  addFault({{"method", "POST"}, {"path", "/api/deploy2/start_push"}, {"delay_ms", 600000}});
  startAgent(true);
  const std::string id = accept({{"target", "prod"}, {"create_project", "cancelled-session"}});
  ASSERT_TRUE(faultsTaken()) << "the CLI never reached the deployment";
  const Json stopped = cancel(id);
  expectCancelledIn(stopped, "push");
  EXPECT_EQ(stopped["deploy_key_deleted"], true);
  // The project exists only for this job, and goes with it.
  ASSERT_TRUE(standinSaw("POST", "/v1/projects/{id}/delete"));
  const Json projects = standinGet("/_standin/projects");
  EXPECT_TRUE(std::none_of(projects.begin(), projects.end(), [](const Json& p) { return p["name"] == "cancelled-session"; }))
      << projects.dump(2);
  EXPECT_TRUE(standinGet("/_standin/pushes").empty()) << "nothing was pushed";
}

TEST_F(Jobs, TheReportSaysWhichModulesAndFunctionsThePushCreatedChangedAndRemoved) {
  startAgent(true);
  const std::string legacy = "import { query } from \"./_generated/server\";\n"
                             "export const old = query({ args: {}, handler: async () => \"old\" });\n";
  bundle_ = testsupport::exampleAppArchive().addFile("convex/legacy.ts", legacy).build(testsupport::ArchiveBuilder::Format::kTarGz);
  const Json first = finalReport(accept({{"target", "prod"}, {"deployment", "happy-otter-123"}}));
  ASSERT_EQ(first["status"], "succeeded") << first.dump(2);
  const Json& created = first["pushed"]["modules"];
  EXPECT_EQ(created["created"], Json::array({"channels.js", "crons.js", "http.js", "legacy.js", "messages.js", "summaries.js"}))
      << first["pushed"].dump(2);
  EXPECT_EQ(created["changed"], Json::array());
  EXPECT_EQ(created["removed"], Json::array());
  EXPECT_EQ(created["unchanged"], 0);
  const Json& first_functions = first["pushed"]["functions"];
  EXPECT_EQ(first_functions["created"],
            Json::array({"channels.js:create", "channels.js:list", "legacy.js:old", "messages.js:get", "messages.js:list",
                         "messages.js:pruneOld", "messages.js:search", "messages.js:send", "messages.js:setSummary",
                         "summaries.js:summarize"}))
      << first["pushed"].dump(2);

  // The next generation: one module gone, one new, one with another function.
  std::ifstream channels_file(testsupport::exampleAppDir() / "convex/channels.ts");
  std::string channels((std::istreambuf_iterator<char>(channels_file)), std::istreambuf_iterator<char>());
  channels += "\nexport const count = query({ args: {}, handler: async (ctx) => (await ctx.db.query(\"channels\").collect()).length });\n";
  bundle_ = testsupport::exampleAppArchive()
                .replaceFile("convex/channels.ts", channels)
                .addFile("convex/ping.ts", "import { query } from \"./_generated/server\";\n"
                                           "export const ping = query({ args: {}, handler: async () => \"pong\" });\n")
                .build(testsupport::ArchiveBuilder::Format::kTarGz);
  const Json second = finalReport(accept({{"target", "prod"}, {"deployment", "happy-otter-123"}}));
  ASSERT_EQ(second["status"], "succeeded") << second.dump(2);
  const Json& diff = second["pushed"]["modules"];
  EXPECT_EQ(diff["created"], Json::array({"ping.js"})) << second["pushed"].dump(2);
  EXPECT_EQ(diff["changed"], Json::array({"channels.js"})) << second["pushed"].dump(2);
  EXPECT_EQ(diff["removed"], Json::array({"legacy.js"})) << second["pushed"].dump(2);
  EXPECT_EQ(diff["unchanged"], 4) << second["pushed"].dump(2);
  const Json& functions = second["pushed"]["functions"];
  EXPECT_EQ(functions["created"], Json::array({"channels.js:count", "ping.js:ping"})) << functions.dump(2);
  EXPECT_EQ(functions["removed"], Json::array({"legacy.js:old"})) << functions.dump(2);
  // Convex compares code by module: both functions of the changed module count as changed.
  EXPECT_EQ(functions["changed"], Json::array({"channels.js:create", "channels.js:list"})) << functions.dump(2);
  EXPECT_EQ(functions["unchanged"], 7) << functions.dump(2);
  // Asked of the deployment, before and after the push: two calls of each in the report.
  size_t hashes = 0, listings = 0;
  for (const auto& call : second["api_calls"]) {
    hashes += call["call"] == "get_config_hashes" && call["ok"] == true;
    listings += call["call"] == "function_spec" && call["ok"] == true;
  }
  EXPECT_EQ(hashes, 2u) << second["api_calls"].dump(2);
  EXPECT_EQ(listings, 2u) << second["api_calls"].dump(2);
}

TEST_F(Jobs, KillNineLosesNothingFinishedAndAnIdempotentRetryFindsItsJob) {
  startAgent(true);
  const std::map<std::string, std::string> idempotent{{"Idempotency-Key", "generation-981"}};
  const std::string done = accept({{"target", "prod"}, {"deployment", "happy-otter-123"}}, idempotent);
  const Json finished = finalReport(done);
  ASSERT_EQ(finished["status"], "succeeded") << finished.dump(2);
  const std::string log = agentCall("GET", "/v1/deploys/" + done + "/log").body;
  ASSERT_NE(log.find("Deployed Convex functions"), std::string::npos) << log;

  addFault({{"method", "POST"}, {"path", "/v1/deployments/happy-otter-123/create_deploy_key"}, {"delay_ms", 600000}});
  const std::string interrupted = accept({{"target", "prod"}, {"deployment", "happy-otter-123"}});
  ASSERT_TRUE(faultsTaken());
  agent_->kill();

  startAgent(true);
  EXPECT_EQ(report(done, 0), finished) << "a finished report survives kill -9 unchanged";
  EXPECT_EQ(agentCall("GET", "/v1/deploys/" + done + "/log").body, log);
  const Json lost = report(interrupted, 0);
  EXPECT_EQ(lost["status"], "failed") << lost.dump(2);
  EXPECT_EQ(lost["error"]["reason"], "agent_restarted");
  EXPECT_EQ(lost["error"]["retryable"], true);
  // The client retries its request after the restart: the same job, not a second deploy.
  auto retried = postWithOptions({{"target", "prod"}, {"deployment", "happy-otter-123"}}, idempotent);
  ASSERT_EQ(retried.status, 200) << retried.body;
  EXPECT_EQ(Json::parse(retried.body)["id"], done);
  auto listed = Json::parse(agentCall("GET", "/v1/deploys").body);
  ASSERT_EQ(listed["items"].size(), 2u);
  EXPECT_EQ(listed["items"][0]["id"], interrupted);
  EXPECT_EQ(listed["items"][1]["id"], done);
}

TEST_F(Jobs, EventsStreamEveryPhaseLogLineAndTheReportAndResumeWithNothingLostOrRepeated) {
  // The push waits 3 s at the deployment, so the stream can be dropped while the job runs.
  addFault({{"method", "POST"}, {"path", "/api/deploy2/start_push"}, {"delay_ms", 3000}});
  startAgent(true);
  const std::string id = accept({{"target", "prod"}, {"deployment", "happy-otter-123"}});
  // Read until the push has started, then drop the connection.
  auto first = readEvents(id, {}, SIZE_MAX, SIZE_MAX);
  ASSERT_EQ(first.status, 200);
  ASSERT_TRUE(first.ended) << "the stream ends after the report";
  // What a live client saw in full: ids 1..N in order, phases in order, log lines, the report last.
  ASSERT_GE(first.events.size(), 5u);
  std::vector<std::string> phases;
  size_t log_lines = 0;
  for (size_t i = 0; i < first.events.size(); ++i) {
    const auto& event = first.events[i];
    EXPECT_EQ(event.id, i + 1) << "ids are consecutive";
    if (event.type == "phase") phases.push_back(event.data["phase"]);
    if (event.type == "log") ++log_lines;
  }
  EXPECT_EQ(first.events.back().type, "report");
  EXPECT_EQ(first.events.back().data["status"], "succeeded");
  EXPECT_EQ(first.events.back().data, report(id, 0));
  EXPECT_EQ(phases, (std::vector<std::string>{"queued", "deploy_key", "install", "push", "done"}));
  EXPECT_GT(log_lines, 0u);

  // Dropped after 3 events and resumed with Last-Event-ID: the rest, exactly.
  auto head = readEvents(id, {}, 3);
  ASSERT_EQ(head.events.size(), 3u);
  auto rest = readEvents(id, std::to_string(head.events.back().id));
  ASSERT_TRUE(rest.ended);
  ASSERT_EQ(head.events.size() + rest.events.size(), first.events.size());
  for (size_t i = 0; i < rest.events.size(); ++i) EXPECT_EQ(rest.events[i].id, head.events.size() + i + 1);

  // After a restart of the agent: the same events, the same ids.
  agent_->stop();
  startAgent(true);
  auto again = readEvents(id, "2");
  ASSERT_TRUE(again.ended);
  ASSERT_EQ(again.events.size(), first.events.size() - 2);
  for (size_t i = 0; i < again.events.size(); ++i) {
    EXPECT_EQ(again.events[i].id, first.events[i + 2].id);
    EXPECT_EQ(again.events[i].type, first.events[i + 2].type);
    EXPECT_EQ(again.events[i].data, first.events[i + 2].data);
  }
  EXPECT_EQ(agentCall("GET", "/v1/deploys/" + id + "/events", {{"Last-Event-ID", "x"}}).status, 400);
}

TEST_F(Jobs, AnIdleStreamGetsHeartbeatsAndStreamsPastTheCapAreRefused) {
  addFault({{"method", "POST"}, {"path", "/v1/deployments/happy-otter-123/create_deploy_key"}, {"delay_ms", 600000}});
  startAgent(true, {"--event-heartbeat-seconds", "1", "--max-event-streams", "1"});
  const std::string id = accept({{"target", "prod"}, {"deployment", "happy-otter-123"}});
  ASSERT_TRUE(faultsTaken());
  // The only stream place is taken while this stream is open ...
  auto held = std::async(std::launch::async, [&] { return readEvents(id, {}, SIZE_MAX, 2); });
  bool open = false;
  for (int i = 0; i < 2000 && !open; ++i) {
    open = httpRequest("GET", agent_->baseUrl() + "/metrics").body.find("deploy_agent_sse_streams_open 1") !=
           std::string::npos;
  }
  ASSERT_TRUE(open);
  // ... so a second stream is refused.
  auto refused = agentCall("GET", "/v1/deploys/" + id + "/events");
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(Json::parse(refused.body)["reason"], "too_many_streams");
  const auto idle = held.get();
  EXPECT_EQ(idle.status, 200);
  EXPECT_EQ(idle.heartbeats, 2u) << "an idle stream is kept open with comment lines";
  EXPECT_FALSE(idle.ended);
  EXPECT_EQ(agentCall("POST", "/v1/deploys/" + id + "/cancel").status, 200);
}

}  // namespace

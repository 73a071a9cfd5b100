// What an orchestrator sees of the agent: readiness, metrics (parsed by Prometheus' own Python
// parser), draining on SIGTERM, and JSON logs.
#include <gtest/gtest.h>

#include <signal.h>
#include <stdio.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/agent_e2e.h"

namespace fs = std::filesystem;
using testsupport::httpRequest;
using Json = nlohmann::json;

namespace {

const std::string kAgentToken = "operations-agent-token-0123456789";
const std::string kTeamToken = "operations-team-token-0123456789";

class Operations : public testsupport::AgentE2E {
 protected:
  Operations() : AgentE2E("operations", kAgentToken, kTeamToken) {}

  std::string accept(const Json& options) {
    auto accepted = postWithOptions(options);
    EXPECT_EQ(accepted.status, 202) << accepted.body;
    return accepted.status == 202 ? Json::parse(accepted.body)["id"].get<std::string>() : std::string();
  }

  // GET /metrics through prometheus_client's text parser: {"name{label=value,...}": value}.
  Json parsedMetrics() {
    auto answer = httpRequest("GET", agent_->baseUrl() + "/metrics");
    EXPECT_EQ(answer.status, 200);
    EXPECT_EQ(answer.headers["Content-Type"].rfind("text/plain; version=0.0.4", 0), 0u) << answer.headers["Content-Type"];
    const fs::path text = state_dir_ / "metrics.txt";
    std::ofstream(text) << answer.body;
    const std::string script =
        "import json,sys\n"
        "from prometheus_client.parser import text_string_to_metric_families as parse\n"
        "out={}\n"
        "for family in parse(open(sys.argv[1]).read()):\n"
        "  for s in family.samples:\n"
        "    out[s.name+'{'+','.join(k+'='+v for k,v in sorted(s.labels.items()))+'}']=s.value\n"
        "print(json.dumps(out))\n";
    std::ofstream(state_dir_ / "parse.py") << script;
    // Debian's python3, where python3-prometheus-client is installed.
    const std::string command = "/usr/bin/python3 " + (state_dir_ / "parse.py").string() + " " + text.string();
    FILE* pipe = ::popen(command.c_str(), "r");
    EXPECT_NE(pipe, nullptr);
    std::string output;
    char buffer[4096];
    while (pipe && fgets(buffer, sizeof buffer, pipe)) output += buffer;
    const int status = pipe ? ::pclose(pipe) : -1;
    EXPECT_EQ(status, 0) << "the Prometheus parser refused /metrics:\n" << answer.body;
    return status == 0 ? Json::parse(output) : Json::object();
  }

  // The main thread takes the signal asynchronously: ask until /readyz says so (bounded).
  bool draining() {
    for (int i = 0; i < 5000; ++i) {
      if (readyz().value("draining", false)) return true;
    }
    return false;
  }

  Json readyz() {
    auto answer = httpRequest("GET", agent_->baseUrl() + "/readyz");
    Json body = Json::parse(answer.body);
    body["http_status"] = answer.status;
    return body;
  }
};

TEST_F(Operations, ReadinessFollowsTheQueueAndMetricsCountWhatHappened) {
  startAgent(true, {"--workers", "1", "--max-queued", "1"});
  Json ready = readyz();
  EXPECT_EQ(ready["http_status"], 200) << ready.dump(2);
  EXPECT_EQ(ready["ready"], true);
  EXPECT_EQ(ready["toolchain"]["convex_cli"], "1.49.0");
  EXPECT_EQ(ready["toolchain"]["node"].get<std::string>().rfind("v22.", 0), 0u) << ready.dump(2);
  EXPECT_EQ(ready["sandbox"]["tier"], "namespaces");

  // One deploy hangs minting its key; the next fills the queue.
  addFault({{"method", "POST"}, {"path", "/v1/deployments/happy-otter-123/create_deploy_key"}, {"delay_ms", 600000}});
  const std::string running = accept({{"target", "prod"}, {"deployment", "happy-otter-123"}});
  ASSERT_TRUE(faultsTaken());
  const std::string queued = accept({{"target", "prod"}, {"deployment", "happy-otter-123"}});
  ready = readyz();
  EXPECT_EQ(ready["http_status"], 503) << ready.dump(2);
  ASSERT_EQ(ready["reasons"].size(), 1u) << ready.dump(2);
  EXPECT_NE(ready["reasons"][0].get<std::string>().find("queue is full"), std::string::npos);

  // A request is counted just after its answer is sent: the last one may need a moment.
  Json metrics = parsedMetrics();
  for (int i = 0; i < 20 && metrics["deploy_agent_http_requests_total{code=503,route=/readyz}"] != 1; ++i) {
    metrics = parsedMetrics();
  }
  EXPECT_EQ(metrics["deploy_agent_queue_depth{}"], 1) << metrics.dump(2);
  EXPECT_EQ(metrics["deploy_agent_jobs_running{}"], 1);
  EXPECT_EQ(metrics["deploy_agent_http_requests_total{code=202,route=/v1/deploys}"], 2);
  EXPECT_EQ(metrics["deploy_agent_http_requests_total{code=503,route=/readyz}"], 1);
  EXPECT_GT(metrics["deploy_agent_bundle_bytes_received_total{}"].get<double>(), 1000);

  for (const auto& id : {queued, running}) {
    EXPECT_EQ(agentCall("POST", "/v1/deploys/" + id + "/cancel").status, 200);
  }
  metrics = parsedMetrics();
  EXPECT_EQ(metrics["deploy_agent_jobs_total{reason=cancelled,status=cancelled}"], 2) << metrics.dump(2);
  EXPECT_EQ(metrics["deploy_agent_queue_depth{}"], 0);
  EXPECT_EQ(metrics["deploy_agent_phase_duration_seconds_count{phase=deploy_key}"], 1) << metrics.dump(2);
  EXPECT_EQ(readyz()["http_status"], 200);
}

TEST_F(Operations, SigtermLetsARunningDeployFinishAndRefusesNewOnes) {
  // The push waits 3 s at the deployment: long enough to be running when SIGTERM comes.
  addFault({{"method", "POST"}, {"path", "/api/deploy2/start_push"}, {"delay_ms", 3000}});
  startAgent(true, {"--drain-seconds", "60"});
  const std::string id = accept({{"target", "prod"}, {"deployment", "happy-otter-123"}});
  ASSERT_TRUE(faultsTaken());
  agent_->signal(SIGTERM);
  ASSERT_TRUE(draining());
  // Until the deploy is done, the agent stays up but takes nothing new.
  auto refused = postWithOptions({{"target", "prod"}, {"deployment", "happy-otter-123"}});
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(Json::parse(refused.body)["reason"], "draining");
  EXPECT_EQ(refused.headers["Retry-After"], "30");
  Json ready = readyz();
  EXPECT_EQ(ready["http_status"], 503);
  EXPECT_EQ(ready["draining"], true);
  // It exits by itself once the deploy has finished.
  EXPECT_EQ(agent_->wait(), 0);
  startAgent(true);
  const Json finished = report(id, 0);
  EXPECT_EQ(finished["status"], "succeeded") << finished.dump(2);
  EXPECT_TRUE(committedPushTo("happy-otter-123"));
}

TEST_F(Operations, ASecondSigtermCancelsWhatIsStillRunning) {
  addFault({{"method", "POST"}, {"path", "/v1/deployments/happy-otter-123/create_deploy_key"}, {"delay_ms", 600000}});
  startAgent(true, {"--drain-seconds", "600"});
  const std::string id = accept({{"target", "prod"}, {"deployment", "happy-otter-123"}});
  ASSERT_TRUE(faultsTaken());
  agent_->signal(SIGTERM);
  ASSERT_TRUE(draining()) << "the first signal drains, it does not stop";
  const auto second = std::chrono::steady_clock::now();
  agent_->signal(SIGTERM);
  EXPECT_EQ(agent_->wait(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - second, std::chrono::seconds(10));
  startAgent(true);
  const Json stopped = report(id, 0);
  EXPECT_EQ(stopped["status"], "failed") << stopped.dump(2);
  EXPECT_EQ(stopped["error"]["reason"], "agent_stopped");
  EXPECT_EQ(stopped["error"]["retryable"], true);
}

TEST_F(Operations, JsonLogsAreOneObjectPerLineWithTheJobId) {
  startAgent(true, {"--log-format", "json"});
  const std::string id = accept({{"target", "prod"}, {"deployment", "happy-otter-123"}});
  ASSERT_EQ(finalReport(id)["status"], "succeeded");
  agent_->stop();
  std::ifstream log(state_dir_ / "agent.log");
  std::string line;
  size_t lines = 0, about_the_job = 0;
  while (std::getline(log, line)) {
    if (line.rfind("convex-standin", 0) == 0 || line.empty()) continue;
    Json entry;
    ASSERT_NO_THROW(entry = Json::parse(line)) << line;
    ++lines;
    EXPECT_TRUE(entry.contains("time") && entry.contains("level") && entry.contains("msg")) << line;
    if (entry.value("job", "") == id) ++about_the_job;
  }
  EXPECT_GT(lines, 3u);
  EXPECT_GE(about_the_job, 3u) << "accepted, started, finished";
}

}  // namespace

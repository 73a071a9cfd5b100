// Webhooks end to end: a real agent POSTs a real deploy's final report to a real receiver on
// loopback, signed with the configured secret (checked by Python's hmac, not by our own code),
// retried with backoff, every attempt in the report; a host the operator did not allow is
// refused before anything is received; a pending delivery survives kill -9.
#include <gtest/gtest.h>

#include <signal.h>
#include <stdio.h>

#include <filesystem>
#include <fstream>

#include "support/agent_e2e.h"
#include "support/webhook_receiver.h"

namespace fs = std::filesystem;
using testsupport::WebhookReceiver;
using Json = nlohmann::json;

namespace {

const std::string kAgentToken = "callback-agent-token-0123456789";
const std::string kTeamToken = "callback-team-token-0123456789";
const std::string kCallbackSecret = "callback-signing-secret-0123456789abcdef";

class Callbacks : public testsupport::AgentE2E {
 protected:
  Callbacks() : AgentE2E("callbacks", kAgentToken, kTeamToken) {}

  void startWithCallbacks(const std::string& allowed_hosts, const std::string& first_retry_ms = "100",
                          std::vector<std::string> more_args = {}) {
    const fs::path secret_file = state_dir_ / "callback-secret";
    std::ofstream(secret_file) << kCallbackSecret << "\n";
    secrets_.push_back(kCallbackSecret);
    std::vector<std::string> args{"--callback-hosts", allowed_hosts, "--callback-secret-file", secret_file.string(),
                                  "--callback-retry-ms", first_retry_ms};
    args.insert(args.end(), more_args.begin(), more_args.end());
    startAgent(true, args);
  }

  std::string accept(const Json& options) {
    auto accepted = postWithOptions(options);
    EXPECT_EQ(accepted.status, 202) << accepted.body;
    return accepted.status == 202 ? Json::parse(accepted.body)["id"].get<std::string>() : std::string();
  }

  // The report once its callback is settled (delivered or failed for good).
  Json settledReport(const std::string& id) {
    auto answer = agentCall("GET", "/v1/deploys/" + id + "?wait=60&until=callback");
    EXPECT_EQ(answer.status, 200) << answer.body;
    return answer.status == 200 ? Json::parse(answer.body) : Json::object();
  }

  // Whether Python's hmac module accepts `signature` (the Deploy-Agent-Signature header) for
  // `body` under the test's secret: the receiver's side, written independently of the agent.
  bool pythonAcceptsSignature(const std::string& signature, const std::string& body) {
    const fs::path body_file = state_dir_ / "callback-body.json";
    std::ofstream(body_file, std::ios::binary) << body;
    const fs::path script = state_dir_ / "verify.py";
    std::ofstream(script) << "import hmac, hashlib, sys\n"
                             "header, secret, body = sys.argv[1], sys.argv[2].encode(), open(sys.argv[3], 'rb').read()\n"
                             "parts = dict(p.split('=', 1) for p in header.split(','))\n"
                             "mac = hmac.new(secret, parts['t'].encode() + b'.' + body, hashlib.sha256).hexdigest()\n"
                             "sys.exit(0 if hmac.compare_digest(mac, parts['v1']) else 1)\n";
    const std::string command = "/usr/bin/python3 " + script.string() + " '" + signature + "' '" + kCallbackSecret +
                                "' " + body_file.string();
    return ::system(command.c_str()) == 0;
  }
};

TEST_F(Callbacks, AReceiverFailingTwiceGetsTheSignedReportOnTheThirdAttempt) {
  WebhookReceiver receiver({500, 503});
  startWithCallbacks(receiver.hostPort());
  const std::string id = accept({{"target", "prod"}, {"deployment", "happy-otter-123"},
                                 {"callback_url", receiver.url("/hooks/deploys?team=7")}});

  const Json report = settledReport(id);
  ASSERT_EQ(report["status"], "succeeded") << report.dump(2);
  const Json& callback = report["callback"];
  EXPECT_EQ(callback["status"], "delivered") << callback.dump(2);
  EXPECT_EQ(callback["url"], receiver.url("/hooks/deploys?team=7"));
  ASSERT_EQ(callback["attempts"].size(), 3u) << callback.dump(2);
  EXPECT_EQ(callback["attempts"][0]["http_status"], 500);
  EXPECT_EQ(callback["attempts"][1]["http_status"], 503);
  EXPECT_EQ(callback["attempts"][2]["http_status"], 200);
  EXPECT_TRUE(callback["next_attempt_at"].is_null());

  const auto requests = receiver.requests();
  for (const auto& request : requests) {
    rememberReceived(request.body);
    for (const auto& [name, value] : request.headers) rememberReceived(name + ": " + value);
  }
  ASSERT_EQ(requests.size(), 3u);
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& request = requests[i];
    EXPECT_EQ(request.method, "POST");
    EXPECT_EQ(request.path, "/hooks/deploys?team=7");
    EXPECT_EQ(request.headers.at("Content-Type"), "application/json");
    EXPECT_EQ(request.headers.at("Deploy-Agent-Event"), "deploy.finished");
    EXPECT_EQ(request.headers.at("Deploy-Agent-Delivery"), id) << "the same delivery id on every attempt";
    EXPECT_EQ(request.headers.at("Deploy-Agent-Attempt"), std::to_string(i + 1));
    EXPECT_TRUE(pythonAcceptsSignature(request.headers.at("Deploy-Agent-Signature"), request.body))
        << "attempt " << i + 1 << ": " << request.headers.at("Deploy-Agent-Signature");
    EXPECT_EQ(request.headers.count("Authorization"), 0u);
  }
  // The body is the final report as GET shows it, without the delivery's own progress.
  Json delivered = Json::parse(requests.back().body);
  EXPECT_EQ(delivered["id"], id);
  EXPECT_EQ(delivered["status"], "succeeded");
  EXPECT_FALSE(delivered.contains("callback"));
  Json shown = report;
  shown.erase("callback");
  EXPECT_EQ(delivered, shown);
  // Operators see it too.
  const std::string metrics = testsupport::httpRequest("GET", agent_->baseUrl() + "/metrics").body;
  EXPECT_NE(metrics.find("deploy_agent_callback_attempts_total{outcome=\"retrying\"} 2"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("deploy_agent_callback_attempts_total{outcome=\"delivered\"} 1"), std::string::npos) << metrics;
  // A tampered body or another secret does not verify: the check above means something.
  EXPECT_FALSE(pythonAcceptsSignature(requests.back().headers.at("Deploy-Agent-Signature"), requests.back().body + " "));
}

TEST_F(Callbacks, AReceiverThatRefusesIsNotAskedAgainAndAFailedDeployIsDeliveredToo) {
  WebhookReceiver receiver({410});
  startWithCallbacks(receiver.hostPort());
  // A deployment the stand-in does not know: the job fails, and its report still goes out.
  const std::string id = accept({{"target", "prod"}, {"deployment", "no-such-deployment-404"},
                                 {"callback_url", receiver.url()}});
  const Json report = settledReport(id);
  EXPECT_EQ(report["status"], "failed") << report.dump(2);
  EXPECT_EQ(report["callback"]["status"], "failed") << report.dump(2);
  ASSERT_EQ(report["callback"]["attempts"].size(), 1u) << "410 is an answer, not a reason to retry";
  EXPECT_EQ(report["callback"]["attempts"][0]["http_status"], 410);
  EXPECT_EQ(receiver.requests().size(), 1u);
}

TEST_F(Callbacks, AHostTheOperatorDidNotAllowIsRefusedBeforeAnythingIsReceived) {
  WebhookReceiver allowed;
  WebhookReceiver other;
  startWithCallbacks(allowed.hostPort());
  const fs::path jobs = state_dir_ / "state/jobs";
  auto jobFolders = [&] {
    size_t count = 0;
    if (fs::exists(jobs)) {
      for (const auto& entry : fs::directory_iterator(jobs)) count += entry.is_directory() ? 1 : 0;
    }
    return count;
  };
  for (const std::string& url : {other.url(),                                   // another port, same host
                                 std::string("http://169.254.169.254/latest/meta-data/"),  // cloud metadata
                                 std::string("http://localhost:") + std::to_string(allowed.port()) + "/",  // another name
                                 "http://user:pw@" + allowed.hostPort() + "/"}) {
    // In the JSON options part and in the query alike.
    auto in_json = postWithOptions({{"target", "prod"}, {"deployment", "happy-otter-123"}, {"callback_url", url}});
    EXPECT_EQ(in_json.status, 400) << url << ": " << in_json.body;
    const Json problem = Json::parse(in_json.body);
    EXPECT_EQ(problem["reason"], "callback_not_allowed") << in_json.body;
    EXPECT_EQ(problem["field"], "callback_url") << in_json.body;
    std::string encoded;
    Poco::URI::encode(url, "!#$&'()*+,/:;=?@[]", encoded);
    auto in_query = agentCall("POST", "/v1/deploys?target=prod&deployment=happy-otter-123&callback_url=" + encoded,
                              {{"Content-Type", "application/gzip"}}, bundle());
    EXPECT_EQ(in_query.status, 400) << url << ": " << in_query.body;
  }
  EXPECT_EQ(jobFolders(), 0u) << "a refused request leaves nothing behind";
  EXPECT_TRUE(other.requests().empty());
  EXPECT_TRUE(allowed.requests().empty());
}

TEST_F(Callbacks, WithoutAllowedHostsEveryCallbackIsRefused) {
  WebhookReceiver receiver;
  startAgent(true);
  auto answer = postWithOptions({{"target", "prod"}, {"deployment", "happy-otter-123"}, {"callback_url", receiver.url()}});
  EXPECT_EQ(answer.status, 400) << answer.body;
  EXPECT_NE(Json::parse(answer.body)["detail"].get<std::string>().find("--callback-hosts"), std::string::npos) << answer.body;
}

TEST_F(Callbacks, APendingDeliverySurvivesKillMinusNine) {
  // The first attempt fails; the retry is due 2 s later, long after the agent is killed.
  WebhookReceiver receiver({503});
  startWithCallbacks(receiver.hostPort(), "2000");
  const std::string id = accept({{"target", "prod"}, {"deployment", "happy-otter-123"}, {"callback_url", receiver.url()}});
  ASSERT_EQ(receiver.waitFor(1).size(), 1u) << "the first attempt never came";
  agent_->kill();

  startWithCallbacks(receiver.hostPort(), "100");
  const Json report = settledReport(id);
  EXPECT_EQ(report["status"], "succeeded") << report.dump(2);
  EXPECT_EQ(report["callback"]["status"], "delivered") << report.dump(2);
  const auto requests = receiver.requests();
  for (const auto& request : requests) rememberReceived(request.body);
  ASSERT_EQ(requests.size(), 2u) << "one failed attempt before the kill, one delivery after";
  EXPECT_EQ(requests[1].answered, 200);
  EXPECT_EQ(requests[1].headers.at("Deploy-Agent-Delivery"), id);
  EXPECT_EQ(requests[0].body, requests[1].body) << "the same report before and after the restart";
}

TEST_F(Callbacks, ADeployThatFinishesWhileTheAgentDrainsIsDeliveredBeforeItExits) {
  // The receiver takes 1.5 s to answer: the delivery is still in flight when the drain ends.
  WebhookReceiver receiver({}, std::chrono::milliseconds(1500));
  // The push waits 2 s at the deployment: the deploy is running when SIGTERM comes.
  addFault({{"method", "POST"}, {"path", "/api/deploy2/start_push"}, {"delay_ms", 2000}});
  startWithCallbacks(receiver.hostPort(), "100", {"--drain-seconds", "60"});
  const std::string id = accept({{"target", "prod"}, {"deployment", "happy-otter-123"}, {"callback_url", receiver.url()}});
  ASSERT_TRUE(faultsTaken());
  agent_->signal(SIGTERM);
  EXPECT_EQ(agent_->wait(), 0);
  // The agent has exited: its stored report is final.
  std::ifstream stored(state_dir_ / "state/jobs" / id / "report.json");
  const Json report = Json::parse(stored);
  EXPECT_EQ(report["status"], "succeeded");
  EXPECT_EQ(report["callback"]["status"], "delivered") << "the agent stopped before telling the receiver: "
                                                        << report["callback"].dump(2);
  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].headers.at("Deploy-Agent-Delivery"), id);
  rememberReceived(requests[0].body);
}

}  // namespace

// A fixture for end-to-end tests of one agent against one stand-in, both real processes: the
// agent logs to a file in the test's folder, and at the end every byte the agent wrote there
// (state, reports, events, logs) and every byte it answered or sent the test (every answer
// httpRequest got from it, event streams, webhooks a test hands over with rememberReceived) is
// scanned for the secrets the test handed over, raw and in their base64,
// URL-encoded and JSON-escaped forms.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/URI.h>
#include <nlohmann/json.hpp>

#include "support/archive_builder.h"
#include "support/e2e.h"
#include "support/multipart.h"
#include "support/secret_scan.h"
#include "support/server_process.h"

namespace testsupport {

class AgentE2E : public ::testing::Test {
 protected:
  using Json = nlohmann::json;

  // `name` prefixes the test's folder; `standin_args` come after --listen and --team-token.
  AgentE2E(std::string name, std::string agent_token, std::string team_token, std::vector<std::string> standin_args = {})
      : name_(std::move(name)), agent_token_(std::move(agent_token)), team_token_(std::move(team_token)),
        standin_args_(std::move(standin_args)) {}

  void SetUp() override {
    state_dir_ = std::filesystem::temp_directory_path() /
                 ("da-" + name_ + "-" + std::to_string(getpid()) + "-" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(state_dir_);
    std::filesystem::create_directories(state_dir_);
    std::vector<std::string> args{"--listen", "127.0.0.1:0", "--team-token", team_token_};
    args.insert(args.end(), standin_args_.begin(), standin_args_.end());
    standin_ = std::make_unique<ServerProcess>(binaryDir() + "/bin/convex-standin", args,
                                               std::map<std::string, std::string>{});
    secrets_.push_back(team_token_);
    secrets_.push_back(agent_token_);
  }
  void TearDown() override {
    agent_.reset();
    expectNoSecretWritten();
    standin_.reset();
    std::filesystem::remove_all(state_dir_);
  }

  // The agent installs offline from the toolchain's npm cache unless `args` say otherwise.
  void startAgent(bool with_team_token, std::vector<std::string> extra_args = {}, bool offline = true) {
    std::vector<std::string> args;
    if (offline) {
      args = offlineAgentArgs(state_dir_ / "state", standin_->baseUrl());
    } else {
      args = {"--listen", "127.0.0.1:0", "--state-dir", (state_dir_ / "state").string(), "--convex-url",
              standin_->baseUrl(), "--toolchain", toolchainDir(), "--drain-seconds", "0"};
    }
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::map<std::string, std::string> env{{"DEPLOY_AGENT_TOKEN", agent_token_}};
    if (with_team_token) env["CONVEX_TEAM_TOKEN"] = team_token_;
    agent_ = std::make_unique<ServerProcess>(binaryDir() + "/bin/deploy-agent", args, env,
                                             (state_dir_ / "agent.log").string());
  }

  HttpResult agentCall(const std::string& method, const std::string& path, std::map<std::string, std::string> headers = {},
                       const std::string& body = {}) {
    headers["Authorization"] = "Bearer " + agent_token_;
    return httpRequest(method, agent_->baseUrl() + path, headers, body);
  }

  // Bytes the agent sent that httpRequest did not receive (an event stream, a webhook), scanned
  // for secrets at the end with every answer httpRequest got from it.
  void rememberReceived(const std::string& bytes) { scan_.remember(bytes); }

  // POST /v1/deploys with the example app and `options` as multipart parts, plus `headers`.
  HttpResult postWithOptions(const Json& options, std::map<std::string, std::string> headers = {},
                             const std::string& query = {}) {
    auto [content_type, body] = multipartBody({{"bundle", "app.tar.gz", "application/gzip", bundle()},
                                               {"options", "", "application/json", options.dump()}});
    headers["Content-Type"] = content_type;
    return agentCall("POST", "/v1/deploys" + (query.empty() ? "" : "?" + query), std::move(headers), body);
  }

  // Posts and waits for the final report.
  Json deploy(const Json& options, std::map<std::string, std::string> headers = {}) {
    auto accepted = postWithOptions(options, std::move(headers));
    EXPECT_EQ(accepted.status, 202) << accepted.body;
    if (accepted.status != 202) return Json::object();
    return finalReport(Json::parse(accepted.body)["id"]);
  }

  Json finalReport(const std::string& id) {
    for (int i = 0; i < 4; ++i) {
      Json now = report(id, 60);
      const std::string status = now.value("status", "");
      if (status == "succeeded" || status == "failed" || status == "cancelled") return now;
    }
    ADD_FAILURE() << "deploy " << id << " did not finish";
    return Json::object();
  }

  Json report(const std::string& id, int wait_seconds) {
    auto result = agentCall("GET", "/v1/deploys/" + id + "?wait=" + std::to_string(wait_seconds));
    EXPECT_EQ(result.status, 200) << result.body;
    return result.status == 200 ? Json::parse(result.body) : Json::object();
  }

  Json standinGet(const std::string& path, const std::string& bearer = {}) {
    std::map<std::string, std::string> headers;
    if (!bearer.empty()) headers["Authorization"] = "Bearer " + bearer;
    auto result = httpRequest("GET", standin_->baseUrl() + path, headers);
    EXPECT_EQ(result.status, 200) << path << ": " << result.body;
    return result.status == 200 ? Json::parse(result.body) : Json();
  }

  Json standinPost(const std::string& path, const Json& body, const std::string& bearer = {}) {
    std::map<std::string, std::string> headers{{"Content-Type", "application/json"}};
    if (!bearer.empty()) headers["Authorization"] = "Bearer " + bearer;
    auto result = httpRequest("POST", standin_->baseUrl() + path, headers, body.dump());
    EXPECT_EQ(result.status, 200) << path << ": " << result.body;
    return result.status == 200 && !result.body.empty() ? Json::parse(result.body) : Json();
  }

  void addFault(const Json& fault) { standinPost("/_standin/faults", fault); }

  // Blocks (bounded) until requests have taken every armed fault: a delayed call hangs now.
  bool faultsTaken() {
    return httpRequest("GET", standin_->baseUrl() + "/_standin/faults?wait_until_taken_ms=30000").status == 200;
  }

  // Blocks (bounded) until the stand-in has answered a `method` request to `path_pattern`.
  bool standinSaw(const std::string& method, const std::string& path_pattern, int wait_ms = 30000) {
    return httpRequest("GET", standin_->baseUrl() + "/_standin/requests?method=" + method + "&path=" + path_pattern +
                                  "&wait_ms=" + std::to_string(wait_ms))
               .status == 200;
  }

  // The requests the stand-in saw whose path ends in `path_suffix`, oldest first.
  std::vector<Json> requestsTo(const std::string& path_suffix) {
    std::vector<Json> matching;
    for (const auto& request : standinGet("/_standin/requests")) {
      const std::string path = request["path"];
      if (path.size() >= path_suffix.size() &&
          path.compare(path.size() - path_suffix.size(), std::string::npos, path_suffix) == 0) {
        matching.push_back(request);
      }
    }
    return matching;
  }

  struct SseEvent {
    uint64_t id = 0;
    std::string type;
    Json data;
  };
  struct SseRead {
    int status = 0;
    std::vector<SseEvent> events;
    size_t heartbeats = 0;
    bool ended = false;  // the server closed the stream
  };
  // GET /v1/deploys/{id}/events, reading until the server ends the stream, `max_events` were
  // read, or `heartbeats_wanted` comment lines came; then the connection is dropped.
  SseRead readEvents(const std::string& id, const std::string& last_event_id = {}, size_t max_events = SIZE_MAX,
                     size_t heartbeats_wanted = SIZE_MAX) {
    SseRead read;
    Poco::URI uri(agent_->baseUrl());
    Poco::Net::HTTPClientSession session(uri.getHost(), uri.getPort());
    session.setTimeout(Poco::Timespan(60, 0));
    Poco::Net::HTTPRequest request("GET", "/v1/deploys/" + id + "/events", Poco::Net::HTTPMessage::HTTP_1_1);
    request.set("Authorization", "Bearer " + agent_token_);
    if (!last_event_id.empty()) request.set("Last-Event-ID", last_event_id);
    session.sendRequest(request);
    Poco::Net::HTTPResponse response;
    std::istream& in = session.receiveResponse(response);
    read.status = static_cast<int>(response.getStatus());
    if (read.status != 200) return read;
    SseEvent event;
    bool has_event = false;
    std::string line;
    while (read.events.size() < max_events && read.heartbeats < heartbeats_wanted) {
      if (!std::getline(in, line)) {
        read.ended = true;
        break;
      }
      rememberReceived(line);
      if (line.empty()) {
        if (has_event) read.events.push_back(std::move(event));
        event = SseEvent{};
        has_event = false;
      } else if (line.rfind(": ", 0) == 0) {
        ++read.heartbeats;
      } else if (line.rfind("id: ", 0) == 0) {
        event.id = std::stoull(line.substr(4));
        has_event = true;
      } else if (line.rfind("event: ", 0) == 0) {
        event.type = line.substr(7);
      } else if (line.rfind("data: ", 0) == 0) {
        event.data = Json::parse(line.substr(6));
      }
    }
    session.reset();  // drops the connection
    return read;
  }

  bool committedPushTo(const std::string& deployment) {
    for (const auto& push : standinGet("/_standin/pushes")) {
      if (push["deployment"] == deployment && push["committed"] == true) return true;
    }
    return false;
  }

  std::string mintKey(const std::string& deployment) {
    std::string key = mintStandinKey(standin_->baseUrl(), deployment);
    secrets_.push_back(key);
    return key;
  }

  void expectNoSecretWritten() {
    for (const auto& secret : secrets_) scan_.addSecret(secret);
    scan_.expectClean(state_dir_);
  }

  // The example app, archived once per test: a retried request sends the very same bytes.
  const std::string& bundle() {
    if (bundle_.empty()) bundle_ = exampleAppArchive().build(ArchiveBuilder::Format::kTarGz);
    return bundle_;
  }

  std::string name_;
  std::string agent_token_;
  std::string team_token_;
  std::vector<std::string> standin_args_;
  std::filesystem::path state_dir_;
  std::unique_ptr<ServerProcess> standin_;
  std::unique_ptr<ServerProcess> agent_;
  std::vector<std::string> secrets_;  // that nothing the agent writes may hold
  SecretScan scan_;                    // what the agent answered or sent, and the check
  std::string bundle_;
};

}  // namespace testsupport

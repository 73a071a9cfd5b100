// The HTTP API in-process on a real loopback socket: routing, auth and refusals. The deploy
// pipeline points at a toolchain that does not exist, so accepted jobs fail fast and
// honestly (sandbox_setup_failed) without reaching any network.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <set>
#include <thread>

#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "api/api_server.h"
#include "jobs/idempotency_index.h"
#include "support/multipart.h"
#include "support/archive_builder.h"
#include "support/server_process.h"
#include "util/ids.h"

namespace fs = std::filesystem;
using testsupport::ArchiveBuilder;
using testsupport::httpRequest;
using Json = nlohmann::json;

namespace {

const std::string kToken = "api-unit-token-0123456789";

class ApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_ = fs::temp_directory_path() / ("da-api-" + da::newDeployId());
    settings_.listen_port = 0;
    settings_.state_dir = state_;
    settings_.api_token = kToken;
    settings_.team_token = "team-token-for-minting-0123";
    settings_.toolchain.node = "/nonexistent/node";
    settings_.toolchain.npm_cli = "/nonexistent/npm-cli.js";
    settings_.toolchain.convex_cli = "/nonexistent/main.js";
    settings_.toolchain.convex_cli_version = "1.49.0";
    settings_.npm_cache = state_ / "npm-cache";
    settings_.workers = 1;
    store_ = std::make_unique<da::JobStore>(state_ / "jobs");
    pipeline_ = std::make_unique<da::DeployPipeline>(settings_, *store_, redactor_);
    runner_ = std::make_unique<da::JobRunner>(settings_, *store_, *pipeline_);
    runner_->start();
    idempotency_ = std::make_unique<da::IdempotencyIndex>(state_ / "idempotency", std::chrono::hours(24));
    ASSERT_EQ(idempotency_->load(), "");
    server_ = std::make_unique<da::api::ApiServer>(da::api::ApiContext{settings_, *store_, *runner_, idempotency_.get()});
    server_->start();
  }
  void TearDown() override {
    server_->stop();
    runner_->stop();
    fs::remove_all(state_);
  }

  testsupport::HttpResult call(const std::string& method, const std::string& path, const std::string& body = {},
                               std::map<std::string, std::string> headers = {}) {
    headers.emplace("Authorization", "Bearer " + kToken);
    return httpRequest(method, server_->baseUrl() + path, headers, body);
  }

  static std::string appBundle() {
    return ArchiveBuilder()
        .addFile("package.json", R"({"name":"a","dependencies":{"convex":"1.49.0"}})")
        .addFile("convex/messages.ts", "export const x = 1;\n")
        .build(ArchiveBuilder::Format::kTarGz);
  }

  fs::path state_;
  da::Settings settings_;
  da::Redactor redactor_;
  std::unique_ptr<da::JobStore> store_;
  std::unique_ptr<da::DeployPipeline> pipeline_;
  std::unique_ptr<da::JobRunner> runner_;
  std::unique_ptr<da::IdempotencyIndex> idempotency_;
  std::unique_ptr<da::api::ApiServer> server_;
};

TEST_F(ApiServerTest, HealthNeedsNoTokenEverythingElseDoes) {
  EXPECT_EQ(httpRequest("GET", server_->baseUrl() + "/healthz").status, 200);
  auto denied = httpRequest("GET", server_->baseUrl() + "/v1/deploys/dep_000000000000000000000000");
  EXPECT_EQ(denied.status, 401);
  EXPECT_EQ(denied.headers["WWW-Authenticate"], "Bearer");
  EXPECT_EQ(denied.headers["Content-Type"], "application/problem+json");
}

TEST_F(ApiServerTest, MalformedUriIsABadRequest) {
  auto bad = call("POST", "/v1/deploys?target=%zz", appBundle());
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(Json::parse(bad.body)["reason"], "invalid_uri");
  EXPECT_EQ(Json::parse(bad.body)["field"], "uri");
}

TEST_F(ApiServerTest, RepeatedParameterIsRefusedNotResolved) {
  // Whichever value won, the caller meant both: here one of them is production.
  auto twice = call("POST", "/v1/deploys?target=dev&target=prod&deployment=a-b-1", appBundle());
  EXPECT_EQ(twice.status, 400);
  Json problem = Json::parse(twice.body);
  EXPECT_EQ(problem["reason"], "duplicate_parameter");
  EXPECT_EQ(problem["field"], "target");
  EXPECT_EQ(std::distance(fs::directory_iterator(state_ / "jobs"), fs::directory_iterator()), 0);
  EXPECT_EQ(call("GET", "/v1/deploys/dep_000000000000000000000000?wait=0&wait=5").status, 400);
}

TEST_F(ApiServerTest, StatusLinesCarryTheirReasonPhrase) {
  EXPECT_EQ(httpRequest("GET", server_->baseUrl() + "/healthz").reason_phrase, "OK");
  EXPECT_EQ(httpRequest("GET", server_->baseUrl() + "/v1/deploys").reason_phrase, "Unauthorized");
  EXPECT_EQ(call("GET", "/v2/nothing").reason_phrase, "Not Found");
  auto accepted = call("POST", "/v1/deploys?target=prod", appBundle(),
                       {{"Convex-Deploy-Key", "prod:a-b-1|caller-secret-0123456789"}});
  EXPECT_EQ(accepted.status, 202);
  EXPECT_EQ(accepted.reason_phrase, "Accepted");
}

TEST_F(ApiServerTest, AnUploadCutShortIsRefusedNotDeployed) {
  const std::string bundle = appBundle();
  Poco::Net::StreamSocket socket(Poco::Net::SocketAddress("127.0.0.1", server_->port()));
  const std::string head = "POST /v1/deploys?target=prod HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kToken +
                           "\r\nConvex-Deploy-Key: prod:a-b-1|caller-secret-0123456789\r\n"
                           "Content-Type: application/gzip\r\nContent-Length: " +
                           std::to_string(bundle.size() + 1000) + "\r\n\r\n";
  const std::string sent = head + bundle;
  ASSERT_EQ(socket.sendBytes(sent.data(), static_cast<int>(sent.size())), static_cast<int>(sent.size()));
  socket.shutdownSend();  // the connection drops before the announced length
  std::string answer;
  char buffer[4096];
  for (int got; (got = socket.receiveBytes(buffer, sizeof buffer)) > 0;) answer.append(buffer, got);
  EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << answer;
  EXPECT_NE(answer.find("incomplete_body"), std::string::npos) << answer;
  EXPECT_EQ(std::distance(fs::directory_iterator(state_ / "jobs"), fs::directory_iterator()), 0);
}

TEST_F(ApiServerTest, AFullQueueRefusesBeforeReadingTheUpload) {
  settings_.max_queued_jobs = 0;  // nothing can wait
  // Not an archive at all: refused as queue_full, not unsupported_format, proves the body
  // was never looked at.
  auto refused = call("POST", "/v1/deploys?target=prod", "not an archive",
                      {{"Convex-Deploy-Key", "prod:a-b-1|caller-secret-0123456789"},
                       {"Content-Type", "text/plain"}});
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(Json::parse(refused.body)["reason"], "queue_full");
  EXPECT_EQ(refused.headers["Retry-After"], "30");
  EXPECT_EQ(std::distance(fs::directory_iterator(state_ / "jobs"), fs::directory_iterator()), 0);
}

TEST_F(ApiServerTest, LongPollsBeyondTheLimitAnswerAtOnceAndHealthStaysUp) {
  // A deploy that stays queued: nothing runs it.
  da::DeployReport report;
  report.id = da::newDeployId();
  report.target = da::Target::kProd;
  report.created_at_ms = da::nowUnixMillis();
  store_->put(report);
  const std::string path = "/v1/deploys/" + report.id + "?wait=60";

  constexpr int kWaiters = 16;  // the agent's limit
  std::vector<std::string> seen(kWaiters);
  std::vector<std::thread> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.emplace_back([&, i] { seen[i] = Json::parse(call("GET", path).body).value("status", ""); });
  }
  // /healthz counts them in; a condition with a deadline, not a sleep.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int waiting = 0;
  while (waiting < kWaiters && std::chrono::steady_clock::now() < deadline) {
    waiting = Json::parse(httpRequest("GET", server_->baseUrl() + "/healthz").body)["waiting_requests"];
  }
  EXPECT_EQ(waiting, kWaiters);

  // One more long poll answers at once with the report as it is, instead of holding a thread.
  const auto asked = std::chrono::steady_clock::now();
  auto extra = call("GET", path);
  EXPECT_EQ(extra.status, 200);
  EXPECT_EQ(Json::parse(extra.body)["status"], "queued");
  EXPECT_LT(std::chrono::steady_clock::now() - asked, std::chrono::seconds(10));

  report.status = da::DeployStatus::kFailed;
  report.error = da::DeployError{"agent_stopped", "test"};
  store_->put(report);
  for (auto& waiter : waiters) waiter.join();
  for (const auto& status : seen) EXPECT_EQ(status, "failed");
  EXPECT_EQ(Json::parse(httpRequest("GET", server_->baseUrl() + "/healthz").body)["waiting_requests"], 0);
}

TEST_F(ApiServerTest, BodyProblemsNameTheBody) {
  auto empty = call("POST", "/v1/deploys?target=prod&deployment=a-b-1", "");
  EXPECT_EQ(empty.status, 400);
  EXPECT_EQ(Json::parse(empty.body)["field"], "body");
  auto not_an_archive = call("POST", "/v1/deploys?target=prod&deployment=a-b-1", "hello, world",
                             {{"Content-Type", "text/plain"}});
  EXPECT_EQ(not_an_archive.status, 415);
  EXPECT_EQ(Json::parse(not_an_archive.body)["field"], "body");
  // Content-Type says zip, the bytes are gzip.
  auto mismatch = call("POST", "/v1/deploys?target=prod&deployment=a-b-1", appBundle(),
                       {{"Content-Type", "application/zip"}});
  EXPECT_EQ(mismatch.status, 422) << mismatch.body;
  EXPECT_EQ(Json::parse(mismatch.body)["field"], "body") << mismatch.body;
}

TEST_F(ApiServerTest, UnknownRoutesAndMethods) {
  EXPECT_EQ(call("GET", "/v2/nothing").status, 404);
  auto wrong_method = call("PUT", "/v1/deploys");
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_EQ(wrong_method.headers["Allow"], "GET, POST");
  auto cannot_post = call("POST", "/v1/deploys/dep_000000000000000000000000");
  EXPECT_EQ(cannot_post.status, 405);
  EXPECT_EQ(cannot_post.headers["Allow"], "GET, DELETE");
  auto cannot_delete_log = call("DELETE", "/v1/deploys/dep_000000000000000000000000/log");
  EXPECT_EQ(cannot_delete_log.status, 405);
  EXPECT_EQ(cannot_delete_log.headers["Allow"], "GET");
  EXPECT_EQ(call("POST", "/v1/deploys/dep_000000000000000000000000/restart").status, 404);
  EXPECT_EQ(call("GET", "/v1/deploys/../../etc/passwd").status, 404);
}

TEST_F(ApiServerTest, QueryProblemsNameTheField) {
  auto unknown = call("POST", "/v1/deploys?target=prod&deployment=a-b-1&colour=red", appBundle());
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(Json::parse(unknown.body)["field"], "colour");
  auto bad_target = call("POST", "/v1/deploys?target=staging&deployment=a-b-1", appBundle());
  EXPECT_EQ(Json::parse(bad_target.body)["field"], "target");
  auto bad_name = call("POST", "/v1/deploys?target=prod&deployment=Bad_Name", appBundle());
  EXPECT_EQ(Json::parse(bad_name.body)["field"], "deployment");
  auto no_deployment = call("POST", "/v1/deploys?target=prod", appBundle());
  EXPECT_EQ(Json::parse(no_deployment.body)["reason"], "missing_deployment");
  auto bad_typecheck = call("POST", "/v1/deploys?target=prod&deployment=a-b-1&typecheck=maybe", appBundle());
  EXPECT_EQ(Json::parse(bad_typecheck.body)["field"], "typecheck");
  EXPECT_EQ(call("POST", "/v1/deploys?target=prod&deployment=a-b-1", "").status, 400);
  EXPECT_EQ(call("GET", "/v1/deploys/dep_000000000000000000000000?wait=999").status, 400);
  EXPECT_EQ(call("GET", "/v1/deploys/dep_000000000000000000000000?wait=5x").status, 400);
}

TEST_F(ApiServerTest, AMultipartBodyCarriesTheBundleAndJsonOptions) {
  using testsupport::FormPart;
  auto post = [&](const std::string& query, const std::vector<FormPart>& parts,
                  std::map<std::string, std::string> headers = {}) {
    auto [type, body] = testsupport::multipartBody(parts);
    headers["Content-Type"] = type;
    return call("POST", "/v1/deploys" + query, body, headers);
  };
  const FormPart bundle{"bundle", "app.tar.gz", "application/gzip", appBundle()};
  // Accepted: options in JSON, the query agreeing; env names are reported, values never.
  auto accepted = post("?target=prod", {bundle, {"options", "", "application/json",
                                                 R"({"target":"prod","env":{"OPENAI_API_KEY":"sk-live-0123456789"}})"}},
                       {{"Convex-Deploy-Key", "prod:a-b-1|caller-secret-0123456789"}});
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  auto report = call("GET", "/v1/deploys/" + Json::parse(accepted.body)["id"].get<std::string>());
  EXPECT_EQ(Json::parse(report.body)["env"]["names"], Json::array({"OPENAI_API_KEY"}));
  EXPECT_EQ(report.body.find("sk-live-0123456789"), std::string::npos);

  struct Case {
    std::string query;
    std::vector<FormPart> parts;
    int status;
    std::string reason, field;
  };
  const std::vector<Case> refusals = {
      {"?target=dev", {bundle, {"options", "", "", R"({"target":"prod"})"}}, 400, "conflicting_options",
       "target,options.target"},
      {"?target=prod", {bundle, {"options", "", "", "{not json"}}, 400, "invalid_options", "options"},
      {"?target=prod", {bundle, {"options", "", "", R"({"region":"eu"})"}}, 400, "unknown_option", "options.region"},
      {"?target=prod", {{"options", "", "", R"({"deployment":"a-b-1"})"}}, 400, "missing_bundle", "bundle"},
      {"?target=prod", {bundle, {"extra", "x.bin", "", "x"}}, 400, "unexpected_part", "extra"},
      {"?target=prod", {bundle, {"options", "", "", R"({"env":{"BAD NAME":"sk-live-0123456789"}})"}}, 400,
       "invalid_env", "options.env.BAD NAME"},
  };
  for (const auto& c : refusals) {
    auto refused = post(c.query, c.parts, {{"Convex-Deploy-Key", "prod:a-b-1|caller-secret-0123456789"}});
    EXPECT_EQ(refused.status, c.status) << c.reason << ": " << refused.body;
    auto problem = Json::parse(refused.body);
    EXPECT_EQ(problem["reason"], c.reason) << refused.body;
    EXPECT_EQ(problem["field"], c.field) << refused.body;
    EXPECT_EQ(refused.body.find("sk-live-0123456789"), std::string::npos);
  }
}

TEST_F(ApiServerTest, WithoutTeamTokenACallerMustSendAKey) {
  settings_.team_token.clear();
  auto refused = call("POST", "/v1/deploys?target=prod&deployment=a-b-1", appBundle());
  EXPECT_EQ(refused.status, 422);
  Json problem = Json::parse(refused.body);
  EXPECT_EQ(problem["reason"], "deploy_key_unavailable");
  // A token of the caller's own would do as well as a key.
  EXPECT_EQ(problem["field"], "Convex-Access-Token");
  EXPECT_NE(problem["detail"].get<std::string>().find("Convex-Deploy-Key"), std::string::npos);
}

TEST_F(ApiServerTest, AcceptedJobIsReportedAndItsFailureIsHonest) {
  // The caller's key: no Management API call, so nothing leaves this machine.
  auto accepted = call("POST", "/v1/deploys?target=prod", appBundle(),
                       {{"Convex-Deploy-Key", "prod:a-b-1|caller-secret-0123456789"}});
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  auto done = call("GET", "/v1/deploys/" + id + "?wait=30");
  ASSERT_EQ(done.status, 200);
  Json report = Json::parse(done.body);
  EXPECT_EQ(report["status"], "failed");
  EXPECT_EQ(report["error"]["reason"], "sandbox_setup_failed");
  EXPECT_EQ(report["phase"], "install");
  EXPECT_NE(report["error"]["message"].get<std::string>().find("/nonexistent/node"), std::string::npos);
  EXPECT_EQ(report["bundle"]["format"], "tar.gz");
  EXPECT_EQ(report["key_source"], "header");
  EXPECT_EQ(report["deployment"]["name"], "a-b-1");  // from the caller's key
  EXPECT_EQ(done.body.find("caller-secret-0123456789"), std::string::npos);
  EXPECT_EQ(report["bundle"]["entries"], 2);  // package.json, convex/messages.ts
  // The push never ran, so there is no CLI output, and the refusal says why.
  auto log = call("GET", "/v1/deploys/" + id + "/log");
  EXPECT_EQ(log.status, 404);
  EXPECT_EQ(Json::parse(log.body)["reason"], "log_not_available");
  EXPECT_EQ(call("GET", "/v1/deploys/" + id + "/log?phase=install").status, 200);
  EXPECT_EQ(call("GET", "/v1/deploys/" + id + "/log?phase=other").status, 400);
  // The unpacked app is gone; the report stays.
  EXPECT_FALSE(fs::exists(state_ / "jobs" / id / "work"));
  for (const auto& entry : fs::directory_iterator(state_ / "jobs" / id)) {
    const auto name = entry.path().filename().string();
    // .trash is the work folder on its way out: it is deleted just after the report is stored.
    EXPECT_TRUE(name == "report.json" || name == "install.log" || name == "events.jsonl" || name == ".trash")
        << "left behind: " << name;
  }
  EXPECT_TRUE(fs::exists(state_ / "jobs" / id / "report.json"));
}

TEST_F(ApiServerTest, UnknownFormatIs415) {
  auto refused = call("POST", "/v1/deploys?target=prod&deployment=a-b-1", "plain text, not an archive",
                      {{"Content-Type", "text/plain"}});
  EXPECT_EQ(refused.status, 415);
  EXPECT_EQ(std::distance(fs::directory_iterator(state_ / "jobs"), fs::directory_iterator()), 0);
}

}  // namespace

namespace {

TEST_F(ApiServerTest, AFailureInsideTheAgentIsA500ProblemNotADroppedConnection) {
  // The jobs folder replaced by a file: creating the job directory throws.
  fs::remove_all(state_ / "jobs");
  std::ofstream(state_ / "jobs") << "not a directory";
  auto failed = call("POST", "/v1/deploys?target=prod", appBundle(),
                     {{"Convex-Deploy-Key", "prod:a-b-1|caller-secret-0123456789"}});
  EXPECT_EQ(failed.status, 500);
  EXPECT_EQ(failed.headers["Content-Type"], "application/problem+json");
  EXPECT_EQ(Json::parse(failed.body)["reason"], "internal_error");
  EXPECT_EQ(failed.body.find("caller-secret-0123456789"), std::string::npos);
}

}  // namespace

namespace {

const std::map<std::string, std::string> kCallerKey{{"Convex-Deploy-Key", "prod:a-b-1|caller-secret-0123456789"}};

size_t jobFolders(const fs::path& state) {
  size_t count = 0;
  for (const auto& entry : fs::directory_iterator(state / "jobs")) count += da::isValidDeployId(entry.path().filename().string());
  return count;
}

}  // namespace

TEST_F(ApiServerTest, DeploysAreListedNewestFirstDeletedAndCancelIsIdempotent) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto accepted = call("POST", "/v1/deploys?target=prod", appBundle(), kCallerKey);
    ASSERT_EQ(accepted.status, 202) << accepted.body;
    ids.push_back(Json::parse(accepted.body)["id"]);
    ASSERT_EQ(Json::parse(call("GET", "/v1/deploys/" + ids.back() + "?wait=30").body)["status"], "failed");
  }
  auto first = call("GET", "/v1/deploys?limit=2");
  ASSERT_EQ(first.status, 200) << first.body;
  Json page = Json::parse(first.body);
  ASSERT_EQ(page["items"].size(), 2u);
  EXPECT_EQ(page["items"][0]["id"], ids[2]);
  EXPECT_EQ(page["items"][1]["id"], ids[1]);
  EXPECT_EQ(page["items"][0]["error"]["reason"], "sandbox_setup_failed");
  ASSERT_TRUE(page["next_cursor"].is_string());
  Json rest = Json::parse(call("GET", "/v1/deploys?limit=2&cursor=" + page["next_cursor"].get<std::string>()).body);
  ASSERT_EQ(rest["items"].size(), 1u);
  EXPECT_EQ(rest["items"][0]["id"], ids[0]);
  EXPECT_TRUE(rest["next_cursor"].is_null());
  EXPECT_EQ(Json::parse(call("GET", "/v1/deploys?status=failed").body)["items"].size(), 3u);
  EXPECT_TRUE(Json::parse(call("GET", "/v1/deploys?status=succeeded").body)["items"].empty());
  for (const char* bad : {"limit=0", "limit=101", "status=done", "cursor=xyz", "colour=red"}) {
    auto refused = call("GET", std::string("/v1/deploys?") + bad);
    EXPECT_EQ(refused.status, 400) << bad;
  }

  // Cancelling a finished deploy changes nothing and says so with its report.
  auto cancel = call("POST", "/v1/deploys/" + ids[0] + "/cancel");
  ASSERT_EQ(cancel.status, 200) << cancel.body;
  EXPECT_EQ(Json::parse(cancel.body)["status"], "failed");
  EXPECT_EQ(call("GET", "/v1/deploys/" + ids[0] + "/cancel").status, 405);

  EXPECT_EQ(call("DELETE", "/v1/deploys/" + ids[0]).status, 204);
  EXPECT_EQ(call("GET", "/v1/deploys/" + ids[0]).status, 404);
  EXPECT_EQ(call("DELETE", "/v1/deploys/" + ids[0]).status, 404);
  EXPECT_EQ(call("POST", "/v1/deploys/" + ids[0] + "/cancel").status, 404);
  EXPECT_FALSE(fs::exists(state_ / "jobs" / ids[0]));
  EXPECT_EQ(Json::parse(call("GET", "/v1/deploys").body)["items"].size(), 2u);
}

TEST_F(ApiServerTest, AnIdempotencyKeyAnswersTheSameRequestWithItsJobAndRefusesAnother) {
  auto headers = kCallerKey;
  headers["Idempotency-Key"] = "session-42-attempt";
  auto first = call("POST", "/v1/deploys?target=prod", appBundle(), headers);
  ASSERT_EQ(first.status, 202) << first.body;
  const std::string id = Json::parse(first.body)["id"];
  auto again = call("POST", "/v1/deploys?target=prod", appBundle(), headers);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(Json::parse(again.body)["id"], id);
  EXPECT_EQ(again.headers["Idempotent-Replayed"], "true");
  EXPECT_EQ(again.headers["Location"], "/v1/deploys/" + id);

  const std::string other_bundle = ArchiveBuilder()
                                       .addFile("package.json", R"({"name":"b","dependencies":{"convex":"1.49.0"}})")
                                       .addFile("convex/messages.ts", "export const y = 2;\n")
                                       .build(ArchiveBuilder::Format::kTarGz);
  auto other = call("POST", "/v1/deploys?target=prod", other_bundle, headers);
  EXPECT_EQ(other.status, 409) << other.body;
  EXPECT_EQ(Json::parse(other.body)["reason"], "idempotency_conflict");
  EXPECT_EQ(Json::parse(other.body)["field"], "Idempotency-Key");
  auto other_options = call("POST", "/v1/deploys?target=prod&typecheck=disable", appBundle(), headers);
  EXPECT_EQ(other_options.status, 409) << other_options.body;
  auto other_key = headers;
  other_key["Convex-Deploy-Key"] = "prod:a-b-1|another-secret-0123456789";
  EXPECT_EQ(call("POST", "/v1/deploys?target=prod", appBundle(), other_key).status, 409);
  EXPECT_EQ(jobFolders(state_), 1u) << "replays and conflicts leave nothing behind";

  headers["Idempotency-Key"] = "has space";
  auto invalid = call("POST", "/v1/deploys?target=prod", appBundle(), headers);
  EXPECT_EQ(invalid.status, 400);
  EXPECT_EQ(Json::parse(invalid.body)["reason"], "invalid_idempotency_key");
}

TEST_F(ApiServerTest, ConcurrentIdenticalRequestsMakeOneJob) {
  auto headers = kCallerKey;
  headers["Idempotency-Key"] = "concurrent-1";
  const std::string bundle = appBundle();
  std::vector<std::future<testsupport::HttpResult>> answers;
  for (int i = 0; i < 4; ++i) {
    answers.push_back(std::async(std::launch::async, [&] {
      return httpRequest("POST", server_->baseUrl() + "/v1/deploys?target=prod",
                         [&] { auto h = headers; h["Authorization"] = "Bearer " + kToken; return h; }(), bundle);
    }));
  }
  std::set<std::string> ids;
  int created = 0;
  for (auto& answer : answers) {
    auto result = answer.get();
    ASSERT_TRUE(result.status == 202 || result.status == 200) << result.status << " " << result.body;
    created += result.status == 202;
    ids.insert(Json::parse(result.body)["id"].get<std::string>());
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(jobFolders(state_), 1u);
}

// Unit tests of the local Convex stand-in, driven over real HTTP on a loopback port.
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include <brotli/encode.h>
#include <gtest/gtest.h>

#include <sstream>
#include <utility>

#include <Poco/DeflatingStream.h>
#include <nlohmann/json.hpp>
#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>

#include "standin/brotli_decode.h"
#include "standin/standin.h"

namespace {

using nlohmann::json;

constexpr const char* kTeamToken = "team-token-for-tests";
constexpr const char* kProd = "happy-otter-123";
constexpr const char* kDev = "brave-fox-456";
constexpr const char* kBadAdminKeyMessage = "The provided admin key was invalid for this instance";

// sha256("abc"): the hash of a module whose source + sourceMap concatenate to "abc".
constexpr const char* kSha256Abc =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
// sha256("hello")
constexpr const char* kSha256Hello =
    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

int64_t nowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string brotliCompress(const std::string& input) {
  std::string output(BrotliEncoderMaxCompressedSize(input.size()) + 16, '\0');
  std::size_t encoded_size = output.size();
  const bool ok = BrotliEncoderCompress(
      4, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_TEXT, input.size(),
      reinterpret_cast<const uint8_t*>(input.data()), &encoded_size,
      reinterpret_cast<uint8_t*>(output.data()));
  if (!ok) throw std::runtime_error("brotli compression failed");
  output.resize(encoded_size);
  return output;
}

struct HttpResult {
  int status = 0;
  std::string body;
  json parsed() const { return json::parse(body); }
};

using Headers = std::vector<std::pair<std::string, std::string>>;

class StandinTest : public ::testing::Test {
 public:
  void SetUp() override {
    standin::Options options;
    options.team_tokens = {kTeamToken};
    server_ = std::make_unique<standin::Standin>(options);
    server_->start();
  }

  void TearDown() override { server_->stop(); }

  HttpResult call(const std::string& method, const std::string& path, const std::string& body = "",
                  const Headers& headers = {}) {
    Poco::Net::HTTPClientSession session("127.0.0.1", server_->port());
    session.setTimeout(Poco::Timespan(10, 0));
    Poco::Net::HTTPRequest request(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
    for (const auto& [name, value] : headers) request.set(name, value);
    if (!body.empty() || method == "POST") {
      request.setContentType("application/json");
      request.setContentLength(static_cast<std::streamsize>(body.size()));
    }
    session.sendRequest(request) << body;
    Poco::Net::HTTPResponse response;
    std::istream& in = session.receiveResponse(response);
    HttpResult result;
    result.status = response.getStatus();
    Poco::StreamCopier::copyToString(in, result.body);
    if (result.status != 204 && !result.body.empty()) {
      EXPECT_EQ(response.getContentType(), "application/json") << method << ' ' << path;
    }
    return result;
  }

  HttpResult management(const std::string& method, const std::string& path,
                        const std::string& body = "") {
    return call(method, path, body, {{"Authorization", std::string("Bearer ") + kTeamToken}});
  }

  // A deployment call as the CLI makes it: `Convex` auth, key repeated in the body.
  HttpResult deployment(const std::string& path, const std::string& key, json body,
                        bool compress = false) {
    body["adminKey"] = key;
    Headers headers = {{"Authorization", "Convex " + key}};
    std::string payload = body.dump();
    if (compress) {
      payload = brotliCompress(payload);
      headers.emplace_back("Content-Encoding", "br");
    }
    return call("POST", path, payload, headers);
  }

  void addFault(const json& fault) {
    const HttpResult result = call("POST", "/_standin/faults", fault.dump());
    ASSERT_EQ(result.status, 200) << result.body;
  }

  std::unique_ptr<standin::Standin> server_;
};

json module(const std::string& path, const std::string& source,
            const std::optional<std::string>& source_map = std::nullopt) {
  json config = {{"path", path}, {"source", source}, {"environment", "isolate"}};
  if (source_map) config["sourceMap"] = *source_map;
  return config;
}

json startPushBody(json changed, json unchanged = json::array(), bool with_schema = true,
                   bool dry_run = false) {
  return {{"dryRun", dry_run},
          {"functions", "convex/"},
          {"appDefinition",
           {{"definition", module("convex.config.js", "export default {}")},
            {"dependencies", json::array()},
            {"schema", with_schema ? module("schema.js", "export default {}") : json()},
            {"changedModules", std::move(changed)},
            {"unchangedModuleHashes", std::move(unchanged)},
            {"udfServerVersion", "1.49.0"}}},
          {"componentDefinitions", json::array()},
          {"nodeDependencies", json::array()}};
}

// Runs start_push (brotli), wait_for_schema and finish_push; returns the finish_push diff.
json push(StandinTest& test, const std::string& key, const json& start_body,
          bool dry_run = false) {
  HttpResult started = test.deployment("/api/deploy2/start_push", key, start_body, true);
  EXPECT_EQ(started.status, 200) << started.body;
  const json start = started.parsed();
  EXPECT_TRUE(start.at("analysis").contains(""));
  HttpResult waited = test.deployment("/api/deploy2/wait_for_schema", key,
                                      {{"schemaChange", start.at("schemaChange")},
                                       {"timeoutMs", 10000},
                                       {"dryRun", dry_run}});
  EXPECT_EQ(waited.status, 200) << waited.body;
  EXPECT_EQ(waited.parsed(), json({{"type", "complete"}}));
  HttpResult finished = test.deployment("/api/deploy2/finish_push", key,
                                        {{"startPush", start}, {"dryRun", dry_run}, {"message", nullptr}},
                                        true);
  EXPECT_EQ(finished.status, 200) << finished.body;
  return finished.parsed();
}

TEST_F(StandinTest, ManagementApiRejectsMissingOrWrongTeamToken) {
  HttpResult missing = call("GET", "/v1/token_details");
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(missing.parsed().at("code"), "Unauthenticated");
  EXPECT_TRUE(missing.parsed().at("message").is_string());

  HttpResult wrong = call("GET", "/v1/token_details", "", {{"Authorization", "Bearer nope"}});
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.parsed().at("code"), "Unauthenticated");

  HttpResult wrong_scheme = call("GET", "/v1/token_details", "",
                                 {{"Authorization", std::string("Convex ") + kTeamToken}});
  EXPECT_EQ(wrong_scheme.status, 401);

  HttpResult create = call("POST", "/v1/deployments/happy-otter-123/create_deploy_key",
                           R"({"name":"ci"})", {{"Authorization", "Bearer nope"}});
  EXPECT_EQ(create.status, 401);

  HttpResult details = management("GET", "/v1/token_details");
  ASSERT_EQ(details.status, 200) << details.body;
  const json token = details.parsed();
  EXPECT_EQ(token.at("type"), "teamToken");
  EXPECT_EQ(token.at("teamId"), 1);
  EXPECT_TRUE(token.at("id").is_number_integer());
  EXPECT_TRUE(token.at("name").is_string());
  EXPECT_TRUE(token.at("createTime").is_number_integer());
}

TEST_F(StandinTest, GetDeploymentDescribesCloudDeploymentAtStandinOrigin) {
  HttpResult found = management("GET", "/v1/deployments/happy-otter-123");
  ASSERT_EQ(found.status, 200) << found.body;
  const json deployment = found.parsed();
  EXPECT_EQ(deployment.at("kind"), "cloud");
  EXPECT_EQ(deployment.at("name"), kProd);
  EXPECT_EQ(deployment.at("deploymentType"), "prod");
  EXPECT_EQ(deployment.at("deploymentUrl"), server_->origin());
  EXPECT_EQ(deployment.at("projectId"), 1);
  for (const char* field : {"id", "createTime", "region", "isDefault", "reference", "class"}) {
    EXPECT_TRUE(deployment.contains(field)) << field;
  }

  HttpResult missing = management("GET", "/v1/deployments/nope-cat-1");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.parsed().at("code"), "DeploymentNotFound");
}

TEST_F(StandinTest, CreateDeployKeyRequiresStringName) {
  const std::string path = "/v1/deployments/happy-otter-123/create_deploy_key";
  for (const std::string body : {R"({})", R"({"name":5})", R"({"name":null})"}) {
    HttpResult result = management("POST", path, body);
    EXPECT_EQ(result.status, 400) << body;
    EXPECT_EQ(result.parsed().at("code"), "BadRequest") << body;
    EXPECT_NE(result.parsed().at("message").get<std::string>().find("`name`"), std::string::npos)
        << result.body;
  }
  HttpResult not_json = management("POST", path, "{name:");
  EXPECT_EQ(not_json.status, 400);
  EXPECT_EQ(not_json.parsed().at("code"), "BadRequest");
}

TEST_F(StandinTest, CreateDeployKeyChecksExpiresAt) {
  const std::string path = "/v1/deployments/happy-otter-123/create_deploy_key";
  auto withExpiry = [](const json& expires_at) {
    return json{{"name", "ci"}, {"expiresAt", expires_at}}.dump();
  };
  HttpResult too_soon = management("POST", path, withExpiry(nowMs() + 10 * 60 * 1000));
  EXPECT_EQ(too_soon.status, 400);
  EXPECT_NE(too_soon.body.find("expiresAt"), std::string::npos);

  HttpResult wrong_type = management("POST", path, withExpiry("tomorrow"));
  EXPECT_EQ(wrong_type.status, 400);
  EXPECT_NE(wrong_type.body.find("expiresAt"), std::string::npos);

  EXPECT_EQ(management("POST", path, withExpiry(nowMs() + 31 * 60 * 1000)).status, 200);
  EXPECT_EQ(management("POST", path, withExpiry(nullptr)).status, 200);
}

TEST_F(StandinTest, CreateDeployKeyChecksAllowedActions) {
  const std::string path = "/v1/deployments/happy-otter-123/create_deploy_key";
  HttpResult unknown = management("POST", path,
                                  R"({"name":"ci","allowedActions":["deployment:deploy","x"]})");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_NE(unknown.body.find("allowedActions[1]"), std::string::npos) << unknown.body;

  HttpResult not_array = management("POST", path, R"({"name":"ci","allowedActions":"all"})");
  EXPECT_EQ(not_array.status, 400);

  // The live API's extra action is known.
  HttpResult accepted = management(
      "POST", path, R"({"name":"ci","allowedActions":["deployment:deploy","deployment:aiGateway:use"]})");
  EXPECT_EQ(accepted.status, 200) << accepted.body;
}

TEST_F(StandinTest, CreateDeployKeyRefusesUnknownFieldsByName) {
  const std::string path = "/v1/deployments/happy-otter-123/create_deploy_key";
  HttpResult misspelt = management("POST", path, R"({"name":"ci","expires_at":1})");
  EXPECT_EQ(misspelt.status, 400);
  EXPECT_EQ(misspelt.parsed().at("code"), "BadRequest");
  EXPECT_NE(misspelt.parsed().at("message").get<std::string>().find("expires_at"), std::string::npos)
      << misspelt.body;
}

TEST_F(StandinTest, CreateDeployKeyForUnknownDeploymentIs404) {
  HttpResult result =
      management("POST", "/v1/deployments/kindly-cow-378/create_deploy_key", R"({"name":"ci"})");
  EXPECT_EQ(result.status, 404);
  EXPECT_EQ(result.parsed().at("code"), "DeploymentNotFound");
  EXPECT_EQ(result.parsed().at("message"),
            "The requested deployment kindly-cow-378 does not exist");
}

TEST_F(StandinTest, CreateDeployKeyPrefixesKeyWithDeploymentTypeAndLogsGrantNotSecret) {
  HttpResult prod = management("POST", "/v1/deployments/happy-otter-123/create_deploy_key",
                               R"({"name":"ci-prod","allowedActions":["deployment:deploy"]})");
  ASSERT_EQ(prod.status, 200) << prod.body;
  const std::string prod_key = prod.parsed().at("deployKey");
  EXPECT_EQ(prod_key.rfind("prod:happy-otter-123|", 0), 0u) << prod_key;

  HttpResult dev = management("POST", "/v1/deployments/brave-fox-456/create_deploy_key",
                              R"({"name":"ci-dev"})");
  ASSERT_EQ(dev.status, 200) << dev.body;
  const std::string dev_key = dev.parsed().at("deployKey");
  EXPECT_EQ(dev_key.rfind("dev:brave-fox-456|", 0), 0u) << dev_key;
  EXPECT_GT(dev_key.size(), std::string("dev:brave-fox-456|").size() + 20);

  const json requests = server_->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].at("deployment"), kProd);
  EXPECT_EQ(requests[0].at("status"), 200);
  EXPECT_EQ(requests[0].at("deploy_key").at("name"), "ci-prod");
  EXPECT_EQ(requests[0].at("deploy_key").at("allowedActions"), json({"deployment:deploy"}));
  EXPECT_TRUE(requests[0].at("deploy_key").at("expiresAt").is_null());
  EXPECT_TRUE(requests[1].at("deploy_key").at("allowedActions").is_null());

  const std::string log = requests.dump();
  EXPECT_EQ(log.find(prod_key.substr(prod_key.find('|') + 1)), std::string::npos);
  EXPECT_EQ(log.find(dev_key.substr(dev_key.find('|') + 1)), std::string::npos);
  EXPECT_EQ(log.find(kTeamToken), std::string::npos);
}

TEST_F(StandinTest, UrlForKeyAnswersBareJsonStringWithOrigin) {
  const std::string key = server_->mintDeployKey(kProd);
  HttpResult url = call("POST", "/api/deployment/url_for_key", json{{"deployKey", key}}.dump(),
                        {{"Authorization", "Bearer " + key}});
  ASSERT_EQ(url.status, 200);
  EXPECT_EQ(url.body, json(server_->origin()).dump());
  EXPECT_EQ(url.parsed(), server_->origin());

  HttpResult unknown = call("POST", "/api/deployment/url_for_key",
                            R"({"deployKey":"prod:happy-otter-123|bogus"})");
  EXPECT_EQ(unknown.status, 401);
  EXPECT_EQ(unknown.parsed().at("code"), "BadDeployKey");

  HttpResult missing = call("POST", "/api/deployment/url_for_key", "{}");
  EXPECT_EQ(missing.status, 400);
}

TEST_F(StandinTest, TeamAndProjectForKeyNamesReferenceByType) {
  for (const auto& [name, reference] :
       std::vector<std::pair<std::string, std::string>>{{kProd, "production"},
                                                        {kDev, "dev/standin"}}) {
    const std::string key = server_->mintDeployKey(name);
    HttpResult result = call("POST", "/api/deployment/team_and_project_for_key",
                             json{{"deployKey", key}}.dump());
    ASSERT_EQ(result.status, 200) << result.body;
    const json body = result.parsed();
    EXPECT_EQ(body.at("team"), "demo-team");
    EXPECT_EQ(body.at("project"), "demo-project");
    EXPECT_EQ(body.at("teamId"), 1);
    EXPECT_EQ(body.at("projectId"), 1);
    EXPECT_EQ(body.at("reference"), reference);
    EXPECT_EQ(body.at("isDefault"), true);
  }
  HttpResult version = call("GET", "/v1/version");
  ASSERT_EQ(version.status, 200);
  EXPECT_TRUE(version.parsed().at("message").is_null());
}

TEST_F(StandinTest, FullPushCycleRecordsModulesWithSha256OfSourceAndSourceMap) {
  const std::string key = server_->mintDeployKey(kProd);

  HttpResult before = deployment("/api/get_config_hashes", key, {{"version", "1.49.0"}});
  ASSERT_EQ(before.status, 200) << before.body;
  EXPECT_EQ(before.parsed().at("config").at("functions"), "convex/");
  EXPECT_EQ(before.parsed().at("moduleHashes"), json::array());

  HttpResult schema = deployment("/api/deploy2/evaluate_schema", key,
                                 startPushBody(json::array({module("a.js", "abc")})), true);
  ASSERT_EQ(schema.status, 200) << schema.body;
  EXPECT_TRUE(schema.parsed().at("componentSchemaEvaluations").is_object());

  const json diff = push(*this, key,
                         startPushBody(json::array({module("a.js", "ab", "c"),
                                                    module("b.js", "hello")})));
  const json& root = diff.at("componentDiffs").at("");
  EXPECT_EQ(root.at("moduleDiff").at("added"), json({"a.js", "b.js"}));
  EXPECT_EQ(root.at("moduleDiff").at("removed"), json::array());

  const json pushes = server_->pushes();
  ASSERT_EQ(pushes.size(), 1u);
  EXPECT_EQ(pushes[0].at("deployment"), kProd);
  EXPECT_EQ(pushes[0].at("committed"), true);
  EXPECT_EQ(pushes[0].at("dry_run"), false);
  EXPECT_EQ(pushes[0].at("has_schema"), true);
  EXPECT_EQ(pushes[0].at("modules"),
            json::parse(std::string(R"([{"path":"a.js","environment":"isolate","sha256":")") +
                        kSha256Abc + R"("},{"path":"b.js","environment":"isolate","sha256":")" +
                        kSha256Hello + R"("}])"));

  HttpResult after = deployment("/api/get_config_hashes", key, {{"version", "1.49.0"}});
  ASSERT_EQ(after.status, 200);
  EXPECT_EQ(after.parsed().at("moduleHashes")[0],
            json({{"path", "a.js"}, {"environment", "isolate"}, {"hash", kSha256Abc}}));
  EXPECT_EQ(after.parsed().at("udfServerVersion"), "1.49.0");

  // Other deployments are untouched.
  HttpResult dev = deployment("/api/get_config_hashes", server_->mintDeployKey(kDev),
                              {{"version", "1.49.0"}});
  EXPECT_EQ(dev.parsed().at("moduleHashes"), json::array());
}

TEST_F(StandinTest, SecondPushWithUnchangedModuleHashesKeepsThoseModules) {
  const std::string key = server_->mintDeployKey(kProd);
  push(*this, key,
       startPushBody(json::array({module("a.js", "abc"), module("old.js", "bye")})));

  const json unchanged = json::array(
      {{{"path", "a.js"}, {"environment", "isolate"}, {"sha256", kSha256Abc}}});
  const json diff =
      push(*this, key, startPushBody(json::array({module("b.js", "hello")}), unchanged, false));
  EXPECT_EQ(diff.at("componentDiffs").at("").at("moduleDiff").at("added"), json({"b.js"}));
  EXPECT_EQ(diff.at("componentDiffs").at("").at("moduleDiff").at("removed"), json({"old.js"}));

  const json pushes = server_->pushes();
  ASSERT_EQ(pushes.size(), 2u);
  EXPECT_EQ(pushes[1].at("committed"), true);
  EXPECT_EQ(pushes[1].at("has_schema"), false);
  ASSERT_EQ(pushes[1].at("modules").size(), 2u);
  EXPECT_EQ(pushes[1].at("modules")[0].at("path"), "a.js");
  EXPECT_EQ(pushes[1].at("modules")[0].at("sha256"), kSha256Abc);
  EXPECT_EQ(pushes[1].at("modules")[1].at("sha256"), kSha256Hello);
}

TEST_F(StandinTest, StartPushRejectsUnchangedHashTheDeploymentDoesNotHave) {
  const std::string key = server_->mintDeployKey(kProd);
  push(*this, key, startPushBody(json::array({module("a.js", "abc")})));

  const json wrong_hash = json::array(
      {{{"path", "a.js"}, {"environment", "isolate"}, {"sha256", kSha256Hello}}});
  HttpResult result = deployment("/api/deploy2/start_push", key,
                                 startPushBody(json::array(), wrong_hash), true);
  EXPECT_EQ(result.status, 400);
  EXPECT_NE(result.body.find("a.js"), std::string::npos);

  // Hashes from one deployment mean nothing on another.
  const json right_hash = json::array(
      {{{"path", "a.js"}, {"environment", "isolate"}, {"sha256", kSha256Abc}}});
  HttpResult other = deployment("/api/deploy2/start_push", server_->mintDeployKey(kDev),
                                startPushBody(json::array(), right_hash), true);
  EXPECT_EQ(other.status, 400);
  EXPECT_EQ(server_->pushes().size(), 1u);
}

TEST_F(StandinTest, StartPushValidatesTheBody) {
  const std::string key = server_->mintDeployKey(kProd);
  json no_path = startPushBody(json::array({{{"source", "x"}, {"environment", "isolate"}}}));
  HttpResult missing = deployment("/api/deploy2/start_push", key, no_path, true);
  EXPECT_EQ(missing.status, 400);
  EXPECT_NE(missing.body.find("appDefinition.changedModules[0].path"), std::string::npos)
      << missing.body;

  json bad_environment = startPushBody(json::array({module("a.js", "abc")}));
  bad_environment["appDefinition"]["changedModules"][0]["environment"] = "browser";
  EXPECT_EQ(deployment("/api/deploy2/start_push", key, bad_environment, true).status, 400);

  json no_app = startPushBody(json::array());
  no_app.erase("appDefinition");
  EXPECT_EQ(deployment("/api/deploy2/start_push", key, no_app, true).status, 400);

  HttpResult garbage = call("POST", "/api/deploy2/start_push", "definitely not brotli",
                            {{"Authorization", "Convex " + key}, {"Content-Encoding", "br"}});
  EXPECT_EQ(garbage.status, 400);
  EXPECT_TRUE(server_->pushes().empty());
}

TEST_F(StandinTest, DryRunAndUnfinishedPushesDoNotCommit) {
  const std::string key = server_->mintDeployKey(kProd);
  push(*this, key, startPushBody(json::array({module("a.js", "abc")}), json::array(), true, true),
       true);
  HttpResult started = deployment("/api/deploy2/start_push", key,
                                  startPushBody(json::array({module("b.js", "hello")})), true);
  ASSERT_EQ(started.status, 200);

  const json pushes = server_->pushes();
  ASSERT_EQ(pushes.size(), 2u);
  EXPECT_EQ(pushes[0].at("dry_run"), true);
  EXPECT_EQ(pushes[0].at("committed"), false);
  EXPECT_EQ(pushes[1].at("committed"), false);
  HttpResult hashes = deployment("/api/get_config_hashes", key, {{"version", "1.49.0"}});
  EXPECT_EQ(hashes.parsed().at("moduleHashes"), json::array());

  HttpResult unknown_push = deployment("/api/deploy2/finish_push", key,
                                       {{"startPush", {{"standinPushId", "nope"}}}, {"dryRun", false}});
  EXPECT_EQ(unknown_push.status, 400);
}

TEST_F(StandinTest, DeploymentRoutesRejectUnknownAdminKey) {
  HttpResult bad = deployment("/api/deploy2/start_push", "prod:happy-otter-123|forged",
                              startPushBody(json::array()), true);
  EXPECT_EQ(bad.status, 401);
  EXPECT_EQ(bad.parsed().at("code"), "BadAdminKey");
  EXPECT_EQ(bad.parsed().at("message"), kBadAdminKeyMessage);

  HttpResult get = call("GET", "/api/v1/get_canonical_urls", "",
                        {{"Authorization", "Convex dev:brave-fox-456|forged"}});
  EXPECT_EQ(get.status, 401);
  EXPECT_EQ(get.parsed().at("code"), "BadAdminKey");

  HttpResult none = call("POST", "/api/get_config_hashes", R"({"version":"1.49.0"})");
  EXPECT_EQ(none.status, 401);

  const std::string key = server_->mintDeployKey(kDev);
  HttpResult urls = call("GET", "/api/v1/get_canonical_urls", "", {{"Authorization", "Convex " + key}});
  ASSERT_EQ(urls.status, 200);
  EXPECT_EQ(urls.parsed().at("convexCloudUrl"), server_->origin());
  HttpResult logs = call("GET", "/api/stream_function_logs?cursor=0", "",
                         {{"Authorization", "Convex " + key}});
  ASSERT_EQ(logs.status, 200);
  EXPECT_EQ(logs.parsed().at("entries"), json::array());
  EXPECT_GT(logs.parsed().at("newCursor").get<int64_t>(), 0);
  EXPECT_TRUE(server_->pushes().empty());
}

TEST_F(StandinTest, FaultAnswersWithStatusForGivenTimesThenClears) {
  const std::string key = server_->mintDeployKey(kProd);
  addFault({{"method", "POST"},
            {"path", "/api/deploy2/start_push"},
            {"status", 401},
            {"code", "BadAdminKey"},
            {"message", "injected"},
            {"times", 2}});
  const json body = startPushBody(json::array({module("a.js", "abc")}));
  for (int i = 0; i < 2; ++i) {
    HttpResult faulted = deployment("/api/deploy2/start_push", key, body, true);
    EXPECT_EQ(faulted.status, 401);
    EXPECT_EQ(faulted.parsed(), json({{"code", "BadAdminKey"}, {"message", "injected"}}));
  }
  EXPECT_EQ(deployment("/api/deploy2/start_push", key, body, true).status, 200);

  const json requests = server_->requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].at("status"), 401);
  EXPECT_EQ(requests[0].at("fault"), true);
  EXPECT_EQ(requests[0].at("deployment"), kProd);
  EXPECT_FALSE(requests[2].contains("fault"));
}

TEST_F(StandinTest, FaultMatchesMethodAndPathAndCanLastForeverUntilReset) {
  const std::string key = server_->mintDeployKey(kDev);
  addFault({{"method", "GET"}, {"path", "/api/v1/get_canonical_urls"}, {"status", 503}, {"times", -1}});
  const Headers auth = {{"Authorization", "Convex " + key}};
  for (int i = 0; i < 3; ++i) {
    HttpResult faulted = call("GET", "/api/v1/get_canonical_urls", "", auth);
    EXPECT_EQ(faulted.status, 503);
    EXPECT_TRUE(faulted.parsed().at("code").is_string());
  }
  EXPECT_EQ(call("GET", "/api/stream_function_logs", "", auth).status, 200);
  EXPECT_EQ(call("POST", "/api/v1/get_canonical_urls", "{}", auth).status, 405);

  ASSERT_EQ(call("POST", "/_standin/reset", "{}").status, 200);
  EXPECT_EQ(call("GET", "/api/v1/get_canonical_urls", "", auth).status, 200);
  EXPECT_EQ(server_->requests().size(), 1u);
}

TEST_F(StandinTest, FaultCanDropTheConnectionWithoutAnswering) {
  const std::string key = server_->mintDeployKey(kProd);
  addFault({{"path", "/api/get_config_hashes"}, {"drop_connection", true}});
  EXPECT_THROW(deployment("/api/get_config_hashes", key, {{"version", "1.49.0"}}), Poco::Exception);
  EXPECT_EQ(deployment("/api/get_config_hashes", key, {{"version", "1.49.0"}}).status, 200);

  const json requests = server_->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].at("status"), 0);
  EXPECT_EQ(requests[0].at("fault"), true);
}

TEST_F(StandinTest, FaultWithOnlyDelayStillServesTheRoute) {
  addFault({{"path", "/v1/version"}, {"delay_ms", 300}});
  const auto started = std::chrono::steady_clock::now();
  HttpResult version = call("GET", "/v1/version");
  const auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(version.status, 200);
  EXPECT_GE(elapsed, std::chrono::milliseconds(300));
}

TEST_F(StandinTest, ControlApiRejectsMalformedFaults) {
  EXPECT_EQ(call("POST", "/_standin/faults", R"({"path":"/v1/version","statuss":500})").status, 400);
  EXPECT_EQ(call("POST", "/_standin/faults", R"({"status":500})").status, 400);
  EXPECT_EQ(call("POST", "/_standin/faults", R"({"path":"/v1/version"})").status, 400);
  EXPECT_EQ(call("GET", "/_standin/faults").parsed(), json::array());
}

TEST_F(StandinTest, ControlApiMintsKeysAndListsPushes) {
  HttpResult minted = call("POST", "/_standin/deploy_keys", R"({"deployment":"brave-fox-456"})");
  ASSERT_EQ(minted.status, 200);
  const std::string key = minted.parsed().at("deployKey");
  EXPECT_EQ(key.rfind("dev:brave-fox-456|", 0), 0u);
  EXPECT_EQ(call("POST", "/_standin/deploy_keys", R"({"deployment":"nope-cat-1"})").status, 404);

  push(*this, key, startPushBody(json::array({module("a.js", "abc")})));
  HttpResult pushes = call("GET", "/_standin/pushes");
  ASSERT_EQ(pushes.status, 200);
  EXPECT_EQ(pushes.parsed(), server_->pushes());
  EXPECT_EQ(pushes.parsed().at(0).at("deployment"), kDev);

  // Control calls are the harness's own and stay out of the request log.
  for (const auto& request : server_->requests()) {
    EXPECT_NE(request.at("path").get<std::string>().rfind("/_standin/", 0), 0u);
  }
}

TEST_F(StandinTest, UnknownRoutesAre404) {
  HttpResult missing = call("GET", "/api/nothing_here");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.parsed().at("code"), "NotFound");
  // A provision host with a trailing slash makes the CLI request "//api/...".
  EXPECT_EQ(call("POST", "//api/deployment/url_for_key", "{}").status, 404);
}

TEST(StandinBrotliTest, DecodesAndStopsAtTheLimit) {
  const std::string text(100'000, 'z');
  const std::string compressed = brotliCompress(text);
  EXPECT_EQ(standin::decodeBrotli(compressed, 100'000), text);
  EXPECT_THROW(standin::decodeBrotli(compressed, 99'999), standin::DecodedBodyTooLarge);
  EXPECT_THROW(standin::decodeBrotli(compressed.substr(0, compressed.size() / 2), 100'000),
               standin::InvalidBrotliStream);
  EXPECT_THROW(standin::decodeBrotli(compressed + "x", 100'000), standin::InvalidBrotliStream);
}

}  // namespace

TEST_F(StandinTest, KeysAreHeldToTheirAllowedActionsAndExpiry) {
  auto mint = [&](const json& body) {
    HttpResult minted = call("POST", "/_standin/deploy_keys", body.dump());
    EXPECT_EQ(minted.status, 200) << minted.body;
    return minted.parsed().at("deployKey").get<std::string>();
  };
  const std::string env_only =
      mint({{"deployment", kProd}, {"allowedActions", json::array({"deployment:env:view"})}});
  HttpResult refused = deployment("/api/get_config_hashes", env_only, json::object());
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(refused.parsed().at("code"), "OperationNotPermitted");
  EXPECT_NE(refused.body.find("(deployment:deploy)"), std::string::npos) << refused.body;

  const std::string deploy_only =
      mint({{"deployment", kProd}, {"allowedActions", json::array({"deployment:deploy"})}});
  EXPECT_EQ(deployment("/api/get_config_hashes", deploy_only, json::object()).status, 200);

  const std::string expired = mint({{"deployment", kProd}, {"expiresAt", nowMs() - 1000}});
  HttpResult stale = deployment("/api/get_config_hashes", expired, json::object());
  EXPECT_EQ(stale.status, 403);
  EXPECT_EQ(stale.parsed().at("code"), "BadDeployKey");
}

namespace {

std::string deflateWith(const std::string& text, Poco::DeflatingStreamBuf::StreamType type) {
  std::ostringstream out;
  Poco::DeflatingOutputStream deflating(out, type);
  deflating << text;
  deflating.close();
  return out.str();
}

}  // namespace

TEST_F(StandinTest, GzipAndDeflateBodiesAreDecodedLikeBrotli) {
  const std::string key = server_->mintDeployKey(kProd);
  const std::string body = json{{"version", "1.49.0"}, {"adminKey", key}}.dump();
  for (const auto& [encoding, type] :
       {std::pair{"gzip", Poco::DeflatingStreamBuf::STREAM_GZIP},
        std::pair{"deflate", Poco::DeflatingStreamBuf::STREAM_ZLIB}}) {
    SCOPED_TRACE(encoding);
    HttpResult decoded = call("POST", "/api/get_config_hashes", deflateWith(body, type),
                              {{"Authorization", "Convex " + key}, {"Content-Encoding", encoding}});
    EXPECT_EQ(decoded.status, 200) << decoded.body;
    HttpResult garbage = call("POST", "/api/get_config_hashes", "not compressed at all",
                              {{"Authorization", "Convex " + key}, {"Content-Encoding", encoding}});
    EXPECT_EQ(garbage.status, 400) << garbage.body;
  }
  HttpResult unknown = call("POST", "/api/get_config_hashes", body,
                            {{"Authorization", "Convex " + key}, {"Content-Encoding", "compress"}});
  EXPECT_EQ(unknown.status, 415);
}

// ---- preview deploy keys: list_preview_deploy_keys, delete_preview_deploy_key ----------------

namespace {

std::string secretOf(const std::string& key) { return key.substr(key.rfind('|') + 1); }

json claimBody(const std::string& identifier) {
  return {{"projectSelection",
           {{"kind", "teamAndProjectSlugs"}, {"teamSlug", "demo-team"}, {"projectSlug", "demo-project"}}},
          {"identifier", identifier},
          {"reuse", true}};
}

}  // namespace

class StandinPreviewKeyTest : public StandinTest {
 protected:
  std::string mintPreviewKey(const std::string& name, const std::string& token = kTeamToken) {
    HttpResult minted = call("POST", "/v1/projects/1/create_preview_deploy_key",
                             json{{"name", name}}.dump(), {{"Authorization", "Bearer " + token}});
    EXPECT_EQ(minted.status, 200) << minted.body;
    return minted.parsed().at("previewDeployKey");
  }
  HttpResult claim(const std::string& key, const std::string& identifier) {
    return call("POST", "/api/claim_preview_deployment", claimBody(identifier).dump(),
                {{"Authorization", "Bearer " + key}});
  }
  HttpResult list(const std::string& query = "", const std::string& token = kTeamToken,
                  const std::string& project = "1") {
    return call("GET", "/v1/projects/" + project + "/list_preview_deploy_keys" + query, "",
                {{"Authorization", "Bearer " + token}});
  }
  HttpResult remove(const std::string& body, const std::string& token = kTeamToken,
                    const std::string& project = "1") {
    return call("POST", "/v1/projects/" + project + "/delete_preview_deploy_key", body,
                {{"Authorization", "Bearer " + token}});
  }
};

TEST_F(StandinPreviewKeyTest, ListShowsMetadataOnlyWithUniqueNames) {
  const std::string first = mintPreviewKey("ci");
  const std::string twin = mintPreviewKey("ci");
  const int64_t expires_at = nowMs() + 2 * 60 * 60 * 1000;
  HttpResult expiring = management("POST", "/v1/projects/1/create_preview_deploy_key",
                                   json{{"name", "nightly"}, {"expiresAt", expires_at}}.dump());
  ASSERT_EQ(expiring.status, 200) << expiring.body;
  ASSERT_EQ(claim(first, "pr-1").status, 200);

  HttpResult listed = list();
  ASSERT_EQ(listed.status, 200) << listed.body;
  for (const auto& key : {first, twin, expiring.parsed().at("previewDeployKey").get<std::string>()}) {
    EXPECT_EQ(listed.body.find(secretOf(key)), std::string::npos) << "a secret was listed";
  }
  const json items = listed.parsed().at("items");
  ASSERT_EQ(items.size(), 3u) << listed.body;
  // Oldest first; the two "ci" keys get told apart by a suffix, as the live API does.
  EXPECT_EQ(items[0].at("name").get<std::string>().rfind("ci (", 0), 0u);
  EXPECT_EQ(items[1].at("name").get<std::string>().rfind("ci (", 0), 0u);
  EXPECT_NE(items[0].at("name"), items[1].at("name"));
  EXPECT_EQ(items[2].at("name"), "nightly");
  EXPECT_EQ(items[2].at("expiresAt"), expires_at);
  EXPECT_TRUE(items[0].at("lastUsedTime").is_number_integer()) << "the claim used it";
  EXPECT_TRUE(items[1].at("lastUsedTime").is_null());
  for (const auto& item : items) {
    EXPECT_TRUE(item.at("id").is_number_integer());
    EXPECT_TRUE(item.at("creationTime").is_number_integer());
    EXPECT_TRUE(item.at("managedBy").is_null());
    EXPECT_TRUE(item.at("allowedActions").is_array());
    EXPECT_FALSE(item.at("allowedActions").empty());
  }
  EXPECT_EQ(list("?includeManaged=false").parsed(), listed.parsed());
  EXPECT_EQ(list("?includeManaged=maybe").status, 400);
  EXPECT_EQ(list("", kTeamToken, "99").status, 404);
  EXPECT_EQ(list("", "nope").status, 401);
}

TEST_F(StandinPreviewKeyTest, DeleteTakesTheKeyItsSecretOrItsNameAndThenRefusesIt) {
  const std::string by_name = mintPreviewKey("by name");
  const std::string by_key = mintPreviewKey("by key");
  const std::string by_secret = mintPreviewKey("by secret");
  for (const auto& key : {by_name, by_key, by_secret}) ASSERT_EQ(claim(key, "pr-2").status, 200);

  for (const std::string& id : {std::string("by name"), by_key, secretOf(by_secret)}) {
    HttpResult deleted = remove(json{{"id", id}}.dump());
    EXPECT_EQ(deleted.status, 200) << deleted.body;
    EXPECT_EQ(deleted.body, "");
    HttpResult again = remove(json{{"id", id}}.dump());
    EXPECT_EQ(again.status, 404);
    EXPECT_EQ(again.parsed().at("code"), "DeployKeyNotFound");
  }
  for (const auto& key : {by_name, by_key, by_secret}) {
    HttpResult refused = claim(key, "pr-2");
    EXPECT_EQ(refused.status, 401);
    EXPECT_EQ(refused.parsed().at("message"), "Invalid Convex preview deploy key");
  }
  EXPECT_EQ(list().parsed().at("items"), json::array());

  // What the log keeps: the name, never the key or its secret.
  json deletes = json::array();
  for (const auto& request : server_->requests()) {
    if (request.at("path") == "/v1/projects/1/delete_preview_deploy_key") deletes.push_back(request);
  }
  ASSERT_EQ(deletes.size(), 6u);
  EXPECT_EQ(deletes[0].at("status"), 200);
  EXPECT_EQ(deletes[0].at("preview_deploy_key"), (json{{"name", "by name"}, {"oauthDerived", false}}));
  EXPECT_EQ(deletes[1].at("status"), 404);
  const std::string log = server_->requests().dump();
  for (const auto& key : {by_name, by_key, by_secret}) {
    EXPECT_EQ(log.find(secretOf(key)), std::string::npos);
  }
}

TEST_F(StandinPreviewKeyTest, DeleteBodyIsStrict) {
  mintPreviewKey("ci");
  EXPECT_EQ(remove(R"({"id":"ci","name":"ci"})").status, 400);
  EXPECT_EQ(remove(R"({})").status, 400);
  EXPECT_EQ(remove(R"({"id":7})").status, 400);
  EXPECT_EQ(remove("not json").status, 400);
  EXPECT_EQ(remove(R"({"id":"ci"})", "nope").status, 401);
  EXPECT_EQ(remove(R"({"id":"ci"})", kTeamToken, "99").status, 404);
  EXPECT_EQ(remove(R"({"id":"ci"})").status, 200);
}

TEST_F(StandinPreviewKeyTest, OAuthMintedKeysAreManagedAndDeletingOneRevokesTheGrant) {
  HttpResult other = management("POST", "/v1/teams/1/create_project", R"({"projectName":"Other"})");
  ASSERT_EQ(other.status, 200) << other.body;
  const std::string other_id = std::to_string(other.parsed().at("id").get<int64_t>());
  const std::string token = server_->mintOAuthToken(1);
  const std::string oauth_key = mintPreviewKey("oauth previews", token);
  EXPECT_EQ(secretOf(oauth_key), secretOf(token)) << "the key is the OAuth secret (reference §9.2)";
  ASSERT_EQ(claim(oauth_key, "pr-3").status, 200);

  // Managed keys only show when asked for; the project token sees only its project.
  EXPECT_EQ(list("", token).parsed().at("items"), json::array());
  const json managed = list("?includeManaged=true", token).parsed().at("items");
  ASSERT_EQ(managed.size(), 1u);
  EXPECT_EQ(managed[0].at("name"), "oauth previews");
  EXPECT_EQ(managed[0].at("managedBy"), (json{{"oauthApp", "standin-oauth-app"}}));
  EXPECT_EQ(list("", token, other_id).status, 404);
  EXPECT_EQ(remove(R"({"id":"oauth previews"})", token, other_id).status, 404);

  HttpResult deleted = remove(R"({"id":"oauth previews"})", token);
  ASSERT_EQ(deleted.status, 200) << deleted.body;
  EXPECT_EQ(claim(oauth_key, "pr-3").status, 401);
  EXPECT_EQ(call("GET", "/v1/token_details", "", {{"Authorization", "Bearer " + token}}).status, 401)
      << "deleting the OAuth-derived key revokes the grant";
  bool logged = false;
  for (const auto& request : server_->requests()) {
    if (request.at("path") == "/v1/projects/1/delete_preview_deploy_key" && request.at("status") == 200) {
      EXPECT_EQ(request.at("preview_deploy_key").at("oauthDerived"), true);
      logged = true;
    }
  }
  EXPECT_TRUE(logged);
}

TEST_F(StandinPreviewKeyTest, RoutesTakeInjectedFaults) {
  const std::string key = mintPreviewKey("ci");
  addFault({{"path", "/v1/projects/1/list_preview_deploy_keys"}, {"status", 503}});
  EXPECT_EQ(list().status, 503);
  EXPECT_EQ(list().status, 200);
  // After handling: the key is gone although the client saw a 500.
  addFault({{"path", "/v1/projects/1/delete_preview_deploy_key"}, {"status", 500}, {"after_handling", true}});
  EXPECT_EQ(remove(R"({"id":"ci"})").status, 500);
  EXPECT_EQ(claim(key, "pr-4").status, 401);
  EXPECT_EQ(remove(R"({"id":"ci"})").status, 404);
}

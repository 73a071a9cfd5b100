// The options of POST /v1/deploys: each targeting mode, what it needs, and refusals that name
// the field (and both sources when the query and the JSON options part disagree).
#include <gtest/gtest.h>

#include "api/deploy_options.h"

namespace {

using da::api::CallerCredentials;
using da::api::DeployOptions;

DeployOptions fromQuery(const std::map<std::string, std::string>& query) {
  DeployOptions options;
  auto problem = da::api::optionsFromQuery(query, options);
  EXPECT_FALSE(problem) << (problem ? problem->detail : "");
  return options;
}

TEST(DeployOptions, QueryOptionsAreParsedAndUnknownOnesNamed) {
  auto options = fromQuery({{"target", "prod"}, {"create_project", "Session 42"}, {"ttl_seconds", "3600"}});
  EXPECT_EQ(options.target, da::Target::kProd);
  EXPECT_EQ(options.create_project, "Session 42");
  EXPECT_EQ(options.ttl_seconds, 3600);
  DeployOptions bad;
  auto problem = da::api::optionsFromQuery({{"target", "prod"}, {"region", "eu"}}, bad);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->reason, "unknown_parameter");
  EXPECT_EQ(problem->field, "region");
}

TEST(DeployOptions, BadValuesNameTheirField) {
  for (const auto& [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"target", "staging"}, {"project", "abc"}, {"project", "0"}, {"ttl_seconds", "0"},
           {"self_hosted_url", "ftp://backend"}, {"deployment", "Bad_Name"}, {"typecheck", "maybe"},
           {"callback_url", "javascript:alert(1)"}, {"callback_url", "https://" + std::string(2100, 'a') + ".example"},
           {"create_project", std::string("a\nb")}}) {
    DeployOptions options;
    auto problem = da::api::optionsFromQuery({{name, value}}, options);
    ASSERT_TRUE(problem) << name << "=" << value;
    EXPECT_EQ(problem->field, name);
    EXPECT_EQ(problem->status, 400);
  }
}

TEST(DeployOptions, JsonOptionsMergeAndADisagreementNamesBoth) {
  auto options = fromQuery({{"target", "dev"}});
  auto problem = da::api::mergeJsonOptions(
      nlohmann::json{{"target", "dev"}, {"project", 77}, {"env", {{"OPENAI_API_KEY", "sk-secret-value"}}}}, options);
  ASSERT_FALSE(problem) << problem->detail;
  EXPECT_EQ(options.project_id, 77);
  EXPECT_EQ(options.env.at("OPENAI_API_KEY"), "sk-secret-value");

  auto conflicting = fromQuery({{"target", "dev"}});
  problem = da::api::mergeJsonOptions(nlohmann::json{{"target", "prod"}}, conflicting);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->reason, "conflicting_options");
  EXPECT_EQ(problem->field, "target,options.target");
}

TEST(DeployOptions, ACallbackUrlFromEitherSourceIsPartOfTheRequest) {
  auto options = fromQuery({{"target", "prod"}, {"callback_url", "https://hooks.example.com/d?x=1"}});
  EXPECT_EQ(options.callback_url, "https://hooks.example.com/d?x=1");
  auto problem = da::api::mergeJsonOptions({{"callback_url", "https://hooks.example.com/other"}}, options);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->reason, "conflicting_options");
  DeployOptions from_json;
  ASSERT_FALSE(da::api::mergeJsonOptions({{"callback_url", "https://hooks.example.com/d"}}, from_json));
  EXPECT_EQ(from_json.callback_url, "https://hooks.example.com/d");
  // An Idempotency-Key reused with another callback is another request.
  DeployOptions other = from_json;
  other.callback_url = "https://hooks.example.com/e";
  EXPECT_NE(da::api::canonicalRequest(from_json, {}), da::api::canonicalRequest(other, {}));
}

TEST(DeployOptions, EnvIsCheckedWithoutEverRepeatingAValue) {
  for (const auto& env : {nlohmann::json{{"1BAD", "sk-secret-value"}}, nlohmann::json{{"GOOD", 5}},
                          nlohmann::json{{"BIG", std::string(9000, 'x')}}, nlohmann::json("sk-secret-value")}) {
    DeployOptions options;
    auto problem = da::api::mergeJsonOptions(nlohmann::json{{"env", env}}, options);
    ASSERT_TRUE(problem) << env.dump();
    EXPECT_EQ(problem->reason, "invalid_env");
    EXPECT_EQ(problem->detail.find("sk-secret-value"), std::string::npos);
    EXPECT_EQ(problem->detail.find("xxxxxxxx"), std::string::npos);
  }
  DeployOptions options;
  auto problem = da::api::mergeJsonOptions(nlohmann::json{{"envv", nlohmann::json::object()}}, options);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->field, "options.envv");
}

TEST(DeployOptions, EachTargetingModeNeedsItsCredentials) {
  auto check = [](const std::map<std::string, std::string>& query, CallerCredentials credentials, bool team_token) {
    auto options = fromQuery(query);
    return da::api::checkTargeting(options, credentials, team_token);
  };
  // Allowed.
  EXPECT_FALSE(check({{"target", "prod"}}, {"prod:x|s", "", ""}, false));
  EXPECT_FALSE(check({{"target", "prod"}, {"deployment", "happy-otter-123"}}, {}, true));
  EXPECT_FALSE(check({{"target", "dev"}, {"project", "12"}}, {"", "team:acme|s", ""}, false));
  EXPECT_FALSE(check({{"target", "prod"}, {"create_project", "p"}, {"ttl_seconds", "600"}}, {}, true));
  EXPECT_FALSE(check({{"target", "prod"}, {"self_hosted_url", "http://127.0.0.1:3210"}}, {"", "", "name|01ab"}, false));
  // Refused, each naming what is missing or clashing.
  auto problem = check({{"target", "prod"}}, {}, true);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->reason, "missing_deployment");
  problem = check({{"target", "prod"}, {"deployment", "happy-otter-123"}}, {}, false);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->status, 422);
  EXPECT_EQ(problem->field, "Convex-Access-Token");
  problem = check({{"target", "prod"}, {"create_project", "p"}, {"deployment", "happy-otter-123"}}, {}, true);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->field, "create_project,deployment");
  problem = check({{"target", "prod"}, {"self_hosted_url", "http://127.0.0.1:3210"}}, {}, true);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->field, "Convex-Admin-Key");
  problem = check({{"target", "prod"}, {"deployment", "happy-otter-123"}}, {"", "", "name|01ab"}, true);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->reason, "unexpected_admin_key");
  problem = check({{"target", "prod"}, {"deployment", "happy-otter-123"}, {"ttl_seconds", "600"}}, {}, true);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->field, "ttl_seconds");
  // A preview: its key from the header, or minted for project=<id>; never both, always `deploy`.
  EXPECT_FALSE(check({{"target", "prod"}, {"preview", "feature-x"}}, {"preview:acme:app|s", "", ""}, false));
  EXPECT_FALSE(check({{"target", "prod"}, {"preview", "feature-x"}, {"project", "7"}}, {}, true));
  problem = check({{"target", "prod"}, {"preview", "feature-x"}, {"project", "7"}}, {"preview:acme:app|s", "", ""}, true);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->field, "project,Convex-Deploy-Key");
  problem = check({{"target", "dev"}, {"preview", "feature-x"}}, {"preview:acme:app|s", "", ""}, true);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->reason, "invalid_preview");
  problem = check({{"target", "prod"}, {"preview", "feature-x"}}, {}, true);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->reason, "missing_preview_key");
}

}  // namespace

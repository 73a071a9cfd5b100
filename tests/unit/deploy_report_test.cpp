#include <gtest/gtest.h>

#include "report/deploy_report.h"

namespace {

da::DeployReport failedReport() {
  da::DeployReport r;
  r.id = "dep_0123456789abcdef01234567";
  r.status = da::DeployStatus::kFailed;
  r.phase = "push";
  r.target = da::Target::kDev;
  r.deployment_name = "brave-fox-456";
  r.deployment_url = "https://brave-fox-456.convex.cloud";
  r.key_source = "header";
  r.exit_code = 0;
  r.error = da::DeployError{"push_rejected", "the CLI exited 0 but did not complete the push"};
  r.warnings = {"a warning"};
  r.timings_ms = {{"install", 1200}, {"push", 3400}, {"total", 4700}};
  r.bundle = {"zip", 5461, 12, 19079, {"node_modules", ".env.local"}};
  r.cli_version = "1.49.0";
  r.app_convex_version = "1.48.2";
  r.created_at_ms = 1700000000123;
  r.started_at_ms = 1700000000200;
  r.finished_at_ms = 1700000004823;
  return r;
}

}  // namespace

TEST(DeployReport, ApiViewHasTheDocumentedFields) {
  auto j = failedReport().toJson();
  EXPECT_EQ(j["status"], "failed");
  EXPECT_EQ(j["phase"], "push");
  EXPECT_EQ(j["target"], "dev");
  EXPECT_EQ(j["deployment"]["name"], "brave-fox-456");
  EXPECT_EQ(j["exit_code"], 0);
  EXPECT_EQ(j["error"]["reason"], "push_rejected");
  EXPECT_EQ(j["timings_ms"]["push"], 3400);
  EXPECT_EQ(j["created_at"], "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(j["finished_at"], "2023-11-14T22:13:24.823Z");
  EXPECT_EQ(j["convex"]["app_library_version"], "1.48.2");
  EXPECT_FALSE(j.contains("stored"));  // internal bookkeeping stays out of the API
}

TEST(DeployReport, QueuedReportHasNullsNotEmptyStrings) {
  da::DeployReport r;
  r.id = "dep_0123456789abcdef01234567";
  r.created_at_ms = 1700000000123;
  auto j = r.toJson();
  EXPECT_TRUE(j["error"].is_null());
  EXPECT_TRUE(j["exit_code"].is_null());
  EXPECT_TRUE(j["deployment"]["url"].is_null());
  EXPECT_TRUE(j["finished_at"].is_null());
}

TEST(DeployReport, StoredFormRoundTrips) {
  const auto original = failedReport();
  const auto restored = da::DeployReport::fromJson(original.toStoredJson());
  EXPECT_EQ(restored.toStoredJson(), original.toStoredJson());
}

TEST(DeployReport, TargetingFieldsAreShownAndSurviveARestart) {
  auto r = failedReport();
  r.error = da::DeployError{"project_unavailable", "creating the project failed", "ProjectQuotaReached", false};
  r.project = da::ProjectReport{42, "session-4711", "session-4711", true, 1700000360123};
  r.preview = da::PreviewReport{"pr-17", "preview/pr-17", true};
  r.env_names = {"OPENAI_API_KEY"};
  r.diagnostics = {{"convex/a.ts", 3, 5, "error", "TS2322: no", "tsc"}, {"", 0, 0, "error", "ENOTCACHED", "npm"}};
  r.deploy_key_deleted = true;
  r.api_calls = {{"create_project", 2, {"HTTP 429 RateLimited, retried after 1000 ms", "HTTP 400 ProjectQuotaReached"}, false}};
  const auto j = r.toJson();
  EXPECT_EQ(j["error"]["code"], "ProjectQuotaReached");
  EXPECT_EQ(j["error"]["retryable"], false);
  EXPECT_EQ(j["project"]["id"], 42);
  EXPECT_EQ(j["project"]["expires_at"], "2023-11-14T22:19:20.123Z");
  EXPECT_EQ(j["preview"]["name"], "pr-17");
  EXPECT_EQ(j["preview"]["is_new"], true);
  EXPECT_EQ(j["env"]["names"], nlohmann::json({"OPENAI_API_KEY"}));
  EXPECT_EQ(j["deploy_key_deleted"], true);
  EXPECT_EQ(j["diagnostics"][0]["line"], 3);
  EXPECT_TRUE(j["diagnostics"][1]["file"].is_null());
  EXPECT_EQ(j["api_calls"][0]["attempts"], 2);
  EXPECT_EQ(j["api_calls"][0]["outcomes"][1], "HTTP 400 ProjectQuotaReached");
  const auto restored = da::DeployReport::fromJson(r.toStoredJson());
  EXPECT_EQ(restored.toStoredJson(), r.toStoredJson());
  EXPECT_EQ(restored.project->expires_at_ms, 1700000360123);
  EXPECT_EQ(restored.diagnostics, r.diagnostics);
}

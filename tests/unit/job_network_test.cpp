// What each run of a job may reach (the allowlists), how the tier is described in the report,
// and what npm and the CLI are told about the proxy.
#include <gtest/gtest.h>

#include "jobs/job_network.h"
#include "report/deploy_report.h"

namespace {

using da::net::Destination;
using da::net::Trust;

da::Settings testSettings() {
  da::Settings settings;
  settings.npm_registry = "http://127.0.0.1:4873/";
  settings.convex_url = "https://api.convex.dev";
  return settings;
}

TEST(JobNetwork, InstallReachesTheRegistryOnly) {
  const auto allowlist = da::installAllowlist(testSettings());
  EXPECT_EQ(allowlist.match(Destination{"127.0.0.1", 4873}), Trust::kOperator);
  EXPECT_FALSE(allowlist.match(Destination{"api.convex.dev", 443}));
  EXPECT_FALSE(allowlist.match(Destination{"registry.npmjs.org", 443}));
  EXPECT_FALSE(allowlist.match(Destination{"127.0.0.1", 4874}));
}

TEST(JobNetwork, PushReachesTheConvexUrlAndTheKeysDeploymentOnly) {
  const auto allowlist = da::pushAllowlist(testSettings(), "https://happy-otter-123.convex.cloud");
  EXPECT_EQ(allowlist.match(Destination{"api.convex.dev", 443}), Trust::kOperator);
  // Named by the API for a caller's key: it may not lead to the agent's own host.
  EXPECT_EQ(allowlist.match(Destination{"happy-otter-123.convex.cloud", 443}), Trust::kJobDerived);
  EXPECT_FALSE(allowlist.match(Destination{"other-deployment-456.convex.cloud", 443}));
  EXPECT_FALSE(allowlist.match(Destination{"127.0.0.1", 4873})) << "the registry is the install's, not the push's";
  EXPECT_FALSE(allowlist.match(Destination{"version.convex.dev", 443}));
}

TEST(JobNetwork, ADeploymentServedByTheConvexUrlKeepsTheOperatorsTrust) {
  da::Settings settings = testSettings();
  settings.convex_url = "http://127.0.0.1:3210";
  const auto allowlist = da::pushAllowlist(settings, "http://127.0.0.1:3210");
  EXPECT_EQ(allowlist.match(Destination{"127.0.0.1", 3210}), Trust::kOperator);
  EXPECT_EQ(allowlist.entries().size(), 1u);
}

TEST(JobNetwork, AnUnknownOrUnusableDeploymentUrlAddsNothing) {
  EXPECT_EQ(da::pushAllowlist(testSettings(), "").entries().size(), 1u);
  EXPECT_EQ(da::pushAllowlist(testSettings(), "ftp://x.example").entries().size(), 1u);
}

TEST(JobNetwork, TheReportSaysHowEachTierBoundsTheNetworkAndWhatItCannot) {
  da::Settings settings = testSettings();
  da::NetworkReport network;
  settings.sandbox.tier = sandbox::Tier::kNamespaces;
  da::describeEnforcement(settings, network);
  EXPECT_EQ(network.enforcement, "network_namespace");
  EXPECT_TRUE(network.not_enforced.empty());

  settings.sandbox.tier = sandbox::Tier::kLandlock;
  settings.sandbox.facilities = {"landlock_fs(abi 7)", "landlock_tcp_ports"};
  da::describeEnforcement(settings, network);
  EXPECT_EQ(network.enforcement, "landlock_tcp_port");
  ASSERT_FALSE(network.not_enforced.empty());
  EXPECT_NE(network.not_enforced[0].find("by port, not by address"), std::string::npos);

  settings.sandbox.facilities = {"landlock_fs(abi 3)"};
  da::describeEnforcement(settings, network);
  EXPECT_EQ(network.enforcement, "none");

  settings.sandbox.tier = sandbox::Tier::kNone;
  da::describeEnforcement(settings, network);
  EXPECT_EQ(network.enforcement, "none");
  EXPECT_NE(network.not_enforced.at(0).find("--sandbox=none"), std::string::npos);
}

TEST(JobNetwork, NpmAndTheCliAreToldOnlyAboutTheProxy) {
  da::Settings settings = testSettings();
  settings.sandbox.tier = sandbox::Tier::kNone;
  settings.env_passthrough = {{"HTTPS_PROXY", "http://corp:3128"}, {"NO_PROXY", "localhost"}};
  da::RunEgress egress(settings, da::installAllowlist(settings));
  const auto env = egress.proxyEnvironment();
  const std::string url = "http://127.0.0.1:" + std::to_string(egress.port());
  for (const char* name : {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "npm_config_proxy",
                           "npm_config_https_proxy"}) {
    EXPECT_EQ(env.at(name), url) << name;
  }
  for (const char* name : {"NO_PROXY", "no_proxy", "npm_config_noproxy"}) EXPECT_EQ(env.at(name), "") << name;
  da::NetworkReport network;
  egress.finishInto(network);
  EXPECT_TRUE(network.allowed.empty());
  EXPECT_TRUE(network.denied.empty());
}

TEST(JobNetwork, TheReportsNetworkSectionSurvivesARestart) {
  da::DeployReport report;
  report.id = "dep_1";
  report.network.enforcement = "network_namespace";
  report.network.allowed = {{"api.convex.dev:443", 3, 1200, 4500}};
  report.network.denied = {{"exfil.example:443", 2, "not_allowed"}};
  report.network.over_connection_limit = 3;
  const auto json = report.toJson();
  EXPECT_EQ(json["network"]["allowed"][0]["bytes_out"], 4500);
  EXPECT_EQ(json["network"]["denied"][0]["attempts"], 2);
  EXPECT_EQ(json["network"]["over_connection_limit"], 3);
  const auto restored = da::DeployReport::fromJson(report.toStoredJson());
  EXPECT_EQ(restored.toJson()["network"], json["network"]);
}

}  // namespace

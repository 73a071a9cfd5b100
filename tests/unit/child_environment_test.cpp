#include <gtest/gtest.h>

#include "jobs/job_sandbox.h"

TEST(ChildEnvironment, IsBuiltFromNothingAndHoldsNoAgentSecrets) {
  da::Settings settings;
  settings.api_token = "agent-api-token-0123456789";
  settings.team_token = "team-token-abcdefghijkl";
  settings.toolchain.node = "/opt/toolchain/bin/node";
  settings.npm_cache = "/var/cache/npm";
  settings.env_passthrough = {{"HTTPS_PROXY", "http://proxy.internal:3128"},
                              {"NODE_EXTRA_CA_CERTS", "/etc/ssl/extra.pem"}};
  setenv("SOMETHING_FROM_THE_AGENT", "must-not-leak", 1);

  auto env = da::baseChildEnvironment(
      settings, da::jobPathsFor(settings, "/state/jobs/dep_x", "/state/jobs/dep_x/work/app"));

  EXPECT_EQ(env.at("PATH").rfind("/opt/toolchain/bin:", 0), 0u);
  EXPECT_EQ(env.at("HOME"), "/state/jobs/dep_x/work/home");
  EXPECT_EQ(env.at("TMPDIR"), "/state/jobs/dep_x/work/tmp");
  EXPECT_EQ(env.at("CI"), "1");
  EXPECT_EQ(env.at("npm_config_cache"), "/var/cache/npm");
  // npm's user and global config files are the job's own, never shared or the toolchain's.
  EXPECT_EQ(env.at("npm_config_userconfig").rfind("/state/jobs/dep_x/work/", 0), 0u);
  EXPECT_EQ(env.at("npm_config_globalconfig").rfind("/state/jobs/dep_x/work/", 0), 0u);
  EXPECT_EQ(env.at("HTTPS_PROXY"), "http://proxy.internal:3128");
  EXPECT_EQ(env.at("NODE_EXTRA_CA_CERTS"), "/etc/ssl/extra.pem");
  EXPECT_FALSE(env.count("SOMETHING_FROM_THE_AGENT"));
  EXPECT_FALSE(env.count("CONVEX_DEPLOY_KEY"));  // only the CLI run adds it
  for (const auto& [name, value] : env) {
    EXPECT_EQ(value.find(settings.api_token), std::string::npos) << name;
    EXPECT_EQ(value.find(settings.team_token), std::string::npos) << name;
  }
}

TEST(ChildEnvironment, NamespacesTierUsesTheJobsFixedPathsAndItsCacheLayer) {
  da::Settings settings;
  settings.toolchain.node = "/opt/toolchain/bin/node";
  settings.npm_cache = "/var/cache/npm";
  settings.sandbox.tier = sandbox::Tier::kNamespaces;
  const auto paths = da::jobPathsFor(settings, "/state/jobs/dep_x", "/state/jobs/dep_x/work/app/site");
  EXPECT_EQ(paths.app, "/job/app/site");
  auto env = da::baseChildEnvironment(settings, paths);
  EXPECT_EQ(env.at("HOME"), "/job/home");
  EXPECT_EQ(env.at("TMPDIR"), "/tmp");
  // Never the shared cache's host path: the job reaches it only as the lower layer of /npm-cache.
  EXPECT_EQ(env.at("npm_config_cache"), "/npm-cache");
  for (const auto& [name, value] : env) EXPECT_EQ(value.find("/state/"), std::string::npos) << name;
}

TEST(ChildEnvironment, LandlockTierUsesAPrivateCopyOfTheCache) {
  da::Settings settings;
  settings.toolchain.node = "/opt/toolchain/bin/node";
  settings.npm_cache = "/var/cache/npm";
  settings.sandbox.tier = sandbox::Tier::kLandlock;
  auto env = da::baseChildEnvironment(settings, da::jobPathsFor(settings, "/state/jobs/dep_x", "/state/jobs/dep_x/work/app"));
  EXPECT_EQ(env.at("npm_config_cache"), "/state/jobs/dep_x/work/npm-cache");
  EXPECT_EQ(env.at("HOME"), "/state/jobs/dep_x/work/home");
}

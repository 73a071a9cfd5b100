#include <gtest/gtest.h>

#include <tuple>

#include <filesystem>
#include <fstream>

#include <sys/stat.h>
#include <unistd.h>

#include "api/api_server.h"
#include "config.h"
#include "support/scratch_dir.h"

namespace fs = std::filesystem;

namespace {

// CTest runs every case as its own process, in parallel: each process gets its own folder,
// or one case truncates the fake package.json while another reads it.
const fs::path& scratch() {
  static testsupport::ScratchDir dir("config");
  return dir.path();
}

// Written beside its final name and renamed into place: rewriting a script in place while it
// may still be executing fails with ETXTBSY.
void writeExecutable(const fs::path& path, const std::string& text, fs::perms mode) {
  fs::path staging = path;
  staging += ".new";
  std::ofstream(staging) << text;
  fs::permissions(staging, mode);
  fs::rename(staging, path);
}

constexpr fs::perms kExecutable = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec;

// A fake node that answers --version like `node` does.
fs::path fakeNode(const std::string& name, const std::string& version_line) {
  fs::path path = scratch() / name;
  writeExecutable(path, "#!/bin/sh\necho '" + version_line + "'\n", kExecutable);
  return path;
}

// A fake toolchain folder: resolveSettings only checks that the files exist and reads the
// CLI's package.json version; checkNodeVersion runs bin/node --version.
fs::path fakeToolchain() {
  fs::path dir = scratch() / "toolchain";
  fs::create_directories(dir / "bin");
  fs::create_directories(dir / "node_modules/convex/bin");
  fs::create_directories(dir / "node_modules/npm/bin");
  writeExecutable(dir / "bin/node", "#!/bin/sh\necho v22.23.3\n", kExecutable);
  std::ofstream(dir / "node_modules/convex/bin/main.js") << "";
  std::ofstream(dir / "node_modules/npm/bin/npm-cli.js") << "";
  std::ofstream(dir / "node_modules/convex/package.json") << R"({"name":"convex","version":"1.49.0"})";
  return dir;
}

bool anyErrorMentions(const std::vector<std::string>& errors, const std::string& text) {
  for (const auto& error : errors) {
    if (error.find(text) != std::string::npos) return true;
  }
  return false;
}

std::string joined(const std::vector<std::string>& errors) {
  std::string out;
  for (const auto& error : errors) out += error + "\n";
  return out;
}

agent::ConfigInput baseInput() {
  agent::ConfigInput input;
  input.flags["toolchain"] = fakeToolchain().string();
  input.env["DEPLOY_AGENT_TOKEN"] = "0123456789abcdef0123";
  return input;
}

}  // namespace

TEST(AgentConfig, DefaultsAreSafe) {
  auto result = agent::resolveSettings(baseInput());
  ASSERT_TRUE(result.errors.empty()) << result.errors.front();
  EXPECT_EQ(result.settings.listen_host, "127.0.0.1");
  EXPECT_EQ(result.settings.listen_port, 8080);
  EXPECT_EQ(result.settings.convex_url, "https://api.convex.dev");
  EXPECT_EQ(result.settings.toolchain.convex_cli_version, "1.49.0");
  EXPECT_EQ(result.settings.deploy_key_actions, std::vector<std::string>{"deployment:deploy"});
}

TEST(AgentConfig, FlagsBeatEnvironmentBeatFile) {
  auto input = baseInput();
  input.file["listen"] = "127.0.0.1:1111";
  input.env["DEPLOY_AGENT_LISTEN"] = "127.0.0.1:2222";
  EXPECT_EQ(agent::resolveSettings(input).settings.listen_port, 2222);
  input.flags["listen"] = "0.0.0.0:0";
  auto result = agent::resolveSettings(input);
  EXPECT_EQ(result.settings.listen_host, "0.0.0.0");
  EXPECT_EQ(result.settings.listen_port, 0);
  input.flags.erase("listen");
  input.env.erase("DEPLOY_AGENT_LISTEN");
  EXPECT_EQ(agent::resolveSettings(input).settings.listen_port, 1111);
}

TEST(AgentConfig, MissingOrWeakTokenIsAnError) {
  auto input = baseInput();
  input.env.erase("DEPLOY_AGENT_TOKEN");
  auto result = agent::resolveSettings(input);
  ASSERT_FALSE(result.errors.empty());
  EXPECT_NE(result.errors.front().find("DEPLOY_AGENT_TOKEN"), std::string::npos);
  input.env["DEPLOY_AGENT_TOKEN"] = "short";
  EXPECT_FALSE(agent::resolveSettings(input).errors.empty());
}

TEST(AgentConfig, TokenFileIsRead) {
  auto input = baseInput();
  fs::path file = scratch() / "token";
  std::ofstream(file) << "from-a-file-0123456789\n";
  input.flags["token-file"] = file.string();
  EXPECT_EQ(agent::resolveSettings(input).settings.api_token, "from-a-file-0123456789");
}

TEST(AgentConfig, MissingToolchainNamesTheFix) {
  auto input = baseInput();
  input.flags["toolchain"] = "/nonexistent/toolchain";
  auto result = agent::resolveSettings(input);
  ASSERT_FALSE(result.errors.empty());
  EXPECT_NE(result.errors.front().find("scripts/setup.sh"), std::string::npos);
}

TEST(AgentConfig, ConvexUrlLosesTrailingSlashAndPassthroughIsCaptured) {
  auto input = baseInput();
  input.flags["convex-url"] = "http://127.0.0.1:9999/";
  input.env["HTTPS_PROXY"] = "http://proxy.internal:3128";
  input.env["UNRELATED_SECRET"] = "nope";
  auto result = agent::resolveSettings(input);
  EXPECT_EQ(result.settings.convex_url, "http://127.0.0.1:9999");
  EXPECT_EQ(result.settings.env_passthrough.at("HTTPS_PROXY"), "http://proxy.internal:3128");
  EXPECT_FALSE(result.settings.env_passthrough.count("UNRELATED_SECRET"));
}

TEST(AgentConfig, FlagParsingAcceptsBothForms) {
  std::vector<std::string> positional;
  std::string error;
  auto flags = agent::parseFlags({"serve", "--listen", "127.0.0.1:0", "--state-dir=/tmp/x", "--npm-offline"},
                                 positional, error);
  EXPECT_TRUE(error.empty());
  EXPECT_EQ(flags["listen"], "127.0.0.1:0");
  EXPECT_EQ(flags["state-dir"], "/tmp/x");
  EXPECT_EQ(flags["npm-offline"], "true");
  EXPECT_EQ(positional, std::vector<std::string>{"serve"});
  agent::parseFlags({"--bogus", "1"}, positional, error);
  EXPECT_NE(error.find("--bogus"), std::string::npos);
}

TEST(AgentConfig, PropertiesFileSuppliesSettings) {
  fs::path file = scratch() / "agent.properties";
  std::ofstream(file) << "# deploy-agent settings\nlisten = 127.0.0.1:7000\nworkers = 3\nnpm_offline = true\n";
  auto input = baseInput();
  input.file = agent::loadPropertiesFile(file.string());
  auto result = agent::resolveSettings(input);
  ASSERT_TRUE(result.errors.empty()) << result.errors.front();
  EXPECT_EQ(result.settings.listen_port, 7000);
  EXPECT_EQ(result.settings.workers, 3u);
  EXPECT_TRUE(result.settings.npm_offline);
}

TEST(AgentConfig, BadNumbersNameTheSetting) {
  auto input = baseInput();
  input.flags["workers"] = "many";
  auto result = agent::resolveSettings(input);
  ASSERT_FALSE(result.errors.empty());
  EXPECT_NE(result.errors.front().find("workers"), std::string::npos);
}

TEST(AgentConfig, ConvexTeamIdIsOptionalAndMustBeAPositiveNumber) {
  auto input = baseInput();
  EXPECT_FALSE(agent::resolveSettings(input).settings.convex_team_id.has_value());
  input.env["CONVEX_TEAM_ID"] = "4711";
  auto result = agent::resolveSettings(input);
  ASSERT_TRUE(result.errors.empty()) << joined(result.errors);
  EXPECT_EQ(result.settings.convex_team_id, 4711);
  input.flags["convex-team-id"] = "0";
  EXPECT_TRUE(anyErrorMentions(agent::resolveSettings(input).errors, "convex-team-id"));
  input.flags["convex-team-id"] = "team-a";
  EXPECT_TRUE(anyErrorMentions(agent::resolveSettings(input).errors, "convex-team-id"));
}

TEST(AgentConfig, JobAndOperationSettingsAreReadAndBounded) {
  auto input = baseInput();
  auto defaults = agent::resolveSettings(input).settings;
  EXPECT_EQ(defaults.drain_grace, std::chrono::seconds(25));
  EXPECT_EQ(defaults.idempotency_age, std::chrono::hours(24));
  EXPECT_EQ(defaults.log_format, "text");
  input.flags["drain-seconds"] = "0";
  input.env["DEPLOY_AGENT_RETENTION_HOURS"] = "48";
  input.file["log_format"] = "json";
  input.flags["event-heartbeat-seconds"] = "3";
  auto result = agent::resolveSettings(input);
  ASSERT_TRUE(result.errors.empty()) << joined(result.errors);
  EXPECT_EQ(result.settings.drain_grace, std::chrono::seconds(0));
  EXPECT_EQ(result.settings.retention_age, std::chrono::hours(48));
  EXPECT_EQ(result.settings.log_format, "json");
  EXPECT_EQ(result.settings.event_heartbeat, std::chrono::seconds(3));
  input.flags["idempotency-hours"] = "1";  // a retried request must find its job for a day
  EXPECT_TRUE(anyErrorMentions(agent::resolveSettings(input).errors, "idempotency-hours"));
  input.flags.erase("idempotency-hours");
  input.flags["log-format"] = "xml";
  EXPECT_TRUE(anyErrorMentions(agent::resolveSettings(input).errors, "log-format"));
}

TEST(AgentConfig, CallbackHostsNeedASecretAndWellFormedEntries) {
  auto input = baseInput();
  auto defaults = agent::resolveSettings(input).settings;
  EXPECT_TRUE(defaults.callbacks.allowed_hosts.empty()) << "no callback goes anywhere unless the operator says so";
  input.flags["callback-hosts"] = "hooks.example.com,127.0.0.1:9000";
  EXPECT_TRUE(anyErrorMentions(agent::resolveSettings(input).errors, "DEPLOY_AGENT_CALLBACK_SECRET"));
  input.env["DEPLOY_AGENT_CALLBACK_SECRET"] = "short";
  EXPECT_TRUE(anyErrorMentions(agent::resolveSettings(input).errors, "shorter than 16"));
  input.env["DEPLOY_AGENT_CALLBACK_SECRET"] = "a-callback-secret-of-enough-length";
  input.flags["callback-attempts"] = "3";
  input.flags["callback-retry-ms"] = "250";
  auto result = agent::resolveSettings(input);
  ASSERT_TRUE(result.errors.empty()) << joined(result.errors);
  EXPECT_EQ(result.settings.callbacks.allowed_hosts, (std::vector<std::string>{"hooks.example.com", "127.0.0.1:9000"}));
  EXPECT_EQ(result.settings.callbacks.max_attempts, 3);
  EXPECT_EQ(result.settings.callbacks.first_retry, std::chrono::milliseconds(250));
  input.flags["callback-hosts"] = "hooks.example.com:99999";
  EXPECT_TRUE(anyErrorMentions(agent::resolveSettings(input).errors, "callback-hosts"));
  // The secret is the agent's own: never handed to npm or the CLI.
  input.flags["callback-hosts"] = "hooks.example.com";
  input.flags["env-passthrough"] = "DEPLOY_AGENT_CALLBACK_SECRET";
  EXPECT_TRUE(anyErrorMentions(agent::resolveSettings(input).errors, "DEPLOY_AGENT_CALLBACK_SECRET"));
}

TEST(AgentConfig, PassthroughRefusesTheAgentsOwnSecretsAndSettings) {
  for (const std::string name : {"DEPLOY_AGENT_TOKEN", "DEPLOY_AGENT_TOKEN_FILE", "DEPLOY_AGENT_CONVEX_URL",
                                 "CONVEX_TEAM_TOKEN", "CONVEX_TEAM_TOKEN_FILE", "CONVEX_DEPLOY_KEY",
                                 "CONVEX_OVERRIDE_ACCESS_TOKEN", "CONVEX_SELF_HOSTED_ADMIN_KEY",
                                 "CONVEX_SELF_HOSTED_URL", "CONVEX_PROVISION_HOST", "convex_deploy_key"}) {
    auto input = baseInput();
    // Set, so that a refusal that still captured the value would show. Some of these are
    // settings too, and a made-up value may add an error of its own: look for the refusal.
    input.env.emplace(name, "secret-value");
    input.flags["env-passthrough"] = "HTTPS_PROXY," + name;
    auto result = agent::resolveSettings(input);
    EXPECT_TRUE(anyErrorMentions(result.errors, "env-passthrough: " + name + " is ")) << joined(result.errors);
    EXPECT_FALSE(result.settings.env_passthrough.count(name)) << name;
  }
}

TEST(AgentConfig, PassthroughRefusesSecretsFromEverySource) {
  auto input = baseInput();
  input.env["DEPLOY_AGENT_ENV_PASSTHROUGH"] = "CONVEX_TEAM_TOKEN";
  EXPECT_TRUE(anyErrorMentions(agent::resolveSettings(input).errors, "CONVEX_TEAM_TOKEN"));
  input.env.erase("DEPLOY_AGENT_ENV_PASSTHROUGH");
  input.file["env_passthrough"] = "DEPLOY_AGENT_TOKEN";
  EXPECT_TRUE(anyErrorMentions(agent::resolveSettings(input).errors, "DEPLOY_AGENT_TOKEN"));
}

TEST(AgentConfig, PassthroughRefusesWhatIsNotAVariableName) {
  for (const std::string name : {"1PROXY", "HTTPS-PROXY", "A=B", "NAME WITH SPACE", "caf\xc3\xa9"}) {
    auto input = baseInput();
    input.flags["env-passthrough"] = name;
    auto result = agent::resolveSettings(input);
    ASSERT_EQ(result.errors.size(), 1u) << name << ": " << joined(result.errors);
    EXPECT_NE(result.errors.front().find("'" + name + "'"), std::string::npos) << result.errors.front();
    EXPECT_NE(result.errors.front().find("not an environment variable name"), std::string::npos);
  }
}

TEST(AgentConfig, PassthroughAcceptsOrdinaryNames) {
  auto input = baseInput();
  input.flags["env-passthrough"] = "HTTPS_PROXY, no_proxy,NODE_EXTRA_CA_CERTS,npm_config_cafile,_CORP_CA";
  input.env["_CORP_CA"] = "/etc/ca.pem";
  auto result = agent::resolveSettings(input);
  ASSERT_TRUE(result.errors.empty()) << joined(result.errors);
  EXPECT_EQ(result.settings.env_passthrough.at("_CORP_CA"), "/etc/ca.pem");
  EXPECT_EQ(result.settings.env_passthrough_names.size(), 5u);
}

TEST(AgentConfig, UnknownFileKeyIsAnErrorNamingKeyAndFile) {
  fs::path file = scratch() / "typo.properties";
  std::ofstream(file) << "workerz = 5\nlisten.host = 127.0.0.1\n";
  auto input = baseInput();
  input.file = agent::loadPropertiesFile(file.string());
  input.file_path = file.string();
  auto result = agent::resolveSettings(input);
  ASSERT_EQ(result.errors.size(), 2u) << joined(result.errors);
  EXPECT_TRUE(anyErrorMentions(result.errors, "unknown key 'workerz' in " + file.string()));
  // A dotted key stays whole, not cut to a "listen" that would pass.
  EXPECT_TRUE(anyErrorMentions(result.errors, "unknown key 'listen.host'"));
}

TEST(AgentConfig, FileKeyWrittenLikeAFlagOrVariableSuggestsTheKey) {
  auto input = baseInput();
  input.file["state-dir"] = "/x";
  input.file["DEPLOY_AGENT_MAX_QUEUED"] = "3";
  input.file_path = "agent.properties";
  auto result = agent::resolveSettings(input);
  ASSERT_EQ(result.errors.size(), 2u) << joined(result.errors);
  EXPECT_TRUE(anyErrorMentions(result.errors, "unknown key 'state-dir' in agent.properties; did you mean 'state_dir'?"));
  EXPECT_TRUE(anyErrorMentions(result.errors, "did you mean 'max_queued'?"));
  // Neither took effect: a key that is refused must not half-work.
  EXPECT_NE(result.settings.state_dir, fs::path("/x"));
}

TEST(AgentConfig, UnknownFileKeyDoesNotHideAMissingToken) {
  auto input = baseInput();
  input.env.erase("DEPLOY_AGENT_TOKEN");
  input.file["workerz"] = "5";
  auto result = agent::resolveSettings(input);
  EXPECT_TRUE(anyErrorMentions(result.errors, "workerz"));
  EXPECT_TRUE(anyErrorMentions(result.errors, "DEPLOY_AGENT_TOKEN"));
}

TEST(AgentConfig, NodeVersionCheckAcceptsNode22) {
  auto result = agent::resolveSettings(baseInput());
  ASSERT_TRUE(result.errors.empty()) << joined(result.errors);
  auto problem = agent::checkNodeVersion(result.settings);
  EXPECT_FALSE(problem) << *problem;
  result.settings.toolchain.node = fakeNode("node24", "v24.0.0");
  problem = agent::checkNodeVersion(result.settings);
  EXPECT_FALSE(problem) << *problem;
}

TEST(AgentConfig, NodeOlderThan22IsRefusedNamingPathVersionAndFix) {
  auto input = baseInput();
  const fs::path old_node = fakeNode("node20", "v20.1.0");
  input.flags["node"] = old_node.string();
  auto result = agent::resolveSettings(input);
  ASSERT_TRUE(result.errors.empty()) << joined(result.errors);
  auto problem = agent::checkNodeVersion(result.settings);
  ASSERT_TRUE(problem);
  EXPECT_NE(problem->find(old_node.string()), std::string::npos) << *problem;
  EXPECT_NE(problem->find("v20.1.0"), std::string::npos) << *problem;
  EXPECT_NE(problem->find("scripts/setup.sh"), std::string::npos) << *problem;
  EXPECT_NE(problem->find("--node"), std::string::npos) << *problem;
}

TEST(AgentConfig, NodeThatCannotRunIsRefused) {
  auto settings = agent::resolveSettings(baseInput()).settings;
  // Exists but is not executable: what an empty placeholder or a lost chmod leaves.
  settings.toolchain.node = scratch() / "node-not-executable";
  writeExecutable(settings.toolchain.node, "", fs::perms::owner_read | fs::perms::owner_write);
  auto problem = agent::checkNodeVersion(settings);
  ASSERT_TRUE(problem);
  EXPECT_NE(problem->find(settings.toolchain.node.string()), std::string::npos) << *problem;
  EXPECT_NE(problem->find("scripts/setup.sh"), std::string::npos) << *problem;

  settings.toolchain.node = scratch() / "node-that-fails";
  writeExecutable(settings.toolchain.node, "#!/bin/sh\necho 'broken install' >&2\nexit 3\n", kExecutable);
  problem = agent::checkNodeVersion(settings);
  ASSERT_TRUE(problem);
  EXPECT_NE(problem->find("code 3"), std::string::npos) << *problem;

  settings.toolchain.node = fakeNode("not-node", "hello");
  problem = agent::checkNodeVersion(settings);
  ASSERT_TRUE(problem);
  EXPECT_NE(problem->find("'hello'"), std::string::npos) << *problem;
}

TEST(AgentConfig, ListenAcceptsBracketedIPv6) {
  auto input = baseInput();
  input.flags["listen"] = "[::1]:8080";
  auto result = agent::resolveSettings(input);
  ASSERT_TRUE(result.errors.empty()) << joined(result.errors);
  EXPECT_EQ(result.settings.listen_host, "::1");
  EXPECT_EQ(result.settings.listen_port, 8080);
}

TEST(AgentConfig, ListenAddressParsing) {
  std::string error;
  auto address = agent::parseListenAddress("[::]:0", error);
  ASSERT_TRUE(address) << error;
  EXPECT_EQ(address->host, "::");
  EXPECT_EQ(address->port, 0);
  address = agent::parseListenAddress("localhost:65535", error);
  ASSERT_TRUE(address) << error;
  EXPECT_EQ(address->host, "localhost");
  EXPECT_EQ(address->port, 65535);

  for (const std::string bad : {"::1:8080", "[::1]", "[::1]8080", "[]:80", "8080", ":8080", "host:", "host:65536",
                                "host:-1", "host:80x", "[::1:80"}) {
    error.clear();
    EXPECT_FALSE(agent::parseListenAddress(bad, error)) << bad;
    EXPECT_NE(error.find("listen"), std::string::npos) << bad << ": " << error;
  }
  agent::parseListenAddress("::1:8080", error);
  EXPECT_NE(error.find("brackets"), std::string::npos) << error;
}

TEST(AgentConfig, HostPortIsFormattedAsAUrlWritesIt) {
  EXPECT_EQ(da::api::formatHostPort("::1", 45777), "[::1]:45777");
  EXPECT_EQ(da::api::formatHostPort("127.0.0.1", 8080), "127.0.0.1:8080");
  EXPECT_EQ(da::api::formatHostPort("localhost", 0), "localhost:0");
  // What --listen takes back is what was printed.
  std::string error;
  auto address = agent::parseListenAddress(da::api::formatHostPort("fe80::1", 9000), error);
  ASSERT_TRUE(address) << error;
  EXPECT_EQ(address->host, "fe80::1");
  EXPECT_EQ(address->port, 9000);
}

TEST(AgentConfig, NumbersOutOfRangeAreRefusedNotWrapped) {
  auto input = baseInput();
  input.flags["workers"] = "4294967297";  // 2^32 + 1 would wrap to 1
  auto result = agent::resolveSettings(input);
  ASSERT_FALSE(result.errors.empty());
  EXPECT_NE(result.errors.front().find("workers"), std::string::npos) << result.errors.front();
}

TEST(AgentConfig, DeployKeyActionsMustAllowDeploying) {
  auto input = baseInput();
  input.flags["deploy-key-actions"] = "deployment:env:view";
  auto refused = agent::resolveSettings(input);
  ASSERT_FALSE(refused.errors.empty());
  EXPECT_NE(refused.errors.front().find("deployment:deploy"), std::string::npos) << refused.errors.front();
  input.flags["deploy-key-actions"] = "deployment:deploy,deployment:env:view";
  auto accepted = agent::resolveSettings(input);
  EXPECT_TRUE(accepted.errors.empty()) << accepted.errors.front();
  EXPECT_EQ(accepted.settings.deploy_key_actions,
            (std::vector<std::string>{"deployment:deploy", "deployment:env:view"}));
  input.flags["deploy-key-actions"] = "all";
  EXPECT_TRUE(agent::resolveSettings(input).settings.deploy_key_actions.empty());
}

TEST(AgentConfig, NpmRegistryDefaultsToThePublicOne) {
  auto result = agent::resolveSettings(baseInput());
  ASSERT_TRUE(result.errors.empty()) << joined(result.errors);
  EXPECT_EQ(result.settings.npm_registry, "https://registry.npmjs.org/");
}

TEST(AgentConfig, NpmRegistryComesFromFlagEnvironmentOrFile) {
  auto input = baseInput();
  input.file["npm_registry"] = "https://file.example/npm/";
  EXPECT_EQ(agent::resolveSettings(input).settings.npm_registry, "https://file.example/npm/");
  input.env["DEPLOY_AGENT_NPM_REGISTRY"] = "http://127.0.0.1:4873";
  EXPECT_EQ(agent::resolveSettings(input).settings.npm_registry, "http://127.0.0.1:4873/");
  std::vector<std::string> positional;
  std::string error;
  input.flags.merge(agent::parseFlags({"--npm-registry", "https://flag.example/api/npm/npm-remote"}, positional, error));
  ASSERT_TRUE(error.empty()) << error;
  auto result = agent::resolveSettings(input);
  ASSERT_TRUE(result.errors.empty()) << joined(result.errors);
  EXPECT_EQ(result.settings.npm_registry, "https://flag.example/api/npm/npm-remote/");
  EXPECT_NE(agent::usage().find("--npm-registry"), std::string::npos);
}

TEST(AgentConfig, NpmRegistryIsNormalisedToEndWithOneSlash) {
  auto input = baseInput();
  for (const auto& [given, expected] :
       {std::pair{"https://registry.example.com", "https://registry.example.com/"},
        {"https://registry.example.com/", "https://registry.example.com/"},
        {"https://registry.example.com///", "https://registry.example.com/"},
        {"https://registry.example.com/npm//", "https://registry.example.com/npm/"},
        {"HTTPS://Registry.Example.COM:8443/Npm/", "https://registry.example.com:8443/Npm/"},
        {"http://[::1]:4873", "http://[::1]:4873/"}}) {
    input.flags["npm-registry"] = given;
    auto result = agent::resolveSettings(input);
    EXPECT_TRUE(result.errors.empty()) << given << ": " << joined(result.errors);
    EXPECT_EQ(result.settings.npm_registry, expected) << given;
  }
}

TEST(AgentConfig, NpmRegistryThatIsNotAnHttpUrlIsRefusedNamingTheSetting) {
  auto input = baseInput();
  for (const std::string bad :
       {"ftp://registry.example.com/", "registry.example.com", "file:///srv/npm", "https://", "https:///npm",
        "https://registry.example.com:http/", "https://user:secret@registry.example.com/",
        "https://registry.example.com/?x=1", "https://registry.example.com/#top",
        "https://registry.example.com/a/../b", "https://registry.example.com/%2E%2e/",
        "https://registry.example.com\\evil/", "https://registry example.com/", ""}) {
    input.flags["npm-registry"] = bad;
    auto result = agent::resolveSettings(input);
    ASSERT_FALSE(result.errors.empty()) << "accepted '" << bad << "'";
    EXPECT_TRUE(anyErrorMentions(result.errors, "npm-registry")) << joined(result.errors);
    EXPECT_FALSE(anyErrorMentions(result.errors, "secret")) << "credentials echoed: " << joined(result.errors);
  }
}

TEST(AgentConfig, SandboxSettingsDefaultToAutoWithBoundedJobs) {
  auto result = agent::resolveSettings(baseInput());
  ASSERT_TRUE(result.errors.empty()) << joined(result.errors);
  const auto& sandbox = result.settings.sandbox;
  EXPECT_EQ(sandbox.requested, "auto");
  EXPECT_EQ(sandbox.job_uid, 60000u);
  EXPECT_EQ(sandbox.job_gid, 60000u);
  EXPECT_EQ(sandbox.memory_bytes, 4ull << 30);
  EXPECT_EQ(sandbox.max_processes, 1024u);
  EXPECT_EQ(sandbox.disk_bytes, 4ull << 30);
}

TEST(AgentConfig, SandboxSettingsAreReadAndCheckedNamingTheSetting) {
  auto input = baseInput();
  input.flags["sandbox"] = "landlock";
  input.flags["job-uid"] = "70000:70001";
  input.env["DEPLOY_AGENT_JOB_MEMORY_BYTES"] = "1073741824";
  input.file["job_max_processes"] = "256";
  input.flags["job-disk-bytes"] = "0";
  auto result = agent::resolveSettings(input);
  ASSERT_TRUE(result.errors.empty()) << joined(result.errors);
  EXPECT_EQ(result.settings.sandbox.requested, "landlock");
  EXPECT_EQ(result.settings.sandbox.job_uid, 70000u);
  EXPECT_EQ(result.settings.sandbox.job_gid, 70001u);
  EXPECT_EQ(result.settings.sandbox.memory_bytes, 1ull << 30);
  EXPECT_EQ(result.settings.sandbox.max_processes, 256u);
  EXPECT_EQ(result.settings.sandbox.disk_bytes, 0u);

  for (const auto& [flag, value, named] :
       {std::tuple{"sandbox", "chroot", "sandbox must be auto, namespaces, landlock or none"},
        {"job-uid", "0", "job-uid"},            // never root
        {"job-uid", "60000:x", "job-uid (gid part)"},
        {"job-memory-bytes", "1000", "job-memory-bytes"},  // too small for Node
        {"job-disk-bytes", "4096", "job-disk-bytes"}}) {
    auto bad = baseInput();
    bad.flags[flag] = value;
    auto refused = agent::resolveSettings(bad);
    EXPECT_TRUE(anyErrorMentions(refused.errors, named)) << flag << "=" << value << ": " << joined(refused.errors);
  }
}

TEST(AgentConfig, JobNetworkSettingsDefaultToTheProxyAndAreChecked) {
  auto defaults = agent::resolveSettings(baseInput());
  ASSERT_TRUE(defaults.errors.empty()) << joined(defaults.errors);
  EXPECT_TRUE(defaults.settings.egress.proxy);
  EXPECT_EQ(defaults.settings.egress.max_connections, 64u);
  EXPECT_EQ(defaults.settings.egress.idle_timeout, std::chrono::seconds(300));

  auto input = baseInput();
  input.flags["job-network"] = "host";
  input.env["DEPLOY_AGENT_EGRESS_MAX_CONNECTIONS"] = "16";
  input.file["egress_idle_timeout"] = "30";
  auto result = agent::resolveSettings(input);
  ASSERT_TRUE(result.errors.empty()) << joined(result.errors);
  EXPECT_FALSE(result.settings.egress.proxy);
  EXPECT_EQ(result.settings.egress.max_connections, 16u);
  EXPECT_EQ(result.settings.egress.idle_timeout, std::chrono::seconds(30));

  for (const auto& [flag, value, named] :
       {std::tuple{"job-network", "open", "job-network must be proxy or host"},
        {"egress-max-connections", "0", "egress-max-connections"},
        {"egress-idle-timeout", "-1", "egress-idle-timeout"}}) {
    auto bad = baseInput();
    bad.flags[flag] = value;
    auto refused = agent::resolveSettings(bad);
    EXPECT_TRUE(anyErrorMentions(refused.errors, named)) << flag << "=" << value << ": " << joined(refused.errors);
  }
}

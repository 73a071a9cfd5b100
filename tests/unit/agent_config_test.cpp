#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "config.h"

namespace fs = std::filesystem;

namespace {

// CTest runs every case as its own process, in parallel: each process gets its own folder,
// or one case truncates the fake package.json while another reads it.
class ScratchDir {
 public:
  ScratchDir() : path_(fs::temp_directory_path() / ("da-config-" + std::to_string(::getpid()))) {
    fs::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

const fs::path& scratch() {
  static ScratchDir dir;
  return dir.path();
}

// A fake toolchain folder: resolveSettings only checks that the files exist and reads the
// CLI's package.json version.
fs::path fakeToolchain() {
  fs::path dir = scratch() / "toolchain";
  fs::create_directories(dir / "bin");
  fs::create_directories(dir / "node_modules/convex/bin");
  fs::create_directories(dir / "node_modules/npm/bin");
  std::ofstream(dir / "bin/node") << "";
  std::ofstream(dir / "node_modules/convex/bin/main.js") << "";
  std::ofstream(dir / "node_modules/npm/bin/npm-cli.js") << "";
  std::ofstream(dir / "node_modules/convex/package.json") << R"({"name":"convex","version":"1.49.0"})";
  return dir;
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

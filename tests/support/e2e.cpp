#include "support/e2e.h"

#include <stdexcept>

#include <nlohmann/json.hpp>

#include "support/server_process.h"

namespace testsupport {

std::filesystem::path exampleAppDir() { return std::filesystem::path(sourceDir()) / "examples/chat-app"; }

ArchiveBuilder exampleAppArchive() { return ArchiveBuilder::fromDirectory(exampleAppDir()); }

std::vector<std::string> offlineAgentArgs(const std::filesystem::path& state_dir, const std::string& convex_url) {
  // No drain period: a test's SIGTERM stops the agent at once, unless the test is about draining
  // (a later --drain-seconds wins).
  return {"--listen", "127.0.0.1:0", "--state-dir", state_dir.string(), "--convex-url", convex_url,
          "--toolchain", toolchainDir(), "--npm-cache", toolchainDir() + "/npm-cache", "--npm-offline",
          "--drain-seconds", "0"};
}

std::string mintStandinKey(const std::string& standin_url, const std::string& deployment) {
  auto result = httpRequest("POST", standin_url + "/_standin/deploy_keys", {},
                            nlohmann::json{{"deployment", deployment}}.dump());
  if (result.status != 200) throw std::runtime_error("stand-in refused to mint a key: " + result.body);
  return nlohmann::json::parse(result.body)["deployKey"];
}

}  // namespace testsupport

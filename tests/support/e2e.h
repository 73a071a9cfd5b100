// What the end-to-end tests share: the example app, the agent's offline arguments, and
// minting keys on the stand-in.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "support/archive_builder.h"

namespace testsupport {

std::filesystem::path exampleAppDir();
ArchiveBuilder exampleAppArchive();  // every file of examples/chat-app but node_modules

// Arguments for an agent on a free loopback port that targets `convex_url` and installs
// only from the toolchain's primed npm cache (tests never reach a registry), and that stops at
// once on SIGTERM (no drain period).
std::vector<std::string> offlineAgentArgs(const std::filesystem::path& state_dir,
                                          const std::string& convex_url);

// POST /_standin/deploy_keys; throws when the stand-in refuses.
std::string mintStandinKey(const std::string& standin_url, const std::string& deployment);

}  // namespace testsupport

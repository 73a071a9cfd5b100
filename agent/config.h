// Resolves the agent's Settings from, in order of precedence: command-line flags, the
// environment, an optional properties file (--config), and defaults. Problems come back as
// messages that name the setting and how to fix it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/settings.h"

namespace agent {

struct ConfigInput {
  std::map<std::string, std::string> flags;   // long flag name (without --) -> value
  std::map<std::string, std::string> env;     // the process environment
  std::map<std::string, std::string> file;    // key -> value from the properties file
  std::string file_path;                      // where `file` came from, for error messages
  std::string executable_path;                // /proc/self/exe, to find the toolchain
};

struct ConfigResult {
  da::Settings settings;
  std::vector<std::string> errors;
};

ConfigResult resolveSettings(const ConfigInput& input);

// Runs `<node> --version` and requires Node >= 22, which the Convex CLI needs. Kept out of
// resolveSettings, which stays free of child processes; main calls it once at start-up so a
// wrong Node is refused there and not by every deploy. Returns the problem, if any.
// `version` (optional) receives what `node --version` printed when it is acceptable.
std::optional<std::string> checkNodeVersion(const da::Settings& settings, std::string* version = nullptr);

struct ListenAddress {
  std::string host;   // without brackets: "::1", "127.0.0.1", "localhost"
  uint16_t port = 0;
};

// "HOST:PORT"; an IPv6 host goes in brackets ("[::1]:8080"), as in a URL. On failure returns
// nullopt and sets `error`.
std::optional<ListenAddress> parseListenAddress(const std::string& text, std::string& error);

// Loads a Java-style properties file (Poco::Util::PropertyFileConfiguration). Keys come back
// whole ("a.b" stays "a.b") so resolveSettings can refuse the ones it does not know.
std::map<std::string, std::string> loadPropertiesFile(const std::string& path);

// `--name value` and `--name=value` both become flags["name"]; `--flag` alone becomes "true".
// Returns positional arguments (the subcommand) in `positional`.
std::map<std::string, std::string> parseFlags(const std::vector<std::string>& args,
                                              std::vector<std::string>& positional,
                                              std::string& error);

// Names of flags that take no value.
bool isSwitch(const std::string& name);

std::string usage();

}  // namespace agent

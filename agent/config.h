// Resolves the agent's Settings from, in order of precedence: command-line flags, the
// environment, an optional properties file (--config), and defaults. Problems come back as
// messages that name the setting and how to fix it.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "config/settings.h"

namespace agent {

struct ConfigInput {
  std::map<std::string, std::string> flags;   // long flag name (without --) -> value
  std::map<std::string, std::string> env;     // the process environment
  std::map<std::string, std::string> file;    // key -> value from the properties file
  std::string executable_path;                // /proc/self/exe, to find the toolchain
};

struct ConfigResult {
  da::Settings settings;
  std::vector<std::string> errors;
};

ConfigResult resolveSettings(const ConfigInput& input);

// Loads a Java-style properties file (Poco::Util::PropertyFileConfiguration).
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

#include "config.h"

#include <fstream>
#include <sstream>

#include <Poco/AutoPtr.h>
#include <Poco/Util/PropertyFileConfiguration.h>
#include <nlohmann/json.hpp>

namespace agent {

namespace fs = std::filesystem;

namespace {

// One row per setting: flag, environment variable, properties key, help.
struct SettingSpec {
  const char* flag;
  const char* env;
  const char* key;
  const char* help;
};

const std::vector<SettingSpec>& settingSpecs() {
  static const std::vector<SettingSpec> specs = {
      {"listen", "DEPLOY_AGENT_LISTEN", "listen", "HOST:PORT to serve on (default 127.0.0.1:8080; port 0 picks one)"},
      {"state-dir", "DEPLOY_AGENT_STATE_DIR", "state_dir", "where jobs, reports and logs live (default ./.state)"},
      {"token-file", "DEPLOY_AGENT_TOKEN_FILE", "token_file", "file holding the agent's API token (or DEPLOY_AGENT_TOKEN)"},
      {"convex-url", "DEPLOY_AGENT_CONVEX_URL", "convex_url", "Convex cloud origin (default https://api.convex.dev)"},
      {"team-token-file", "CONVEX_TEAM_TOKEN_FILE", "team_token_file", "file holding a Convex team access token (or CONVEX_TEAM_TOKEN)"},
      {"toolchain", "DEPLOY_AGENT_TOOLCHAIN", "toolchain", "folder made by scripts/setup.sh (default: found beside the binary)"},
      {"node", "DEPLOY_AGENT_NODE", "node", "Node.js >= 22 binary (default <toolchain>/bin/node)"},
      {"convex-cli", "DEPLOY_AGENT_CONVEX_CLI", "convex_cli", "convex/bin/main.js to run (default <toolchain>/node_modules/convex/bin/main.js)"},
      {"npm-cli", "DEPLOY_AGENT_NPM_CLI", "npm_cli", "npm/bin/npm-cli.js (default <toolchain>/node_modules/npm/bin/npm-cli.js)"},
      {"npm-cache", "DEPLOY_AGENT_NPM_CACHE", "npm_cache", "npm cache folder (default <state-dir>/npm-cache)"},
      {"npm-offline", "DEPLOY_AGENT_NPM_OFFLINE", "npm_offline", "install only from the npm cache (true/false)"},
      {"workers", "DEPLOY_AGENT_WORKERS", "workers", "deploys run at once (default 2)"},
      {"max-queued", "DEPLOY_AGENT_MAX_QUEUED", "max_queued", "deploys waiting at most before 503 (default 64)"},
      {"cli-timeout", "DEPLOY_AGENT_CLI_TIMEOUT", "cli_timeout", "seconds the Convex CLI may run (default 600)"},
      {"install-timeout", "DEPLOY_AGENT_INSTALL_TIMEOUT", "install_timeout", "seconds npm may run (default 600)"},
      {"max-bundle-bytes", "DEPLOY_AGENT_MAX_BUNDLE_BYTES", "max_bundle_bytes", "largest accepted upload (default 104857600)"},
      {"max-unpacked-bytes", "DEPLOY_AGENT_MAX_UNPACKED_BYTES", "max_unpacked_bytes", "largest unpacked bundle (default 536870912)"},
      {"max-entries", "DEPLOY_AGENT_MAX_ENTRIES", "max_entries", "most entries in a bundle (default 20000)"},
      {"env-passthrough", "DEPLOY_AGENT_ENV_PASSTHROUGH", "env_passthrough", "comma-separated variables passed to npm and the CLI"},
      {"deploy-key-actions", "DEPLOY_AGENT_DEPLOY_KEY_ACTIONS", "deploy_key_actions", "allowedActions of minted keys, comma-separated; 'all' for the API default"},
      {"keep-workdirs", "DEPLOY_AGENT_KEEP_WORKDIRS", "keep_workdirs", "keep unpacked apps after a job (true/false)"},
      {"config", "DEPLOY_AGENT_CONFIG", "", "properties file with any of the keys above"},
  };
  return specs;
}

const SettingSpec* findSpec(const std::string& flag) {
  for (const auto& spec : settingSpecs()) {
    if (flag == spec.flag) return &spec;
  }
  return nullptr;
}

std::string readSecretFile(const std::string& path, std::vector<std::string>& errors, const char* what) {
  std::ifstream in(path);
  if (!in) {
    errors.push_back(std::string("cannot read ") + what + " file '" + path + "'");
    return {};
  }
  std::string value((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r' || value.back() == ' ')) value.pop_back();
  if (value.empty()) errors.push_back(std::string(what) + " file '" + path + "' is empty");
  return value;
}

std::vector<std::string> splitList(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    size_t a = item.find_first_not_of(' '), b = item.find_last_not_of(' ');
    if (a != std::string::npos) out.push_back(item.substr(a, b - a + 1));
  }
  return out;
}

bool parseBool(const std::string& text) { return text == "1" || text == "true" || text == "yes"; }

template <typename Number>
void parseNumber(const std::string& name, const std::string& text, Number min, Number& out,
                 std::vector<std::string>& errors) {
  try {
    size_t used = 0;
    long long value = std::stoll(text, &used);
    if (used != text.size() || value < static_cast<long long>(min)) throw std::invalid_argument(text);
    out = static_cast<Number>(value);
  } catch (const std::exception&) {
    errors.push_back(name + " must be a whole number >= " + std::to_string(min) + ", got '" + text + "'");
  }
}

fs::path defaultToolchain(const std::string& executable_path) {
  // build/bin/deploy-agent -> <repo>/toolchain; an installed agent looks in its own prefix.
  fs::path exe(executable_path);
  for (fs::path candidate : {exe.parent_path().parent_path().parent_path() / "toolchain",
                             exe.parent_path().parent_path() / "lib/deploy-agent/toolchain",
                             fs::current_path() / "toolchain"}) {
    if (fs::exists(candidate / "node_modules/convex/bin/main.js")) return candidate;
  }
  return fs::current_path() / "toolchain";
}

}  // namespace

bool isSwitch(const std::string& name) {
  return name == "help" || name == "npm-offline" || name == "keep-workdirs";
}

std::map<std::string, std::string> parseFlags(const std::vector<std::string>& args,
                                              std::vector<std::string>& positional, std::string& error) {
  std::map<std::string, std::string> flags;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.rfind("--", 0) != 0) {
      positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2), value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    } else if (isSwitch(name)) {
      value = "true";
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      error = "--" + name + " needs a value";
      return flags;
    }
    if (name != "help" && !findSpec(name)) {
      error = "unknown option --" + name + " (see --help)";
      return flags;
    }
    flags[name] = value;
  }
  return flags;
}

std::map<std::string, std::string> loadPropertiesFile(const std::string& path) {
  Poco::AutoPtr<Poco::Util::PropertyFileConfiguration> file(new Poco::Util::PropertyFileConfiguration(path));
  Poco::Util::AbstractConfiguration::Keys keys;
  file->keys(keys);
  std::map<std::string, std::string> out;
  for (const auto& key : keys) out[key] = file->getString(key);
  return out;
}

ConfigResult resolveSettings(const ConfigInput& input) {
  ConfigResult result;
  da::Settings& s = result.settings;
  auto& errors = result.errors;

  auto lookup = [&](const char* flag) -> std::optional<std::string> {
    const SettingSpec* spec = findSpec(flag);
    if (auto it = input.flags.find(flag); it != input.flags.end()) return it->second;
    if (auto it = input.env.find(spec->env); it != input.env.end() && !it->second.empty()) return it->second;
    if (*spec->key) {
      if (auto it = input.file.find(spec->key); it != input.file.end()) return it->second;
    }
    return std::nullopt;
  };

  if (auto listen = lookup("listen")) {
    auto colon = listen->rfind(':');
    if (colon == std::string::npos || colon == 0) {
      errors.push_back("listen must be HOST:PORT, got '" + *listen + "'");
    } else {
      s.listen_host = listen->substr(0, colon);
      if (s.listen_host.size() > 2 && s.listen_host.front() == '[') s.listen_host = s.listen_host.substr(1, s.listen_host.size() - 2);
      uint16_t port = 0;
      parseNumber("listen port", listen->substr(colon + 1), uint16_t{0}, port, errors);
      s.listen_port = port;
    }
  }
  s.state_dir = fs::absolute(lookup("state-dir").value_or(".state"));

  if (auto path = lookup("token-file")) {
    s.api_token = readSecretFile(*path, errors, "API token");
  } else if (auto it = input.env.find("DEPLOY_AGENT_TOKEN"); it != input.env.end()) {
    s.api_token = it->second;
  }
  if (s.api_token.empty() && errors.empty()) {
    errors.push_back("no API token: set DEPLOY_AGENT_TOKEN or --token-file; every route but /healthz requires it");
  } else if (!s.api_token.empty() && s.api_token.size() < 16) {
    errors.push_back("the API token is shorter than 16 characters; use a random one (e.g. `openssl rand -hex 24`)");
  }

  s.convex_url = lookup("convex-url").value_or(da::kDefaultConvexUrl);
  while (!s.convex_url.empty() && s.convex_url.back() == '/') s.convex_url.pop_back();  // the CLI concatenates
  if (s.convex_url.rfind("http://", 0) != 0 && s.convex_url.rfind("https://", 0) != 0) {
    errors.push_back("convex-url must start with http:// or https://, got '" + s.convex_url + "'");
  }
  if (auto path = lookup("team-token-file")) {
    s.team_token = readSecretFile(*path, errors, "team token");
  } else if (auto it = input.env.find("CONVEX_TEAM_TOKEN"); it != input.env.end()) {
    s.team_token = it->second;
  }

  const fs::path toolchain = lookup("toolchain") ? fs::path(*lookup("toolchain")) : defaultToolchain(input.executable_path);
  s.toolchain.node = fs::absolute(lookup("node").value_or((toolchain / "bin/node").string()));
  s.toolchain.convex_cli = fs::absolute(lookup("convex-cli").value_or((toolchain / "node_modules/convex/bin/main.js").string()));
  s.toolchain.npm_cli = fs::absolute(lookup("npm-cli").value_or((toolchain / "node_modules/npm/bin/npm-cli.js").string()));
  for (const auto& [what, path] : {std::pair{"node", s.toolchain.node}, {"convex-cli", s.toolchain.convex_cli},
                                   {"npm-cli", s.toolchain.npm_cli}}) {
    if (!fs::exists(path)) {
      errors.push_back(std::string(what) + " not found at " + path.string() +
                       ": run scripts/setup.sh, or pass --" + what + " / --toolchain");
    }
  }
  if (fs::exists(s.toolchain.convex_cli)) {
    try {
      std::ifstream in(s.toolchain.convex_cli.parent_path().parent_path() / "package.json");
      s.toolchain.convex_cli_version = nlohmann::json::parse(in).value("version", "");
    } catch (const std::exception&) {
    }
    if (s.toolchain.convex_cli_version.empty()) {
      errors.push_back("cannot read the Convex CLI version beside " + s.toolchain.convex_cli.string());
    }
  }

  s.npm_cache = fs::absolute(lookup("npm-cache").value_or((s.state_dir / "npm-cache").string()));
  s.npm_offline = parseBool(lookup("npm-offline").value_or("false"));
  s.keep_workdirs = parseBool(lookup("keep-workdirs").value_or("false"));
  if (auto v = lookup("workers")) parseNumber("workers", *v, 1u, s.workers, errors);
  if (auto v = lookup("max-queued")) parseNumber("max-queued", *v, size_t{1}, s.max_queued_jobs, errors);
  if (auto v = lookup("cli-timeout")) {
    long long seconds = 0;
    parseNumber("cli-timeout", *v, 1LL, seconds, errors);
    s.cli_timeout = std::chrono::seconds(seconds);
  }
  if (auto v = lookup("install-timeout")) {
    long long seconds = 0;
    parseNumber("install-timeout", *v, 1LL, seconds, errors);
    s.install_timeout = std::chrono::seconds(seconds);
  }
  if (auto v = lookup("max-bundle-bytes")) parseNumber("max-bundle-bytes", *v, uint64_t{1}, s.intake_limits.max_archive_bytes, errors);
  if (auto v = lookup("max-unpacked-bytes")) parseNumber("max-unpacked-bytes", *v, uint64_t{1}, s.intake_limits.max_unpacked_bytes, errors);
  if (auto v = lookup("max-entries")) parseNumber("max-entries", *v, uint64_t{1}, s.intake_limits.max_entries, errors);
  if (auto v = lookup("env-passthrough")) s.env_passthrough_names = splitList(*v);
  if (auto v = lookup("deploy-key-actions")) {
    s.deploy_key_actions = *v == "all" ? std::vector<std::string>{} : splitList(*v);
  }
  for (const auto& name : s.env_passthrough_names) {
    if (auto it = input.env.find(name); it != input.env.end()) s.env_passthrough[name] = it->second;
  }
  return result;
}

std::string usage() {
  std::ostringstream out;
  out << "usage: deploy-agent [serve] [options]\n\n"
         "Serves the deploy API: POST /v1/deploys takes a Convex app bundle and pushes it with the\n"
         "Convex CLI. Each option can also come from its environment variable or a --config file key.\n\n";
  for (const auto& spec : settingSpecs()) {
    out << "  --" << spec.flag << (isSwitch(spec.flag) ? "" : " VALUE") << "\n      " << spec.help << "  [" << spec.env;
    if (*spec.key) out << ", " << spec.key;
    out << "]\n";
  }
  out << "\nSecrets: DEPLOY_AGENT_TOKEN (the API token), CONVEX_TEAM_TOKEN (mints deploy keys).\n";
  return out.str();
}

}  // namespace agent

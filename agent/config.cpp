#include "config.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <fstream>
#include <limits>
#include <sstream>

#include <Poco/AutoPtr.h>
#include <Poco/String.h>
#include <Poco/Util/PropertyFileConfiguration.h>
#include <nlohmann/json.hpp>

#include "net/egress_allowlist.h"
#include "sandbox/process.h"

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
      {"listen", "DEPLOY_AGENT_LISTEN", "listen", "HOST:PORT to serve on, IPv6 as [::1]:PORT (default 127.0.0.1:8080; port 0 picks one)"},
      {"state-dir", "DEPLOY_AGENT_STATE_DIR", "state_dir", "where jobs, reports and logs live (default ./.state)"},
      {"token-file", "DEPLOY_AGENT_TOKEN_FILE", "token_file", "file holding the agent's API token (or DEPLOY_AGENT_TOKEN)"},
      {"convex-url", "DEPLOY_AGENT_CONVEX_URL", "convex_url", "Convex cloud origin (default https://api.convex.dev)"},
      {"team-token-file", "CONVEX_TEAM_TOKEN_FILE", "team_token_file", "file holding a Convex team access token (or CONVEX_TEAM_TOKEN)"},
      {"convex-team-id", "CONVEX_TEAM_ID", "convex_team_id", "team that create_project creates projects in (default: the token's team, from token_details)"},
      {"toolchain", "DEPLOY_AGENT_TOOLCHAIN", "toolchain", "folder made by scripts/setup.sh (default: found beside the binary)"},
      {"node", "DEPLOY_AGENT_NODE", "node", "Node.js >= 22 binary (default <toolchain>/bin/node)"},
      {"convex-cli", "DEPLOY_AGENT_CONVEX_CLI", "convex_cli", "convex/bin/main.js to run (default <toolchain>/node_modules/convex/bin/main.js)"},
      {"npm-cli", "DEPLOY_AGENT_NPM_CLI", "npm_cli", "npm/bin/npm-cli.js (default <toolchain>/node_modules/npm/bin/npm-cli.js)"},
      {"npm-cache", "DEPLOY_AGENT_NPM_CACHE", "npm_cache", "npm cache folder (default <state-dir>/npm-cache)"},
      {"npm-offline", "DEPLOY_AGENT_NPM_OFFLINE", "npm_offline", "install only from the npm cache (true/false)"},
      {"npm-registry", "DEPLOY_AGENT_NPM_REGISTRY", "npm_registry", "registry npm installs from, http(s) (default https://registry.npmjs.org/); lockfile entries must be resolved on it or on the public registry"},
      {"workers", "DEPLOY_AGENT_WORKERS", "workers", "deploys run at once (default 2)"},
      {"max-queued", "DEPLOY_AGENT_MAX_QUEUED", "max_queued", "deploys waiting at most before 503 (default 64)"},
      {"cli-timeout", "DEPLOY_AGENT_CLI_TIMEOUT", "cli_timeout", "seconds the Convex CLI may run (default 600)"},
      {"install-timeout", "DEPLOY_AGENT_INSTALL_TIMEOUT", "install_timeout", "seconds npm may run (default 600)"},
      {"max-bundle-bytes", "DEPLOY_AGENT_MAX_BUNDLE_BYTES", "max_bundle_bytes", "largest accepted upload (default 104857600)"},
      {"max-unpacked-bytes", "DEPLOY_AGENT_MAX_UNPACKED_BYTES", "max_unpacked_bytes", "largest unpacked bundle (default 536870912)"},
      {"max-entries", "DEPLOY_AGENT_MAX_ENTRIES", "max_entries", "most entries in a bundle (default 20000)"},
      {"env-passthrough", "DEPLOY_AGENT_ENV_PASSTHROUGH", "env_passthrough", "comma-separated variables passed to npm and the CLI (never DEPLOY_AGENT_* or CONVEX_*)"},
      {"deploy-key-actions", "DEPLOY_AGENT_DEPLOY_KEY_ACTIONS", "deploy_key_actions", "allowedActions of minted keys, comma-separated; 'all' for the API default"},
      {"keep-workdirs", "DEPLOY_AGENT_KEEP_WORKDIRS", "keep_workdirs", "keep unpacked apps after a job (true/false)"},
      {"retention-hours", "DEPLOY_AGENT_RETENTION_HOURS", "retention_hours", "finished jobs are removed after this many hours (default 168)"},
      {"retention-bytes", "DEPLOY_AGENT_RETENTION_BYTES", "retention_bytes", "finished jobs are removed, oldest first, past this size of the jobs folder (default 4 GiB)"},
      {"min-free-bytes", "DEPLOY_AGENT_MIN_FREE_BYTES", "min_free_bytes", "/readyz fails below this much free space in the state directory (default 1 GiB)"},
      {"max-event-streams", "DEPLOY_AGENT_MAX_EVENT_STREAMS", "max_event_streams", "event streams (GET /v1/deploys/{id}/events) open at once; more are 503 (default 32)"},
      {"event-heartbeat-seconds", "DEPLOY_AGENT_EVENT_HEARTBEAT_SECONDS", "event_heartbeat_seconds", "an idle event stream gets a comment line this often (default 15)"},
      {"log-format", "DEPLOY_AGENT_LOG_FORMAT", "log_format", "text (default) or json: one JSON object per log line, with the job id"},
      {"drain-seconds", "DEPLOY_AGENT_DRAIN_SECONDS", "drain_seconds", "after SIGTERM, running deploys get this long to finish before they are cancelled (default 25)"},
      {"idempotency-hours", "DEPLOY_AGENT_IDEMPOTENCY_HOURS", "idempotency_hours", "Idempotency-Keys are kept this many hours (at least 24, the default)"},
      {"sandbox", "DEPLOY_AGENT_SANDBOX", "sandbox", "how npm and the CLI are isolated: auto (strongest that works; refuses to start if none), namespaces, landlock, or none (no isolation: only by name)"},
      {"job-uid", "DEPLOY_AGENT_JOB_UID", "job_uid", "host uid:gid jobs run as when the agent is root (default 60000:60000; not 0)"},
      {"job-memory-bytes", "DEPLOY_AGENT_JOB_MEMORY_BYTES", "job_memory_bytes", "memory of one npm or CLI run, through a cgroup (default 4294967296; 0 = no limit)"},
      {"job-max-processes", "DEPLOY_AGENT_JOB_MAX_PROCESSES", "job_max_processes", "processes of one run, through a cgroup (default 1024; 0 = no limit)"},
      {"job-disk-bytes", "DEPLOY_AGENT_JOB_DISK_BYTES", "job_disk_bytes", "a job's writable space, a tmpfs (namespaces tier as root; default 4294967296; 0 = the host disk)"},
      {"job-network", "DEPLOY_AGENT_JOB_NETWORK", "job_network", "proxy (default): each run reaches only its allowlist, through the agent's egress proxy; host: runs share the agent's network (trusted hosts, measurement; warned in every report)"},
      {"callback-hosts", "DEPLOY_AGENT_CALLBACK_HOSTS", "callback_hosts", "comma-separated host:port (bare host: 443) a callback_url may name, matched exactly; empty (default): callback_url is refused"},
      {"callback-secret-file", "DEPLOY_AGENT_CALLBACK_SECRET_FILE", "callback_secret_file", "file holding the key callbacks are signed with (or DEPLOY_AGENT_CALLBACK_SECRET); required with callback-hosts"},
      {"callback-attempts", "DEPLOY_AGENT_CALLBACK_ATTEMPTS", "callback_attempts", "deliveries of one callback at most, the first included (default 8)"},
      {"callback-retry-ms", "DEPLOY_AGENT_CALLBACK_RETRY_MS", "callback_retry_ms", "wait before a callback's second attempt, doubling after each failure up to 5 minutes (default 2000)"},
      {"egress-max-connections", "DEPLOY_AGENT_EGRESS_MAX_CONNECTIONS", "egress_max_connections", "connections one npm or CLI run may hold open through its egress proxy (default 64)"},
      {"egress-idle-timeout", "DEPLOY_AGENT_EGRESS_IDLE_TIMEOUT", "egress_idle_timeout", "seconds a proxied connection may stay silent both ways before it is cut (default 300)"},
      {"config", "DEPLOY_AGENT_CONFIG", "", "properties file with any of the keys above (underscores, e.g. state_dir); an unknown key is an error"},
  };
  return specs;
}

const SettingSpec* findSpec(const std::string& flag) {
  for (const auto& spec : settingSpecs()) {
    if (flag == spec.flag) return &spec;
  }
  return nullptr;
}

const SettingSpec* findSpecByKey(const std::string& key) {
  for (const auto& spec : settingSpecs()) {
    if (*spec.key && key == spec.key) return &spec;
  }
  return nullptr;
}

// For a properties key nobody reads: the key the writer most likely meant, written as a flag
// (state-dir), as an environment variable (DEPLOY_AGENT_STATE_DIR) or in another case.
const SettingSpec* likelyMeantSpec(const std::string& key) {
  std::string normalized = key;
  for (char& c : normalized) c = c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& spec : settingSpecs()) {
    if (!*spec.key) continue;
    std::string env_lower = spec.env;
    for (char& c : env_lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (normalized == spec.key || normalized == env_lower) return &spec;
  }
  return nullptr;
}

bool isEnvironmentName(const std::string& name) {
  auto letter = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  return !name.empty() && letter(name.front()) &&
         std::all_of(name.begin(), name.end(), [&](char c) { return letter(c) || digit(c); });
}

bool startsWithIgnoringCase(const std::string& text, const std::string& upper_prefix) {
  if (text.size() < upper_prefix.size()) return false;
  for (size_t i = 0; i < upper_prefix.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(text[i])) != upper_prefix[i]) return false;
  }
  return true;
}

// Why `name` may not be passed through to npm and the CLI, or nullopt when it may. Case is
// ignored: a lower-case twin of these names has no legitimate use, so refusing it costs nothing.
std::optional<std::string> passthroughRefusal(const std::string& name) {
  if (!isEnvironmentName(name)) {
    return "env-passthrough: '" + name +
           "' is not an environment variable name (letters, digits and _, not starting with a digit)";
  }
  if (startsWithIgnoringCase(name, "DEPLOY_AGENT_")) {
    return "env-passthrough: " + name +
           " is one of the agent's own settings or secrets and is never passed to npm or the CLI; remove it";
  }
  // CONVEX_TEAM_TOKEN, CONVEX_DEPLOY_KEY, CONVEX_OVERRIDE_ACCESS_TOKEN, CONVEX_SELF_HOSTED_*...
  if (startsWithIgnoringCase(name, "CONVEX_")) {
    return "env-passthrough: " + name +
           " is a Convex secret or CLI setting; the agent sets the CONVEX_ variables the CLI needs itself, "
           "and one taken from its environment could send the push elsewhere; remove it";
  }
  return std::nullopt;
}

std::string trimmed(std::string text) {
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  return text.substr(first, text.find_last_not_of(" \t\r\n") - first + 1);
}

void collectPropertyKeys(const Poco::Util::AbstractConfiguration& config, const std::string& prefix,
                         std::map<std::string, std::string>& out) {
  Poco::Util::AbstractConfiguration::Keys keys;
  config.keys(prefix, keys);
  for (const auto& key : keys) {
    const std::string full = prefix.empty() ? key : prefix + "." + key;
    if (config.has(full)) out[full] = config.getString(full);
    collectPropertyKeys(config, full, out);
  }
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
    // Every minimum is >= 0, so past this check the unsigned comparison is exact.
    if (used != text.size() || value < static_cast<long long>(min) ||
        static_cast<unsigned long long>(value) > static_cast<unsigned long long>(std::numeric_limits<Number>::max())) {
      throw std::invalid_argument(text);
    }
    out = static_cast<Number>(value);
  } catch (const std::exception&) {
    errors.push_back(name + " must be a whole number from " + std::to_string(min) + " to " +
                     std::to_string(std::numeric_limits<Number>::max()) + ", got '" + text + "'");
  }
}

// A whole number of the duration's unit (seconds, hours) from `min` up.
template <typename Duration>
void parseDuration(const std::string& name, const std::string& text, long long min, Duration& out,
                   std::vector<std::string>& errors) {
  long long count = 0;
  parseNumber(name, text, min, count, errors);
  out = Duration(count);
}

// The registry URL as npm and the lockfile check use it: http(s), lower-case scheme and host,
// ending in exactly one '/'. It is compared as a prefix of lockfile URLs and appears in
// refusals sent to callers, so what could make that comparison or message wrong is refused:
// credentials, a query or fragment, `.`/`..` segments, backslashes, spaces and control
// characters. On failure returns nullopt and sets `error`.
std::optional<std::string> normalizedRegistryUrl(const std::string& text, std::string& error) {
  const std::string prefix = "npm-registry must be an http:// or https:// URL";
  std::string scheme;
  for (const char* candidate : {"https://", "http://"}) {
    if (startsWithIgnoringCase(text, Poco::toUpper(std::string(candidate)))) scheme = candidate;
  }
  if (scheme.empty()) {
    error = prefix + ", got '" + text + "'";
    return std::nullopt;
  }
  const std::string rest = text.substr(scheme.size());
  if (std::any_of(rest.begin(), rest.end(), [](unsigned char c) {
        return c <= 0x20 || c == 0x7f || c == '\\' || c == '?' || c == '#';
      })) {
    error = prefix + " without spaces, backslashes, query or fragment, got '" + text + "'";
    return std::nullopt;
  }
  const size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : rest.substr(slash);
  if (authority.find('@') != std::string::npos) {
    // Credentials would be echoed in intake refusals; npm takes them from its auth settings.
    error = "npm-registry must not hold credentials (user:password@); got a URL with '@' in its host part";
    return std::nullopt;
  }
  // host[:port], or [ipv6][:port].
  const bool bracketed = !authority.empty() && authority.front() == '[';
  const size_t host_end = bracketed ? authority.find(']') + 1 : std::min(authority.find(':'), authority.size());
  const std::string host = authority.substr(0, host_end);
  const std::string port = authority.substr(std::min(host_end, authority.size()));
  const bool port_ok = port.empty() || (port.size() >= 2 && port.size() <= 6 && port.front() == ':' &&
                                        std::all_of(port.begin() + 1, port.end(), [](char c) { return c >= '0' && c <= '9'; }));
  if (host.empty() || host == "[]" || (bracketed && host_end == 0) || !port_ok) {
    error = prefix + " with a host and an optional numeric port, got '" + text + "'";
    return std::nullopt;
  }
  std::stringstream segments(path);
  for (std::string segment; std::getline(segments, segment, '/');) {
    const std::string lower = Poco::toLower(segment);
    if (lower == "." || lower == ".." || lower == "%2e" || lower == "%2e%2e" || lower == ".%2e" || lower == "%2e.") {
      error = "npm-registry must not contain '.' or '..' path segments, got '" + text + "'";
      return std::nullopt;
    }
  }
  while (!path.empty() && path.back() == '/') path.pop_back();
  return scheme + Poco::toLower(authority) + path + "/";
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
  std::map<std::string, std::string> out;
  // Poco splits keys at dots; walking the tree gives back "a.b" whole instead of a bare "a".
  collectPropertyKeys(*file, "", out);
  return out;
}

std::optional<ListenAddress> parseListenAddress(const std::string& text, std::string& error) {
  const std::string expected =
      "listen must be HOST:PORT (an IPv6 host in brackets, e.g. [::1]:8080), got '" + text + "'";
  ListenAddress address;
  std::string port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close == 1 || close + 1 >= text.size() || text[close + 1] != ':') {
      error = expected;
      return std::nullopt;
    }
    address.host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      error = expected;
      return std::nullopt;
    }
    address.host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    // Without brackets "::1:8080" could be host ::1 port 8080 or host ::1:8080 with no port.
    if (address.host.find(':') != std::string::npos) {
      error = "listen: an IPv6 host goes in brackets, e.g. [::1]:8080; got '" + text + "'";
      return std::nullopt;
    }
  }
  const bool digits_only = !port_text.empty() && port_text.size() <= 5 &&
                           std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits_only || std::stoul(port_text) > 65535) {
    error = "listen port must be a whole number from 0 to 65535, got '" + port_text + "' in '" + text + "'";
    return std::nullopt;
  }
  address.port = static_cast<uint16_t>(std::stoul(port_text));
  return address;
}

std::optional<std::string> checkNodeVersion(const da::Settings& settings, std::string* version) {
  constexpr auto kTimeout = std::chrono::seconds(10);
  const std::string node = settings.toolchain.node.string();
  const std::string fix = "; run scripts/setup.sh (it installs the pinned Node 22), or pass --node with Node >= 22";
  sandbox::ProcessSpec spec;
  spec.executable = node;
  spec.args = {"--version"};
  spec.working_dir = "/";
  spec.limits.wallTime(kTimeout).outputBytes(4096);
  std::string output;
  auto run = sandbox::runProcess(spec, [&](std::string_view chunk) { output += chunk; });
  output = trimmed(output);
  switch (run.status) {
    case sandbox::Status::kOk:
      break;
    case sandbox::Status::kTimedOut:
      return "node at " + node + " did not answer --version within " + std::to_string(kTimeout.count()) + " s" + fix;
    case sandbox::Status::kExitedNonZero:
      return "node at " + node + " --version exited with code " + std::to_string(run.exit_code) +
             (output.empty() ? "" : " ('" + output.substr(0, 200) + "')") + fix;
    default:
      return "cannot run node at " + node + ": " +
             (run.reason.empty() ? std::string(sandbox::statusName(run.status)) : run.reason) + fix;
  }
  // `node --version` prints "v22.23.3".
  int major = -1;
  if (output.size() >= 2 && output.front() == 'v' && std::isdigit(static_cast<unsigned char>(output[1]))) {
    major = std::atoi(output.c_str() + 1);
  }
  if (major < 0) {
    return "node at " + node + " printed '" + output.substr(0, 200) + "' for --version, not a Node version" + fix;
  }
  if (major < 22) {
    return "node at " + node + " is " + output + "; the Convex CLI needs Node 22 or newer" + fix;
  }
  if (version) *version = output;
  return std::nullopt;
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
    std::string error;
    if (auto address = parseListenAddress(*listen, error)) {
      s.listen_host = address->host;
      s.listen_port = address->port;
    } else {
      errors.push_back(error);
    }
  }
  s.state_dir = fs::absolute(lookup("state-dir").value_or(".state"));

  const size_t errors_before_token = errors.size();
  if (auto path = lookup("token-file")) {
    s.api_token = readSecretFile(*path, errors, "API token");
  } else if (auto it = input.env.find("DEPLOY_AGENT_TOKEN"); it != input.env.end()) {
    s.api_token = it->second;
  }
  if (s.api_token.empty() && errors.size() == errors_before_token) {  // an unreadable file said so already
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
  if (auto registry = lookup("npm-registry")) {
    std::string error;
    if (auto normalized = normalizedRegistryUrl(*registry, error)) {
      s.npm_registry = *normalized;
    } else {
      errors.push_back(error);
    }
  }
  s.keep_workdirs = parseBool(lookup("keep-workdirs").value_or("false"));
  if (auto v = lookup("workers")) parseNumber("workers", *v, 1u, s.workers, errors);
  if (auto v = lookup("retention-hours")) parseDuration("retention-hours", *v, 1LL, s.retention_age, errors);
  if (auto v = lookup("max-event-streams")) parseNumber("max-event-streams", *v, size_t{1}, s.max_event_streams, errors);
  if (auto v = lookup("event-heartbeat-seconds")) parseDuration("event-heartbeat-seconds", *v, 1LL, s.event_heartbeat, errors);
  if (auto v = lookup("log-format")) {
    if (*v == "text" || *v == "json") {
      s.log_format = *v;
    } else {
      errors.push_back("log-format must be text or json, got '" + *v + "'");
    }
  }
  if (auto v = lookup("min-free-bytes")) parseNumber("min-free-bytes", *v, uint64_t{0}, s.min_free_bytes, errors);
  if (auto v = lookup("drain-seconds")) parseDuration("drain-seconds", *v, 0LL, s.drain_grace, errors);
  if (auto v = lookup("retention-bytes")) parseNumber("retention-bytes", *v, uint64_t{1} << 20, s.retention_bytes, errors);
  if (auto v = lookup("idempotency-hours")) parseDuration("idempotency-hours", *v, 24LL, s.idempotency_age, errors);
  if (auto v = lookup("max-queued")) parseNumber("max-queued", *v, size_t{1}, s.max_queued_jobs, errors);
  if (auto v = lookup("cli-timeout")) parseDuration("cli-timeout", *v, 1LL, s.cli_timeout, errors);
  if (auto v = lookup("install-timeout")) parseDuration("install-timeout", *v, 1LL, s.install_timeout, errors);
  if (auto v = lookup("max-bundle-bytes")) parseNumber("max-bundle-bytes", *v, uint64_t{1}, s.intake_limits.max_archive_bytes, errors);
  if (auto v = lookup("max-unpacked-bytes")) parseNumber("max-unpacked-bytes", *v, uint64_t{1}, s.intake_limits.max_unpacked_bytes, errors);
  if (auto v = lookup("max-entries")) parseNumber("max-entries", *v, uint64_t{1}, s.intake_limits.max_entries, errors);
  if (auto v = lookup("env-passthrough")) {
    s.env_passthrough_names.clear();
    for (const auto& name : splitList(*v)) {
      if (auto refusal = passthroughRefusal(name)) {
        errors.push_back(*refusal);
      } else {
        s.env_passthrough_names.push_back(name);
      }
    }
  }
  if (auto v = lookup("convex-team-id")) {
    int64_t team = 0;
    parseNumber("convex-team-id", *v, int64_t{1}, team, errors);
    s.convex_team_id = team;
  }
  if (auto v = lookup("deploy-key-actions")) {
    s.deploy_key_actions = *v == "all" ? std::vector<std::string>{} : splitList(*v);
    // A key without it is refused by every push route (403 OperationNotPermitted), so every
    // deploy would fail after its install.
    if (!s.deploy_key_actions.empty() &&
        std::find(s.deploy_key_actions.begin(), s.deploy_key_actions.end(), "deployment:deploy") ==
            s.deploy_key_actions.end()) {
      errors.push_back("deploy-key-actions '" + *v +
                       "' lacks deployment:deploy, which every push needs; add it, or use 'all'");
    }
  }
  for (const auto& name : s.env_passthrough_names) {
    if (auto it = input.env.find(name); it != input.env.end()) s.env_passthrough[name] = it->second;
  }
  s.sandbox.requested = lookup("sandbox").value_or("auto");
  if (s.sandbox.requested != "auto" && s.sandbox.requested != "namespaces" && s.sandbox.requested != "landlock" &&
      s.sandbox.requested != "none") {
    errors.push_back("sandbox must be auto, namespaces, landlock or none, got '" + s.sandbox.requested + "'");
  }
  if (auto v = lookup("job-uid")) {
    const size_t colon = v->find(':');
    unsigned long long uid = 0, gid = 0;
    parseNumber("job-uid", v->substr(0, colon), 1ULL, uid, errors);
    if (colon != std::string::npos) {
      parseNumber("job-uid (gid part)", v->substr(colon + 1), 1ULL, gid, errors);
    } else {
      gid = uid;
    }
    if (uid > 4294967294ULL || gid > 4294967294ULL) {
      errors.push_back("job-uid must be UID[:GID] below 4294967295, got '" + *v + "'");
    } else if (uid > 0 && gid > 0) {
      s.sandbox.job_uid = static_cast<uid_t>(uid);
      s.sandbox.job_gid = static_cast<gid_t>(gid);
    }
  }
  if (auto v = lookup("job-memory-bytes")) parseNumber("job-memory-bytes", *v, uint64_t{0}, s.sandbox.memory_bytes, errors);
  if (auto v = lookup("job-max-processes")) parseNumber("job-max-processes", *v, uint64_t{0}, s.sandbox.max_processes, errors);
  if (auto v = lookup("job-disk-bytes")) parseNumber("job-disk-bytes", *v, uint64_t{0}, s.sandbox.disk_bytes, errors);
  if (auto v = lookup("job-network")) {
    if (*v == "proxy" || *v == "host") {
      s.egress.proxy = *v == "proxy";
    } else {
      errors.push_back("job-network must be proxy or host, got '" + *v + "'");
    }
  }
  if (auto v = lookup("callback-hosts")) {
    for (const auto& entry : splitList(*v)) {
      std::string error;
      if (!da::net::parseAuthority(entry, 443, error)) {
        errors.push_back("callback-hosts entry '" + entry + "' is not host:port (" + error + ")");
      } else {
        s.callbacks.allowed_hosts.push_back(entry);
      }
    }
  }
  if (auto path = lookup("callback-secret-file")) {
    s.callbacks.secret = readSecretFile(*path, errors, "callback secret");
  } else if (auto it = input.env.find("DEPLOY_AGENT_CALLBACK_SECRET"); it != input.env.end()) {
    s.callbacks.secret = it->second;
  }
  if (!s.callbacks.allowed_hosts.empty() && s.callbacks.secret.size() < 16) {
    errors.push_back(s.callbacks.secret.empty()
                         ? "callback-hosts needs a signing secret: set DEPLOY_AGENT_CALLBACK_SECRET or --callback-secret-file"
                         : "the callback secret is shorter than 16 characters; use a random one (e.g. `openssl rand -hex 32`)");
  }
  if (auto v = lookup("callback-attempts")) parseNumber("callback-attempts", *v, 1, s.callbacks.max_attempts, errors);
  if (auto v = lookup("callback-retry-ms")) parseDuration("callback-retry-ms", *v, 1LL, s.callbacks.first_retry, errors);
  if (auto v = lookup("egress-max-connections")) {
    uint64_t count = 0;
    parseNumber("egress-max-connections", *v, uint64_t{1}, count, errors);
    s.egress.max_connections = static_cast<size_t>(count);
  }
  if (auto v = lookup("egress-idle-timeout")) {
    long long seconds = 0;
    parseNumber("egress-idle-timeout", *v, 1LL, seconds, errors);
    s.egress.idle_timeout = std::chrono::seconds(seconds);
  }
  if (s.sandbox.memory_bytes != 0 && s.sandbox.memory_bytes < (256ull << 20)) {
    errors.push_back("job-memory-bytes must be 0 or at least 268435456 (256 MiB): Node alone needs about 100 MiB");
  }
  if (s.sandbox.disk_bytes != 0 && s.sandbox.disk_bytes < (64ull << 20)) {
    errors.push_back("job-disk-bytes must be 0 or at least 67108864 (64 MiB)");
  }
  const std::string file_name = input.file_path.empty() ? "the config file" : input.file_path;
  for (const auto& [key, value] : input.file) {
    if (findSpecByKey(key)) continue;
    std::string message = "unknown key '" + key + "' in " + file_name;
    if (const SettingSpec* meant = likelyMeantSpec(key)) {
      message += "; did you mean '" + std::string(meant->key) + "'? (file keys use underscores)";
    } else {
      message += " (deploy-agent --help lists the keys)";
    }
    errors.push_back(message);
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
  out << "\nSecrets: DEPLOY_AGENT_TOKEN (the API token), CONVEX_TEAM_TOKEN (mints deploy keys),\n"
         "DEPLOY_AGENT_CALLBACK_SECRET (signs callbacks).\n";
  return out.str();
}

}  // namespace agent

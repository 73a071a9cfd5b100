#include "api/deploy_options.h"

#include <algorithm>

#include "convex/deploy_key.h"
#include "net/egress_allowlist.h"

namespace da::api {

namespace {

const std::set<std::string> kQueryOptions = {"target",      "deployment", "project",         "create_project",
                                             "ttl_seconds", "preview",    "self_hosted_url", "typecheck",
                                             "callback_url"};
const std::set<std::string> kJsonOptions = {"target",      "deployment", "project",         "create_project",
                                            "ttl_seconds", "preview",    "self_hosted_url", "env",
                                            "typecheck",   "callback_url"};

OptionsProblem badValue(const std::string& field, const std::string& detail, const std::string& reason = "") {
  return {400, reason.empty() ? "invalid_" + field : reason, detail, field};
}

std::optional<int64_t> parsePositive(const std::string& text) {
  if (text.empty() || text.size() > 18 || !std::all_of(text.begin(), text.end(), ::isdigit)) return std::nullopt;
  const int64_t value = std::stoll(text);
  return value > 0 ? std::optional<int64_t>(value) : std::nullopt;
}

bool printableName(const std::string& text, size_t max) {
  if (text.empty() || text.size() > max) return false;
  return std::none_of(text.begin(), text.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

bool previewName(const std::string& text) {
  if (text.empty() || text.size() > 64) return false;
  return std::all_of(text.begin(), text.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '/';
  });
}

bool envName(const std::string& name) {
  if (name.empty() || name.size() > kMaxEnvNameBytes) return false;
  if (!(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_')) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isalnum(c) || c == '_'; });
}

// Sets one option from its text (the query's form); every option passes through here, so the
// query and the JSON part are checked alike.
std::optional<OptionsProblem> setOption(const std::string& name, const std::string& value, DeployOptions& options) {
  if (name == "target") {
    auto target = parseTarget(value);
    if (!target) return badValue("target", "target must be 'dev' or 'prod'");
    options.target = target;
  } else if (name == "deployment") {
    if (!convex::isValidDeploymentName(value)) {
      return badValue("deployment", "deployment must be 1-64 characters of a-z, 0-9 and '-', like 'happy-otter-123'");
    }
    options.deployment = value;
  } else if (name == "project") {
    auto id = parsePositive(value);
    if (!id) return badValue("project", "project must be a project's numeric id, like 3153479");
    options.project_id = id;
  } else if (name == "create_project") {
    if (!printableName(value, 128)) {
      return badValue("create_project", "create_project must be a project name of 1-128 printable characters");
    }
    options.create_project = value;
  } else if (name == "ttl_seconds") {
    auto ttl = parsePositive(value);
    if (!ttl || *ttl < kMinTtlSeconds || *ttl > kMaxTtlSeconds) {
      return badValue("ttl_seconds", "ttl_seconds must be a whole number from " + std::to_string(kMinTtlSeconds) +
                                         " to " + std::to_string(kMaxTtlSeconds));
    }
    options.ttl_seconds = ttl;
  } else if (name == "preview") {
    if (!previewName(value)) {
      return badValue("preview", "preview must be 1-64 characters of letters, digits, '-', '_', '.' and '/'");
    }
    options.preview = value;
  } else if (name == "self_hosted_url") {
    std::string error;
    if (!net::originOf(value, error) || value.find('@') != std::string::npos) {
      if (error.empty()) error = "credentials in a URL are refused: send the admin key as Convex-Admin-Key";
      return badValue("self_hosted_url", "self_hosted_url must be an http(s) URL of the backend, like "
                                         "https://convex.example.com (" + error + ")");
    }
    options.self_hosted_url = value;
  } else if (name == "callback_url") {
    std::string error;
    if (value.size() > kMaxCallbackUrlBytes || !net::originOf(value, error)) {
      if (error.empty()) error = "longer than " + std::to_string(kMaxCallbackUrlBytes) + " bytes";
      return badValue("callback_url", "callback_url must be an http(s) URL, like https://hooks.example.com/deploys (" +
                                          error + ")");
    }
    options.callback_url = value;
  } else if (name == "typecheck") {
    if (value != "try" && value != "enable" && value != "disable") {
      return badValue("typecheck", "typecheck must be try, enable or disable");
    }
    options.typecheck = value;
  }
  options.given.insert(name);
  return std::nullopt;
}

// What a JSON member says, as the query would have said it.
std::optional<std::string> jsonAsText(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_integer()) return std::to_string(value.get<int64_t>());
  return std::nullopt;
}

// An option's value as text, so that the query's and the JSON part's can be compared.
std::string canonical(const std::string& name, const DeployOptions& o) {
  if (name == "target") return o.target ? targetName(*o.target) : "";
  if (name == "project") return o.project_id ? std::to_string(*o.project_id) : "";
  if (name == "ttl_seconds") return o.ttl_seconds ? std::to_string(*o.ttl_seconds) : "";
  if (name == "deployment") return o.deployment;
  if (name == "create_project") return o.create_project;
  if (name == "preview") return o.preview;
  if (name == "self_hosted_url") return o.self_hosted_url;
  if (name == "callback_url") return o.callback_url;
  return o.typecheck;
}

}  // namespace

std::optional<OptionsProblem> optionsFromQuery(const std::map<std::string, std::string>& query, DeployOptions& options) {
  for (const auto& [name, value] : query) {
    if (!kQueryOptions.count(name)) {
      std::string known;
      for (const auto& option : kQueryOptions) known += (known.empty() ? "" : ", ") + option;
      return OptionsProblem{400, "unknown_parameter",
                            "'" + name + "' is not a parameter of POST /v1/deploys (" + known +
                                "; env only in the JSON options part)",
                            name};
    }
    if (auto problem = setOption(name, value, options)) return problem;
  }
  return std::nullopt;
}

std::optional<OptionsProblem> mergeJsonOptions(const nlohmann::json& json, DeployOptions& options) {
  if (!json.is_object()) return OptionsProblem{400, "invalid_options", "the options part must be a JSON object", "options"};
  const DeployOptions from_query = options;
  for (const auto& [name, value] : json.items()) {
    if (!kJsonOptions.count(name)) {
      return OptionsProblem{400, "unknown_option", "'" + name + "' is not an option of POST /v1/deploys", "options." + name};
    }
    if (name == "env") {
      if (!value.is_object()) return badValue("options.env", "env must be an object of names to string values", "invalid_env");
      if (value.size() > kMaxEnvVars) {
        return badValue("options.env", "env has " + std::to_string(value.size()) + " variables; at most " +
                                           std::to_string(kMaxEnvVars), "invalid_env");
      }
      for (const auto& [env_name, env_value] : value.items()) {
        // Names are not secret and are echoed; values never are.
        if (!envName(env_name)) {
          return badValue("options.env." + env_name, "env names must match [A-Za-z_][A-Za-z0-9_]* and be at most " +
                                                         std::to_string(kMaxEnvNameBytes) + " bytes", "invalid_env");
        }
        if (!env_value.is_string()) return badValue("options.env." + env_name, "env values must be strings", "invalid_env");
        if (env_value.get<std::string>().size() > kMaxEnvValueBytes) {
          return badValue("options.env." + env_name, "the value of " + env_name + " is over " +
                                                         std::to_string(kMaxEnvValueBytes) + " bytes", "invalid_env");
        }
        options.env[env_name] = env_value.get<std::string>();
      }
      options.given.insert("env");
      continue;
    }
    auto text = jsonAsText(value);
    if (!text) return badValue("options." + name, name + " must be a string" + (name == "project" || name == "ttl_seconds" ? " or an integer" : ""),
                                "invalid_" + name);
    DeployOptions parsed;
    if (auto problem = setOption(name, *text, parsed)) {
      problem->field = "options." + problem->field;
      return problem;
    }
    if (from_query.given.count(name)) {
      if (canonical(name, parsed) != canonical(name, from_query)) {
        return OptionsProblem{400, "conflicting_options",
                              "the query parameter " + name + " and the option options." + name + " disagree; give it once",
                              name + ",options." + name};
      }
      continue;
    }
    if (auto problem = setOption(name, *text, options)) {
      problem->field = "options." + problem->field;
      return problem;
    }
  }
  return std::nullopt;
}

std::string canonicalRequest(const DeployOptions& options, const CallerCredentials& credentials) {
  const nlohmann::json canonical = {
      {"target", options.target ? targetName(*options.target) : ""},
      {"deployment", options.deployment},
      {"project", options.project_id ? *options.project_id : 0},
      {"create_project", options.create_project},
      {"ttl_seconds", options.ttl_seconds ? *options.ttl_seconds : 0},
      {"preview", options.preview},
      {"self_hosted_url", options.self_hosted_url},
      {"env", options.env},
      {"typecheck", options.typecheck},
      {"callback_url", options.callback_url},
      {"credentials", {credentials.deploy_key, credentials.access_token, credentials.admin_key}}};
  return canonical.dump();  // object keys come out sorted: the same request, the same string
}

std::optional<OptionsProblem> checkTargeting(const DeployOptions& options, const CallerCredentials& credentials,
                                             bool has_team_token) {
  if (!options.target) {
    return OptionsProblem{400, "invalid_target", "target is required: 'dev' or 'prod'", "target"};
  }
  const bool key = !credentials.deploy_key.empty();
  const bool token = !credentials.access_token.empty() || has_team_token;
  const bool self_hosted = !options.self_hosted_url.empty();
  auto conflict = [](const std::string& a, const std::string& b) {
    return OptionsProblem{400, "conflicting_options", a + " and " + b + " name two different targets; give one",
                          a + "," + b};
  };

  if (self_hosted) {
    if (credentials.admin_key.empty()) {
      return OptionsProblem{400, "missing_admin_key", "self_hosted_url needs the backend's admin key in a Convex-Admin-Key header",
                            "Convex-Admin-Key"};
    }
    if (key) return conflict("self_hosted_url", "Convex-Deploy-Key");
    for (const char* other : {"deployment", "project", "create_project", "preview"}) {
      if (options.given.count(other)) return conflict("self_hosted_url", other);
    }
  } else if (!credentials.admin_key.empty()) {
    return OptionsProblem{400, "unexpected_admin_key", "Convex-Admin-Key is only for self_hosted_url", "Convex-Admin-Key"};
  }
  if (!options.create_project.empty()) {
    for (const char* other : {"deployment", "project", "preview"}) {
      if (options.given.count(other)) return conflict("create_project", other);
    }
    if (key) return conflict("create_project", "Convex-Deploy-Key");
  } else if (options.ttl_seconds) {
    return OptionsProblem{400, "invalid_ttl_seconds", "ttl_seconds applies only to create_project", "ttl_seconds"};
  }
  if (options.project_id && !options.deployment.empty()) return conflict("project", "deployment");
  // With preview, the header is the preview deploy key and project=<id> mints one: still two sources.
  if (options.project_id && key) return conflict("project", "Convex-Deploy-Key");
  if (!options.preview.empty()) {
    if (*options.target != Target::kProd) {
      return OptionsProblem{400, "invalid_preview", "preview deploys run `convex deploy`: use target=prod", "target"};
    }
    if (!key && !options.project_id) {
      return OptionsProblem{400, "missing_preview_key",
                            "preview needs a preview deploy key (Convex-Deploy-Key) or project=<id> to mint one", "preview"};
    }
    if (!options.deployment.empty()) return conflict("preview", "deployment");
  }

  const bool needs_token = !self_hosted && !key &&
                           (!options.deployment.empty() || options.project_id || !options.create_project.empty());
  if (!self_hosted && !key && options.deployment.empty() && !options.project_id && options.create_project.empty()) {
    return OptionsProblem{400, "missing_deployment",
                          "name a target: a Convex-Deploy-Key header, deployment=<name>, project=<id>, "
                          "create_project=<name> or self_hosted_url=<url>",
                          "deployment"};
  }
  if (needs_token && !token) {
    return OptionsProblem{422, "deploy_key_unavailable",
                          "the agent has no Convex team token configured (CONVEX_TEAM_TOKEN or --team-token-file) "
                          "and the request has no Convex-Access-Token; send one, or a Convex-Deploy-Key header",
                          "Convex-Access-Token"};
  }
  return std::nullopt;
}

}  // namespace da::api

#include "report/deploy_report.h"

#include "util/ids.h"

namespace da {

const char* statusName(DeployStatus s) {
  switch (s) {
    case DeployStatus::kQueued: return "queued";
    case DeployStatus::kRunning: return "running";
    case DeployStatus::kSucceeded: return "succeeded";
    case DeployStatus::kFailed: return "failed";
    case DeployStatus::kCancelled: return "cancelled";
  }
  return "failed";
}

std::optional<DeployStatus> parseStatus(const std::string& s) {
  for (auto candidate : {DeployStatus::kQueued, DeployStatus::kRunning, DeployStatus::kSucceeded,
                         DeployStatus::kFailed, DeployStatus::kCancelled}) {
    if (s == statusName(candidate)) return candidate;
  }
  return std::nullopt;
}

const char* targetName(Target t) { return t == Target::kProd ? "prod" : "dev"; }

std::optional<Target> parseTarget(const std::string& s) {
  if (s == "dev") return Target::kDev;
  if (s == "prod") return Target::kProd;
  return std::nullopt;
}

namespace {
nlohmann::json timeOrNull(int64_t unix_millis) {
  return unix_millis > 0 ? nlohmann::json(formatRfc3339(unix_millis)) : nlohmann::json(nullptr);
}
nlohmann::json stringOrNull(const std::string& s) {
  return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s);
}
}  // namespace

nlohmann::json DeployReport::toJson() const {
  nlohmann::json j;
  j["id"] = id;
  j["status"] = statusName(status);
  j["phase"] = phase;
  j["target"] = targetName(target);
  j["deployment"] = {{"name", stringOrNull(deployment_name)}, {"url", stringOrNull(deployment_url)}};
  j["key_source"] = stringOrNull(key_source);
  j["deploy_key_deleted"] = deploy_key_deleted ? nlohmann::json(*deploy_key_deleted) : nlohmann::json(nullptr);
  j["exit_code"] = exit_code ? nlohmann::json(*exit_code) : nlohmann::json(nullptr);
  j["error"] = error ? nlohmann::json{{"reason", error->reason},
                                      {"message", error->message},
                                      {"code", stringOrNull(error->code)},
                                      {"retryable", error->retryable}}
                     : nlohmann::json(nullptr);
  j["warnings"] = warnings;
  j["timings_ms"] = timings_ms;
  j["bundle"] = {{"format", bundle.format},
                 {"bytes", bundle.bytes},
                 {"entries", bundle.entries},
                 {"unpacked_bytes", bundle.unpacked_bytes},
                 {"removed", bundle.removed}};
  j["convex"] = {{"cli_version", stringOrNull(cli_version)},
                 {"app_library_version", stringOrNull(app_convex_version)}};
  j["sandbox"] = {{"tier", stringOrNull(sandbox_tier)}, {"facilities", sandbox_facilities}};
  nlohmann::json allowed = nlohmann::json::array();
  for (const auto& a : network.allowed) {
    allowed.push_back({{"host", a.host}, {"connections", a.connections}, {"bytes_in", a.bytes_in}, {"bytes_out", a.bytes_out}});
  }
  nlohmann::json denied = nlohmann::json::array();
  for (const auto& d : network.denied) {
    denied.push_back({{"host", d.host}, {"attempts", d.attempts}, {"reason", d.reason}});
  }
  j["network"] = {{"enforcement", stringOrNull(network.enforcement)},
                  {"not_enforced", network.not_enforced},
                  {"allowed", allowed},
                  {"denied", denied},
                  {"over_connection_limit", network.over_connection_limit}};
  j["project"] = project ? nlohmann::json{{"id", project->id},
                                          {"name", stringOrNull(project->name)},
                                          {"slug", stringOrNull(project->slug)},
                                          {"created", project->created},
                                          {"expires_at", timeOrNull(project->expires_at_ms)}}
                         : nlohmann::json(nullptr);
  j["preview"] = preview ? nlohmann::json{{"name", preview->name},
                                          {"reference", stringOrNull(preview->reference)},
                                          {"is_new", preview->is_new}}
                        : nlohmann::json();
  j["env"] = {{"names", env_names}};
  j["diagnostics"] = da::toJson(diagnostics);
  nlohmann::json calls = nlohmann::json::array();
  for (const auto& call : api_calls) {
    calls.push_back({{"call", call.call}, {"attempts", call.attempts}, {"outcomes", call.outcomes}, {"ok", call.ok}});
  }
  j["api_calls"] = calls;
  auto changesJson = [](const PushChanges& changes) {
    return nlohmann::json{{"created", changes.created},
                          {"changed", changes.changed},
                          {"removed", changes.removed},
                          {"unchanged", changes.unchanged}};
  };
  j["pushed"] = pushed ? nlohmann::json{{"modules", changesJson(pushed->modules)},
                                        {"functions", pushed->functions ? changesJson(*pushed->functions)
                                                                        : nlohmann::json()}}
                       : nlohmann::json();
  if (callback) {
    nlohmann::json attempts = nlohmann::json::array();
    for (const auto& attempt : callback->attempts) {
      attempts.push_back({{"at", timeOrNull(attempt.at_ms)},
                          {"http_status", attempt.http_status ? nlohmann::json(attempt.http_status) : nlohmann::json()},
                          {"outcome", attempt.outcome},
                          {"duration_ms", attempt.duration_ms}});
    }
    j["callback"] = {{"url", callback->url},
                     {"status", callback->status},
                     {"attempts", attempts},
                     {"next_attempt_at", timeOrNull(callback->next_attempt_at_ms)}};
  } else {
    j["callback"] = nullptr;
  }
  j["created_at"] = timeOrNull(created_at_ms);
  j["started_at"] = timeOrNull(started_at_ms);
  j["finished_at"] = timeOrNull(finished_at_ms);
  return j;
}

nlohmann::json DeployReport::toStoredJson() const {
  nlohmann::json j = toJson();
  // Raw millisecond stamps let a restarted agent rebuild the report exactly.
  j["stored"] = {{"created_at_ms", created_at_ms},
                 {"started_at_ms", started_at_ms},
                 {"finished_at_ms", finished_at_ms}};
  if (project) j["stored"]["project_expires_at_ms"] = project->expires_at_ms;
  if (callback) {
    std::vector<int64_t> attempts_at_ms;
    for (const auto& attempt : callback->attempts) attempts_at_ms.push_back(attempt.at_ms);
    j["stored"]["callback"] = {{"attempts_at_ms", attempts_at_ms}, {"next_attempt_at_ms", callback->next_attempt_at_ms}};
  }
  return j;
}

DeployReport DeployReport::fromJson(const nlohmann::json& j) {
  DeployReport r;
  auto str = [&](const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : std::string(); };
  r.id = j.at("id").get<std::string>();
  r.status = parseStatus(j.at("status").get<std::string>()).value_or(DeployStatus::kFailed);
  r.phase = str(j.value("phase", nlohmann::json()));
  r.target = parseTarget(j.at("target").get<std::string>()).value_or(Target::kDev);
  if (j.contains("deployment")) {
    r.deployment_name = str(j["deployment"].value("name", nlohmann::json()));
    r.deployment_url = str(j["deployment"].value("url", nlohmann::json()));
  }
  r.key_source = str(j.value("key_source", nlohmann::json()));
  if (j.contains("deploy_key_deleted") && j["deploy_key_deleted"].is_boolean()) r.deploy_key_deleted = j["deploy_key_deleted"].get<bool>();
  if (j.contains("exit_code") && j["exit_code"].is_number_integer()) r.exit_code = j["exit_code"].get<int>();
  if (j.contains("error") && j["error"].is_object()) {
    r.error = DeployError{str(j["error"].value("reason", nlohmann::json())),
                          str(j["error"].value("message", nlohmann::json())),
                          str(j["error"].value("code", nlohmann::json())),
                          j["error"].value("retryable", false)};
  }
  r.warnings = j.value("warnings", std::vector<std::string>{});
  r.timings_ms = j.value("timings_ms", std::map<std::string, int64_t>{});
  if (j.contains("bundle") && j["bundle"].is_object()) {
    const auto& b = j["bundle"];
    r.bundle.format = str(b.value("format", nlohmann::json()));
    r.bundle.bytes = b.value("bytes", uint64_t{0});
    r.bundle.entries = b.value("entries", uint64_t{0});
    r.bundle.unpacked_bytes = b.value("unpacked_bytes", uint64_t{0});
    r.bundle.removed = b.value("removed", std::vector<std::string>{});
  }
  if (j.contains("convex") && j["convex"].is_object()) {
    r.cli_version = str(j["convex"].value("cli_version", nlohmann::json()));
    r.app_convex_version = str(j["convex"].value("app_library_version", nlohmann::json()));
  }
  if (j.contains("sandbox") && j["sandbox"].is_object()) {
    r.sandbox_tier = str(j["sandbox"].value("tier", nlohmann::json()));
    r.sandbox_facilities = j["sandbox"].value("facilities", std::vector<std::string>{});
  }
  if (j.contains("network") && j["network"].is_object()) {
    const auto& n = j["network"];
    r.network.enforcement = str(n.value("enforcement", nlohmann::json()));
    r.network.not_enforced = n.value("not_enforced", std::vector<std::string>{});
    for (const auto& a : n.value("allowed", nlohmann::json::array())) {
      if (!a.is_object()) continue;
      r.network.allowed.push_back({str(a.value("host", nlohmann::json())), a.value("connections", uint64_t{0}),
                                   a.value("bytes_in", uint64_t{0}), a.value("bytes_out", uint64_t{0})});
    }
    r.network.over_connection_limit = n.value("over_connection_limit", uint64_t{0});
    for (const auto& d : n.value("denied", nlohmann::json::array())) {
      if (!d.is_object()) continue;
      r.network.denied.push_back({str(d.value("host", nlohmann::json())), d.value("attempts", uint64_t{0}),
                                  str(d.value("reason", nlohmann::json()))});
    }
  }
  if (j.contains("project") && j["project"].is_object()) {
    const auto& p = j["project"];
    ProjectReport project;
    project.id = p.value("id", int64_t{0});
    project.name = str(p.value("name", nlohmann::json()));
    project.slug = str(p.value("slug", nlohmann::json()));
    project.created = p.value("created", false);
    if (j.contains("stored") && j["stored"].is_object()) {
      project.expires_at_ms = j["stored"].value("project_expires_at_ms", int64_t{0});
    }
    r.project = project;
  }
  if (j.contains("preview") && j["preview"].is_object()) {
    const auto& p = j["preview"];
    PreviewReport preview;
    preview.name = str(p.value("name", nlohmann::json()));
    preview.reference = str(p.value("reference", nlohmann::json()));
    preview.is_new = p.value("is_new", false);
    r.preview = preview;
  }
  for (const auto& call : j.value("api_calls", nlohmann::json::array())) {
    if (!call.is_object()) continue;
    r.api_calls.push_back({str(call.value("call", nlohmann::json())), call.value("attempts", 0),
                           call.value("outcomes", std::vector<std::string>{}), call.value("ok", false)});
  }
  if (j.contains("env") && j["env"].is_object()) r.env_names = j["env"].value("names", std::vector<std::string>{});
  if (j.contains("diagnostics")) r.diagnostics = diagnosticsFromJson(j["diagnostics"]);
  if (j.contains("pushed") && j["pushed"].is_object() && j["pushed"].contains("modules")) {
    auto changesFrom = [](const nlohmann::json& c) {
      PushChanges changes;
      changes.created = c.value("created", std::vector<std::string>{});
      changes.changed = c.value("changed", std::vector<std::string>{});
      changes.removed = c.value("removed", std::vector<std::string>{});
      changes.unchanged = c.value("unchanged", uint64_t{0});
      return changes;
    };
    PushedReport pushed;
    pushed.modules = changesFrom(j["pushed"]["modules"]);
    if (j["pushed"].contains("functions") && j["pushed"]["functions"].is_object()) {
      pushed.functions = changesFrom(j["pushed"]["functions"]);
    }
    r.pushed = pushed;
  }
  if (j.contains("callback") && j["callback"].is_object()) {
    const auto& c = j["callback"];
    CallbackReport callback;
    callback.url = str(c.value("url", nlohmann::json()));
    callback.status = str(c.value("status", nlohmann::json()));
    std::vector<int64_t> attempts_at_ms;
    if (j.contains("stored") && j["stored"].is_object() && j["stored"].contains("callback")) {
      const auto& stored = j["stored"]["callback"];
      attempts_at_ms = stored.value("attempts_at_ms", std::vector<int64_t>{});
      callback.next_attempt_at_ms = stored.value("next_attempt_at_ms", int64_t{0});
    }
    const auto attempts = c.value("attempts", nlohmann::json::array());
    for (size_t i = 0; i < attempts.size(); ++i) {
      const auto& a = attempts[i];
      if (!a.is_object()) continue;
      CallbackReport::Attempt attempt;
      attempt.at_ms = i < attempts_at_ms.size() ? attempts_at_ms[i] : 0;
      attempt.http_status = a.value("http_status", nlohmann::json()).is_number_integer() ? a["http_status"].get<int>() : 0;
      attempt.outcome = str(a.value("outcome", nlohmann::json()));
      attempt.duration_ms = a.value("duration_ms", int64_t{0});
      callback.attempts.push_back(attempt);
    }
    r.callback = callback;
  }
  if (j.contains("stored") && j["stored"].is_object()) {
    r.created_at_ms = j["stored"].value("created_at_ms", int64_t{0});
    r.started_at_ms = j["stored"].value("started_at_ms", int64_t{0});
    r.finished_at_ms = j["stored"].value("finished_at_ms", int64_t{0});
  }
  return r;
}

}  // namespace da

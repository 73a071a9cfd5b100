#include "jobs/deploy_pipeline.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sys/resource.h>

#include <spdlog/spdlog.h>

#include "convex/cli_outcome.h"
#include "convex/module_diff.h"
#include "convex/deploy_key.h"
#include "convex/management_client.h"
#include "convex/version_fit.h"
#include "jobs/cleanup_queue.h"
#include "jobs/job_network.h"
#include "jobs/job_sandbox.h"
#include "sandbox/process.h"
#include "util/ids.h"

namespace da {

namespace fs = std::filesystem;

struct DeployPipeline::PhaseResult {
  std::optional<DeployError> error;
  bool ok() const { return !error.has_value(); }
};

struct DeployPipeline::PushTarget {
  std::string key;              // CONVEX_DEPLOY_KEY, or the admin key of a self-hosted backend
  bool self_hosted = false;
  std::string deployment_name;  // when known before the push
  std::string deployment_url;   // when known before the push
  std::string management_token; // the token of this job's Management API calls (secret)
  std::string key_cleanup_id;   // the pending deletion of a minted key
  std::string project_cleanup_id;  // the pending deletion of a created project (ttl_seconds)
  bool caller_token = false;    // management_token came with the request (never persisted)
  std::optional<std::string> key_url;  // what url_for_key answered for `key`, once asked

  // The request's Convex-Access-Token, else the agent's team token.
  void useManagementToken(const DeployJob& job, const std::string& team_token) {
    caller_token = !job.access_token.empty();
    management_token = caller_token ? job.access_token : team_token;
  }
  // The token a deletion of this job runs with: the caller's (then the deletion is kept in
  // memory only), or "" for the agent's team token (then it is persisted).
  std::string cleanupToken() const { return caller_token ? management_token : std::string(); }
  // Stores the deletion of a key before it is minted, unless the key will be an OAuth grant;
  // the error to end the job with when it cannot be stored.
  std::optional<DeployError> scheduleKeyDeletion(CleanupQueue* cleanup, CleanupTask task);
};

namespace {

using Clock = std::chrono::steady_clock;

int64_t millisSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// npm opens many files at once; a job may not raise its hard limit (no CAP_SYS_RESOURCE), so
// it gets the agent's own hard limit, at most 65536.
uint64_t openFilesLimit() {
  rlimit current{};
  if (::getrlimit(RLIMIT_NOFILE, &current) != 0 || current.rlim_max == RLIM_INFINITY) return 65536;
  return std::min<uint64_t>(current.rlim_max, 65536);
}

// Captures a child's output up to a bound and mirrors it, a complete line at a time and
// redacted, to the job's log file so GET /log shows a run in progress. Keys never contain a
// newline, so redacting whole lines cannot miss one split across two reads.
class CapturedOutput {
 public:
  // `on_line` gets each complete line, redacted, without its newline (the job's `log` events).
  CapturedOutput(uint64_t limit, const fs::path& live_path, const Redactor& redactor,
                 std::function<void(const std::string&)> on_line)
      : limit_(limit), live_(live_path, std::ios::trunc | std::ios::binary), redactor_(redactor),
        on_line_(std::move(on_line)) {}

  void append(std::string_view chunk) {
    if (text_.size() >= limit_) { truncated_ = true; return; }
    size_t room = limit_ - text_.size();
    if (chunk.size() > room) truncated_ = true;
    text_.append(chunk.substr(0, room));
    size_t last_newline = text_.rfind('\n');
    if (last_newline != std::string::npos && last_newline + 1 > mirrored_) {
      const std::string lines = redactor_.redact(std::string_view(text_).substr(mirrored_, last_newline + 1 - mirrored_));
      live_ << lines;
      live_.flush();
      mirrored_ = last_newline + 1;
      if (on_line_) {
        for (size_t start = 0, end; (end = lines.find('\n', start)) != std::string::npos; start = end + 1) {
          on_line_(lines.substr(start, end - start));
        }
      }
    }
  }

  const std::string& text() const { return text_; }
  bool truncated() const { return truncated_; }

 private:
  uint64_t limit_;
  std::ofstream live_;
  const Redactor& redactor_;
  std::function<void(const std::string&)> on_line_;
  std::string text_;
  size_t mirrored_ = 0;
  bool truncated_ = false;
};

// The finished log replaces the live one in one rename, so a reader never sees it half written.
// A failure is logged, not thrown: the live log (complete lines so far) stays in its place.
void writeLog(const fs::path& path, const std::string& redacted_text, bool truncated) {
  std::string text = redacted_text;
  if (truncated) text += "\n[deploy-agent: output truncated at the configured limit]\n";
  std::string error;
  if (!replaceFileDurably(path, text, error)) {
    spdlog::error("cannot store the finished log {}: {}; the live log stays", path.string(), error);
  }
}

// Runs a toolchain command (npm or the CLI) in the app folder with this job's environment
// and bounds, and stores its redacted output as `log_name` in the job folder.
struct CapturedRun {
  sandbox::RunResult run;
  std::string log;  // redacted
};

// The run reaches the network only through its own egress proxy, whose traffic is added to
// `network` when the run ends.
CapturedRun runToolchainCommand(const Settings& settings, const DeployJob& job, const JobSandbox& job_sandbox,
                                std::vector<std::string> args,
                                std::map<std::string, std::string> extra_env,
                                net::EgressAllowlist allowlist, NetworkReport& network,
                                std::chrono::seconds timeout, const std::string& log_name,
                                const Redactor& redactor, const std::atomic<bool>& cancel,
                                std::function<void(const std::string&)> on_line) {
  CapturedRun result;
  std::optional<RunEgress> egress;
  try {
    if (settings.egress.proxy) egress.emplace(settings, std::move(allowlist));
  } catch (const std::exception& e) {
    result.run.status = sandbox::Status::kSetupFailed;
    result.run.reason = e.what();
    return result;
  }
  sandbox::ProcessSpec spec;
  spec.executable = settings.toolchain.node.string();
  spec.args = std::move(args);
  spec.env = baseChildEnvironment(settings, job_sandbox.paths());
  if (egress) {
    for (auto& [name, value] : egress->proxyEnvironment()) spec.env.insert_or_assign(name, std::move(value));
  }
  for (auto& [name, value] : extra_env) spec.env.insert_or_assign(name, std::move(value));  // these win
  spec.working_dir = job_sandbox.paths().app;
  // No core files; a bounded file size and descriptor count as the floor under the cgroup.
  spec.limits.wallTime(timeout).outputBytes(settings.max_log_bytes).fileSizeBytes(1ull << 30).openFiles(openFilesLimit());
  spec.isolation = job_sandbox.isolation();
  if (egress) egress->applyTo(spec.isolation);

  CapturedOutput output(settings.max_log_bytes, job.job_dir / log_name, redactor, std::move(on_line));
  result.run = sandbox::runProcess(spec, [&](std::string_view chunk) { output.append(chunk); }, &cancel);
  if (egress) egress->finishInto(network);
  result.log = redactor.redact(output.text());
  writeLog(job.job_dir / log_name, result.log, output.truncated());
  return result;
}

std::string lastLines(const std::string& text, size_t count) {
  size_t pos = text.size();
  while (pos > 0 && (text[pos - 1] == '\n' || text[pos - 1] == ' ')) --pos;
  size_t end = pos;
  for (size_t found = 0; pos > 0 && found < count; --pos) {
    if (text[pos - 1] == '\n') ++found;
    if (found == count) break;
  }
  return text.substr(pos, end - pos);
}

std::string readPackageVersion(const fs::path& package_json) {
  try {
    std::ifstream in(package_json);
    if (!in) return {};
    auto parsed = nlohmann::json::parse(in);
    return parsed.value("version", std::string());
  } catch (const std::exception&) {
    return {};
  }
}

std::optional<DeployError> errorForRunFailure(const sandbox::RunResult& run,
                                              const std::string& what,
                                              std::chrono::seconds timeout,
                                              const Settings& settings,
                                              const JobSandbox& job_sandbox) {
  // A limit of the sandbox is the first cause: what the tool printed after it is a symptom.
  if (run.status != sandbox::Status::kOk && run.status != sandbox::Status::kCancelled &&
      run.status != sandbox::Status::kSetupFailed) {
    if (run.limit_exceeded == "memory") {
      return DeployError{"memory_limit", what + " exceeded the job's memory limit of " +
                                             std::to_string(settings.sandbox.memory_bytes) + " bytes and was killed"};
    }
    if (run.limit_exceeded == "processes") {
      return DeployError{"process_limit", what + " hit the job's limit of " +
                                              std::to_string(settings.sandbox.max_processes) + " processes"};
    }
    if (job_sandbox.diskFull()) {
      return DeployError{"disk_limit", what + " filled the job's writable space of " +
                                           std::to_string(job_sandbox.diskBytes()) + " bytes"};
    }
  }
  switch (run.status) {
    case sandbox::Status::kTimedOut:
      return DeployError{what + "_timeout", what + " did not finish within " +
                                                std::to_string(timeout.count()) + " s and was killed"};
    case sandbox::Status::kCancelled:
      return DeployError{"agent_stopped", "the agent stopped during " + what};
    case sandbox::Status::kSetupFailed:
      return DeployError{"sandbox_setup_failed", run.reason};
    case sandbox::Status::kSignaled:
      return DeployError{what + "_killed", what + " was killed by signal " + std::to_string(run.signal)};
    default:
      return std::nullopt;
  }
}

// Where the app is as the tools saw it (inside the sandbox) and on the host: paths under either
// are reported relative to the app root.
std::vector<std::string> appRootPrefixes(const DeployJob& job, const JobSandbox& job_sandbox) {
  return {job_sandbox.paths().app, job.app_dir.string()};
}

// Errors whose cause is the moment, not the request: the agent stopping, the network, another
// push racing this one, a registry or deployment too slow this time. (Convex API errors carry
// their own verdict, from the status they got.)
bool isTransient(const std::string& reason) {
  static const std::set<std::string> kTransient = {"agent_stopped", "agent_restarted", "network_error",
                                                   "push_raced",    "install_timeout", "cli_timeout"};
  return kTransient.count(reason) > 0;
}

}  // namespace

DeployPipeline::DeployPipeline(const Settings& settings, JobStore& store, const Redactor& redactor,
                               CleanupQueue* cleanup)
    : settings_(settings), store_(store), redactor_(redactor), cleanup_(cleanup) {}

void DeployPipeline::run(const DeployJob& job, const std::atomic<bool>& cancel) const {
  Redactor redactor = redactor_;  // this job's secrets stay in this job's copy
  for (const std::string* secret : {&job.deploy_key, &job.access_token, &job.admin_key}) {
    if (!secret->empty()) redactor.addSecret(*secret);
  }
  for (const auto& [name, value] : job.env) {
    if (value.size() >= 4) redactor.addSecret(value);  // shorter values would redact ordinary words
  }
  PushTarget target;

  DeployReport report = store_.get(job.id).value();
  report.status = DeployStatus::kRunning;
  report.started_at_ms = nowUnixMillis();
  const auto started = Clock::now();

  std::optional<JobSandbox> job_sandbox;
  auto finish = [&](std::optional<DeployError> error) {
    job_sandbox.reset();  // unmounts the job volume: its content goes with it
    // The minted key is deleted now, whatever the outcome; a retryable failure is left to the
    // cleanup queue (persisted: a restart resumes it).
    if (cleanup_ && !target.key_cleanup_id.empty()) {
      std::string detail;
      const CleanupResult deleted = cleanup_->runNow(target.key_cleanup_id, detail);
      report.deploy_key_deleted = deleted == CleanupResult::kDone;
      if (deleted == CleanupResult::kRetryLater) {
        cleanup_->dueNow(target.key_cleanup_id);
        report.warnings.push_back("the minted deploy key is not deleted yet (" + detail + "); the agent keeps retrying");
      } else if (deleted == CleanupResult::kGaveUp) {
        report.warnings.push_back("the minted deploy key could not be deleted: " + detail);
      }
    }
    const bool cancelled = error && job.cancelled_by_request && *job.cancelled_by_request;
    if (cancelled) {
      // A caller's cancel: what this job created for itself goes too, its project included.
      error = DeployError{"cancelled", "cancelled by request during " + report.phase};
      if (cleanup_ && report.project && report.project->created) {
        if (!target.project_cleanup_id.empty()) {
          cleanup_->dueNow(target.project_cleanup_id);
        } else {
          CleanupTask task;
          task.kind = "project";
          task.project_id = report.project->id;
          task.job_id = job.id;
          task.due_at_ms = nowUnixMillis();
          std::string failure;
          if (!cleanup_->add(task, target.cleanupToken(), failure)) {
            report.warnings.push_back("the project this job created could not be scheduled for deletion (" + failure +
                                      "): delete project " + std::to_string(report.project->id) + " yourself");
          }
        }
      }
    }
    report.status = cancelled ? DeployStatus::kCancelled : error ? DeployStatus::kFailed : DeployStatus::kSucceeded;
    if (error) error->message = redactor.redact(error->message);
    // Failures of time and place, not of the bundle: the same request may succeed later.
    if (error && isTransient(error->reason)) error->retryable = true;
    report.error = error;
    if (!error) report.phase = "done";  // a failed report keeps the phase that failed
    report.finished_at_ms = nowUnixMillis();
    report.timings_ms["total"] = report.finished_at_ms - report.created_at_ms;
    report.timings_ms["run"] = millisSince(started);
    // Deleting node_modules takes 100+ ms; moving it aside is one rename, so callers waiting
    // for the report are woken first and the delete happens after.
    const fs::path trash = job.job_dir / kTrashDirName;
    std::error_code ignored;
    if (!settings_.keep_workdirs) {
      fs::rename(job.job_dir / "work", trash, ignored);
      fs::remove(job.job_dir / "bundle.upload", ignored);
    }
    store_.put(report);
    fs::remove_all(trash, ignored);
  };

  report.sandbox_tier = sandbox::tierName(settings_.sandbox.tier);
  report.sandbox_facilities = settings_.sandbox.facilities;
  try {
    try {
      job_sandbox.emplace(settings_, job.job_dir, job.app_dir);
    } catch (const std::exception& e) {
      return finish(DeployError{"sandbox_setup_failed", e.what()});
    }

    // The target first: API calls that fail fast on a bad token or deployment name, before npm
    // spends seconds installing (a minted key lives far longer than an install).
    auto targeted = resolveTarget(job, report, target, redactor, cancel);
    if (!targeted.ok()) return finish(targeted.error);

    auto installed = install(job, *job_sandbox, report, redactor, cancel);
    if (!installed.ok()) return finish(installed.error);

    auto environment = setEnvironment(job, report, target, cancel);
    if (!environment.ok()) return finish(environment.error);

    auto pushed = push(job, *job_sandbox, report, target, redactor, cancel);
    finish(pushed.error);
  } catch (const std::exception& e) {
    finish(DeployError{"internal_error", e.what()});
  } catch (...) {
    finish(DeployError{"internal_error", "an exception of unknown type"});
  }
}

std::function<void(const std::string&)> DeployPipeline::logEvents(const std::string& job_id,
                                                                  const std::string& phase) const {
  return [this, job_id, phase](const std::string& line) {
    store_.appendEvent(job_id, "log", {{"phase", phase}, {"line", line}});
  };
}

DeployPipeline::PhaseResult DeployPipeline::install(const DeployJob& job, const JobSandbox& job_sandbox,
                                                    DeployReport& report, const Redactor& redactor,
                                                    const std::atomic<bool>& cancel) const {
  report.phase = "install";
  store_.put(report);
  const auto started = Clock::now();

  const bool has_lock = fs::exists(job.app_dir / "package-lock.json") ||
                        fs::exists(job.app_dir / "npm-shrinkwrap.json");
  // `npm ci` installs exactly the lockfile; without one `npm install` resolves the ranges.
  // --ignore-scripts: install scripts of the app's dependencies never run on this host.
  const std::string npm_command = has_lock ? "ci" : "install";
  std::vector<std::string> args = {settings_.toolchain.npm_cli.string(), npm_command, "--ignore-scripts",
                                   "--no-audit", "--no-fund", "--loglevel=warn"};
  if (settings_.npm_offline) args.push_back("--offline");
  auto [run, log] = runToolchainCommand(settings_, job, job_sandbox, std::move(args), {}, installAllowlist(settings_),
                                        report.network, settings_.install_timeout, "install.log", redactor, cancel,
                                        logEvents(job.id, "install"));
  report.timings_ms["install"] = millisSince(started);
  if (run.status != sandbox::Status::kOk) {
    report.diagnostics = parseNpmDiagnostics(log, appRootPrefixes(job, job_sandbox));
  }

  if (auto error = errorForRunFailure(run, "install", settings_.install_timeout, settings_, job_sandbox)) {
    return {error};
  }
  if (run.status != sandbox::Status::kOk) {
    return {DeployError{"install_failed", "npm " + npm_command + " exited " +
                                              std::to_string(run.exit_code) + ": " + lastLines(log, 6)}};
  }

  report.app_convex_version = readPackageVersion(job.app_dir / "node_modules/convex/package.json");
  if (report.app_convex_version.empty()) {
    return {DeployError{"install_failed", "npm finished but node_modules/convex is missing"}};
  }
  // The pinned CLI runs (see docs/design.md); the app's own `convex` library is what esbuild
  // bundles into every module. A different major version is refused, a different minor noted.
  const auto fit = convex::fitOfLibraryToCli(report.app_convex_version, report.cli_version);
  if (fit == convex::VersionFit::kMajorDiffers) {
    return {DeployError{"convex_version_mismatch",
                        "the app installs convex " + report.app_convex_version +
                            " but the agent's CLI is " + report.cli_version + "; use a convex " +
                            convex::majorVersionOf(report.cli_version) + ".x dependency"}};
  }
  if (fit == convex::VersionFit::kMinorDiffers) {
    report.warnings.push_back("the app bundles convex " + report.app_convex_version +
                              " and is pushed by the agent's convex CLI " + report.cli_version);
  }
  return {};
}

namespace {

// OAuth tokens come back from create_deploy_key as the deploy key itself: deleting that "key"
// would revoke the user's grant (reference: convex-management-api.md, OAuth-minted keys).
bool isOAuthToken(const std::string& token) {
  return token.rfind("team:", 0) == 0 || token.rfind("project:", 0) == 0;
}

// A failed Management API call as the report's error: Convex's code and message, and whether
// the same request may succeed later.
DeployError apiError(const std::string& reason, const std::string& what, const convex::ApiError& e) {
  if (e.reason == "cancelled") return DeployError{"agent_stopped", "the agent stopped while " + what};
  std::string detail = e.code.empty() ? e.message : e.code + ": " + e.message;
  DeployError error{reason, what + " failed (" + e.reason + (e.http_status ? ", HTTP " + std::to_string(e.http_status) : "") +
                                "): " + detail};
  error.code = e.code;
  // A call that may have taken effect was not repeated here, but the caller may send the whole
  // deploy again: the agent finds or deletes what the first attempt left.
  error.retryable = e.retryable || e.ambiguous;
  return error;
}

template <typename Result>
void countCall(DeployReport& report, const std::string& call, const Result& result) {
  ApiCallReport entry;
  entry.call = call;
  entry.attempts = result.attempts;
  for (const auto& outcome : result.outcomes) entry.outcomes.push_back(outcome.describe());
  entry.ok = !result.error.has_value();
  report.api_calls.push_back(std::move(entry));
}

int64_t expiryFromNow(std::chrono::minutes ttl) {
  return nowUnixMillis() + std::chrono::duration_cast<std::chrono::milliseconds>(ttl).count();
}

}  // namespace

std::optional<DeployError> DeployPipeline::PushTarget::scheduleKeyDeletion(CleanupQueue* cleanup, CleanupTask task) {
  if (!cleanup || isOAuthToken(management_token)) return std::nullopt;
  std::string error;
  if (!cleanup->add(task, cleanupToken(), error)) {
    return DeployError{"state_unwritable", task.kind == "deploy_key"
                                               ? "the minted key's deletion could not be stored, so no key was minted: " + error
                                               : "the minted preview deploy key's deletion could not be stored, so none was "
                                                 "minted: " + error};
  }
  key_cleanup_id = task.id;
  return std::nullopt;
}

DeployPipeline::PhaseResult DeployPipeline::resolveTarget(const DeployJob& job, DeployReport& report, PushTarget& target,
                                                          Redactor& redactor, const std::atomic<bool>& cancel) const {
  if (!job.self_hosted_url.empty()) {
    target.key = job.admin_key;
    target.self_hosted = true;
    target.deployment_url = job.self_hosted_url;
    report.key_source = "admin_key";
    report.deployment_url = job.self_hosted_url;
    return {};
  }
  if (!job.preview.empty()) return resolvePreview(job, report, target, redactor, cancel);
  if (!job.deploy_key.empty()) {
    target.key = job.deploy_key;
    report.key_source = "header";
    return {};
  }
  report.phase = "deploy_key";
  report.key_source = "management_api";
  store_.put(report);
  const auto started = Clock::now();
  target.useManagementToken(job, settings_.team_token);
  const bool caller_token = target.caller_token;  // the configured team does not apply to it

  convex::HttpOptions http = convex::httpOptionsFromEnvironment(settings_.env_passthrough, settings_.convex_url);
  http.cancel = &cancel;
  convex::ManagementClient client(settings_.convex_url, target.management_token, http);
  std::string deployment = job.deployment_name;

  if (!job.create_project.empty()) {
    // The configured team applies to the configured token only: a caller's token has its own.
    std::optional<int64_t> team_id = caller_token ? std::nullopt : settings_.convex_team_id;
    if (!team_id) {
      auto details = client.tokenDetails();
      countCall(report, "token_details", details);
      if (details.error) return {apiError("project_unavailable", "reading the token's team", *details.error)};
      if (!details.details->team_id) {
        return {DeployError{"project_unavailable", "create_project needs a team token; this token is a '" +
                                                       details.details->kind + "' and names no team"}};
      }
      team_id = details.details->team_id;
    }
    const int64_t team = *team_id;
    const std::string type = targetName(job.target);
    auto created = client.createProject(team, job.create_project, type);
    countCall(report, "create_project", created);
    std::optional<int64_t> project_id;
    std::string slug;
    auto take = [&](const convex::ProjectCreated& made) {
      project_id = made.project_id;
      slug = made.slug;
      if (made.deployment_name) deployment = *made.deployment_name;
      if (made.deployment_url) target.deployment_url = *made.deployment_url;
    };
    if (created.project) {
      take(*created.project);
    } else if (created.error && created.error->ambiguous) {
      // The create may have happened: find it by name before ever creating another.
      auto found = client.findProjectsByName(team, job.create_project);
      countCall(report, "find_project", found);
      if (found.error) return {apiError("project_unavailable", "looking up the project after an unanswered create", *found.error)};
      if (found.projects.size() > 1 || !found.complete) {
        return {DeployError{"project_unavailable", "create_project got no answer, and " +
                                                       std::to_string(found.projects.size()) +
                                                       " projects of that name exist: not creating another"}};
      }
      if (found.projects.size() == 1) {
        project_id = found.projects[0].id;
        slug = found.projects[0].slug;
      } else {
        auto again = client.createProject(team, job.create_project, type);
        countCall(report, "create_project", again);
        if (!again.project) return {apiError("project_unavailable", "creating the project", *again.error)};
        take(*again.project);
      }
    } else {
      return {apiError("project_unavailable", "creating the project", *created.error)};
    }
    ProjectReport project;
    project.id = *project_id;
    project.name = job.create_project;
    project.slug = slug;
    project.created = true;
    if (job.ttl_seconds) {
      project.expires_at_ms = nowUnixMillis() + *job.ttl_seconds * 1000;
      if (cleanup_) {
        CleanupTask task;
        task.kind = "project";
        task.project_id = *project_id;
        task.job_id = job.id;
        task.due_at_ms = project.expires_at_ms;
        std::string error;
        if (!cleanup_->add(task, target.cleanupToken(), error)) {
          report.warnings.push_back("the project's deletion could not be stored (" + error +
                                    "): delete project " + std::to_string(*project_id) + " yourself");
        } else {
          target.project_cleanup_id = task.id;
          if (caller_token) {
            report.warnings.push_back("the project's deletion uses the request's Convex-Access-Token, which the "
                                      "agent never stores: a restart of the agent before it is due forgets it");
          }
        }
      }
    }
    report.project = project;
    store_.put(report);
    if (deployment.empty()) {
      auto found = client.defaultDeployment(*project_id, type);
      countCall(report, "default_deployment", found);
      if (found.error) return {apiError("deployment_unavailable", "finding the new project's deployment", *found.error)};
      deployment = found.deployment->name;
      target.deployment_url = found.deployment->deployment_url;
    }
  } else if (job.project_id) {
    auto found = client.defaultDeployment(*job.project_id, targetName(job.target));
    countCall(report, "default_deployment", found);
    if (found.error) {
      return {apiError("deployment_unavailable",
                       std::string("finding project ") + std::to_string(*job.project_id) + "'s default " +
                           targetName(job.target) + " deployment",
                       *found.error)};
    }
    deployment = found.deployment->name;
    target.deployment_url = found.deployment->deployment_url;
    ProjectReport project;
    project.id = *job.project_id;
    report.project = project;
  }
  report.deployment_name = deployment;
  if (!target.deployment_url.empty()) report.deployment_url = target.deployment_url;
  target.deployment_name = deployment;

  // A key for the deployment, deleted when the job ends. Its deletion is stored before the key
  // exists; an OAuth token's "key" is the grant itself and is never deleted.
  convex::DeployKeyRequest request;
  request.deployment_name = deployment;
  request.key_name = "deploy-agent " + job.id;
  request.allowed_actions = settings_.deploy_key_actions;
  // The same key sets the job's env vars, so the Management API token never goes to the
  // deployment; it gets that right only when the job has env vars to set.
  if (!job.env.empty() &&
      std::find(request.allowed_actions.begin(), request.allowed_actions.end(), "deployment:env:write") ==
          request.allowed_actions.end()) {
    request.allowed_actions.push_back("deployment:env:write");
  }
  request.expires_at_ms = expiryFromNow(settings_.deploy_key_ttl);
  CleanupTask key_deletion;
  key_deletion.kind = "deploy_key";
  key_deletion.deployment = deployment;
  key_deletion.key_name = request.key_name;
  key_deletion.job_id = job.id;
  key_deletion.due_at_ms = *request.expires_at_ms;  // at the latest; made due at the end of the job
  if (auto error = target.scheduleKeyDeletion(cleanup_, key_deletion)) return {error};
  auto minted = client.createDeployKey(request);
  countCall(report, "create_deploy_key", minted);
  report.timings_ms["deploy_key"] = millisSince(started);
  if (minted.error) {
    if (minted.error->reason == "cancelled") {
      return {DeployError{"agent_stopped", "the agent stopped before a deploy key for '" + deployment + "' was minted"}};
    }
    DeployError error = apiError("deploy_key_unavailable", "minting a deploy key for '" + deployment + "'", *minted.error);
    error.message = "the Management API did not mint a deploy key for '" + deployment + "': " + error.message;
    return {error};
  }
  target.key = *minted.deploy_key;
  redactor.addSecret(target.key);
  auto info = convex::classifyKey(target.key);
  if (auto conflict = convex::keyTargetConflict(info, job.target, deployment)) {
    return {DeployError{"deploy_key_conflict", "the minted key cannot be used: " + *conflict}};
  }
  return {};
}

DeployPipeline::PhaseResult DeployPipeline::resolvePreview(const DeployJob& job, DeployReport& report,
                                                           PushTarget& target, Redactor& redactor,
                                                           const std::atomic<bool>& cancel) const {
  report.phase = "deploy_key";
  store_.put(report);
  const auto started = Clock::now();
  convex::HttpOptions http = convex::httpOptionsFromEnvironment(settings_.env_passthrough, settings_.convex_url);
  http.cancel = &cancel;

  std::string preview_key = job.deploy_key;
  report.key_source = "header";
  if (preview_key.empty()) {
    // project=<id>: a preview deploy key of the project, minted for this job and deleted at its
    // end like any minted key (never one an OAuth token minted: that is the user's grant).
    report.key_source = "management_api";
    target.useManagementToken(job, settings_.team_token);
    convex::ManagementClient client(settings_.convex_url, target.management_token, http);
    const std::string key_name = "deploy-agent " + job.id;
    const int64_t expires_at_ms = expiryFromNow(settings_.deploy_key_ttl);
    CleanupTask key_deletion;
    key_deletion.kind = "preview_deploy_key";
    key_deletion.project_id = *job.project_id;
    key_deletion.key_name = key_name;
    key_deletion.job_id = job.id;
    key_deletion.due_at_ms = expires_at_ms;
    if (auto error = target.scheduleKeyDeletion(cleanup_, key_deletion)) return {error};
    auto minted = client.createPreviewDeployKey(*job.project_id, key_name, expires_at_ms);
    countCall(report, "create_preview_deploy_key", minted);
    if (minted.error) {
      if (minted.error->reason == "cancelled") {
        return {DeployError{"agent_stopped", "the agent stopped before a preview deploy key was minted"}};
      }
      return {apiError("deploy_key_unavailable",
                       "minting a preview deploy key for project " + std::to_string(*job.project_id), *minted.error)};
    }
    preview_key = *minted.preview_deploy_key;
    redactor.addSecret(preview_key);
    ProjectReport project;
    project.id = *job.project_id;
    report.project = project;
  }

  // The agent claims the preview itself (what `convex deploy --preview-create` would do), so the
  // push that follows may reach that one deployment and nothing else. reuse=false replaces a
  // preview of the same name, as --preview-create does; after an unanswered claim, a second one
  // with reuse=true takes the deployment that claim made instead of replacing it again.
  auto claimed = convex::claimPreviewDeployment(settings_.convex_url, preview_key, job.preview, false, http);
  countCall(report, "claim_preview_deployment", claimed);
  if (!claimed.preview && claimed.error && claimed.error->ambiguous) {
    claimed = convex::claimPreviewDeployment(settings_.convex_url, preview_key, job.preview, true, http);
    countCall(report, "claim_preview_deployment", claimed);
  }
  report.timings_ms["deploy_key"] = millisSince(started);
  if (!claimed.preview) {
    return {apiError("preview_unavailable", "claiming the preview deployment '" + job.preview + "'", *claimed.error)};
  }
  const convex::ClaimedPreview& preview = *claimed.preview;
  redactor.addSecret(preview.admin_key);
  target.key = preview.admin_key;
  target.deployment_name = preview.deployment_name;
  target.deployment_url = preview.instance_url;
  report.deployment_name = preview.deployment_name;
  report.deployment_url = preview.instance_url;
  report.preview = PreviewReport{job.preview, preview.reference, preview.is_new};
  return {};
}

DeployPipeline::PhaseResult DeployPipeline::setEnvironment(const DeployJob& job, DeployReport& report,
                                                           PushTarget& target, const std::atomic<bool>& cancel) const {
  if (job.env.empty()) return {};
  report.phase = "env";
  store_.put(report);
  const auto started = Clock::now();
  std::string url = target.deployment_url;
  convex::HttpOptions provision_http = convex::httpOptionsFromEnvironment(settings_.env_passthrough, settings_.convex_url);
  provision_http.cancel = &cancel;
  if (url.empty()) {
    auto located = convex::deploymentUrlForKey(settings_.convex_url, target.key, provision_http);
    countCall(report, "url_for_key", located);
    if (located.error) return {apiError("env_failed", "finding the deployment to set its environment variables", *located.error)};
    url = *located.url;
    target.key_url = url;  // the push asks the same question of the same key
  }
  std::vector<convex::EnvVarChange> changes;
  for (const auto& [name, value] : job.env) changes.push_back({name, value});
  convex::HttpOptions http = convex::httpOptionsFromEnvironment(settings_.env_passthrough, url);
  http.cancel = &cancel;
  // The key the push uses: a minted key (granted deployment:env:write for this), a caller's key
  // (which needs that action), a preview's or a self-hosted backend's admin key. The Management
  // API token never goes to the deployment.
  auto set = convex::setEnvironmentVariables(url, target.key, changes, http);
  countCall(report, "update_environment_variables", set);
  report.timings_ms["env"] = millisSince(started);
  if (set.error) return {apiError("env_failed", "setting " + std::to_string(changes.size()) + " environment variables", *set.error)};
  return {};
}

DeployPipeline::PhaseResult DeployPipeline::push(const DeployJob& job, const JobSandbox& job_sandbox,
                                                 DeployReport& report, const PushTarget& target,
                                                 const Redactor& redactor, const std::atomic<bool>& cancel) const {
  const std::string& key = target.key;
  report.phase = "push";
  store_.put(report);
  const auto waiting = Clock::now();
  // The key decides where the CLI pushes, so it names the deployment to hold.
  const std::string target_deployment =
      target.self_hosted ? target.deployment_url : convex::classifyKey(key).deployment_name;
  std::optional<DeploymentLocks::Held> held =
      target_deployment.empty() ? std::nullopt : push_locks_.acquire(target_deployment, cancel);
  if (!target_deployment.empty() && !held) {
    return {DeployError{"agent_stopped", "the agent stopped while this deploy waited for its deployment"}};
  }
  report.timings_ms["push_wait"] = millisSince(waiting);
  const auto started = Clock::now();

  std::vector<std::string> args = {settings_.toolchain.convex_cli.string()};
  if (job.target == Target::kProd) {
    args.insert(args.end(), {"deploy", "--message", "deploy-agent " + job.id});
  } else {
    args.insert(args.end(), {"dev", "--once", "--tail-logs", "disable"});
  }
  args.insert(args.end(), {"--typecheck", job.typecheck});
  std::map<std::string, std::string> env;
  std::string deployment_url = target.deployment_url;
  if (target.self_hosted) {
    // The CLI's self-hosted route: no provisioning calls at all.
    env["CONVEX_SELF_HOSTED_URL"] = target.deployment_url;
    env["CONVEX_SELF_HOSTED_ADMIN_KEY"] = key;
  } else {
    env["CONVEX_DEPLOY_KEY"] = key;
    if (settings_.convex_url != kDefaultConvexUrl) env["CONVEX_PROVISION_HOST"] = settings_.convex_url;
    // The version check goes to the provisioning origin too, so every call of the CLI stays on
    // its allowlist; the CLI ignores a failed check.
    env["CONVEX_VERSION_API_ORIGIN"] = settings_.convex_url;
    // The push may reach the deployment the key names, asked of the provisioning API as the CLI
    // asks it. A failed lookup leaves the CLI to meet (and report) the same failure.
    if (target.key_url) {
      deployment_url = *target.key_url;
      report.deployment_url = *target.key_url;
    } else {
      convex::HttpOptions http = convex::httpOptionsFromEnvironment(settings_.env_passthrough, settings_.convex_url);
      http.cancel = &cancel;
      auto located = convex::deploymentUrlForKey(settings_.convex_url, key, http);
      countCall(report, "url_for_key", located);
      if (located.url) {
        deployment_url = *located.url;
        report.deployment_url = *located.url;
      } else if (located.error && located.error->reason != "cancelled") {
        report.warnings.push_back("the deployment URL of the key could not be looked up (" + located.error->reason +
                                  "): the job may reach only the Convex URL");
      }
    }
  }
  // What the deployment runs before the push, so the report can say what the push changed.
  // Asked under the push lock: no other push of this agent moves it in between.
  const bool key_reads_deployment = target.self_hosted || convex::classifyKey(key).kind == convex::KeyKind::kDeployment;
  struct DeployedState {
    std::optional<std::vector<convex::ModuleHash>> modules;
    std::optional<std::vector<convex::FunctionSpec>> functions;
  };
  auto askDeployment = [&]() {
    DeployedState state;
    if (deployment_url.empty() || !key_reads_deployment) return state;
    convex::HttpOptions http = convex::httpOptionsFromEnvironment(settings_.env_passthrough, deployment_url);
    http.cancel = &cancel;
    auto modules = convex::moduleHashes(deployment_url, key, settings_.toolchain.convex_cli_version, http);
    countCall(report, "get_config_hashes", modules);
    state.modules = modules.modules;
    if (state.modules) {
      auto functions = convex::functionSpec(deployment_url, key, http);
      countCall(report, "function_spec", functions);
      state.functions = functions.functions;
    }
    return state;
  };
  const DeployedState before = askDeployment();
  auto [run, log] = runToolchainCommand(settings_, job, job_sandbox, std::move(args), std::move(env),
                                        pushAllowlist(settings_, deployment_url), report.network,
                                        settings_.cli_timeout, "cli.log", redactor, cancel, logEvents(job.id, "push"));
  report.timings_ms["push"] = millisSince(started);
  // Warnings of a successful push too: what a generator should fix before it matters.
  report.diagnostics = parseCliDiagnostics(log, appRootPrefixes(job, job_sandbox));

  if (auto error = errorForRunFailure(run, "cli", settings_.cli_timeout, settings_, job_sandbox)) return {error};
  report.exit_code = run.exit_code;
  auto outcome = convex::judgeCliRun(job.target, run.exit_code, log);
  if (!outcome.deployment_url.empty()) report.deployment_url = outcome.deployment_url;
  if (!outcome.succeeded) return {outcome.error};
  if (before.modules) {
    const DeployedState after = askDeployment();
    if (after.modules) {
      PushedReport pushed;
      pushed.modules = convex::moduleDiff(*before.modules, *after.modules);
      if (before.functions && after.functions) {
        pushed.functions = convex::functionDiff(*before.functions, *after.functions, pushed.modules.changed);
      } else {
        report.warnings.push_back("the deployment did not list its functions (see api_calls): pushed.functions is "
                                  "null, pushed.modules says what changed");
      }
      report.pushed = std::move(pushed);
    }
  }
  if (!report.pushed && key_reads_deployment) {
    report.warnings.push_back("what the push changed could not be read from the deployment (see api_calls)");
  }
  return {};
}

}  // namespace da

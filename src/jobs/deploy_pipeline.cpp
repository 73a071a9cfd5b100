#include "jobs/deploy_pipeline.h"

#include <fstream>
#include <sys/resource.h>

#include <spdlog/spdlog.h>

#include "convex/cli_outcome.h"
#include "convex/deploy_key.h"
#include "convex/management_client.h"
#include "convex/version_fit.h"
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
  CapturedOutput(uint64_t limit, const fs::path& live_path, const Redactor& redactor)
      : limit_(limit), live_(live_path, std::ios::trunc | std::ios::binary), redactor_(redactor) {}

  void append(std::string_view chunk) {
    if (text_.size() >= limit_) { truncated_ = true; return; }
    size_t room = limit_ - text_.size();
    if (chunk.size() > room) truncated_ = true;
    text_.append(chunk.substr(0, room));
    size_t last_newline = text_.rfind('\n');
    if (last_newline != std::string::npos && last_newline + 1 > mirrored_) {
      live_ << redactor_.redact(std::string_view(text_).substr(mirrored_, last_newline + 1 - mirrored_));
      live_.flush();
      mirrored_ = last_newline + 1;
    }
  }

  const std::string& text() const { return text_; }
  bool truncated() const { return truncated_; }

 private:
  uint64_t limit_;
  std::ofstream live_;
  const Redactor& redactor_;
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
                                const Redactor& redactor, const std::atomic<bool>& cancel) {
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

  CapturedOutput output(settings.max_log_bytes, job.job_dir / log_name, redactor);
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

}  // namespace

DeployPipeline::DeployPipeline(const Settings& settings, JobStore& store, const Redactor& redactor)
    : settings_(settings), store_(store), redactor_(redactor) {}

void DeployPipeline::run(const DeployJob& job, const std::atomic<bool>& cancel) const {
  Redactor redactor = redactor_;  // this job's secrets stay in this job's copy
  if (!job.deploy_key.empty()) redactor.addSecret(job.deploy_key);

  DeployReport report = store_.get(job.id).value();
  report.status = DeployStatus::kRunning;
  report.started_at_ms = nowUnixMillis();
  const auto started = Clock::now();

  std::optional<JobSandbox> job_sandbox;
  auto finish = [&](std::optional<DeployError> error) {
    job_sandbox.reset();  // unmounts the job volume: its content goes with it
    report.status = error ? DeployStatus::kFailed : DeployStatus::kSucceeded;
    if (error) error->message = redactor.redact(error->message);
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

    // The key first: one API call that fails fast on a bad token or deployment name,
    // before npm spends seconds installing (a minted key lives far longer than an install).
    std::string key = job.deploy_key;
    auto keyed = obtainDeployKey(job, report, key, cancel);
    if (!keyed.ok()) return finish(keyed.error);
    redactor.addSecret(key);

    auto installed = install(job, *job_sandbox, report, redactor, cancel);
    if (!installed.ok()) return finish(installed.error);

    auto pushed = push(job, *job_sandbox, report, key, redactor, cancel);
    finish(pushed.error);
  } catch (const std::exception& e) {
    finish(DeployError{"internal_error", e.what()});
  } catch (...) {
    finish(DeployError{"internal_error", "an exception of unknown type"});
  }
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
                                        report.network, settings_.install_timeout, "install.log", redactor, cancel);
  report.timings_ms["install"] = millisSince(started);

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

DeployPipeline::PhaseResult DeployPipeline::obtainDeployKey(const DeployJob& job,
                                                            DeployReport& report,
                                                            std::string& key,
                                                            const std::atomic<bool>& cancel) const {
  if (!key.empty()) {
    report.key_source = "header";
    return {};
  }
  report.phase = "deploy_key";
  report.key_source = "management_api";
  store_.put(report);
  const auto started = Clock::now();

  // The proxy and certificates the CLI gets, so this call works wherever the CLI's does.
  convex::HttpOptions http = convex::httpOptionsFromEnvironment(settings_.env_passthrough, settings_.convex_url);
  http.cancel = &cancel;
  convex::ManagementClient client(settings_.convex_url, settings_.team_token, http);
  convex::DeployKeyRequest request;
  request.deployment_name = job.deployment_name;
  request.key_name = "deploy-agent " + job.id;
  request.allowed_actions = settings_.deploy_key_actions;
  request.expires_at_ms =
      nowUnixMillis() + std::chrono::duration_cast<std::chrono::milliseconds>(settings_.deploy_key_ttl).count();
  auto minted = client.createDeployKey(request);
  report.timings_ms["deploy_key"] = millisSince(started);
  if (minted.error && minted.error->reason == "cancelled") {
    return {DeployError{"agent_stopped", "the agent stopped while a deploy key was being minted"}};
  }
  if (minted.error) {
    const auto& e = *minted.error;
    std::string detail = e.code.empty() ? e.message : e.code + ": " + e.message;
    return {DeployError{"deploy_key_unavailable",
                        "the Management API did not mint a deploy key for '" + job.deployment_name +
                            "' (" + e.reason + (e.http_status ? ", HTTP " + std::to_string(e.http_status) : "") +
                            "): " + detail}};
  }
  key = *minted.deploy_key;
  auto info = convex::classifyKey(key);
  if (auto conflict = convex::keyTargetConflict(info, job.target, job.deployment_name)) {
    return {DeployError{"deploy_key_conflict", "the minted key cannot be used: " + *conflict}};
  }
  return {};
}

DeployPipeline::PhaseResult DeployPipeline::push(const DeployJob& job, const JobSandbox& job_sandbox,
                                                 DeployReport& report,
                                                 const std::string& key, const Redactor& redactor,
                                                 const std::atomic<bool>& cancel) const {
  report.phase = "push";
  store_.put(report);
  const auto waiting = Clock::now();
  // The key decides where the CLI pushes, so it names the deployment to hold.
  const std::string target_deployment = convex::classifyKey(key).deployment_name;
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
  std::map<std::string, std::string> env = {{"CONVEX_DEPLOY_KEY", key}};
  if (settings_.convex_url != kDefaultConvexUrl) env["CONVEX_PROVISION_HOST"] = settings_.convex_url;
  // The version check goes to the provisioning origin too, so every call of the CLI stays on
  // its allowlist; the CLI ignores a failed check.
  env["CONVEX_VERSION_API_ORIGIN"] = settings_.convex_url;

  // The push may reach the deployment the key names, asked of the provisioning API as the CLI
  // asks it. A failed lookup leaves the CLI to meet (and report) the same failure.
  convex::HttpOptions http = convex::httpOptionsFromEnvironment(settings_.env_passthrough, settings_.convex_url);
  http.cancel = &cancel;
  auto located = convex::deploymentUrlForKey(settings_.convex_url, key, http);
  if (located.url) {
    report.deployment_url = *located.url;
  } else if (located.error && located.error->reason != "cancelled") {
    report.warnings.push_back("the deployment URL of the key could not be looked up (" + located.error->reason +
                              "): the job may reach only the Convex URL");
  }
  auto [run, log] = runToolchainCommand(settings_, job, job_sandbox, std::move(args), std::move(env),
                                        pushAllowlist(settings_, located.url.value_or("")), report.network,
                                        settings_.cli_timeout, "cli.log", redactor, cancel);
  report.timings_ms["push"] = millisSince(started);

  if (auto error = errorForRunFailure(run, "cli", settings_.cli_timeout, settings_, job_sandbox)) return {error};
  report.exit_code = run.exit_code;
  auto outcome = convex::judgeCliRun(job.target, run.exit_code, log);
  if (!outcome.deployment_url.empty()) report.deployment_url = outcome.deployment_url;
  if (!outcome.succeeded) return {outcome.error};
  return {};
}

}  // namespace da

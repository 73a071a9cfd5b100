// deploy-agent: takes bundles of generated Convex app code over HTTP and pushes them with
// the real Convex CLI. `deploy-agent [serve]` runs the server; `deploy-agent version` prints
// versions. Client subcommands join here.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

#include <Poco/Net/SSLManager.h>
#include <Poco/Util/ServerApplication.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "api/api_server.h"
#include "api/metrics.h"
#include "config.h"
#include "log_format.h"
#include "jobs/callback_delivery.h"
#include "jobs/cleanup_queue.h"
#include "jobs/deploy_pipeline.h"
#include "jobs/housekeeper.h"
#include "jobs/idempotency_index.h"
#include "jobs/job_runner.h"
#include "jobs/job_sandbox.h"
#include "jobs/job_store.h"
#include "sandbox/tier_probe.h"
#include "util/redactor.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;

// SIGTERM and SIGINT are blocked in every thread from the start (threads inherit the mask; every
// child resets it) and taken here, synchronously: no handler runs in an arbitrary thread.
sigset_t terminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// True when a termination signal arrived within `timeout`.
bool terminationSignalWithin(std::chrono::milliseconds timeout) {
  const sigset_t set = terminationSignals();
  timespec wait{static_cast<time_t>(timeout.count() / 1000), static_cast<long>((timeout.count() % 1000) * 1000000)};
  return ::sigtimedwait(&set, nullptr, &wait) > 0;
}

void waitForTerminationSignal() {
  const sigset_t set = terminationSignals();
  int signal = 0;
  while (::sigwait(&set, &signal) != 0) {
  }
}

class DeployAgentApp : public Poco::Util::ServerApplication {
 public:
  explicit DeployAgentApp(da::Settings settings) : settings_(std::move(settings)) {}

 protected:
  int main(const std::vector<std::string>&) override {
    fs::create_directories(settings_.state_dir);
    fs::create_directories(settings_.npm_cache);
    da::JobStore store(settings_.state_dir / "jobs");
    if (size_t interrupted = store.recover()) {
      spdlog::warn("{} deploy(s) were interrupted by the last stop and are marked failed", interrupted);
    }
    da::Redactor redactor;
    redactor.addSecret(settings_.api_token);
    redactor.addSecret(settings_.team_token);
    redactor.addSecret(settings_.callbacks.secret);
    // Deletions owed to the Convex cloud (minted keys, projects past their TTL), resumed from disk.
    std::atomic<bool> stopping{false};
    da::CleanupQueue cleanup(settings_.state_dir / "cleanups", settings_.team_token,
                             da::managementApiCleanup(settings_, &stopping));
    if (auto problem = cleanup.start(); !problem.empty()) {
      spdlog::error("cannot keep pending deletions: {}", problem);
      return EXIT_CANTCREAT;
    }
    da::IdempotencyIndex idempotency(settings_.state_dir / "idempotency", settings_.idempotency_age);
    if (auto problem = idempotency.load(); !problem.empty()) {
      spdlog::error("cannot keep Idempotency-Keys: {}", problem);
      stopping = true;
      cleanup.stop();
      return EXIT_CANTCREAT;
    }
    da::Housekeeper housekeeper(settings_, store, &idempotency);
    housekeeper.start();
    da::api::Metrics metrics;
    store.onFinished([&metrics](const da::DeployReport& report) { metrics.jobFinished(report); });
    // Webhooks of finished jobs, including those a restart left pending.
    da::CallbackDelivery callbacks(settings_, store);
    callbacks.onAttempt([&metrics](const std::string& outcome) { metrics.callbackAttempt(outcome); });
    store.afterFinished([&callbacks](const da::DeployReport& report) { callbacks.jobFinished(report); });
    callbacks.start();
    std::atomic<bool> draining{false};
    da::DeployPipeline pipeline(settings_, store, redactor, &cleanup);
    da::JobRunner runner(settings_, store, pipeline);
    runner.start();
    da::api::ApiServer server({settings_, store, runner, &idempotency, &metrics, &draining});
    try {
      server.start();
    } catch (const Poco::Exception& e) {
      spdlog::error("cannot listen on {}: {} (is the port in use? --listen HOST:0 picks a free port)",
                    da::api::formatHostPort(settings_.listen_host, settings_.listen_port), e.displayText());
      runner.stop();
      stopping = true;
      cleanup.stop();
      return EXIT_OSERR;
    }
    spdlog::info("Convex CLI {} via {}; Convex cloud {}; team token {}; state in {}",
                 settings_.toolchain.convex_cli_version, settings_.toolchain.node.string(),
                 settings_.convex_url, settings_.team_token.empty() ? "absent" : "configured",
                 settings_.state_dir.string());
    std::cout << "listening on " << server.baseUrl() << std::endl;
    waitForTerminationSignal();
    // Drain: new deploys are refused (503, Retry-After) and /readyz fails, so an orchestrator
    // sends work elsewhere; accepted deploys get the grace period; a second signal ends it now.
    draining = true;
    spdlog::info("draining: no new deploys; {} running and {} queued get up to {} s (a second SIGTERM stops now)",
                 runner.runningCount(), runner.queuedCount(), settings_.drain_grace.count());
    const auto deadline = std::chrono::steady_clock::now() + settings_.drain_grace;
    bool hurried = false;
    while (runner.runningCount() + runner.queuedCount() > 0 && std::chrono::steady_clock::now() < deadline) {
      if (terminationSignalWithin(std::chrono::milliseconds(100))) {
        hurried = true;
        break;
      }
    }
    if (runner.runningCount() + runner.queuedCount() > 0) {
      spdlog::warn("stopping {}: unfinished deploys are cancelled and reported as failed (agent_stopped)",
                   hurried ? "on a second signal" : "after the drain period");
    } else {
      spdlog::info("stopping: every accepted deploy has finished");
    }
    server.stop();
    runner.stop();
    // The jobs that just ended are told, briefly: what is still pending after that is resumed at
    // the next start.
    if (!hurried) callbacks.waitUntilIdle(std::chrono::seconds(5));
    callbacks.stop();
    housekeeper.stop();
    stopping = true;
    cleanup.stop();
    return EXIT_OK;
  }

 private:
  da::Settings settings_;
};

// The agent's secrets live in its memory only: the start-up environment block (what
// /proc/<pid>/environ shows) is overwritten in place and the variables removed, so that nothing
// started later, and nothing reading that file, finds them.
void wipeSecretsFromEnvironment() {
  for (const char* name : {"DEPLOY_AGENT_TOKEN", "CONVEX_TEAM_TOKEN", "CONVEX_DEPLOY_KEY", "CONVEX_ADMIN_KEY"}) {
    const size_t length = std::strlen(name);
    for (char** entry = environ; *entry; ++entry) {
      if (std::strncmp(*entry, name, length) == 0 && (*entry)[length] == '=') {
        std::memset(*entry + length + 1, 0, std::strlen(*entry + length + 1));
      }
    }
    ::unsetenv(name);
  }
}

std::map<std::string, std::string> environmentMap() {
  std::map<std::string, std::string> env;
  for (char** entry = environ; *entry; ++entry) {
    std::string text(*entry);
    auto eq = text.find('=');
    if (eq != std::string::npos) env[text.substr(0, eq)] = text.substr(eq + 1);
  }
  return env;
}

}  // namespace

int main(int argc, char** argv) {
  // No core dumps, and no ptrace or /proc/<pid>/{environ,mem,fd} for processes of the same
  // user (a job in the Landlock tier without a separate uid would be one).
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  // Before any thread exists, so that every thread inherits the mask (see terminationSignals).
  const sigset_t termination = terminationSignals();
  ::pthread_sigmask(SIG_BLOCK, &termination, nullptr);
  auto logger = spdlog::stderr_color_mt("deploy-agent");
  spdlog::set_default_logger(logger);
  spdlog::set_formatter(agent::makeLogFormatter("text"));

  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> positional;
  std::string error;
  auto flags = agent::parseFlags(args, positional, error);
  if (!error.empty()) {
    std::cerr << "deploy-agent: " << error << "\n";
    return 64;
  }
  if (flags.count("help")) {
    std::cout << agent::usage();
    return 0;
  }
  const std::string command = positional.empty() ? "serve" : positional.front();
  if (command == "version") {
    std::cout << "deploy-agent " << DA_VERSION << "\n";
    return 0;
  }
  if (command != "serve" || positional.size() > 1) {
    std::cerr << "deploy-agent: unknown command '" << command << "'\n" << agent::usage();
    return 64;
  }

  agent::ConfigInput input;
  input.flags = flags;
  input.env = environmentMap();
  input.executable_path = fs::read_symlink("/proc/self/exe").string();
  std::string config_file = flags.count("config") ? flags["config"] : input.env["DEPLOY_AGENT_CONFIG"];
  input.file_path = config_file;
  if (!config_file.empty()) {
    try {
      input.file = agent::loadPropertiesFile(config_file);
    } catch (const Poco::Exception& e) {
      std::cerr << "deploy-agent: config: cannot read " << config_file << ": " << e.displayText() << "\n";
      return 78;
    }
  }
  auto resolved = agent::resolveSettings(input);
  wipeSecretsFromEnvironment();
  input.env.clear();
  // resolveSettings reports a missing node; an old one would otherwise fail every deploy, late.
  if (fs::exists(resolved.settings.toolchain.node)) {
    if (auto problem = agent::checkNodeVersion(resolved.settings, &resolved.settings.toolchain.node_version)) {
      resolved.errors.push_back(*problem);
    }
  }
  if (!resolved.errors.empty()) {
    for (const auto& message : resolved.errors) std::cerr << "deploy-agent: config: " << message << "\n";
    return 78;  // EX_CONFIG
  }
  // The sandbox tier, found by trying it: a run at the strongest tier this host allows.
  da::SandboxSettings& sandbox_settings = resolved.settings.sandbox;
  sandbox::Isolation probe;
  probe.hostIds(sandbox_settings.job_uid, sandbox_settings.job_gid)
      .memoryBytes(sandbox_settings.memory_bytes)
      .maxProcesses(sandbox_settings.max_processes);
  const sandbox::TierChoice choice = sandbox::chooseTier(sandbox_settings.requested, probe);
  if (!choice.ok) {
    std::cerr << "deploy-agent: sandbox: no isolation tier works here (--sandbox=" << sandbox_settings.requested
              << "): " << choice.problem
              << ". Running jobs without isolation must be chosen by name: --sandbox=none\n";
    return 78;
  }
  spdlog::set_formatter(agent::makeLogFormatter(resolved.settings.log_format));
  sandbox_settings.tier = choice.tier;
  sandbox_settings.facilities = choice.facilities;
  if (choice.tier == sandbox::Tier::kNone) {
    spdlog::warn("sandbox: none (chosen with --sandbox=none): npm and the Convex CLI run with the agent's user "
                 "and see its whole filesystem; every report says so");
  } else {
    std::string facilities;
    for (const auto& facility : choice.facilities) facilities += (facilities.empty() ? "" : ", ") + facility;
    spdlog::info("sandbox: {} ({})", sandbox::tierName(choice.tier), facilities);
  }
  if (std::string problem = da::prepareStateForJobs(resolved.settings); !problem.empty()) {
    std::cerr << "deploy-agent: config: " << problem << "\n";
    return 78;
  }
  DeployAgentApp app(std::move(resolved.settings));
  // Options were parsed above; Poco only gets the program name, so its own option
  // processing never sees (and never rejects) ours.
  char* program_only[] = {argv[0], nullptr};
  return app.run(1, program_only);
}

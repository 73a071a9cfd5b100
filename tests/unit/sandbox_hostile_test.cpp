// Hostile programs run the way a job runs (da::JobSandbox builds the filesystem view, ids and
// limits exactly as for npm and the CLI), at every tier this machine offers. Each test names
// what must be stopped, checks that it was, and that the agent (this process) is unharmed.
// CI runs as root on a kernel with user namespaces and Landlock: a tier that does not work
// there is a failure, not a skip.
#include <gtest/gtest.h>

#include <atomic>
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <sys/prctl.h>
#include <thread>
#include <unistd.h>

#include "jobs/job_network.h"
#include "support/counting_listener.h"
#include "jobs/job_sandbox.h"
#include "sandbox/process.h"
#include "sandbox/tier_probe.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using sandbox::Tier;
namespace net = da::net;

std::string hostile(const std::string& name) { return std::string(DA_BINARY_DIR) + "/hostile/hostile_" + name; }

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void writeFile(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

// "<attempt> <result>" lines of escape_attempts.
std::map<std::string, std::string> attempts(const std::string& output) {
  std::map<std::string, std::string> result;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    const size_t space = line.find(' ');
    if (space != std::string::npos) result[line.substr(0, space)] = line.substr(space + 1);
  }
  return result;
}

// Host pids whose command line contains `token`.
std::vector<pid_t> processesWith(const std::string& token) {
  std::vector<pid_t> found;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = readFile(entry.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(token) != std::string::npos) found.push_back(std::stoi(name));
  }
  return found;
}

struct JobRun {
  sandbox::RunResult result;
  std::string output;
};

class HostileJob : public ::testing::TestWithParam<Tier> {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "these tests run as root, as CI does (the job uid needs it)";
    // The agent makes itself non-dumpable at start-up; so does this stand-in for it.
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    static std::atomic<int> counter{0};
    root_ = fs::temp_directory_path() / ("da-hostile-" + std::to_string(::getpid()) + "-" + std::to_string(++counter));
    fs::remove_all(root_);
    state_ = root_ / "state";
    settings_.state_dir = state_;
    settings_.npm_cache = state_ / "npm-cache";
    writeFile(settings_.npm_cache / "_cacache/index-v5/entry", "trusted");
    // The hostile program stands in for Node: the view exposes it as it would the toolchain.
    settings_.toolchain.node = settings_.toolchain.npm_cli = settings_.toolchain.convex_cli = hostile("escape_attempts");
    settings_.sandbox.tier = GetParam();
    settings_.sandbox.memory_bytes = 256ull << 20;
    settings_.sandbox.max_processes = 64;
    settings_.sandbox.disk_bytes = 64ull << 20;
    ASSERT_EQ(da::prepareStateForJobs(settings_), "");
    token_file_ = state_ / "api-token";
    writeFile(token_file_, "agent-api-token-0123456789");
    for (const char* job : {"dep_a", "dep_b"}) {
      writeFile(state_ / "jobs" / job / "work/app/package.json", "{}");
      writeFile(state_ / "jobs" / job / "work/app/secret-key", std::string("prod:other|secret-of-") + job);
    }
  }

  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }

  fs::path jobDir(const std::string& job) const { return state_ / "jobs" / job; }

  JobRun runInJob(const std::string& job, const std::string& program, std::vector<std::string> args,
               const std::atomic<bool>* cancel = nullptr, uint64_t file_size = 0,
               da::RunEgress* egress = nullptr) {
    da::JobSandbox job_sandbox(settings_, jobDir(job), jobDir(job) / "work/app");
    sandbox_disk_full_ = false;
    sandbox::ProcessSpec spec;
    spec.executable = hostile(program);
    spec.args = std::move(args);
    spec.env = da::baseChildEnvironment(settings_, job_sandbox.paths());
    spec.env["CONVEX_DEPLOY_KEY"] = std::string("prod:other|secret-of-") + job;
    spec.working_dir = job_sandbox.paths().app;
    spec.limits.wallTime(30s).outputBytes(1 << 20);
    if (file_size) spec.limits.fileSizeBytes(file_size);
    spec.isolation = job_sandbox.isolation();
    if (egress) {
      egress->applyTo(spec.isolation);
      for (auto& [name, value] : egress->proxyEnvironment()) spec.env[name] = value;
    }
    JobRun run;
    run.result = sandbox::runProcess(spec, [&](std::string_view chunk) { run.output.append(chunk); }, cancel);
    sandbox_disk_full_ = job_sandbox.diskFull();
    return run;
  }

  da::Settings settings_;
  fs::path root_, state_, token_file_;
  bool sandbox_disk_full_ = false;
};

TEST_P(HostileJob, TheTierWorksOnThisMachine) {
  sandbox::Isolation isolation;
  isolation.memoryBytes(settings_.sandbox.memory_bytes).maxProcesses(settings_.sandbox.max_processes);
  const auto choice = sandbox::chooseTier(sandbox::tierName(GetParam()), isolation);
  EXPECT_TRUE(choice.ok) << choice.problem;
  EXPECT_EQ(choice.tier, GetParam());
  EXPECT_NE(std::find(choice.facilities.begin(), choice.facilities.end(), "seccomp"), choice.facilities.end());
}

TEST_P(HostileJob, RunsUnprivilegedWithNoCapabilities) {
  JobRun run = runInJob("dep_a", "escape_attempts", {"id"});
  ASSERT_EQ(run.result.status, sandbox::Status::kOk) << run.result.reason;
  // Namespaces: 1000 inside (60000 on the host); Landlock: one of the pool above job_uid.
  const std::string uid = GetParam() == Tier::kNamespaces ? "uid=1000 " : "uid=60001 ";
  EXPECT_NE(run.output.find(uid), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("CapEff:\t0000000000000000"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("CapPrm:\t0000000000000000"), std::string::npos) << run.output;
}

TEST_P(HostileJob, AgentSecretsStateOtherJobsAndHostAreOutOfReach) {
  const std::string me = std::to_string(::getpid());
  const std::string own_app = da::jobPathsFor(settings_, jobDir("dep_a"), jobDir("dep_a") / "work/app").app;
  const fs::path other = jobDir("dep_b") / "work/app";
  std::vector<std::string> tries = {
      "read:" + token_file_.string(),                    // the agent's API token file
      "read:/proc/" + me + "/environ",                    // the agent's start-up environment
      "list:" + (state_ / "jobs").string(),               // the state directory
      "read:" + (jobDir("dep_a") / "report.json").string(),
      "read:" + (other / "secret-key").string(),          // another job's files and key
      "list:" + other.string(),
      "write:" + (other / "planted").string(),
      "write:" + (root_ / "outside").string(),            // anywhere outside the job
      "write:/etc/planted-by-job",
      "write:" + (settings_.npm_cache / "_cacache/index-v5/poisoned").string(),  // the shared cache
      "signal:" + me,                                     // the agent itself
      "ptrace:" + me,
      "mknod:" + own_app + "/null-twin",                  // a device node
      "unshare",
      "mount",
  };
  // World-readable in the host's /proc, which the Landlock tier shares; hidden by a pid namespace.
  if (GetParam() == Tier::kNamespaces) tries.push_back("read:/proc/" + me + "/cmdline");
  // The positive controls: the job's own folder works, so a denial above is the sandbox's.
  tries.push_back("read:" + own_app + "/package.json");
  tries.push_back("write:" + own_app + "/own-output");
  JobRun run = runInJob("dep_a", "escape_attempts", tries);
  ASSERT_EQ(run.result.status, sandbox::Status::kOk) << run.result.reason << "\n" << run.output;
  const auto results = attempts(run.output);
  for (size_t i = 0; i + 2 < tries.size(); ++i) {
    ASSERT_TRUE(results.count(tries[i])) << tries[i] << " did not run:\n" << run.output;
    EXPECT_NE(results.at(tries[i]), "ok") << tries[i] << " was not stopped";
  }
  EXPECT_EQ(results.at(tries[tries.size() - 2]), "ok") << run.output;
  EXPECT_EQ(results.at(tries.back()), "ok") << run.output;

  // Nothing changed outside the job; the job's own write landed in its own folder.
  EXPECT_EQ(readFile(token_file_), "agent-api-token-0123456789");
  EXPECT_FALSE(fs::exists(other / "planted"));
  EXPECT_FALSE(fs::exists(root_ / "outside"));
  EXPECT_FALSE(fs::exists("/etc/planted-by-job"));
  EXPECT_FALSE(fs::exists(settings_.npm_cache / "_cacache/index-v5/poisoned"));
  EXPECT_EQ(readFile(settings_.npm_cache / "_cacache/index-v5/entry"), "trusted");
}

TEST_P(HostileJob, WritesThroughTheNpmCacheNeverReachTheSharedCache) {
  // What npm writes into its cache lands in the job's private layer (namespaces) or copy
  // (Landlock); the next job sees the shared cache as the agent left it.
  const std::string cache = da::jobPathsFor(settings_, jobDir("dep_a"), jobDir("dep_a") / "work/app").npm_cache;
  JobRun run = runInJob("dep_a", "escape_attempts",
                     {"write:" + cache + "/_cacache/index-v5/entry", "write:" + cache + "/_cacache/new-entry"});
  ASSERT_EQ(run.result.status, sandbox::Status::kOk) << run.result.reason;
  const auto results = attempts(run.output);
  EXPECT_EQ(results.at("write:" + cache + "/_cacache/new-entry"), "ok") << run.output;
  EXPECT_EQ(readFile(settings_.npm_cache / "_cacache/index-v5/entry"), "trusted");
  EXPECT_FALSE(fs::exists(settings_.npm_cache / "_cacache/new-entry"));
}

TEST_P(HostileJob, AnotherJobsDeployKeyWhileItPushesIsOutOfReach) {
  // Job B holds its deploy key in its environment, as the CLI does while it pushes.
  const std::string token = "pushing-" + std::to_string(::getpid()) + "-" + sandbox::tierName(GetParam());
  std::atomic<bool> stop_b{false};
  std::thread job_b([&] { runInJob("dep_b", "escape_attempts", {"sleep:" + token}, &stop_b); });
  std::vector<pid_t> pids;
  for (int i = 0; i < 2000 && pids.empty(); ++i) {
    pids = processesWith(token);
    if (pids.empty()) std::this_thread::yield();
  }
  ASSERT_FALSE(pids.empty()) << "job B did not start";
  const std::string b = std::to_string(pids.front());
  const std::vector<std::string> tries = {"read:/proc/" + b + "/environ", "read:/proc/" + b + "/mem",
                                          "list:/proc/" + b + "/fd", "ptrace:" + b, "signal:" + b};
  JobRun run = runInJob("dep_a", "escape_attempts", tries);
  stop_b = true;
  job_b.join();
  ASSERT_EQ(run.result.status, sandbox::Status::kOk) << run.result.reason;
  const auto results = attempts(run.output);
  for (const auto& attempt : tries) {
    ASSERT_TRUE(results.count(attempt)) << run.output;
    EXPECT_NE(results.at(attempt), "ok") << attempt << " reached job B";
  }
  EXPECT_EQ(run.output.find("secret-of-dep_b"), std::string::npos);
  EXPECT_TRUE(processesWith(token).empty()) << "job B outlived its cancellation";
}

TEST_P(HostileJob, ADaemonThatCalledSetsidDiesWithItsJob) {
  const std::string token = "daemon-" + std::to_string(::getpid()) + "-" + sandbox::tierName(GetParam());
  JobRun run = runInJob("dep_a", "escape_attempts", {"daemon:" + token});
  ASSERT_EQ(run.result.status, sandbox::Status::kOk) << run.result.reason;
  EXPECT_NE(run.output.find("daemon:" + token + " ok"), std::string::npos) << run.output;
  EXPECT_TRUE(processesWith(token).empty()) << "a process of the job outlived it";
}

TEST_P(HostileJob, AForkBombStopsAtTheProcessLimitAndLeavesNothing) {
  const std::string token = "bomb-" + std::to_string(::getpid()) + "-" + sandbox::tierName(GetParam());
  JobRun run = runInJob("dep_a", "fork_bomb_bounded", {"5000", token});
  EXPECT_EQ(run.result.limit_exceeded, "processes") << run.result.reason << "\n" << run.output;
  EXPECT_NE(run.output.find("forks_failed="), std::string::npos) << run.output;
  EXPECT_TRUE(processesWith(token).empty()) << "forked processes outlived the job";
  // The agent is unharmed and the next job runs.
  EXPECT_EQ(runInJob("dep_b", "escape_attempts", {"id"}).result.status, sandbox::Status::kOk);
}

TEST_P(HostileJob, AMemoryHogIsKilledAtTheMemoryLimit) {
  JobRun run = runInJob("dep_a", "allocate", {"1024"});
  EXPECT_EQ(run.result.status, sandbox::Status::kSignaled) << run.result.reason << "\n" << run.output;
  EXPECT_EQ(run.result.limit_exceeded, "memory");
  EXPECT_EQ(runInJob("dep_b", "escape_attempts", {"id"}).result.status, sandbox::Status::kOk);
}

TEST_P(HostileJob, FillingTheDiskStopsAtTheJobsBound) {
  const std::string path = da::jobPathsFor(settings_, jobDir("dep_a"), jobDir("dep_a") / "work/app").app + "/fill";
  // Namespaces tier: the job volume (64 MiB here) fills up. Landlock tier: the per-file limit.
  const bool volume = GetParam() == Tier::kNamespaces;
  JobRun run = runInJob("dep_a", "escape_attempts", {"fill:" + path}, nullptr, volume ? 0 : (16ull << 20));
  ASSERT_EQ(run.result.status, sandbox::Status::kOk) << run.result.reason;
  const std::string result = attempts(run.output)["fill:" + path];
  if (volume) {
    EXPECT_EQ(result.rfind("ENOSPC ", 0), 0u) << run.output;
    EXPECT_LE(std::stoll(result.substr(7)), 64ll << 20);
    EXPECT_TRUE(sandbox_disk_full_);
  } else {
    EXPECT_EQ(result, "EFBIG " + std::to_string(16ll << 20)) << run.output;
  }
}

using Listener = testsupport::CountingListener;

TEST_P(HostileJob, TheNetworkIsTheProxyAndTheProxyOnlyItsAllowlist) {
  Listener allowed, other;
  net::EgressAllowlist allowlist;
  allowlist.allow({"127.0.0.1", allowed.port()}, net::Trust::kOperator);
  da::RunEgress egress(settings_, std::move(allowlist));
  const std::string a = std::to_string(allowed.port()), o = std::to_string(other.port());
  const std::vector<std::string> tries = {
      "connect:" + o,                  // straight to a host service
      "connect:" + a,                  // straight to an allowed one: only the proxy may
      "udp:53",                        // DNS, or any datagram channel
      "resolve:registry.npmjs.org",    // names are the proxy's business
      "proxy:127.0.0.1:" + o,          // through the proxy, off the list
      "proxy:127.0.0.1:" + a,          // the positive control
  };
  JobRun run = runInJob("dep_a", "escape_attempts", tries, nullptr, 0, &egress);
  ASSERT_EQ(run.result.status, sandbox::Status::kOk) << run.result.reason << "\n" << run.output;
  da::NetworkReport network;
  egress.finishInto(network);
  const auto results = attempts(run.output);
  // Namespaces: nothing but the proxy listens in the job's loopback. Landlock: only its port.
  EXPECT_EQ(results.at("connect:" + o), GetParam() == Tier::kNamespaces ? "ECONNREFUSED" : "EACCES") << run.output;
  EXPECT_EQ(results.at("connect:" + a), GetParam() == Tier::kNamespaces ? "ECONNREFUSED" : "EACCES") << run.output;
  EXPECT_EQ(results.at("udp:53"), "EACCES") << run.output;
  EXPECT_EQ(results.at("resolve:registry.npmjs.org"), "EAI") << run.output;
  EXPECT_EQ(results.at("proxy:127.0.0.1:" + o), "HTTP403") << run.output;
  EXPECT_EQ(results.at("proxy:127.0.0.1:" + a), "ok") << run.output;
  EXPECT_EQ(other.accepted(), 0u);
  EXPECT_EQ(allowed.accepted(), 1u);
  ASSERT_EQ(network.denied.size(), 1u);
  EXPECT_EQ(network.denied[0].host, "127.0.0.1:" + o);
  EXPECT_EQ(network.denied[0].attempts, 1u);
  ASSERT_EQ(network.allowed.size(), 1u);
  EXPECT_EQ(network.allowed[0].host, "127.0.0.1:" + a);
}

// In the Landlock tier the job's proxy listens on the host's loopback: once the run is over,
// nothing may answer there any more (the namespaces tier's listener dies with its namespace).
class HostLoopbackEgress : public HostileJob {};

TEST_P(HostLoopbackEgress, NothingListensForTheJobAfterItsRun) {
  Listener allowed;
  net::EgressAllowlist allowlist;
  allowlist.allow({"127.0.0.1", allowed.port()}, net::Trust::kOperator);
  da::RunEgress egress(settings_, std::move(allowlist));
  const uint16_t port = egress.port();
  JobRun run = runInJob("dep_a", "escape_attempts", {"proxy:127.0.0.1:" + std::to_string(allowed.port())}, nullptr, 0,
                        &egress);
  EXPECT_NE(run.output.find(" ok"), std::string::npos) << run.output;
  da::NetworkReport network;
  egress.finishInto(network);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_NE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  EXPECT_EQ(errno, ECONNREFUSED);
  ::close(fd);
}

INSTANTIATE_TEST_SUITE_P(LandlockTier, HostLoopbackEgress, ::testing::Values(Tier::kLandlock),
                         [](const ::testing::TestParamInfo<Tier>& info) { return std::string(sandbox::tierName(info.param)); });

std::string tierParamName(const ::testing::TestParamInfo<Tier>& info) { return sandbox::tierName(info.param); }

INSTANTIATE_TEST_SUITE_P(EveryTier, HostileJob, ::testing::Values(Tier::kNamespaces, Tier::kLandlock), tierParamName);

}  // namespace

namespace {

// The agent is multi-threaded: runs start from worker threads while Poco creates and ends
// threads. A cloned child must never depend on glibc's view of those threads (its set*id
// wrappers wait for every thread they believe exists, and one caught mid-creation at the clone
// never answers). Many runs, from several threads, during constant thread churn: all start.
TEST(NamespacesTier, RunsStartWhileTheAgentCreatesThreads) {
  std::atomic<bool> churning{true};
  std::thread churn([&] {
    while (churning) std::thread([] {}).join();
  });
  std::atomic<int> ok{0};
  std::vector<std::string> failures;
  std::mutex failures_mutex;
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      for (int i = 0; i < 15; ++i) {
        sandbox::ProcessSpec spec;
        spec.executable = ::access("/usr/bin/true", X_OK) == 0 ? "/usr/bin/true" : "/bin/true";
        spec.working_dir = "/";
        spec.limits.wallTime(20s);
        sandbox::FilesystemView view;
        view.read_only = sandbox::systemReadOnlyPaths();
        spec.isolation.tier(Tier::kNamespaces).filesystem(view).memoryBytes(256ull << 20).maxProcesses(32);
        const auto result = sandbox::runProcess(spec, [](std::string_view) {});
        if (result.status == sandbox::Status::kOk) {
          ++ok;
        } else {
          std::lock_guard lock(failures_mutex);
          failures.push_back(result.reason);
        }
      }
    });
  }
  for (auto& worker : workers) worker.join();
  churning = false;
  churn.join();
  EXPECT_EQ(ok.load(), 60) << (failures.empty() ? "" : failures.front());
}

}  // namespace

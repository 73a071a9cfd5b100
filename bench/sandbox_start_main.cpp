// Sandbox start-up cost: one run of /bin/true through sandbox::runProcess at each tier, against
// a plain fork + execve + waitpid of the same program measured in the same run, interleaved
// round by round so that background load hits every variant alike. See docs/benchmarks.md.
//
//   bench-sandbox-start [ROUNDS]   (default 200; as root, where every tier works)
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "sandbox/net_ns.h"
#include "sandbox/process.h"

namespace {

using Clock = std::chrono::steady_clock;

double microsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

const char* trueProgram() { return ::access("/usr/bin/true", X_OK) == 0 ? "/usr/bin/true" : "/bin/true"; }

double plainForkExec() {
  const auto start = Clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    char* argv[] = {const_cast<char*>(trueProgram()), nullptr};
    char* envp[] = {nullptr};
    ::execve(argv[0], argv, envp);
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return microsSince(start);
}

struct Variant {
  std::string name;
  sandbox::Tier tier;
  bool cgroup;
  std::vector<double> micros;
  bool network = false;  // a loopback-only network namespace of its own, made per run as a job's is
};

double sandboxedRun(const Variant& variant) {
  sandbox::ProcessSpec spec;
  spec.executable = trueProgram();
  spec.working_dir = "/";
  spec.limits.wallTime(std::chrono::seconds(10));
  sandbox::FilesystemView view;
  view.read_only = sandbox::systemReadOnlyPaths();
  spec.isolation.tier(variant.tier).filesystem(view);
  if (variant.cgroup) spec.isolation.memoryBytes(1ull << 30).maxProcesses(256);
  const auto start = Clock::now();
  std::optional<sandbox::LoopbackNetwork> network;
  if (variant.network) {
    std::string error;
    network = sandbox::createLoopbackNetwork(0, error);
    if (!network) {
      std::fprintf(stderr, "%s: %s\n", variant.name.c_str(), error.c_str());
      std::exit(1);
    }
    spec.isolation.networkNamespace(network->netns.get());
  }
  const auto result = sandbox::runProcess(spec, [](std::string_view) {});
  const double micros = microsSince(start);
  if (result.status != sandbox::Status::kOk) {
    std::fprintf(stderr, "%s: %s\n", variant.name.c_str(), result.reason.c_str());
    std::exit(1);
  }
  return micros;
}

void printRow(const std::string& name, std::vector<double> xs, double reference_median) {
  std::sort(xs.begin(), xs.end());
  const double median = xs[xs.size() / 2];
  const double p90 = xs[xs.size() * 9 / 10];
  std::printf("| %s | %.2f | %.2f | %.2f | %.2f | %.1f |\n", name.c_str(), median / 1000, p90 / 1000,
              xs.front() / 1000, xs.back() / 1000, median / reference_median);
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 200;
  std::vector<Variant> variants = {
      {"runProcess, tier none", sandbox::Tier::kNone, false, {}},
      {"runProcess, tier landlock", sandbox::Tier::kLandlock, false, {}},
      {"runProcess, tier namespaces", sandbox::Tier::kNamespaces, false, {}},
      {"runProcess, tier landlock + cgroup limits", sandbox::Tier::kLandlock, true, {}},
      {"runProcess, tier namespaces + cgroup limits", sandbox::Tier::kNamespaces, true, {}},
      {"runProcess, tier namespaces + cgroup limits + own network namespace", sandbox::Tier::kNamespaces, true, {}, true},
  };
  std::vector<double> plain;
  // One untimed warm-up of each (the seccomp filter is compiled once, the cgroup probed once).
  plainForkExec();
  for (const auto& variant : variants) sandboxedRun(variant);
  for (int round = 0; round < rounds; ++round) {
    plain.push_back(plainForkExec());
    for (auto& variant : variants) variant.micros.push_back(sandboxedRun(variant));
  }
  std::vector<double> sorted = plain;
  std::sort(sorted.begin(), sorted.end());
  const double reference = sorted[sorted.size() / 2];
  std::printf("%d rounds of /bin/true, interleaved; ms\n\n", rounds);
  std::printf("| what | median | p90 | min | max | x plain |\n|---|---|---|---|---|---|\n");
  printRow("plain fork + execve + waitpid (reference)", plain, reference);
  for (const auto& variant : variants) printRow(variant.name, variant.micros, reference);
  return 0;
}

#include "standin/state.h"

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <random>
#include <sstream>

#include <Poco/Base64Encoder.h>

namespace standin {
namespace {

const std::vector<DeploymentSeed>& defaultDeployments() {
  static const std::vector<DeploymentSeed> seeds = {{"happy-otter-123", "prod"},
                                                    {"brave-fox-456", "dev"}};
  return seeds;
}

// Real deploy key secrets are base64 of `{"v2":"<hex>"}` (they start with "eyJ2" and usually
// end in "="); mimicking that shape lets clients meet the characters they will see for real.
std::string newKeySecret() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::ostringstream hex;
  hex << std::hex << std::setfill('0');
  for (int i = 0; i < 2; ++i) hex << std::setw(16) << rng();
  std::ostringstream encoded;
  Poco::Base64Encoder encoder(encoded);
  encoder.rdbuf()->setLineLength(0);
  encoder << R"({"v2":")" << hex.str() << R"("})";
  encoder.close();
  return encoded.str();
}

nlohmann::json modulesJson(const std::vector<ModuleHash>& modules) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& module : modules) {
    list.push_back(
        {{"path", module.path}, {"environment", module.environment}, {"sha256", module.sha256}});
  }
  return list;
}

}  // namespace

int64_t nowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string deploymentReference(const HostedDeployment& deployment) {
  if (deployment.type == "prod") return "production";
  // The default dev deployment is named after its owning member: "dev/<member>".
  if (deployment.type == "dev") return "dev/standin";
  if (deployment.type == "preview") return "preview/" + deployment.name;
  return deployment.name;
}

bool isDefaultDeployment(const HostedDeployment& deployment) {
  return deployment.type == "prod" || deployment.type == "dev";
}

StandinState::StandinState(const Options& options)
    : team_slug_(options.team_slug),
      project_slug_(options.project_slug),
      team_tokens_(options.team_tokens),
      created_at_ms_(nowMs()) {
  const auto& seeds = options.deployments.empty() ? defaultDeployments() : options.deployments;
  int64_t id = 1;
  for (const auto& seed : seeds) {
    deployments_.push_back({id++, seed.name, seed.type, created_at_ms_});
  }
}

std::optional<std::size_t> StandinState::teamTokenIndex(const std::string& token) const {
  const auto found = std::find(team_tokens_.begin(), team_tokens_.end(), token);
  if (token.empty() || found == team_tokens_.end()) return std::nullopt;
  return static_cast<std::size_t>(found - team_tokens_.begin());
}

std::optional<HostedDeployment> StandinState::findDeployment(const std::string& name) const {
  for (const auto& deployment : deployments_) {
    if (deployment.name == name) return deployment;
  }
  return std::nullopt;
}

std::optional<int64_t> StandinState::lastDeployTimeMs(const std::string& deployment) const {
  std::lock_guard lock(mutex_);
  const auto found = last_deploy_ms_.find(deployment);
  if (found == last_deploy_ms_.end()) return std::nullopt;
  return found->second;
}

std::optional<std::string> StandinState::mintDeployKey(const std::string& deployment,
                                                       DeployKeyGrant grant) {
  const auto target = findDeployment(deployment);
  if (!target) return std::nullopt;
  std::string key = target->type + ":" + target->name + "|" + newKeySecret();
  std::lock_guard lock(mutex_);
  keys_[key] = {target->name, std::move(grant)};
  return key;
}

std::optional<HostedDeployment> StandinState::deploymentForKey(const std::string& key) const {
  std::string deployment;
  {
    std::lock_guard lock(mutex_);
    const auto found = keys_.find(key);
    if (found == keys_.end()) return std::nullopt;
    deployment = found->second.deployment;
  }
  return findDeployment(deployment);
}

std::optional<DeployKeyGrant> StandinState::grantForKey(const std::string& key) const {
  std::lock_guard lock(mutex_);
  const auto found = keys_.find(key);
  if (found == keys_.end()) return std::nullopt;
  return found->second.grant;
}

std::optional<PushedApp> StandinState::currentApp(const std::string& deployment) const {
  std::lock_guard lock(mutex_);
  const auto found = apps_.find(deployment);
  if (found == apps_.end()) return std::nullopt;
  return found->second;
}

std::string StandinState::startPush(const std::string& deployment, PushedApp app, bool dry_run) {
  std::lock_guard lock(mutex_);
  PushRecord push;
  push.id = "standin-push-" + std::to_string(next_push_number_++);
  push.deployment = deployment;
  push.app = std::move(app);
  push.dry_run = dry_run;
  pushes_.push_back(push);
  return push.id;
}

std::optional<FinishedPush> StandinState::finishPush(const std::string& push_id,
                                                     const std::string& deployment,
                                                     bool dry_run) {
  std::lock_guard lock(mutex_);
  const auto push = std::find_if(pushes_.begin(), pushes_.end(), [&](const PushRecord& p) {
    return p.id == push_id && p.deployment == deployment;
  });
  if (push == pushes_.end()) return std::nullopt;

  FinishedPush finished;
  if (const auto current = apps_.find(deployment); current != apps_.end()) {
    finished.previous = current->second;
  }
  push->finished = true;
  // Either flag asks for a dry run; committing then would break the promise of `--dry-run`.
  push->dry_run = push->dry_run || dry_run;
  if (!push->dry_run) {
    push->committed = true;
    apps_[deployment] = push->app;
    last_deploy_ms_[deployment] = nowMs();
  }
  finished.push = *push;
  return finished;
}

void StandinState::addFault(Fault fault) {
  std::lock_guard lock(mutex_);
  faults_.push_back(std::move(fault));
}

std::optional<Fault> StandinState::takeFault(const std::string& method, const std::string& path) {
  std::lock_guard lock(mutex_);
  for (auto fault = faults_.begin(); fault != faults_.end(); ++fault) {
    if (fault->path != path || (fault->method && *fault->method != method)) continue;
    Fault taken = *fault;
    if (fault->times > 0 && --fault->times == 0) faults_.erase(fault);
    return taken;
  }
  return std::nullopt;
}

void StandinState::pause(std::chrono::milliseconds duration) {
  std::unique_lock lock(mutex_);
  pause_interrupted_.wait_for(lock, duration, [this] { return stopping_; });
}

void StandinState::setStopping(bool stopping) {
  {
    std::lock_guard lock(mutex_);
    stopping_ = stopping;
  }
  pause_interrupted_.notify_all();
}

void StandinState::recordRequest(RequestRecord record) {
  std::lock_guard lock(mutex_);
  requests_.push_back(std::move(record));
}

nlohmann::json StandinState::pushesJson() const {
  std::lock_guard lock(mutex_);
  nlohmann::json list = nlohmann::json::array();
  for (const auto& push : pushes_) {
    list.push_back({{"id", push.id},
                    {"deployment", push.deployment},
                    {"dry_run", push.dry_run},
                    {"finished", push.finished},
                    {"committed", push.committed},
                    {"has_schema", push.app.has_schema},
                    {"modules", modulesJson(push.app.modules)}});
  }
  return list;
}

nlohmann::json StandinState::requestsJson() const {
  std::lock_guard lock(mutex_);
  nlohmann::json list = nlohmann::json::array();
  for (const auto& request : requests_) {
    nlohmann::json entry = {
        {"method", request.method}, {"path", request.path}, {"status", request.status}};
    if (request.deployment) entry["deployment"] = *request.deployment;
    if (request.details.is_object()) entry.update(request.details);
    list.push_back(std::move(entry));
  }
  return list;
}

nlohmann::json StandinState::faultsJson() const {
  std::lock_guard lock(mutex_);
  nlohmann::json list = nlohmann::json::array();
  for (const auto& fault : faults_) {
    list.push_back({{"method", fault.method ? nlohmann::json(*fault.method) : nlohmann::json()},
                    {"path", fault.path},
                    {"status", fault.status ? nlohmann::json(*fault.status) : nlohmann::json()},
                    {"code", fault.code},
                    {"message", fault.message},
                    {"delay_ms", fault.delay_ms},
                    {"drop_connection", fault.drop_connection},
                    {"times", fault.times}});
  }
  return list;
}

void StandinState::reset() {
  std::lock_guard lock(mutex_);
  apps_.clear();
  last_deploy_ms_.clear();
  pushes_.clear();
  requests_.clear();
  faults_.clear();
}

}  // namespace standin

#include "standin/state.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <iomanip>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

#include <Poco/Base64Encoder.h>

#include "standin/api_error.h"
#include "standin/router.h"

namespace standin {
namespace {

const std::vector<DeploymentSeed>& defaultDeployments() {
  static const std::vector<DeploymentSeed> seeds = {{"happy-otter-123", "prod"},
                                                    {"brave-fox-456", "dev"}};
  return seeds;
}

std::mt19937_64& rng() {
  static thread_local std::mt19937_64 generator{std::random_device{}()};
  return generator;
}

std::string randomHex(int words) {
  std::ostringstream hex;
  hex << std::hex << std::setfill('0');
  for (int i = 0; i < words; ++i) hex << std::setw(16) << rng()();
  return hex.str();
}

// Real deploy key secrets are base64 of `{"v2":"<hex>"}` (they start with "eyJ2" and usually
// end in "="); mimicking that shape lets clients meet the characters they will see for real.
std::string newKeySecret() {
  std::ostringstream encoded;
  Poco::Base64Encoder encoder(encoded);
  encoder.rdbuf()->setLineLength(0);
  encoder << R"({"v2":")" << randomHex(2) << R"("})";
  encoder.close();
  return encoded.str();
}

// The Convex cloud's names: adjective-animal-NNN.
constexpr std::array<const char*, 16> kAdjectives = {
    "brave", "calm", "clever", "eager", "fair", "gentle", "happy", "jolly",
    "kindly", "lively", "merry", "polite", "proud", "quiet", "silly", "witty"};
constexpr std::array<const char*, 16> kAnimals = {
    "otter", "fox", "badger", "heron", "lynx", "panda", "raven", "seal",
    "tiger", "walrus", "yak", "zebra", "koala", "llama", "mole", "wombat"};

// "My App!" -> "my-app": lowercase, runs of other characters become one '-'.
std::string slugify(const std::string& name) {
  std::string slug;
  for (const unsigned char c : name) {
    if (std::isalnum(c) && c < 0x80) {
      slug.push_back(static_cast<char>(std::tolower(c)));
    } else if (!slug.empty() && slug.back() != '-') {
      slug.push_back('-');
    }
  }
  while (!slug.empty() && slug.back() == '-') slug.pop_back();
  return slug.empty() ? std::string("project") : slug;
}

std::string secretOf(const std::string& token) {
  const auto bar = token.rfind('|');
  return bar == std::string::npos ? token : token.substr(bar + 1);
}

nlohmann::json modulesJson(const std::vector<ModuleHash>& modules) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& module : modules) {
    list.push_back(
        {{"path", module.path}, {"environment", module.environment}, {"sha256", module.sha256}});
  }
  return list;
}

// A fault path matches the request path exactly, except that a `{name}` segment matches any
// one non-empty segment (so a test can arm a fault before it knows a project's id).
bool faultPathMatches(const std::string& pattern, const std::string& path) {
  if (pattern == path) return true;
  if (pattern.find('{') == std::string::npos) return false;
  const auto expected = RouteTable::splitPath(pattern);
  const auto actual = RouteTable::splitPath(path);
  if (expected.size() != actual.size()) return false;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const std::string& segment = expected[i];
    const bool wildcard = segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
    if (wildcard ? actual[i].empty() : segment != actual[i]) return false;
  }
  return true;
}

// §5.1, the newer column (convex-backend 2026-08).
constexpr std::size_t kEnvNameMaxLength = 256;
constexpr std::size_t kEnvValueMaxBytes = 8 * 1024;
constexpr std::size_t kEnvVarLimit = 512;
constexpr std::size_t kEnvTotalSizeLimit = 512 * 1024;
// Names the deployment provides itself; they cannot be overridden.
const std::set<std::string>& builtInEnvNames() {
  static const std::set<std::string> names = {"CONVEX_CLOUD_URL", "CONVEX_SITE_URL"};
  return names;
}

constexpr int64_t kPreviewRetentionMs = 14LL * 24 * 60 * 60 * 1000;

}  // namespace

int64_t nowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string deploymentReference(const HostedDeployment& deployment) {
  return deployment.reference;
}

bool isDefaultDeployment(const HostedDeployment& deployment) { return deployment.is_default; }

const char* tokenKindName(TokenKind kind) {
  switch (kind) {
    case TokenKind::Team: return "teamToken";
    case TokenKind::OAuthTeam: return "oauthTeamToken";
    case TokenKind::OAuthProject: return "oauthProjectToken";
  }
  return "unknown";
}

StandinState::StandinState(const Options& options)
    : team_slug_(options.team_slug),
      project_slug_(options.project_slug),
      created_at_ms_(nowMs()) {
  for (const auto& token : options.team_tokens) {
    const int64_t id = next_token_id_++;
    tokens_.push_back({id, TokenKind::Team, token, token, "standin-token-" + std::to_string(id),
                       created_at_ms_, std::nullopt, false});
  }
  projects_.push_back({next_project_id_++, project_slug_, project_slug_, created_at_ms_, false});
  const int64_t seeded_project = projects_.front().id;
  for (const auto& token : options.oauth_team_tokens) {
    const int64_t id = next_token_id_++;
    tokens_.push_back({id, TokenKind::OAuthTeam, token, secretOf(token),
                       "standin-oauth-" + std::to_string(id), created_at_ms_, std::nullopt, false});
  }
  for (const auto& token : options.oauth_project_tokens) {
    const int64_t id = next_token_id_++;
    tokens_.push_back({id, TokenKind::OAuthProject, token, secretOf(token),
                       "standin-oauth-" + std::to_string(id), created_at_ms_, seeded_project,
                       false});
  }

  const auto& seeds = options.deployments.empty() ? defaultDeployments() : options.deployments;
  for (const auto& seed : seeds) {
    HostedDeployment deployment;
    deployment.name = seed.name;
    deployment.type = seed.type;
    deployment.project_id = seeded_project;
    deployment.is_default = seed.type == "prod" || seed.type == "dev";
    if (seed.type == "prod") {
      deployment.reference = "production";
    } else if (seed.type == "dev") {
      // The default dev deployment is named after its owning member: "dev/<member>".
      deployment.reference = "dev/standin";
    } else if (seed.type == "preview") {
      deployment.reference = "preview/" + seed.name;
      deployment.preview_identifier = seed.name;
    } else {
      deployment.reference = seed.name;
    }
    addDeploymentLocked(std::move(deployment));
  }
  for (const auto& name : options.self_hosted) {
    HostedDeployment deployment;
    deployment.name = name;
    deployment.type = "prod";
    deployment.project_id = 0;
    deployment.self_hosted = true;
    addDeploymentLocked(std::move(deployment));
  }
}

// ---------------------------------------------------------------- access tokens

std::optional<AccessToken> StandinState::accessToken(const std::string& token) const {
  if (token.empty()) return std::nullopt;
  std::lock_guard lock(mutex_);
  for (const auto& candidate : tokens_) {
    if (candidate.token == token && !candidate.revoked) return candidate;
  }
  return std::nullopt;
}

std::optional<AccessToken> StandinState::mintOAuthToken(TokenKind kind,
                                                        std::optional<int64_t> project_id) {
  std::lock_guard lock(mutex_);
  AccessToken token;
  token.kind = kind;
  token.secret = newKeySecret();
  if (kind == TokenKind::OAuthProject) {
    const Project* project = project_id ? findProjectLocked(*project_id) : nullptr;
    if (!project) return std::nullopt;
    token.project_id = project->id;
    token.token = "project:" + team_slug_ + ":" + project->slug + "|" + token.secret;
  } else if (kind == TokenKind::OAuthTeam) {
    token.token = "team:" + team_slug_ + "|" + token.secret;
  } else {
    return std::nullopt;
  }
  token.id = next_token_id_++;
  token.name = "standin-oauth-" + std::to_string(token.id);
  token.create_time_ms = nowMs();
  tokens_.push_back(token);
  return token;
}

const AccessToken* StandinState::tokenByIdLocked(int64_t id) const {
  for (const auto& token : tokens_) {
    if (token.id == id) return &token;
  }
  return nullptr;
}

void StandinState::revokeOAuthLocked(int64_t token_id) {
  for (auto& token : tokens_) {
    if (token.id == token_id) token.revoked = true;
  }
  for (auto& [key, minted] : keys_) {
    if (minted.oauth_token_id == token_id) minted.revoked = true;
  }
  for (auto& [key, minted] : preview_keys_) {
    if (minted.key.oauth_token_id == token_id) minted.revoked = true;
  }
}

// ---------------------------------------------------------------- projects

const Project* StandinState::findProjectLocked(int64_t id) const {
  for (const auto& project : projects_) {
    if (project.id == id && !project.deleted) return &project;
  }
  return nullptr;
}

std::optional<Project> StandinState::findProject(int64_t id) const {
  std::lock_guard lock(mutex_);
  const Project* project = findProjectLocked(id);
  if (!project) return std::nullopt;
  return *project;
}

std::optional<Project> StandinState::findProjectBySlug(const std::string& slug) const {
  std::lock_guard lock(mutex_);
  for (const auto& project : projects_) {
    if (project.slug == slug && !project.deleted) return project;
  }
  return std::nullopt;
}

std::vector<Project> StandinState::projects(bool include_deleted) const {
  std::lock_guard lock(mutex_);
  std::vector<Project> list;
  for (const auto& project : projects_) {
    if (include_deleted || !project.deleted) list.push_back(project);
  }
  return list;
}

Project StandinState::createProject(const std::string& name) {
  std::lock_guard lock(mutex_);
  const std::string base = slugify(name);
  std::string slug = base;
  auto taken = [&](const std::string& candidate) {
    return std::any_of(projects_.begin(), projects_.end(), [&](const Project& p) {
      return !p.deleted && p.slug == candidate;
    });
  };
  for (int suffix = 2; taken(slug); ++suffix) slug = base + "-" + std::to_string(suffix);
  Project project{next_project_id_++, name, slug, nowMs(), false};
  projects_.push_back(project);
  return project;
}

bool StandinState::deleteProject(int64_t id) {
  std::lock_guard lock(mutex_);
  auto project = std::find_if(projects_.begin(), projects_.end(),
                              [&](const Project& p) { return p.id == id && !p.deleted; });
  if (project == projects_.end()) return false;
  project->deleted = true;
  for (auto& deployment : deployments_) {
    if (deployment.project_id == id && !deployment.deleted) deleteDeploymentLocked(deployment);
  }
  return true;
}

// ---------------------------------------------------------------- deployments

const HostedDeployment* StandinState::findDeploymentLocked(const std::string& name) const {
  for (const auto& deployment : deployments_) {
    if (deployment.name == name && !deployment.deleted) return &deployment;
  }
  return nullptr;
}

std::optional<HostedDeployment> StandinState::findDeployment(const std::string& name) const {
  std::lock_guard lock(mutex_);
  const HostedDeployment* deployment = findDeploymentLocked(name);
  if (!deployment) return std::nullopt;
  return *deployment;
}

std::vector<HostedDeployment> StandinState::deploymentsOf(int64_t project_id) const {
  std::lock_guard lock(mutex_);
  std::vector<HostedDeployment> list;
  for (const auto& deployment : deployments_) {
    if (deployment.project_id == project_id && !deployment.deleted) list.push_back(deployment);
  }
  return list;
}

std::string StandinState::newDeploymentNameLocked() {
  for (;;) {
    std::ostringstream name;
    name << kAdjectives[rng()() % kAdjectives.size()] << '-'
         << kAnimals[rng()() % kAnimals.size()] << '-' << (100 + rng()() % 900);
    const std::string candidate = name.str();
    const bool used = std::any_of(deployments_.begin(), deployments_.end(),
                                  [&](const HostedDeployment& d) { return d.name == candidate; });
    if (!used) return candidate;
  }
}

HostedDeployment& StandinState::addDeploymentLocked(HostedDeployment deployment) {
  deployment.id = next_deployment_id_++;
  if (deployment.create_time_ms == 0) deployment.create_time_ms = nowMs();
  deployments_.push_back(std::move(deployment));
  HostedDeployment& added = deployments_.back();
  // Every deployment has a legacy admin key baked in (reference §8).
  MintedKey admin;
  admin.id = next_token_id_++;
  admin.deployment = added.name;
  admin.grant.name = "admin key";
  admin.creation_time_ms = added.create_time_ms;
  admin.admin = true;
  keys_[added.name + "|" + randomHex(4)] = std::move(admin);
  return added;
}

void StandinState::deleteDeploymentLocked(HostedDeployment& deployment) {
  deployment.deleted = true;
  env_.erase(deployment.name);
}

HostedDeployment StandinState::createDeployment(int64_t project_id, const NewDeployment& request) {
  std::lock_guard lock(mutex_);
  if (!findProjectLocked(project_id)) {
    throw ApiError(404, "ProjectNotFound", "The requested project does not exist");
  }
  auto live_in_project = [&](auto predicate) -> HostedDeployment* {
    for (auto& deployment : deployments_) {
      if (deployment.project_id == project_id && !deployment.deleted && predicate(deployment)) {
        return &deployment;
      }
    }
    return nullptr;
  };
  auto reference_taken = [&](const std::string& reference) {
    if (live_in_project([&](const HostedDeployment& d) { return d.reference == reference; })) {
      throw ApiError(400, "DeploymentReferenceAlreadyExists",
                     "A deployment with the reference '" + reference +
                         "' already exists in this project.");
    }
  };

  HostedDeployment deployment;
  deployment.name = newDeploymentNameLocked();
  deployment.type = request.type;
  deployment.project_id = project_id;
  if (request.deployment_class) deployment.deployment_class = *request.deployment_class;
  if (request.region) deployment.region = *request.region;
  deployment.expires_at_ms = request.expires_at_ms;

  if (request.type == "preview") {
    if (!request.reference) {
      throw ApiError(400, "MissingReference",
                     "A reference must be provided when creating a preview deployment");
    }
    // A second create with the same identifier replaces the first preview.
    if (HostedDeployment* old = live_in_project([&](const HostedDeployment& d) {
          return d.type == "preview" && d.preview_identifier == request.reference;
        })) {
      deleteDeploymentLocked(*old);
    }
    deployment.reference = "preview/" + *request.reference;
    deployment.preview_identifier = *request.reference;
    if (!deployment.expires_at_ms) deployment.expires_at_ms = nowMs() + kPreviewRetentionMs;
  } else if (request.type == "dev" || request.type == "prod") {
    deployment.is_default = request.is_default.value_or(!request.reference);
    if (request.reference) {
      reference_taken(*request.reference);
      deployment.reference = *request.reference;
    } else if (deployment.is_default) {
      deployment.reference = request.type == "prod" ? "production" : "dev/standin";
      reference_taken(deployment.reference);
    } else {
      deployment.reference = request.type + "/" + deployment.name;
    }
    if (deployment.is_default &&
        live_in_project([&](const HostedDeployment& d) {
          return d.type == request.type && d.is_default;
        })) {
      throw ApiError(400, "DefaultDeploymentAlreadyExists",
                     "This project already has a default " + request.type + " deployment.");
    }
  } else {
    if (request.reference) reference_taken(*request.reference);
    deployment.reference = request.reference.value_or(deployment.name);
  }
  return addDeploymentLocked(std::move(deployment));
}

bool StandinState::deleteDeployment(const std::string& name) {
  std::lock_guard lock(mutex_);
  for (auto& deployment : deployments_) {
    if (deployment.name == name && !deployment.deleted) {
      deleteDeploymentLocked(deployment);
      return true;
    }
  }
  return false;
}

std::optional<HostedDeployment> StandinState::defaultDeployment(int64_t project_id,
                                                                const std::string& type) const {
  std::lock_guard lock(mutex_);
  for (const auto& deployment : deployments_) {
    if (deployment.project_id == project_id && !deployment.deleted && deployment.type == type &&
        deployment.is_default) {
      return deployment;
    }
  }
  return std::nullopt;
}

std::optional<HostedDeployment> StandinState::deploymentByReference(
    int64_t project_id, const std::string& reference) const {
  std::lock_guard lock(mutex_);
  for (const auto& deployment : deployments_) {
    if (deployment.project_id == project_id && !deployment.deleted &&
        deployment.reference == reference) {
      return deployment;
    }
  }
  return std::nullopt;
}

std::optional<int64_t> StandinState::lastDeployTimeMs(const std::string& deployment) const {
  std::lock_guard lock(mutex_);
  const auto found = last_deploy_ms_.find(deployment);
  if (found == last_deploy_ms_.end()) return std::nullopt;
  return found->second;
}

std::optional<std::string> StandinState::adminKey(const std::string& deployment) const {
  std::lock_guard lock(mutex_);
  if (!findDeploymentLocked(deployment)) return std::nullopt;
  for (const auto& [key, minted] : keys_) {
    if (minted.admin && minted.deployment == deployment) return key;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- deploy keys

std::string StandinState::mintKeyLocked(const HostedDeployment& deployment, DeployKeyGrant grant,
                                        const AccessToken* oauth) {
  const std::string prefix = deployment.type + ":" + deployment.name + "|";
  MintedKey minted;
  minted.deployment = deployment.name;
  minted.creation_time_ms = nowMs();
  minted.uid = randomHex(1);
  if (oauth) {
    // The OAuth grant's own secret; allowedActions and expiresAt do not narrow it.
    const std::string key = prefix + oauth->secret;
    if (const auto existing = keys_.find(key);
        existing != keys_.end() && !existing->second.revoked) {
      return key;
    }
    minted.id = next_token_id_++;
    minted.grant.name = grant.name;
    minted.oauth_token_id = oauth->id;
    keys_[key] = std::move(minted);
    return key;
  }
  minted.id = next_token_id_++;
  minted.grant = std::move(grant);
  const std::string key = prefix + newKeySecret();
  keys_[key] = std::move(minted);
  return key;
}

std::optional<std::string> StandinState::mintDeployKey(const std::string& deployment,
                                                       DeployKeyGrant grant,
                                                       const AccessToken* oauth) {
  std::lock_guard lock(mutex_);
  const HostedDeployment* target = findDeploymentLocked(deployment);
  if (!target) return std::nullopt;
  return mintKeyLocked(*target, std::move(grant), oauth);
}

std::optional<HostedDeployment> StandinState::deploymentForKey(const std::string& key) const {
  std::lock_guard lock(mutex_);
  const auto found = keys_.find(key);
  if (found == keys_.end() || found->second.revoked) return std::nullopt;
  const HostedDeployment* deployment = findDeploymentLocked(found->second.deployment);
  if (!deployment) return std::nullopt;
  return *deployment;
}

std::optional<DeployKeyGrant> StandinState::grantForKey(const std::string& key) const {
  std::lock_guard lock(mutex_);
  const auto found = keys_.find(key);
  if (found == keys_.end()) return std::nullopt;
  return found->second.grant;
}

std::vector<DeployKeyInfo> StandinState::deployKeys(const std::string& deployment) const {
  std::lock_guard lock(mutex_);
  std::vector<const MintedKey*> live;
  for (const auto& [key, minted] : keys_) {
    if (minted.deployment == deployment && !minted.admin && !minted.revoked) live.push_back(&minted);
  }
  std::sort(live.begin(), live.end(),
            [](const MintedKey* a, const MintedKey* b) { return a->id < b->id; });
  std::vector<DeployKeyInfo> list;
  for (const MintedKey* minted : live) {
    const auto same_name = std::count_if(live.begin(), live.end(), [&](const MintedKey* other) {
      return other->grant.name == minted->grant.name;
    });
    DeployKeyInfo info;
    info.id = minted->id;
    info.unique_name =
        same_name > 1 ? minted->grant.name + " (" + minted->uid + ")" : minted->grant.name;
    info.grant = minted->grant;
    info.creation_time_ms = minted->creation_time_ms;
    info.last_used_ms = minted->last_used_ms;
    info.oauth_derived = minted->oauth_token_id.has_value();
    list.push_back(std::move(info));
  }
  return list;
}

bool StandinState::deleteDeployKey(const std::string& deployment, const std::string& id) {
  // Unique names are what the listing shows; compute them before taking the lock again.
  const auto listed = deployKeys(deployment);
  std::lock_guard lock(mutex_);
  for (auto& [key, minted] : keys_) {
    if (minted.deployment != deployment || minted.admin || minted.revoked) continue;
    const auto info = std::find_if(listed.begin(), listed.end(),
                                   [&](const DeployKeyInfo& i) { return i.id == minted.id; });
    const bool matches = key == id || secretOf(key) == id ||
                         (info != listed.end() && info->unique_name == id);
    if (!matches) continue;
    if (minted.oauth_token_id) {
      // The documented hazard: the "deploy key" is the OAuth secret, so this revokes the grant.
      revokeOAuthLocked(*minted.oauth_token_id);
    } else {
      minted.revoked = true;
    }
    return true;
  }
  return false;
}

DeploymentCredential StandinState::resolveDeploymentCredential(const std::string& key,
                                                               const std::string& host_label) {
  using Outcome = DeploymentCredential::Outcome;
  std::lock_guard lock(mutex_);
  DeploymentCredential result;
  if (const auto found = keys_.find(key); found != keys_.end()) {
    MintedKey& minted = found->second;
    result.kind = minted.admin ? "adminKey" : "deployKey";
    result.deployment_name = minted.deployment;
    const HostedDeployment* deployment = findDeploymentLocked(minted.deployment);
    if (!deployment) {
      result.outcome = Outcome::kDeploymentGone;
    } else if (minted.revoked) {
      result.outcome = Outcome::kRevoked;
    } else if (minted.grant.expires_at_ms && *minted.grant.expires_at_ms <= nowMs()) {
      result.outcome = Outcome::kExpired;
    } else {
      result.outcome = Outcome::kOk;
      result.deployment = *deployment;
      if (!minted.oauth_token_id) result.allowed_actions = minted.grant.allowed_actions;
      minted.last_used_ms = nowMs();
    }
    return result;
  }

  // Team and OAuth tokens are not tied to a deployment, and every deployment shares this
  // origin: the Host label names it, else the only deployment the token can see.
  const AccessToken* token = nullptr;
  for (const auto& candidate : tokens_) {
    if (candidate.token == key && !candidate.revoked && !key.empty()) token = &candidate;
  }
  if (!token) return result;  // kUnknown
  result.kind = tokenKindName(token->kind);
  std::vector<const HostedDeployment*> visible;
  for (const auto& deployment : deployments_) {
    if (deployment.deleted || deployment.self_hosted) continue;
    if (token->project_id && deployment.project_id != *token->project_id) continue;
    visible.push_back(&deployment);
  }
  const HostedDeployment* chosen = nullptr;
  if (!host_label.empty() && findDeploymentLocked(host_label)) {
    for (const HostedDeployment* deployment : visible) {
      if (deployment->name == host_label) chosen = deployment;
    }
    if (!chosen) return result;  // a deployment the token cannot reach: kUnknown
  } else if (visible.size() == 1) {
    chosen = visible.front();
  } else {
    result.outcome = Outcome::kAmbiguous;
    return result;
  }
  result.outcome = Outcome::kOk;
  result.deployment = *chosen;
  result.deployment_name = chosen->name;
  return result;
}

// ---------------------------------------------------------------- preview deploy keys

std::string StandinState::mintPreviewDeployKey(int64_t project_id, const std::string& name,
                                               std::optional<int64_t> expires_at_ms,
                                               const AccessToken* oauth) {
  std::lock_guard lock(mutex_);
  const Project* project = findProjectLocked(project_id);
  if (!project) throw ApiError(404, "ProjectNotFound", "The requested project does not exist");
  const std::string key = "preview:" + team_slug_ + ":" + project->slug + "|" +
                          (oauth ? oauth->secret : newKeySecret());
  MintedPreviewKey minted;
  minted.id = next_token_id_++;
  minted.key = {project_id, name, oauth ? std::optional<int64_t>(oauth->id) : std::nullopt};
  minted.uid = randomHex(1);
  minted.creation_time_ms = nowMs();
  minted.expires_at_ms = oauth ? std::nullopt : expires_at_ms;
  preview_keys_[key] = std::move(minted);
  return key;
}

std::optional<PreviewKey> StandinState::previewKey(const std::string& key) {
  std::lock_guard lock(mutex_);
  const auto found = preview_keys_.find(key);
  if (found == preview_keys_.end()) return std::nullopt;
  MintedPreviewKey& minted = found->second;
  if (minted.revoked || (minted.expires_at_ms && *minted.expires_at_ms <= nowMs()) ||
      !findProjectLocked(minted.key.project_id)) {
    return std::nullopt;
  }
  if (minted.key.oauth_token_id) {
    const AccessToken* token = tokenByIdLocked(*minted.key.oauth_token_id);
    if (!token || token->revoked) return std::nullopt;
  }
  minted.last_used_ms = nowMs();
  return minted.key;
}

std::vector<std::pair<const std::string*, DeployKeyInfo>> StandinState::previewKeysLocked(
    int64_t project_id) const {
  std::vector<std::pair<const std::string*, const MintedPreviewKey*>> live;
  for (const auto& [key, minted] : preview_keys_) {
    if (minted.key.project_id == project_id && !minted.revoked) live.emplace_back(&key, &minted);
  }
  std::sort(live.begin(), live.end(),
            [](const auto& a, const auto& b) { return a.second->id < b.second->id; });
  std::vector<std::pair<const std::string*, DeployKeyInfo>> list;
  for (const auto& [key, minted] : live) {
    const auto same_name = std::count_if(live.begin(), live.end(), [&](const auto& other) {
      return other.second->key.name == minted->key.name;
    });
    DeployKeyInfo info;
    info.id = minted->id;
    info.unique_name =
        same_name > 1 ? minted->key.name + " (" + minted->uid + ")" : minted->key.name;
    info.grant.name = minted->key.name;
    info.grant.expires_at_ms = minted->expires_at_ms;
    info.creation_time_ms = minted->creation_time_ms;
    info.last_used_ms = minted->last_used_ms;
    info.oauth_derived = minted->key.oauth_token_id.has_value();
    list.emplace_back(key, std::move(info));
  }
  return list;
}

std::vector<DeployKeyInfo> StandinState::previewDeployKeys(int64_t project_id,
                                                           bool include_managed) const {
  std::lock_guard lock(mutex_);
  std::vector<DeployKeyInfo> list;
  for (auto& [key, info] : previewKeysLocked(project_id)) {
    if (info.oauth_derived && !include_managed) continue;
    list.push_back(std::move(info));
  }
  return list;
}

std::optional<DeployKeyInfo> StandinState::deletePreviewDeployKey(int64_t project_id,
                                                                  const std::string& id) {
  std::lock_guard lock(mutex_);
  for (auto& [key, info] : previewKeysLocked(project_id)) {
    if (*key != id && secretOf(*key) != id && info.unique_name != id) continue;
    MintedPreviewKey& minted = preview_keys_.at(*key);
    if (minted.key.oauth_token_id) {
      // The "preview key" is the OAuth secret itself, so deleting it ends the grant.
      revokeOAuthLocked(*minted.key.oauth_token_id);
    } else {
      minted.revoked = true;
    }
    return std::move(info);
  }
  return std::nullopt;
}

PreviewClaim StandinState::claimPreview(int64_t project_id, const std::string& identifier,
                                        bool reuse) {
  std::lock_guard lock(mutex_);
  if (!findProjectLocked(project_id)) {
    throw ApiError(404, "ProjectNotFound", "The requested project does not exist");
  }
  HostedDeployment* existing = nullptr;
  for (auto& deployment : deployments_) {
    if (deployment.project_id == project_id && !deployment.deleted &&
        deployment.type == "preview" && deployment.preview_identifier == identifier) {
      existing = &deployment;
    }
  }
  PreviewClaim claim;
  if (existing && reuse) {
    claim.deployment = *existing;
  } else {
    if (existing) deleteDeploymentLocked(*existing);
    HostedDeployment deployment;
    deployment.name = newDeploymentNameLocked();
    deployment.type = "preview";
    deployment.project_id = project_id;
    deployment.reference = "preview/" + identifier;
    deployment.preview_identifier = identifier;
    deployment.expires_at_ms = nowMs() + kPreviewRetentionMs;
    claim.deployment = addDeploymentLocked(std::move(deployment));
    claim.is_new = true;
  }
  claim.admin_key = mintKeyLocked(claim.deployment, DeployKeyGrant{"preview deploy", {}, {}},
                                  nullptr);
  return claim;
}

// ---------------------------------------------------------------- environment variables

std::map<std::string, std::string> StandinState::environment(const std::string& deployment) const {
  std::lock_guard lock(mutex_);
  const auto found = env_.find(deployment);
  if (found == env_.end()) return {};
  return found->second;
}

void StandinState::updateEnvironment(
    const std::string& deployment,
    const std::vector<std::pair<std::string, std::optional<std::string>>>& changes) {
  static const std::regex kNamePattern("^[a-zA-Z_]+[a-zA-Z0-9_]*$");
  std::set<std::string> seen;
  for (const auto& [name, value] : changes) {
    if (name.size() > kEnvNameMaxLength) {
      throw ApiError(400, "EnvironmentVariableNameTooLong",
                     "Environment variable name is longer than " +
                         std::to_string(kEnvNameMaxLength) + " characters: " +
                         name.substr(0, 40) + "...");
    }
    if (!std::regex_match(name, kNamePattern)) {
      throw ApiError(400, "EnvironmentVariableNameInvalid",
                     "Environment variable name `" + name +
                         "` must start with a letter or underscore and contain only letters, "
                         "digits and underscores");
    }
    if (builtInEnvNames().count(name)) {
      throw ApiError(400, "EnvVarNameForbidden",
                     "Environment variable " + name + " is built in and cannot be overridden");
    }
    if (!seen.insert(name).second) {
      throw ApiError(400, "EnvVarNameNotUnique",
                     "Environment variable " + name + " appears more than once in the request");
    }
    if (value && value->size() > kEnvValueMaxBytes) {
      throw ApiError(400, "EnvironmentVariableValueTooLarge",
                     "The value of environment variable " + name + " is larger than " +
                         std::to_string(kEnvValueMaxBytes) + " bytes");
    }
  }

  std::lock_guard lock(mutex_);
  std::map<std::string, std::string> next = env_[deployment];
  for (const auto& [name, value] : changes) {
    if (value) {
      next[name] = *value;
    } else {
      next.erase(name);
    }
  }
  if (next.size() > kEnvVarLimit) {
    throw ApiError(400, "EnvVarLimitMet",
                   "A deployment may have at most " + std::to_string(kEnvVarLimit) +
                       " environment variables");
  }
  std::size_t total = 0;
  for (const auto& [name, value] : next) total += name.size() + value.size();
  if (total > kEnvTotalSizeLimit) {
    throw ApiError(400, "EnvVarTotalSizeLimitMet",
                   "The environment variables of a deployment may total at most " +
                       std::to_string(kEnvTotalSizeLimit) + " bytes");
  }
  env_[deployment] = std::move(next);
}

// ---------------------------------------------------------------- pushes

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

// ---------------------------------------------------------------- faults and the log

void StandinState::addFault(Fault fault) {
  std::lock_guard lock(mutex_);
  faults_.push_back(std::move(fault));
}

std::optional<Fault> StandinState::takeFault(const std::string& method, const std::string& path) {
  std::lock_guard lock(mutex_);
  for (auto fault = faults_.begin(); fault != faults_.end(); ++fault) {
    if (!faultPathMatches(fault->path, path) || (fault->method && *fault->method != method)) {
      continue;
    }
    Fault taken = *fault;
    if (fault->times > 0 && --fault->times == 0) faults_.erase(fault);
    request_recorded_.notify_all();
    return taken;
  }
  return std::nullopt;
}

bool StandinState::awaitFaultsTaken(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return request_recorded_.wait_for(lock, timeout, [&] { return stopping_ || faults_.empty(); }) && faults_.empty();
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
  request_recorded_.notify_all();
}

void StandinState::recordRequest(RequestRecord record) {
  {
    std::lock_guard lock(mutex_);
    requests_.push_back(std::move(record));
  }
  request_recorded_.notify_all();
}

bool StandinState::awaitRequest(const std::string& method, const std::string& path_pattern,
                                std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  auto logged = [&] {
    for (const auto& request : requests_) {
      if (request.status != 0 && faultPathMatches(path_pattern, request.path) &&
          (method.empty() || request.method == method)) {
        return true;
      }
    }
    return false;
  };
  return request_recorded_.wait_for(lock, timeout, [&] { return stopping_ || logged(); }) && logged();
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
                    {"after_handling", fault.after_handling},
                    {"times", fault.times},
                    {"retry_after", fault.retry_after}});
  }
  return list;
}

nlohmann::json StandinState::projectsJson(bool include_deleted) const {
  std::lock_guard lock(mutex_);
  nlohmann::json list = nlohmann::json::array();
  for (const auto& project : projects_) {
    if (project.deleted && !include_deleted) continue;
    nlohmann::json deployments = nlohmann::json::array();
    for (const auto& deployment : deployments_) {
      if (deployment.project_id != project.id) continue;
      if (deployment.deleted && !include_deleted) continue;
      nlohmann::json entry = {
          {"name", deployment.name},
          {"type", deployment.type},
          {"reference", deployment.reference},
          {"isDefault", deployment.is_default},
          {"previewIdentifier", deployment.preview_identifier
                                    ? nlohmann::json(*deployment.preview_identifier)
                                    : nlohmann::json()}};
      if (include_deleted) entry["deleted"] = deployment.deleted;
      deployments.push_back(std::move(entry));
    }
    nlohmann::json entry = {{"id", project.id},
                            {"name", project.name},
                            {"slug", project.slug},
                            {"teamId", kTeamId},
                            {"createTime", project.create_time_ms},
                            {"deployments", std::move(deployments)}};
    if (include_deleted) entry["deleted"] = project.deleted;
    list.push_back(std::move(entry));
  }
  return list;
}

void StandinState::reset() {
  std::lock_guard lock(mutex_);
  apps_.clear();
  last_deploy_ms_.clear();
  env_.clear();
  pushes_.clear();
  requests_.clear();
  faults_.clear();
}

}  // namespace standin

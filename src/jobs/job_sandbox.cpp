#include "jobs/job_sandbox.h"

#include <mutex>
#include <set>
#include <stdexcept>
#include <unistd.h>

namespace da {

namespace fs = std::filesystem;
using sandbox::Tier;

namespace {

constexpr const char* kInsideWork = "/job";
constexpr const char* kInsideNpmCache = "/npm-cache";

// npm, the CLI and Node as installed: the folder that holds the `node_modules` a tool lives
// in (the toolchain), or the tool's own folder.
fs::path installRootOf(const fs::path& tool) {
  std::error_code ec;
  fs::path real = fs::weakly_canonical(tool, ec);
  if (ec) real = tool;
  for (fs::path dir = real.parent_path(); dir.has_relative_path(); dir = dir.parent_path()) {
    if (dir.filename() == "node_modules") return dir.parent_path();
  }
  return real.parent_path();
}

// The toolchain, the system, and the CA files the passed-through variables name.
std::vector<std::string> readOnlyPaths(const Settings& settings) {
  std::vector<std::string> paths = sandbox::systemReadOnlyPaths();
  for (const fs::path& tool : {settings.toolchain.node, settings.toolchain.npm_cli, settings.toolchain.convex_cli}) {
    paths.push_back(installRootOf(tool).string());
    // The path as configured (a symlink like toolchain/bin/node) must resolve inside too.
    paths.push_back(fs::absolute(tool).parent_path().string());
  }
  for (const char* name : {"NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "npm_config_cafile"}) {
    auto it = settings.env_passthrough.find(name);
    if (it != settings.env_passthrough.end() && !it->second.empty() && it->second.front() == '/') {
      paths.push_back(it->second);
    }
  }
  return paths;
}

void chownTree(const fs::path& root, uid_t uid, gid_t gid) {
  ::lchown(root.c_str(), uid, gid);
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    ::lchown(it->path().c_str(), uid, gid);
  }
}

bool agentIsRoot() { return ::geteuid() == 0; }

}  // namespace

namespace {

// Landlock-tier jobs share the host's pid namespace, so each running job gets a host uid of
// its own (job_uid + 1 + n, the lowest free n): /proc entries that Linux shows to the same uid
// (a process's fd list, say) then stay closed to other jobs. The namespaces tier needs no
// such pool: a job sees no other process, and one uid owns the shared cache's lower layer.
class UidPool {
 public:
  uint32_t acquire() {
    std::lock_guard lock(mutex_);
    uint32_t offset = 0;
    while (in_use_.count(offset)) ++offset;
    in_use_.insert(offset);
    return offset;
  }
  void release(uint32_t offset) {
    std::lock_guard lock(mutex_);
    in_use_.erase(offset);
  }

 private:
  std::mutex mutex_;
  std::set<uint32_t> in_use_;
};

UidPool& landlockUidPool() {
  static UidPool pool;
  return pool;
}

}  // namespace

JobPaths jobPathsFor(const Settings& settings, const fs::path& job_dir, const fs::path& app_dir) {
  const fs::path work = job_dir / "work";
  JobPaths paths;
  if (settings.sandbox.tier == Tier::kNamespaces) {
    paths.work = kInsideWork;
    const fs::path relative = app_dir.lexically_relative(work);
    paths.app = relative.empty() || relative == "." ? paths.work : (fs::path(kInsideWork) / relative).string();
    paths.home = paths.work + "/home";
    paths.tmp = "/tmp";
    paths.npm_cache = kInsideNpmCache;
    return paths;
  }
  paths.work = work.string();
  paths.app = app_dir.string();
  paths.home = (work / "home").string();
  paths.tmp = (work / "tmp").string();
  // Landlock: a private copy (the shared cache is outside the allowlist); none: the shared one.
  paths.npm_cache = settings.sandbox.tier == Tier::kLandlock ? (work / "npm-cache").string() : settings.npm_cache.string();
  return paths;
}

std::map<std::string, std::string> baseChildEnvironment(const Settings& settings, const JobPaths& paths) {
  std::map<std::string, std::string> env = settings.env_passthrough;
  env["PATH"] = settings.toolchain.node.parent_path().string() + ":/usr/local/bin:/usr/bin:/bin";
  // Inside work/, so whatever npm or the CLI leave in them goes with the unpacked app.
  env["HOME"] = paths.home;
  env["TMPDIR"] = paths.tmp;
  env["LANG"] = "C.UTF-8";
  env["CI"] = "1";  // no Sentry, no prompts
  env["npm_config_update_notifier"] = "false";
  env["npm_config_fund"] = "false";
  env["npm_config_audit"] = "false";
  env["npm_config_cache"] = paths.npm_cache;
  env["npm_config_registry"] = settings.npm_registry;
  // npm's user and global config files: by default ~/.npmrc (HOME is the job's, but a job
  // could leave one for itself) and <toolchain>/etc/npmrc (shared by every job). Neither
  // exists in a fresh job folder, so npm runs on the agent's settings alone.
  env["npm_config_userconfig"] = paths.work + "/npm-userconfig";
  env["npm_config_globalconfig"] = paths.work + "/npm-globalconfig";
  return env;
}

JobSandbox::JobSandbox(const Settings& settings, const fs::path& job_dir, const fs::path& app_dir)
    : settings_(settings), work_dir_(job_dir / "work"), paths_(jobPathsFor(settings, job_dir, app_dir)) {
  const SandboxSettings& config = settings.sandbox;
  const Tier tier = config.tier;
  const bool root = agentIsRoot();
  uid_t uid = config.job_uid;
  gid_t gid = config.job_gid;
  if (tier == Tier::kLandlock && root) {
    uid_offset_ = landlockUidPool().acquire();
    uid += 1 + *uid_offset_;
    gid += 1 + *uid_offset_;
  }
  if (tier == Tier::kNamespaces && root && config.disk_bytes > 0 && !settings.keep_workdirs) {
    std::string problem;
    volume_ = sandbox::JobVolume::create(work_dir_, config.disk_bytes, uid, gid, problem);
    if (!volume_) throw std::runtime_error(problem);
  }
  fs::create_directories(work_dir_ / "home");
  fs::create_directories(work_dir_ / "tmp");

  sandbox::FilesystemView view;
  view.read_only = readOnlyPaths(settings);
  if (tier == Tier::kNamespaces) {
    view.writable = {{work_dir_.string(), kInsideWork}, {(work_dir_ / "tmp").string(), "/tmp"}};
    // The shared cache is only ever the lower layer: what npm adds lands in this job's upper
    // layer and goes with the job.
    const fs::path layer = work_dir_ / ".npm-cache";
    fs::create_directories(layer / "upper");
    fs::create_directories(layer / "work");
    fs::create_directories(settings.npm_cache);
    view.overlays = {{settings.npm_cache.string(), (layer / "upper").string(), (layer / "work").string(), kInsideNpmCache}};
  } else if (tier == Tier::kLandlock) {
    view.writable = {{work_dir_.string(), work_dir_.string()}};
    std::error_code ec;
    if (fs::exists(settings.npm_cache, ec)) {
      fs::copy(settings.npm_cache, work_dir_ / "npm-cache", fs::copy_options::recursive);
    }
  }
  // The job's user owns its folder (the unpacked app, home, tmp, cache layer) and nothing else.
  if (root && tier != Tier::kNone) chownTree(work_dir_, uid, gid);

  isolation_.tier(tier)
      .filesystem(std::move(view))
      .hostIds(uid, gid)
      .memoryBytes(config.memory_bytes)
      .maxProcesses(config.max_processes);
}

JobSandbox::~JobSandbox() {
  if (uid_offset_) landlockUidPool().release(*uid_offset_);
}

bool unmountLeftoverJobVolume(const fs::path& job_dir) { return sandbox::JobVolume::unmountLeftover(job_dir / "work"); }

std::string prepareStateForJobs(const Settings& settings) {
  if (!agentIsRoot()) return "";
  std::error_code ec;
  if (settings.sandbox.tier == Tier::kLandlock) {
    // Landlock-tier jobs reach their folder at its host path as their own uid: they must be
    // able to pass through the state and jobs folders (x), though not list them (no r).
    for (const fs::path& dir : {settings.state_dir, settings.state_dir / "jobs"}) {
      fs::create_directories(dir, ec);
      if (ec) return "cannot create " + dir.string() + ": " + ec.message();
      fs::permissions(dir, fs::perms::others_exec | fs::perms::group_exec, fs::perm_options::add, ec);
      if (ec) return "cannot let jobs pass through " + dir.string() + " (chmod o+x): " + ec.message();
    }
  }
  if (settings.sandbox.tier != Tier::kNamespaces) return "";
  fs::create_directories(settings.npm_cache, ec);
  if (ec) return "cannot create the npm cache " + settings.npm_cache.string() + ": " + ec.message();
  chownTree(settings.npm_cache, settings.sandbox.job_uid, settings.sandbox.job_gid);
  return "";
}

}  // namespace da

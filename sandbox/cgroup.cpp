#include "sandbox/cgroup.h"

#include "sandbox/syscall_error.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <utility>

#include "sandbox/fds.h"

namespace sandbox::internal {

namespace {

constexpr const char* kBaseName = "deploy-agent";
constexpr const char* kAgentLeafName = "agent";

constexpr const char* kWritableCgroupFix =
    "give the agent a writable cgroup: in Docker run it with `--cgroupns=private` and "
    "/sys/fs/cgroup mounted read-write (e.g. `--privileged`), or under systemd in a unit with "
    "`Delegate=yes`";

// ---- Error text (sandbox/syscall_error.h) ----

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string writeCall(const std::string& path, std::string_view value) {
  return "write(" + quoted(path) + ", " + quoted(value) + ")";
}

// Fixes common to every write into a cgroup filesystem.
std::string hintForCgroupAccess(int error) {
  switch (error) {
    case EROFS:
      return std::string("the cgroup filesystem is mounted read-only (the usual state in a "
                         "container); ") + kWritableCgroupFix;
    case EACCES:
    case EPERM:
      return "the agent may not write there: run it as root, or delegate the subtree to its "
             "user (chown the group directory and its cgroup.procs and cgroup.subtree_control; "
             "systemd `Delegate=yes`)";
    case ENOENT:
      return "the file does not exist: the controller is not enabled for this group (its "
             "parent's cgroup.subtree_control) or the group was removed";
    case ENOSPC:
    case EAGAIN:
      return "an ancestor's cgroup.max.descendants or cgroup.max.depth is reached; raise it or "
             "remove stale groups";
    case ENOMEM: return "the machine is out of memory";
    default: return "";
  }
}

// ---- Small file helpers (each returns 0 or an errno value) ----

int readFile(const std::string& path, std::string& out) {
  out.clear();
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return 0;
    out.append(buffer, static_cast<size_t>(n));
  }
}

// Cgroup files take one value per write(); the kernel reports a rejected value as the write's
// errno, so the write is checked, not just the open.
int writeFile(const std::string& path, std::string_view value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return errno;
  for (;;) {
    ssize_t n = ::write(fd.get(), value.data(), value.size());
    if (n >= 0) return static_cast<size_t>(n) == value.size() ? 0 : EIO;
    if (errno != EINTR) return errno;
  }
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// 0 if the directory exists after the call (made now or before), else errno. *made tells which.
int makeDir(const std::string& path, bool* made) {
  *made = false;
  if (::mkdir(path.c_str(), 0755) == 0) {
    *made = true;
    return 0;
  }
  return errno == EEXIST ? 0 : errno;
}

// Makes (or finds) a base group the agent can write in: "" or the problem.
std::string makeWritableDir(const std::string& path, bool* made) {
  if (int e = makeDir(path, made)) {
    return describeSyscallFailure("mkdir(" + quoted(path) + ")", e, hintForCgroupAccess(e));
  }
  // An existing directory hides a read-only mount from mkdir (EEXIST comes first); faccessat
  // reports EROFS even to root.
  if (::faccessat(AT_FDCWD, path.c_str(), W_OK, AT_EACCESS) != 0) {
    const int e = errno;
    if (*made) ::rmdir(path.c_str());
    return describeSyscallFailure("faccessat(" + quoted(path) + ", W_OK)", e, hintForCgroupAccess(e));
  }
  return "";
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool parseUint(std::string_view s, uint64_t& value) {
  s = trim(s);
  if (s.empty()) return false;
  value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  return true;
}

// "key value" lines (memory.events, pids.events, memory.oom_control): the value of `key`, or 0.
uint64_t keyedValue(std::string_view text, std::string_view key) {
  for (std::string_view line : split(text, '\n')) {
    auto fields = split(trim(line), ' ');
    uint64_t value;
    if (fields.size() == 2 && fields[0] == key && parseUint(fields[1], value)) return value;
  }
  return 0;
}

uint64_t keyedValueOfFile(const std::string& path, std::string_view key) {
  std::string text;
  return readFile(path, text) == 0 ? keyedValue(text, key) : 0;
}

uint64_t numberOfFile(const std::string& path) {
  std::string text;
  uint64_t value = 0;
  return readFile(path, text) == 0 && parseUint(text, value) ? value : 0;
}

bool hasWord(std::string_view list, std::string_view word) {
  for (std::string_view w : split(trim(list), ' ')) {
    if (w == word) return true;
  }
  return false;
}

// ---- /proc/self/mountinfo and /proc/self/cgroup ----

// Mount fields escape space, tab, newline and backslash as \ooo.
std::string unescapeMountField(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const char a = s[i + 1], b = s[i + 2], c = s[i + 3];
      if (a >= '0' && a <= '3' && b >= '0' && b <= '7' && c >= '0' && c <= '7') {
        out.push_back(static_cast<char>((a - '0') * 64 + (b - '0') * 8 + (c - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

struct CgroupMount {
  std::string root;         // the part of the hierarchy this mount shows
  std::string mount_point;
  bool v2 = false;
  std::vector<std::string> controllers;  // v1: from the super options
};

std::vector<CgroupMount> cgroupMounts(std::string_view mountinfo) {
  std::vector<CgroupMount> mounts;
  for (std::string_view line : split(mountinfo, '\n')) {
    auto fields = split(line, ' ');
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    auto dash = std::find(fields.begin(), fields.end(), std::string_view("-"));
    if (fields.size() < 6 || dash == fields.end() || fields.end() - dash < 4) continue;
    const std::string_view fstype = dash[1];
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    CgroupMount mount;
    mount.root = unescapeMountField(fields[3]);
    mount.mount_point = unescapeMountField(fields[4]);
    mount.v2 = fstype == "cgroup2";
    if (!mount.v2) {
      for (std::string_view option : split(dash[3], ',')) mount.controllers.emplace_back(option);
    }
    mounts.push_back(std::move(mount));
  }
  return mounts;
}

// The path /proc/self/cgroup gives for `controller` ("" = the v2 line "0::<path>").
bool ownCgroupPath(std::string_view proc_self_cgroup, std::string_view controller,
                   std::string& path) {
  for (std::string_view line : split(proc_self_cgroup, '\n')) {
    // hierarchy-id:controller-list:path (the path may itself contain ':')
    size_t first = line.find(':');
    if (first == std::string_view::npos) continue;
    size_t second = line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    const std::string_view id = line.substr(0, first);
    const std::string_view list = line.substr(first + 1, second - first - 1);
    bool match = false;
    if (controller.empty()) {
      match = id == "0" && list.empty();
    } else {
      for (std::string_view c : split(list, ',')) match = match || c == controller;
    }
    if (match) {
      path = std::string(line.substr(second + 1));
      return true;
    }
  }
  return false;
}

}  // namespace

bool locateOwnCgroup(std::string_view mountinfo, std::string_view proc_self_cgroup,
                     std::string_view controller, std::string& dir, std::string& problem) {
  const std::string what = controller.empty() ? std::string("the cgroup v2 (unified) hierarchy")
                                              : "the cgroup v1 " + std::string(controller) +
                                                    " hierarchy";
  std::string path;
  if (!ownCgroupPath(proc_self_cgroup, controller, path)) {
    problem = "/proc/self/cgroup has no line for " + what + " (it is not mounted on this host)";
    return false;
  }
  if (path.empty() || path[0] != '/' || path.rfind("/..", 0) == 0) {
    problem = "/proc/self/cgroup gives " + quoted(path) + " for " + what +
              ": the agent's group lies outside its cgroup namespace. Fix: start the agent in "
              "a cgroup namespace of its own (`docker run --cgroupns=private`)";
    return false;
  }
  bool mounted = false;
  for (const CgroupMount& mount : cgroupMounts(mountinfo)) {
    if (controller.empty() != mount.v2) continue;
    if (!controller.empty() &&
        std::find(mount.controllers.begin(), mount.controllers.end(), controller) ==
            mount.controllers.end()) {
      continue;
    }
    mounted = true;
    // The mount shows the subtree `root` of the hierarchy; our group must lie inside it.
    std::string relative;
    if (mount.root == "/") {
      relative = path;
    } else if (path == mount.root || path.rfind(mount.root + "/", 0) == 0) {
      relative = path.substr(mount.root.size());
    } else {
      continue;
    }
    if (relative == "/") relative.clear();
    dir = mount.mount_point + relative;
    return true;
  }
  if (!mounted) {
    problem = "/proc/self/mountinfo has no mount of " + what +
              (controller.empty() ? std::string(" (fstype cgroup2)")
                                  : " (fstype cgroup with option " + std::string(controller) + ")");
  } else {
    problem = "no mount of " + what + " in /proc/self/mountinfo shows the agent's group " +
              quoted(path) + " (each shows a different subtree). Fix: mount the hierarchy's "
              "root, or start the agent in a cgroup namespace of its own "
              "(`docker run --cgroupns=private`)";
  }
  return false;
}

namespace {

// ---- Probing ----

struct Offer {
  std::string own_dir;  // the agent's own group
  bool memory = false;
  bool pids = false;
  std::string problem;  // why not (or why a controller is missing)
  int count() const { return int{memory} + int{pids}; }
};

std::string controllerList(const Offer& offer) {
  if (offer.memory && offer.pids) return "+memory +pids";
  return offer.memory ? "+memory" : "+pids";
}

// Undoes a leaf move the agent made: disables what it enabled, moves itself back, removes the leaf.
void undoAgentLeaf(const std::string& own, const std::string& leaf, std::string_view enabled,
                   bool made_leaf) {
  if (!enabled.empty()) {
    std::string disable(enabled);
    std::replace(disable.begin(), disable.end(), '+', '-');
    writeFile(own + "/cgroup.subtree_control", disable);
  }
  writeFile(own + "/cgroup.procs", std::to_string(::getpid()));
  if (made_leaf) ::rmdir(leaf.c_str());
}

// v2 forbids controllers in cgroup.subtree_control of a (non-root) group that holds processes.
// The agent's own group usually holds the agent: move the agent into <own>/agent, then enable
// the controllers for <own>'s children. Fails (and undoes the move) if other processes remain.
bool moveAgentIntoLeaf(const std::string& own, const std::string& enable, CgroupSupport& s) {
  const std::string leaf = own + "/" + kAgentLeafName;
  bool made_leaf = false;
  if (int e = makeDir(leaf, &made_leaf)) {
    s.unavailable_reason = "cgroup v2: " + describeSyscallFailure("mkdir(" + quoted(leaf) + ")", e,
                                                   hintForCgroupAccess(e));
    return false;
  }
  const std::string self = std::to_string(::getpid());
  if (int e = writeFile(leaf + "/cgroup.procs", self)) {
    if (made_leaf) ::rmdir(leaf.c_str());
    s.unavailable_reason =
        "cgroup v2: moving the agent into a leaf of its own group (needed because " + own +
        " holds processes) failed: " +
        describeSyscallFailure(writeCall(leaf + "/cgroup.procs", self), e, hintForCgroupAccess(e));
    return false;
  }
  const std::string control = own + "/cgroup.subtree_control";
  if (int e = writeFile(control, enable)) {
    std::string others;
    readFile(own + "/cgroup.procs", others);
    for (char& c : others) c = c == '\n' ? ' ' : c;
    others = std::string(trim(others));
    undoAgentLeaf(own, leaf, "", made_leaf);
    if (e == EBUSY && !others.empty()) {
      s.unavailable_reason =
          "cgroup v2: " + own + " still holds other processes (pids " + others +
          ") after the agent moved itself into " + leaf + ", so " + quoted(enable) +
          " cannot be written to " + control +
          " (no-internal-processes rule; the agent moved itself back). Fix: run the agent as the "
          "only process of its cgroup (e.g. as the container's entry point, started before "
          "anything else), or give it a delegated subtree of its own (systemd `Delegate=yes`)";
    } else {
      s.unavailable_reason = "cgroup v2: " + describeSyscallFailure(writeCall(control, enable), e,
                                                     hintForCgroupAccess(e));
    }
    return false;
  }
  s.agent_leaf = leaf;
  return true;
}

bool setUpV2(const Offer& offer, CgroupSupport& s) {
  const std::string& own = offer.own_dir;
  const std::string enable = controllerList(offer);
  const std::string control = own + "/cgroup.subtree_control";
  std::string enabled;
  if (int e = readFile(control, enabled)) {
    s.unavailable_reason = "cgroup v2: " + describeSyscallFailure("read(" + quoted(control) + ")", e,
                                                   hintForCgroupAccess(e));
    return false;
  }
  const bool already = (!offer.memory || hasWord(enabled, "memory")) &&
                       (!offer.pids || hasWord(enabled, "pids"));
  if (!already) {
    int e = writeFile(control, enable);
    if (e == EBUSY) {
      if (!moveAgentIntoLeaf(own, enable, s)) return false;
    } else if (e != 0) {
      s.unavailable_reason = "cgroup v2: " + describeSyscallFailure(writeCall(control, enable), e,
                                                     hintForCgroupAccess(e));
      return false;
    }
  }
  const std::string base = own + "/" + kBaseName;
  bool made_base = false;
  std::string problem = makeWritableDir(base, &made_base);
  if (problem.empty()) {
    const std::string base_control = base + "/cgroup.subtree_control";
    std::string base_enabled;
    readFile(base_control, base_enabled);
    if (!((!offer.memory || hasWord(base_enabled, "memory")) &&
          (!offer.pids || hasWord(base_enabled, "pids")))) {
      if (int w = writeFile(base_control, enable)) {
        problem = describeSyscallFailure(writeCall(base_control, enable), w,
                          w == EBUSY ? "processes were put into " + base +
                                           " itself; move them out (it must only hold run groups)"
                                     : hintForCgroupAccess(w));
      }
    }
  }
  if (!problem.empty()) {
    if (made_base) ::rmdir(base.c_str());
    if (!s.agent_leaf.empty()) {
      undoAgentLeaf(own, s.agent_leaf, enable, true);
      s.agent_leaf.clear();
    }
    s.unavailable_reason = "cgroup v2: " + problem;
    return false;
  }
  s.kind = CgroupSupport::Kind::kV2;
  if (offer.memory) {
    s.memory_base = base;
    s.facilities.push_back("cgroup_v2_memory");
    if (exists(base + "/memory.swap.max")) s.facilities.push_back("cgroup_v2_swap");
  }
  if (offer.pids) {
    s.pids_base = base;
    s.facilities.push_back("cgroup_v2_pids");
  }
  if (exists(base + "/cgroup.kill")) s.facilities.push_back("cgroup_v2_kill");
  if (!offer.problem.empty()) s.unavailable_reason = "cgroup v2: " + offer.problem;  // one missing
  return true;
}

// One v1 controller: <own>/deploy-agent. Returns "" or the problem.
std::string setUpV1Controller(const std::string& own, const std::string& controller,
                              const std::string& key_file, std::string& base) {
  base = own + "/" + kBaseName;
  bool made = false;
  if (std::string problem = makeWritableDir(base, &made); !problem.empty()) {
    base.clear();
    return "cgroup v1 " + controller + ": " + problem;
  }
  if (!exists(base + "/" + key_file)) {
    if (made) ::rmdir(base.c_str());
    const std::string missing = base + "/" + key_file;
    base.clear();
    return "cgroup v1 " + controller + ": " + missing +
           " does not exist (is this really a " + controller + " hierarchy?)";
  }
  return "";
}

std::string joinProblems(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a + "; " + b;
}

bool setUpV1(const Offer& memory, const Offer& pids, CgroupSupport& s) {
  std::string problems;
  if (memory.memory) {
    std::string base;
    std::string p = setUpV1Controller(memory.own_dir, "memory", "memory.limit_in_bytes", base);
    if (p.empty()) {
      s.memory_base = base;
      s.facilities.push_back("cgroup_v1_memory");
      if (exists(base + "/memory.memsw.limit_in_bytes")) s.facilities.push_back("cgroup_v1_memsw");
    }
    problems = joinProblems(problems, p);
  } else {
    problems = joinProblems(problems, "cgroup v1 memory: " + memory.problem);
  }
  if (pids.pids) {
    std::string base;
    std::string p = setUpV1Controller(pids.own_dir, "pids", "pids.max", base);
    if (p.empty()) {
      s.pids_base = base;
      s.facilities.push_back("cgroup_v1_pids");
    }
    problems = joinProblems(problems, p);
  } else {
    problems = joinProblems(problems, "cgroup v1 pids: " + pids.problem);
  }
  s.unavailable_reason = problems;
  if (s.memory_base.empty() && s.pids_base.empty()) return false;
  s.kind = CgroupSupport::Kind::kV1;
  return true;
}

CgroupSupport probe() {
  CgroupSupport s;
  std::string mountinfo, self;
  for (auto [path, text] : {std::pair{"/proc/self/mountinfo", &mountinfo},
                            std::pair{"/proc/self/cgroup", &self}}) {
    if (int e = readFile(path, *text)) {
      s.unavailable_reason = describeSyscallFailure("read(" + quoted(path) + ")", e,
                                     "mount /proc (cgroups are found through it)");
      return s;
    }
  }

  // What each hierarchy offers, before changing anything.
  Offer v2;
  if (locateOwnCgroup(mountinfo, self, "", v2.own_dir, v2.problem)) {
    const std::string file = v2.own_dir + "/cgroup.controllers";
    std::string controllers;
    if (int e = readFile(file, controllers)) {
      v2.problem = describeSyscallFailure("read(" + quoted(file) + ")", e, hintForCgroupAccess(e));
    } else {
      v2.memory = hasWord(controllers, "memory");
      v2.pids = hasWord(controllers, "pids");
      if (!v2.memory || !v2.pids) {
        v2.problem = file + " offers " + quoted(std::string(trim(controllers))) + ", without " +
                     (v2.memory ? "pids" : v2.pids ? "memory" : "memory and pids") +
                     ". Fix: the parent group must delegate them (`+memory +pids` in the "
                     "parent's cgroup.subtree_control; systemd `Delegate=yes`)";
      }
    }
  }
  Offer v1_memory, v1_pids;
  v1_memory.memory =
      locateOwnCgroup(mountinfo, self, "memory", v1_memory.own_dir, v1_memory.problem);
  v1_pids.pids = locateOwnCgroup(mountinfo, self, "pids", v1_pids.own_dir, v1_pids.problem);
  const int v1_count = int{v1_memory.memory} + int{v1_pids.pids};

  // A controller is bound to one hierarchy: take the one offering more (v2 on a tie).
  std::string v2_failure, v1_failure;
  const bool v2_first = v2.count() > 0 && v2.count() >= v1_count;
  if (v2_first) {
    if (setUpV2(v2, s)) return s;
    v2_failure = s.unavailable_reason;
    s = CgroupSupport{};
  }
  if (v1_count > 0) {
    if (setUpV1(v1_memory, v1_pids, s)) return s;
    v1_failure = s.unavailable_reason;
    s = CgroupSupport{};
  }
  if (!v2_first && v2.count() > 0) {
    if (setUpV2(v2, s)) return s;
    v2_failure = s.unavailable_reason;
    s = CgroupSupport{};
  }
  if (v2_failure.empty() && v2.count() == 0) v2_failure = "cgroup v2: " + v2.problem;
  if (v1_count == 0) {
    v1_failure = "cgroup v1: neither memory nor pids is mounted as a v1 hierarchy";
  }
  s.unavailable_reason = "no usable cgroup (memory or pids): " + v2_failure + "; " + v1_failure;
  if (s.unavailable_reason.find("Fix:") == std::string::npos) {
    s.unavailable_reason += std::string(". Fix: ") + kWritableCgroupFix;
  }
  return s;
}

bool validRunName(const std::string& name) {
  if (name.empty() || name.size() > 200 || name[0] == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-' || c == ':' || c == '@';
  });
}

}  // namespace

bool CgroupSupport::has(std::string_view facility) const {
  return std::find(facilities.begin(), facilities.end(), facility) != facilities.end();
}

const CgroupSupport& cgroupSupport() {
  static const CgroupSupport support = probe();  // thread-safe initialisation
  return support;
}

// ---- RunCgroup ----

std::unique_ptr<RunCgroup> RunCgroup::create(const std::string& name, const CgroupLimits& limits,
                                             std::string& problem) {
  const CgroupSupport& support = cgroupSupport();
  if (support.kind == CgroupSupport::Kind::kNone) {
    problem = support.unavailable_reason;
    return nullptr;
  }
  if (!validRunName(name)) {
    problem = "invalid run cgroup name " + quoted(name) +
              ": use 1 to 200 characters of [A-Za-z0-9._:@-], not starting with '.'";
    return nullptr;
  }
  if (limits.memory_bytes != 0 && support.memory_base.empty()) {
    problem = "a memory limit of " + std::to_string(limits.memory_bytes) +
              " bytes was asked for, but the memory controller is unavailable: " +
              support.unavailable_reason;
    return nullptr;
  }
  if (limits.max_processes != 0 && support.pids_base.empty()) {
    problem = "a limit of " + std::to_string(limits.max_processes) +
              " processes was asked for, but the pids controller is unavailable: " +
              support.unavailable_reason;
    return nullptr;
  }

  std::unique_ptr<RunCgroup> group(new RunCgroup);
  group->kind_ = support.kind;
  // On any failure below, `group` goes out of scope and its destructor removes what was made.
  auto makeGroup = [&](const std::string& base) -> std::string {
    const std::string dir = base + "/" + name;
    if (std::find(group->dirs_.begin(), group->dirs_.end(), dir) != group->dirs_.end()) return dir;
    int e = ::mkdir(dir.c_str(), 0755) == 0 ? 0 : errno;
    if (e == ENOENT && ::mkdir(base.c_str(), 0755) == 0) {
      // Someone removed the base group since the probe (a clean-up script): make it again.
      if (support.kind == CgroupSupport::Kind::kV2) {
        writeFile(base + "/cgroup.subtree_control",
                  !support.memory_base.empty() && !support.pids_base.empty() ? "+memory +pids"
                  : !support.memory_base.empty()                          ? "+memory"
                                                                          : "+pids");
      }
      e = ::mkdir(dir.c_str(), 0755) == 0 ? 0 : errno;
    }
    if (e != 0) {
      problem = describeSyscallFailure("mkdir(" + quoted(dir) + ")", e,
                        e == EEXIST ? "a group of that name exists: a live run uses the name, or a "
                                      "crashed agent left it behind (rmdir it once empty); give "
                                      "each run a unique name"
                                    : hintForCgroupAccess(e));
      return "";
    }
    group->dirs_.push_back(dir);
    group->pending_.push_back(dir);
    return dir;
  };
  auto set = [&](const std::string& dir, const char* file, const std::string& value,
                 const char* fix) {
    const std::string path = dir + "/" + file;
    if (int e = writeFile(path, value)) {
      std::string hint = hintForCgroupAccess(e);
      if (e == EINVAL && fix) hint = fix;
      problem = describeSyscallFailure(writeCall(path, value), e, hint);
      return false;
    }
    return true;
  };
  const std::string memory_bytes = std::to_string(limits.memory_bytes);
  const std::string max_processes = std::to_string(limits.max_processes);

  if (support.kind == CgroupSupport::Kind::kV2) {
    const std::string dir = makeGroup(support.memory_base.empty() ? support.pids_base
                                                                  : support.memory_base);
    if (dir.empty()) return nullptr;
    if (!support.memory_base.empty()) group->memory_dir_ = dir;
    if (!support.pids_base.empty()) group->pids_dir_ = dir;
    if (limits.memory_bytes != 0) {
      if (!set(dir, "memory.max", memory_bytes, "the memory limit is not a valid byte count")) {
        return nullptr;
      }
      // Without this the kernel swaps the run out instead of OOM-killing it at the limit.
      if (exists(dir + "/memory.swap.max") && !set(dir, "memory.swap.max", "0", nullptr)) {
        return nullptr;
      }
    }
    if (limits.max_processes != 0 &&
        !set(dir, "pids.max", max_processes, "the process limit is out of range")) {
      return nullptr;
    }
    return group;
  }

  // v1: one group per controller hierarchy.
  if (!support.memory_base.empty()) {
    const std::string dir = makeGroup(support.memory_base);
    if (dir.empty()) return nullptr;
    group->memory_dir_ = dir;
    // oom_kill_disable is inherited from the parent; with 1 a run at its limit would hang in
    // the kernel instead of being OOM-killed.
    if (!set(dir, "memory.oom_control", "0", nullptr)) return nullptr;
    std::string oom_control;
    readFile(dir + "/memory.oom_control", oom_control);
    if (keyedValue(oom_control, "oom_kill_disable") != 0) {
      problem = dir + "/memory.oom_control still says oom_kill_disable 1 after writing 0: a run "
                      "at its memory limit would hang instead of being OOM-killed";
      return nullptr;
    }
    if (limits.memory_bytes != 0) {
      if (!set(dir, "memory.limit_in_bytes", memory_bytes,
               "the memory limit is not a valid byte count")) {
        return nullptr;
      }
      // memsw counts memory + swap: without it the run could swap past its limit. It must be
      // set after (and never below) memory.limit_in_bytes.
      if (exists(dir + "/memory.memsw.limit_in_bytes") &&
          !set(dir, "memory.memsw.limit_in_bytes", memory_bytes, nullptr)) {
        return nullptr;
      }
    }
  }
  if (!support.pids_base.empty()) {
    const std::string dir = makeGroup(support.pids_base);
    if (dir.empty()) return nullptr;
    group->pids_dir_ = dir;
    if (limits.max_processes != 0 &&
        !set(dir, "pids.max", max_processes, "the process limit is out of range")) {
      return nullptr;
    }
  }
  return group;
}

RunCgroup::~RunCgroup() {
  try {
    std::string ignored;
    destroy(ignored);
  } catch (...) {
  }
}

int RunCgroup::attach(pid_t pid) {
  const std::string text = std::to_string(pid);
  for (const std::string& dir : dirs_) {
    if (int e = writeFile(dir + "/cgroup.procs", text)) {
      attach_failed_dir_ = dir;
      return e;
    }
  }
  return 0;
}

std::string RunCgroup::describeAttachFailure(pid_t pid, int error) const {
  const std::string dir = attach_failed_dir_.empty() && !dirs_.empty() ? dirs_.front()
                                                                       : attach_failed_dir_;
  std::string hint;
  if (error == ESRCH) {
    hint = "the process exited before it was attached";
  } else if (error == EBUSY) {
    hint = "the group has controllers enabled for children, so it cannot hold processes";
  } else {
    hint = hintForCgroupAccess(error);
  }
  return describeSyscallFailure(writeCall(dir + "/cgroup.procs", std::to_string(pid)), error, hint);
}

RunCgroup::Usage RunCgroup::usage() const {
  Usage usage;
  if (kind_ == CgroupSupport::Kind::kV2) {
    if (!memory_dir_.empty()) {
      usage.oom_kills = keyedValueOfFile(memory_dir_ + "/memory.events", "oom_kill");
      usage.memory_peak_bytes = numberOfFile(memory_dir_ + "/memory.peak");  // kernel >= 5.19
    }
  } else if (!memory_dir_.empty()) {
    usage.oom_kills = keyedValueOfFile(memory_dir_ + "/memory.oom_control", "oom_kill");
    usage.memory_peak_bytes = numberOfFile(memory_dir_ + "/memory.max_usage_in_bytes");
  }
  if (!pids_dir_.empty()) {
    usage.pids_limit_hits = keyedValueOfFile(pids_dir_ + "/pids.events", "max");
  }
  return usage;
}

std::vector<int> RunCgroup::listProcesses() const {
  std::vector<int> pids;
  std::string text;
  for (const std::string& dir : dirs_) {
    if (readFile(dir + "/cgroup.procs", text) != 0) continue;
    for (std::string_view line : split(text, '\n')) {
      uint64_t pid;
      if (parseUint(line, pid) && pid > 0 && pid < (1u << 30)) pids.push_back(static_cast<int>(pid));
    }
  }
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  // Never the agent itself, whatever a run did to the groups.
  pids.erase(std::remove(pids.begin(), pids.end(), static_cast<int>(::getpid())), pids.end());
  return pids;
}

namespace {

// SIGKILLs `listed` without ever hitting a recycled pid: a pidfd pins the process it was opened
// for, and a pid still listed after the pidfds are open belongs to that same process (or that
// process is dead and the signal fails harmlessly).
template <typename Relist>
void killListed(const std::vector<int>& listed, Relist relist) {
  std::vector<std::pair<int, UniqueFd>> pidfds;
  for (int pid : listed) {
    UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (fd.valid()) {
      pidfds.emplace_back(pid, std::move(fd));
    } else if (errno == ENOSYS) {
      ::kill(pid, SIGKILL);  // kernel < 5.3: a pid recycled in this instant could be hit
    }
  }
  if (pidfds.empty()) return;
  const std::vector<int> still = relist();
  for (auto& [pid, fd] : pidfds) {
    if (!std::binary_search(still.begin(), still.end(), pid)) continue;
    if (::syscall(SYS_pidfd_send_signal, fd.get(), SIGKILL, nullptr, 0) != 0 && errno == ENOSYS) {
      ::kill(pid, SIGKILL);
    }
  }
}

}  // namespace

bool RunCgroup::killAll() {
  if (pending_.empty()) return true;
  const auto give_up_at = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  // cgroup.kill (v2, kernel >= 5.14) kills atomically, even a process forking right now.
  std::string kill_file;
  if (kind_ == CgroupSupport::Kind::kV2 && exists(dirs_.front() + "/cgroup.kill")) {
    kill_file = dirs_.front() + "/cgroup.kill";
  }
  long nap_ns = 100'000;
  for (;;) {
    const std::vector<int> pids = listProcesses();
    if (pids.empty()) return true;  // zombies are not listed: exited processes leave at once
    if (kill_file.empty() || writeFile(kill_file, "1") != 0) {
      kill_file.clear();
      // Without cgroup.kill a process may fork between listing and killing: hence the rounds.
      killListed(pids, [this] { return listProcesses(); });
    }
    if (std::chrono::steady_clock::now() >= give_up_at) return false;
    const timespec nap{0, nap_ns};
    ::nanosleep(&nap, nullptr);
    nap_ns = std::min(nap_ns * 2, 10'000'000L);
  }
}

bool RunCgroup::destroy(std::string& problem) {
  problem.clear();
  if (pending_.empty()) return true;
  const bool emptied = killAll();
  std::string survivors;
  if (!emptied) {
    for (int pid : listProcesses()) survivors += (survivors.empty() ? "" : " ") + std::to_string(pid);
  }
  bool ok = true;
  // Reverse creation order; each is a leaf.
  for (auto it = pending_.rbegin(); it != pending_.rend();) {
    const std::string& dir = *it;
    const auto give_up_at = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    long nap_ns = 100'000;
    int e = 0;
    for (;;) {
      e = ::rmdir(dir.c_str()) == 0 ? 0 : errno;
      if (e == ENOENT) e = 0;
      // EBUSY: a killed process has not left yet.
      if (e != EBUSY || std::chrono::steady_clock::now() >= give_up_at) break;
      const timespec nap{0, nap_ns};
      ::nanosleep(&nap, nullptr);
      nap_ns = std::min(nap_ns * 2, 50'000'000L);
    }
    if (e == 0) {
      it = decltype(it)(pending_.erase(std::next(it).base()));
      continue;
    }
    ok = false;
    problem += (problem.empty() ? "" : "; ") +
               describeSyscallFailure("rmdir(" + quoted(dir) + ")", e,
                       e == EBUSY ? (emptied ? "a process is still leaving the group; retry later"
                                             : "processes " + survivors +
                                                   " survived SIGKILL (stuck in uninterruptible "
                                                   "sleep?); retry later")
                                  : hintForCgroupAccess(e));
    ++it;
  }
  return ok;
}

}  // namespace sandbox::internal

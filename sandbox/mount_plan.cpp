#include "sandbox/mount_plan.h"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace sandbox {

const char* tierName(Tier tier) {
  switch (tier) {
    case Tier::kNone: return "none";
    case Tier::kLandlock: return "landlock";
    case Tier::kNamespaces: return "namespaces";
  }
  return "unknown";
}

std::vector<std::string> systemReadOnlyPaths() {
  return {"/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32",
          "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
          "/etc/ssl", "/etc/ca-certificates", "/etc/ca-certificates.conf", "/etc/pki",
          "/etc/resolv.conf", "/etc/host.conf", "/etc/gai.conf", "/etc/localtime",
          "/etc/services", "/etc/protocols", "/etc/mime.types"};
}

namespace internal {

namespace {

constexpr unsigned long kReadOnlyFlags = MS_RDONLY | MS_NOSUID | MS_NODEV;

bool isUnder(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

std::string flagNames(unsigned long flags) {
  std::string out;
  auto add = [&](unsigned long bit, const char* name) {
    if (flags & bit) out += (out.empty() ? "" : "|") + std::string(name);
  };
  add(MS_REMOUNT, "MS_REMOUNT");
  add(MS_BIND, "MS_BIND");
  add(MS_REC, "MS_REC");
  add(MS_PRIVATE, "MS_PRIVATE");
  add(MS_RDONLY, "MS_RDONLY");
  add(MS_NOSUID, "MS_NOSUID");
  add(MS_NODEV, "MS_NODEV");
  add(MS_NOEXEC, "MS_NOEXEC");
  return out.empty() ? "0" : out;
}

std::string quotedOrNull(const char* s) { return s ? "\"" + std::string(s) + "\"" : "NULL"; }

}  // namespace

const char* MountPlan::keep(std::string text) {
  strings_.push_back(std::move(text));
  return strings_.back().c_str();
}

void MountPlan::makeParents(const std::string& inside_path) {
  // Every missing directory from the root down, each once.
  for (size_t slash = inside_path.find('/', 1); ; slash = inside_path.find('/', slash + 1)) {
    const std::string dir = inside_path.substr(0, slash);
    if (!dir.empty() && std::find(made_dirs_.begin(), made_dirs_.end(), dir) == made_dirs_.end()) {
      made_dirs_.push_back(dir);
      add({MountOp::Kind::kMakeDir, nullptr, keep(inRoot(dir)), 0, nullptr, 0, 0755});
    }
    if (slash == std::string::npos) break;
  }
}

void MountPlan::bindAt(const std::string& host_path, const std::string& inside_path, bool read_only) {
  struct stat st {};
  if (::stat(host_path.c_str(), &st) != 0) return;  // nothing to expose
  const size_t last_slash = inside_path.rfind('/');
  if (last_slash > 0) makeParents(inside_path.substr(0, last_slash));
  const char* target = keep(inRoot(inside_path));
  if (S_ISDIR(st.st_mode)) {
    if (std::find(made_dirs_.begin(), made_dirs_.end(), inside_path) == made_dirs_.end()) {
      made_dirs_.push_back(inside_path);
      add({MountOp::Kind::kMakeDir, nullptr, target, 0, nullptr, 0, 0755});
    }
  } else {
    add({MountOp::Kind::kMakeFile, nullptr, target, 0, nullptr, 0, 0644});
  }
  // Not MS_REC: a submount below a source (another filesystem) stays out, and nothing it
  // holds could keep write access past the read-only remount of the top mount.
  add({MountOp::Kind::kBind, keep(host_path), target, MS_BIND, nullptr, 0, 0});
  if (read_only) add({MountOp::Kind::kRemountBind, nullptr, target, kReadOnlyFlags, nullptr, 0, 0});
}

void MountPlan::exposeReadOnly(const std::string& host_path) {
  struct stat st {};
  if (::lstat(host_path.c_str(), &st) != 0) return;
  if (S_ISLNK(st.st_mode)) {
    // Merged /usr: /bin -> usr/bin. A relative link is recreated as is (its target is in the
    // list too); an absolute one is followed and its target bound here.
    char target[4096];
    ssize_t n = ::readlink(host_path.c_str(), target, sizeof target - 1);
    if (n > 0 && target[0] != '/') {
      target[n] = '\0';
      const size_t last_slash = host_path.rfind('/');
      if (last_slash > 0) makeParents(host_path.substr(0, last_slash));
      add({MountOp::Kind::kSymlink, keep(target), keep(inRoot(host_path)), 0, nullptr, 0, 0});
      return;
    }
  }
  bindAt(host_path, host_path, true);
}

MountPlan::MountPlan(const FilesystemView& view, const std::string& new_root) : root_(new_root) {
  using K = MountOp::Kind;
  add({K::kMakeRootPrivate, nullptr, "/", MS_REC | MS_PRIVATE, nullptr, 0, 0});
  add({K::kMountTmpfs, "tmpfs", keep(root_), MS_NOSUID | MS_NODEV, "size=16m,nr_inodes=4096,mode=0755", 0, 0});

  // Read-only paths, outermost first; one already covered by an earlier bind needs nothing.
  std::vector<std::string> read_only = view.read_only;
  std::sort(read_only.begin(), read_only.end());
  std::vector<std::string> exposed;
  for (const auto& path : read_only) {
    if (path.empty() || path.front() != '/') continue;
    if (std::any_of(exposed.begin(), exposed.end(), [&](const std::string& d) { return isUnder(path, d); })) continue;
    exposed.push_back(path);
    exposeReadOnly(path);
  }
  bool has_tmp = false;
  for (const auto& bind : view.writable) {
    bindAt(bind.host, bind.inside, false);
    if (bind.inside == "/tmp") has_tmp = true;
  }
  for (const auto& overlay : view.overlays) {
    makeParents(overlay.inside);
    made_dirs_.push_back(overlay.inside);
    add({K::kMountOverlay, "overlay", keep(inRoot(overlay.inside)), MS_NOSUID | MS_NODEV,
         keep("lowerdir=" + overlay.lower + ",upperdir=" + overlay.upper + ",workdir=" + overlay.work), 0, 0});
  }
  if (!has_tmp) {
    makeParents("/tmp");
    const uint64_t bytes = view.tmp_bytes ? view.tmp_bytes : 64ull << 20;
    add({K::kMountTmpfs, "tmpfs", keep(inRoot("/tmp")), MS_NOSUID | MS_NODEV,
         keep("size=" + std::to_string(bytes) + ",mode=1777"), 0, 0});
  }

  // A fresh /proc: this pid namespace's processes only.
  makeParents("/proc");
  add({K::kMountProc, "proc", keep(inRoot("/proc")), MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, 0, 0});

  // A minimal /dev: the five character devices a build uses, bound from the host (a user
  // namespace could not mknod them anyway), and the /proc/self/fd links.
  makeParents("/dev");
  add({K::kMountTmpfs, "tmpfs", keep(inRoot("/dev")), MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755", 0, 0});
  for (const char* device : {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}) {
    add({K::kMakeFile, nullptr, keep(inRoot(device)), 0, nullptr, 0, 0666});
    add({K::kBind, device, keep(inRoot(device)), MS_BIND, nullptr, 0, 0});
  }
  for (const auto& [link, target] : {std::pair{"/dev/fd", "/proc/self/fd"}, {"/dev/stdin", "/proc/self/fd/0"},
                                     {"/dev/stdout", "/proc/self/fd/1"}, {"/dev/stderr", "/proc/self/fd/2"}}) {
    add({K::kSymlink, target, keep(inRoot(link)), 0, nullptr, 0, 0});
  }
  add({K::kRemountBind, nullptr, keep(inRoot("/dev")), MS_RDONLY | MS_NOSUID | MS_NOEXEC, nullptr, 0, 0});

  // A minimal /etc: who the job is, and how names resolve (resolv.conf is bound above).
  makeParents("/etc");
  const std::string uid = std::to_string(Isolation::kInsideUid), gid = std::to_string(Isolation::kInsideGid);
  const std::string passwd = !view.etc_passwd.empty() ? view.etc_passwd
      : "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\njob:x:" + uid + ":" + gid + ":job:/job/home:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
  const std::string group = !view.etc_group.empty() ? view.etc_group
      : "root:x:0:\njob:x:" + gid + ":\nnogroup:x:65534:\n";
  for (const auto& [path, content] : {std::pair<std::string, std::string>{"/etc/passwd", passwd},
                                      {"/etc/group", group},
                                      {"/etc/hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"},
                                      {"/etc/hostname", "job\n"},
                                      {"/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n"}}) {
    if (std::find(exposed.begin(), exposed.end(), path) != exposed.end()) continue;
    const char* text = keep(content);
    add({K::kWriteFile, nullptr, keep(inRoot(path)), 0, text, content.size(), 0644});
  }

  // Nothing in the root itself is writable: the job writes only where a bind says so.
  add({K::kRemountBind, nullptr, keep(root_), MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr, 0, 0});
  add({K::kPivotRoot, nullptr, keep(root_), 0, nullptr, 0, 0});
}

std::string MountPlan::describe(size_t index) const {
  if (index >= ops_.size()) return "mount plan step " + std::to_string(index);
  const MountOp& op = ops_[index];
  const std::string target = quotedOrNull(op.target);
  switch (op.kind) {
    case MountOp::Kind::kMakeRootPrivate: return "mount(NULL, \"/\", NULL, MS_REC|MS_PRIVATE, NULL)";
    case MountOp::Kind::kMountTmpfs:
      return "mount(\"tmpfs\", " + target + ", \"tmpfs\", " + flagNames(op.flags) + ", " + quotedOrNull(op.data) + ")";
    case MountOp::Kind::kMakeDir: return "mkdir(" + target + ", 0755)";
    case MountOp::Kind::kMakeFile: return "open(" + target + ", O_CREAT|O_WRONLY)";
    case MountOp::Kind::kBind:
      return "mount(" + quotedOrNull(op.source) + ", " + target + ", NULL, " + flagNames(op.flags) + ", NULL)";
    case MountOp::Kind::kRemountBind:
      return "mount(NULL, " + target + ", NULL, " + flagNames(op.flags | MS_REMOUNT | MS_BIND) + ", NULL)";
    case MountOp::Kind::kSymlink: return "symlink(" + quotedOrNull(op.source) + ", " + target + ")";
    case MountOp::Kind::kWriteFile: return "write(" + target + ")";
    case MountOp::Kind::kMountProc:
      return "mount(\"proc\", " + target + ", \"proc\", " + flagNames(op.flags) + ", NULL)";
    case MountOp::Kind::kMountOverlay:
      return "mount(\"overlay\", " + target + ", \"overlay\", " + flagNames(op.flags) + ", " + quotedOrNull(op.data) + ")";
    case MountOp::Kind::kPivotRoot:
      return "pivot_root(" + target + ", " + target + ") then umount2(old root, MNT_DETACH)";
  }
  return "mount plan step " + std::to_string(index);
}

std::string MountPlan::hint(size_t index, int error) const {
  if (index >= ops_.size()) return "";
  const MountOp& op = ops_[index];
  if (error == EPERM || error == EACCES) {
    if (op.kind == MountOp::Kind::kMountProc) {
      return "a container runtime masks /proc (e.g. Docker's /proc/kcore, /proc/sys bind mounts), "
             "which forbids a fresh proc mount in a new namespace; run the container with "
             "--security-opt systempaths=unconfined, or use --sandbox=landlock";
    }
    return "mounting needs CAP_SYS_ADMIN; in a container run with --cap-add SYS_ADMIN and "
           "--security-opt seccomp=unconfined --security-opt apparmor=unconfined (or a seccomp "
           "profile allowing mount/pivot_root/unshare), or use --sandbox=landlock";
  }
  if (error == ENODEV && op.kind == MountOp::Kind::kMountOverlay) {
    return "the kernel has no overlay filesystem (modprobe overlay), or use --sandbox=landlock";
  }
  if (error == EINVAL && op.kind == MountOp::Kind::kMountOverlay) {
    return "overlayfs refused the layers: the upper and work directories must be on one filesystem "
           "that supports overlay upper layers (not another overlay or NFS)";
  }
  if (error == ENOENT && op.kind == MountOp::Kind::kBind) {
    return "the host path disappeared between planning and mounting; check the toolchain and state directory";
  }
  if (error == EINVAL && op.kind == MountOp::Kind::kPivotRoot) {
    return "pivot_root refuses when the current root is on a shared mount or in a chroot; run the agent outside a chroot";
  }
  return "";
}

namespace {

int writeAll(const char* path, const char* data, size_t length, unsigned mode) {
  int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return errno;
  while (length > 0) {
    ssize_t n = ::write(fd, data, length);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return err;
    }
    data += n;
    length -= static_cast<size_t>(n);
  }
  ::close(fd);
  return 0;
}

int pivotInto(const char* root) {
  // pivot_root(".", "."): the old root ends up stacked on the new one, and detaching it
  // leaves the new root alone; no directory for the old root is needed.
  if (::chdir(root) != 0) return errno;
  if (::syscall(SYS_pivot_root, ".", ".") != 0) return errno;
  if (::umount2(".", MNT_DETACH) != 0) return errno;
  if (::chdir("/") != 0) return errno;
  return 0;
}

int applyOne(const MountOp& op) {
  switch (op.kind) {
    case MountOp::Kind::kMakeRootPrivate:
      return ::mount(nullptr, "/", nullptr, op.flags, nullptr) == 0 ? 0 : errno;
    case MountOp::Kind::kMountTmpfs:
      return ::mount(op.source, op.target, "tmpfs", op.flags, op.data) == 0 ? 0 : errno;
    case MountOp::Kind::kMakeDir:
      return ::mkdir(op.target, op.mode) == 0 || errno == EEXIST ? 0 : errno;
    case MountOp::Kind::kMakeFile: {
      int fd = ::open(op.target, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, op.mode);
      if (fd < 0) return errno;
      ::close(fd);
      return 0;
    }
    case MountOp::Kind::kBind:
      return ::mount(op.source, op.target, nullptr, op.flags, nullptr) == 0 ? 0 : errno;
    case MountOp::Kind::kRemountBind:
      return ::mount(nullptr, op.target, nullptr, MS_REMOUNT | MS_BIND | op.flags, nullptr) == 0 ? 0 : errno;
    case MountOp::Kind::kSymlink:
      return ::symlink(op.source, op.target) == 0 ? 0 : errno;
    case MountOp::Kind::kWriteFile:
      return writeAll(op.target, op.data, op.data_length, op.mode);
    case MountOp::Kind::kMountProc:
      return ::mount(op.source, op.target, "proc", op.flags, nullptr) == 0 ? 0 : errno;
    case MountOp::Kind::kMountOverlay:
      return ::mount(op.source, op.target, "overlay", op.flags, op.data) == 0 ? 0 : errno;
    case MountOp::Kind::kPivotRoot:
      return pivotInto(op.target);
  }
  return EINVAL;
}

}  // namespace

int applyMountPlan(const MountPlan& plan, size_t* failed_index) noexcept {
  const auto& ops = plan.ops();
  for (size_t i = 0; i < ops.size(); ++i) {
    if (int err = applyOne(ops[i])) {
      *failed_index = i;
      return err;
    }
  }
  return 0;
}

}  // namespace internal
}  // namespace sandbox

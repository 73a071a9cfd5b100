#include "sandbox/job_volume.h"

#include <cerrno>
#include <cstring>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace sandbox {

namespace fs = std::filesystem;

namespace {

void chownTree(const fs::path& root, uid_t uid, gid_t gid) {
  ::lchown(root.c_str(), uid, gid);
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    ::lchown(it->path().c_str(), uid, gid);
  }
}

bool isMountPoint(const fs::path& dir) {
  struct stat self {}, parent {};
  if (::lstat(dir.c_str(), &self) != 0 || ::lstat(dir.parent_path().c_str(), &parent) != 0) return false;
  return self.st_dev != parent.st_dev;
}

}  // namespace

std::unique_ptr<JobVolume> JobVolume::create(const fs::path& dir, uint64_t bytes, uid_t uid, gid_t gid,
                                             std::string& problem) {
  const fs::path aside = dir.string() + ".unpacked";
  std::error_code ec;
  fs::rename(dir, aside, ec);
  if (ec) {
    problem = "rename(" + dir.string() + ", " + aside.string() + ") failed: " + ec.message();
    return nullptr;
  }
  fs::create_directory(dir, ec);
  const std::string options = "size=" + std::to_string(bytes) + ",mode=0755,uid=" + std::to_string(uid) +
                              ",gid=" + std::to_string(gid);
  if (ec || ::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
    const int err = ec ? ec.value() : errno;
    problem = "mount(\"tmpfs\", \"" + dir.string() + "\", \"tmpfs\", MS_NOSUID|MS_NODEV, \"" + options +
              "\") failed: " + std::strerror(err) +
              ". Fix: the job volume needs CAP_SYS_ADMIN in the agent's mount namespace; or set "
              "--job-disk-bytes 0 to let jobs write to the host disk";
    fs::remove(dir, ec);
    fs::rename(aside, dir, ec);
    return nullptr;
  }
  std::unique_ptr<JobVolume> volume(new JobVolume(dir, bytes));
  try {
    fs::copy(aside, dir, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
    chownTree(dir, uid, gid);
  } catch (const std::exception& e) {
    problem = std::string("copying the app into its job volume failed: ") + e.what();
    volume.reset();
    fs::remove_all(dir, ec);
    fs::rename(aside, dir, ec);
    return nullptr;
  }
  fs::remove_all(aside, ec);
  return volume;
}

JobVolume::~JobVolume() { ::umount2(dir_.c_str(), MNT_DETACH); }

uint64_t JobVolume::freeBytes() const {
  struct statvfs st {};
  if (::statvfs(dir_.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

bool JobVolume::nearlyFull() const {
  const uint64_t slack = std::max<uint64_t>(bytes_ / 100, 1ull << 20);
  return freeBytes() < slack;
}

bool JobVolume::unmountLeftover(const fs::path& dir) {
  if (!isMountPoint(dir)) return false;
  return ::umount2(dir.c_str(), MNT_DETACH) == 0;
}

}  // namespace sandbox

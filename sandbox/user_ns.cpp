#include "sandbox/user_ns.h"

#include <cerrno>
#include <fcntl.h>
#include <fstream>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox/isolation.h"

namespace sandbox::internal {

namespace {

int writeProcFile(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = n == static_cast<ssize_t>(text.size()) ? 0 : (n < 0 ? errno : EIO);
  ::close(fd);
  return err;
}

}  // namespace

int writeIdMaps(pid_t pid, uid_t host_uid, gid_t host_gid, std::string& what) {
  const std::string proc = "/proc/" + std::to_string(pid);
  what = proc + "/uid_map";
  if (int err = writeProcFile(what, std::to_string(Isolation::kInsideUid) + " " + std::to_string(host_uid) + " 1\n")) {
    return err;
  }
  what = proc + "/gid_map";
  return writeProcFile(what, std::to_string(Isolation::kInsideGid) + " " + std::to_string(host_gid) + " 1\n");
}

int lastCapability() {
  std::ifstream in("/proc/sys/kernel/cap_last_cap");
  int value = CAP_LAST_CAP;
  in >> value;
  return value > 0 && value < 64 ? value : CAP_LAST_CAP;
}

int dropSupplementaryGroups() noexcept {
  return ::syscall(SYS_setgroups, 0, nullptr) == 0 ? 0 : errno;
}

int becomeJobUser(uid_t uid, gid_t gid, int last_capability, const char** failed_call) noexcept {
  // Raw syscalls, not glibc's wrappers: those broadcast the change to every thread glibc
  // believes the process has, and a child cloned from the multi-threaded agent inherits that
  // belief (a thread caught mid-creation at the clone makes the broadcast wait forever).
  if (int err = dropSupplementaryGroups(); err != 0 && err != EPERM) {
    *failed_call = "setgroups(0, NULL)";
    return err;
  }
  if (::syscall(SYS_setresgid, gid, gid, gid) != 0) {
    *failed_call = "setresgid";
    return errno;
  }
  if (::syscall(SYS_setresuid, uid, uid, uid) != 0) {
    *failed_call = "setresuid";
    return errno;
  }
  // In a fresh user namespace the creator keeps a full capability set across setresuid (its
  // old uid was not the namespace's root), so every set is emptied explicitly.
  for (int cap = 0; cap <= last_capability; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL && errno != EPERM) {
      *failed_call = "prctl(PR_CAPBSET_DROP)";
      return errno;
    }
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    *failed_call = "prctl(PR_CAP_AMBIENT_CLEAR_ALL)";
    return errno;
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capset, &header, data) != 0) {
    *failed_call = "capset(all empty)";
    return errno;
  }
  return 0;
}

}  // namespace sandbox::internal

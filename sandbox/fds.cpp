#include "sandbox/fds.h"

#include <cerrno>
#include <cstdint>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace sandbox::internal {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

namespace {

// Moves `fd` to the lowest free number >= 3, keeping CLOEXEC.
int moveAboveStdio(UniqueFd& fd) {
  if (fd.get() >= 3) return 0;
  int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
  if (moved < 0) return errno;
  fd.reset(moved);
  return 0;
}

}  // namespace

int makePipe(Pipe& pipe) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) return errno;
  pipe.read_end.reset(ends[0]);
  pipe.write_end.reset(ends[1]);
  if (int err = moveAboveStdio(pipe.read_end)) return err;
  return moveAboveStdio(pipe.write_end);
}

int setNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return errno;
  return 0;
}

namespace {

int closeRange(unsigned first, unsigned last) {
  if (first > last) return 0;
  // The raw syscall rather than glibc's wrapper: the ENOSYS of an old kernel must reach us.
  if (::syscall(SYS_close_range, first, last, 0) == 0) return 0;
  return errno;
}

struct LinuxDirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

// Parses a decimal fd number; -1 for "." and "..".
int parseFdNumber(const char* name) {
  if (*name == '\0') return -1;
  int value = 0;
  for (; *name; ++name) {
    if (*name < '0' || *name > '9' || value > 100000000) return -1;
    value = value * 10 + (*name - '0');
  }
  return value;
}

}  // namespace

int closeFdsByListingProcSelfFd(int keep) {
  int dir = ::open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return errno;
  alignas(LinuxDirent64) char buffer[4096];
  for (;;) {
    long bytes = ::syscall(SYS_getdents64, dir, buffer, sizeof buffer);
    if (bytes < 0) {
      int err = errno;
      ::close(dir);
      return err;
    }
    if (bytes == 0) break;
    // Closing entries while listing is fine: /proc/self/fd positions are fd numbers.
    for (long offset = 0; offset < bytes;) {
      const auto* entry = reinterpret_cast<const LinuxDirent64*>(buffer + offset);
      offset += entry->d_reclen;
      int fd = parseFdNumber(entry->d_name);
      if (fd >= 3 && fd != keep && fd != dir) ::close(fd);
    }
  }
  ::close(dir);
  return 0;
}

int closeAllFdsExcept(int keep) {
  int err = closeRange(3, static_cast<unsigned>(keep) - 1);
  if (err == 0) err = closeRange(static_cast<unsigned>(keep) + 1, ~0U);
  if (err == ENOSYS) return closeFdsByListingProcSelfFd(keep);
  return err;
}

int closeAllFdsExceptThese(int* keep, size_t count) {
  // Insertion sort: tiny, in place, no allocation.
  for (size_t i = 1; i < count; ++i) {
    for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; --j) {
      int t = keep[j];
      keep[j] = keep[j - 1];
      keep[j - 1] = t;
    }
  }
  unsigned next = 3;
  for (size_t i = 0; i < count; ++i) {
    if (keep[i] < static_cast<int>(next)) continue;
    if (static_cast<unsigned>(keep[i]) > next) {
      if (int err = closeRange(next, static_cast<unsigned>(keep[i]) - 1)) return err;
    }
    next = static_cast<unsigned>(keep[i]) + 1;
  }
  return closeRange(next, ~0U);
}

}  // namespace sandbox::internal

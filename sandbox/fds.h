// File-descriptor plumbing for the process runner: an owning fd, pipes that stay clear of
// 0/1/2, and the async-signal-safe "close everything else" step of the child.
#pragma once

#include <cstddef>

namespace sandbox::internal {

// Owns one file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

struct Pipe {
  UniqueFd read_end;
  UniqueFd write_end;
};

// pipe2(O_CLOEXEC) whose two ends are both >= 3. The child dup2()s the write end onto 1 and 2;
// had the agent been started with stdio closed, pipe2 could hand out fd 1 or 2 and that dup2
// would clobber the pipe itself. CLOEXEC keeps the ends out of processes that other threads
// spawn concurrently. Returns 0 or an errno value.
int makePipe(Pipe& pipe);

int setNonBlocking(int fd);  // 0 or errno

// Closes every fd >= 3 except `keep` (which must be >= 3). Async-signal-safe: called between
// fork and exec. Uses close_range(2); on kernels without it (< 5.9) falls back to
// closeFdsByListingProcSelfFd. Returns 0 or an errno value.
int closeAllFdsExcept(int keep);

// Closes every fd >= 3 but the `count` ones in `keep` (sorted in place; entries < 3 ignored).
// Async-signal-safe; needs close_range(2) (Linux 5.9): the namespaces tier's PID 1 uses it.
int closeAllFdsExceptThese(int* keep, size_t count);

// The fallback: walks /proc/self/fd with raw getdents64 (opendir would malloc). Exposed for tests.
int closeFdsByListingProcSelfFd(int keep);

}  // namespace sandbox::internal

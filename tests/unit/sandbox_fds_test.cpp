// The fd helpers of the process runner, exercised in a forked child so that closing "every
// other fd" cannot disturb the test process.
#include "sandbox/fds.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using sandbox::internal::Pipe;

bool isOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

// Runs `body` in a forked child; the child's exit code is the number of failed checks.
template <typename Body>
int failedChecksInChild(Body body) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

TEST(SandboxFds, ProcSelfFdFallbackClosesEverythingButStdioAndTheKeptFd) {
  EXPECT_EQ(failedChecksInChild([] {
              const int kept = ::dup2(0, 40);
              const int doomed_low = ::dup2(0, 3);
              const int doomed_high = ::dup2(0, 900);
              if (kept != 40 || doomed_low != 3 || doomed_high != 900) return 100;
              if (sandbox::internal::closeFdsByListingProcSelfFd(kept) != 0) return 101;
              return int{!isOpen(0)} + !isOpen(1) + !isOpen(2) + !isOpen(kept) + isOpen(doomed_low) +
                     isOpen(doomed_high);
            }),
            0);
}

TEST(SandboxFds, CloseAllFdsExceptKeepsOnlyStdioAndTheKeptFd) {
  EXPECT_EQ(failedChecksInChild([] {
              const int kept = ::dup2(0, 41);
              const int doomed = ::dup2(0, 700);
              if (kept != 41 || doomed != 700) return 100;
              if (sandbox::internal::closeAllFdsExcept(kept) != 0) return 101;
              return int{!isOpen(0)} + !isOpen(1) + !isOpen(2) + !isOpen(kept) + isOpen(doomed);
            }),
            0);
}

TEST(SandboxFds, PipeEndsStayClearOfStdioEvenWhenStdioIsClosed) {
  EXPECT_EQ(failedChecksInChild([] {
              ::close(0);
              ::close(1);
              ::close(2);
              Pipe pipe;
              if (sandbox::internal::makePipe(pipe) != 0) return 100;
              const bool cloexec = (::fcntl(pipe.write_end.get(), F_GETFD) & FD_CLOEXEC) &&
                                   (::fcntl(pipe.read_end.get(), F_GETFD) & FD_CLOEXEC);
              return int{pipe.read_end.get() < 3} + (pipe.write_end.get() < 3) + !cloexec;
            }),
            0);
}

}  // namespace

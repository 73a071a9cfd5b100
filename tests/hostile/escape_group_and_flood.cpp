// Forks a grandchild that leaves the process group (setsid), so a group kill misses it, and
// writes to stdout (the runner's pipe) without end; the parent prints "escaped_pid=N" and
// exits 0. The grandchild dies of SIGPIPE once the reader closes the pipe.
#include <cstdio>
#include <cstring>
#include <unistd.h>

int main() {
  int printed[2];  // the grandchild floods only after the parent's line is out
  if (pipe(printed) != 0) return 1;
  pid_t grandchild = fork();
  if (grandchild < 0) return 1;
  if (grandchild == 0) {
    setsid();
    close(printed[1]);
    char ignored;
    (void)!read(printed[0], &ignored, 1);  // returns at EOF: the parent has printed and exited
    static char block[64 * 1024];
    std::memset(block, 'y', sizeof block);
    while (write(STDOUT_FILENO, block, sizeof block) > 0) {
    }
    _exit(0);
  }
  std::printf("escaped_pid=%d\n", static_cast<int>(grandchild));
  std::fflush(stdout);
  return 0;
}

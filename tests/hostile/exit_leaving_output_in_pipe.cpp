// Prints "pid=N", then enlarges its stdout pipe to 1 MiB, parks 512 KiB of 'x' in it with one
// write and exits at once: whoever reads the pipe finds most of the output there only after
// the process is gone.
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

int main() {
  char line[32];
  int length = std::snprintf(line, sizeof line, "pid=%d\n", static_cast<int>(getpid()));
  if (write(STDOUT_FILENO, line, static_cast<size_t>(length)) != length) return 1;
  // 1 MiB is fs.pipe-max-size by default, so this works without privileges.
  if (fcntl(STDOUT_FILENO, F_SETPIPE_SZ, 1 << 20) < 0) return 2;
  static char block[512 * 1024];
  std::memset(block, 'x', sizeof block);
  return write(STDOUT_FILENO, block, sizeof block) == static_cast<ssize_t>(sizeof block) ? 0 : 3;
}

// Writes argv[1] MiB (default 100) of 'x' to stdout as fast as it can; exits 0 if every byte
// was written.
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

int main(int argc, char** argv) {
  const long mebibytes = argc > 1 ? std::atol(argv[1]) : 100;
  static char block[1 << 20];
  std::memset(block, 'x', sizeof block);
  for (long i = 0; i < mebibytes; ++i) {
    for (size_t done = 0; done < sizeof block;) {
      ssize_t n = write(STDOUT_FILENO, block + done, sizeof block - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return 1;
      done += static_cast<size_t>(n);
    }
  }
  return 0;
}

// Writes argv[2] bytes to the file argv[1] (created or truncated). Exits 0 if all were
// written, 3 if a write failed (e.g. EFBIG once SIGXFSZ is ignored).
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 3) return 64;
  const long long total = std::atoll(argv[2]);
  int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    std::printf("open(%s) failed: %s\n", argv[1], std::strerror(errno));
    return 3;
  }
  static char block[64 * 1024];
  std::memset(block, 'w', sizeof block);
  long long written = 0;
  while (written < total) {
    size_t want = static_cast<size_t>(std::min<long long>(total - written, sizeof block));
    ssize_t n = write(fd, block, want);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::printf("write failed after %lld bytes: %s\n", written, std::strerror(errno));
      return 3;
    }
    written += n;
  }
  std::printf("wrote %lld bytes\n", written);
  return 0;
}

// Tries to fork argv[1] (default 1000) children that each sleep forever, then reports its
// RLIMIT_NPROC and how many forks succeeded and failed. Exits 0 without waiting for them.
#include <cstdio>
#include <cstdlib>
#include <sys/resource.h>
#include <unistd.h>

int main(int argc, char** argv) {
  const int attempts = argc > 1 ? std::atoi(argv[1]) : 1000;
  rlimit nproc{};
  getrlimit(RLIMIT_NPROC, &nproc);
  std::printf("rlimit_nproc=%llu\n", static_cast<unsigned long long>(nproc.rlim_cur));
  std::fflush(stdout);
  int ok = 0, failed = 0;
  for (int i = 0; i < attempts; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      for (;;) pause();
    }
    if (pid < 0) ++failed; else ++ok;
  }
  std::printf("forks_ok=%d forks_failed=%d\n", ok, failed);
  return 0;
}

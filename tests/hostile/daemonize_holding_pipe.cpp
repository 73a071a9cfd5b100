// Forks a grandchild that stays in the process group, keeps stdout (the runner's pipe) open
// and sleeps forever; the parent prints the grandchild's pid and exits 0 at once.
#include <cstdio>
#include <unistd.h>

int main() {
  pid_t grandchild = fork();
  if (grandchild < 0) return 1;
  if (grandchild == 0) {
    for (;;) pause();
  }
  std::printf("grandchild_pid=%d\n", static_cast<int>(grandchild));
  return 0;
}

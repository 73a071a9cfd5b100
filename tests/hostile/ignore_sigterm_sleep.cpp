// Ignores SIGTERM (and SIGINT, SIGHUP), prints "ready pid=N" and sleeps forever: only SIGKILL
// stops it.
#include <csignal>
#include <cstdio>
#include <unistd.h>

int main() {
  std::signal(SIGTERM, SIG_IGN);
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGHUP, SIG_IGN);
  std::printf("ready pid=%d\n", static_cast<int>(getpid()));
  std::fflush(stdout);
  for (;;) pause();
}

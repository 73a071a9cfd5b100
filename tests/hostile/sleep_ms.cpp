// Prints "sleeping N ms", sleeps argv[1] milliseconds, prints "done".
#include <cstdio>
#include <cstdlib>
#include <ctime>

int main(int argc, char** argv) {
  const long ms = argc > 1 ? std::atol(argv[1]) : 0;
  std::printf("sleeping %ld ms\n", ms);
  std::fflush(stdout);
  timespec duration{ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&duration, &duration) != 0) {
  }
  std::printf("done\n");
  return 0;
}

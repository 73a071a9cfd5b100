// Writes one line to stdout, then one to stderr (unbuffered, in that order), then exits with
// the code given as argv[1].
#include <cstdlib>
#include <unistd.h>

int main(int argc, char** argv) {
  const char out[] = "to stdout\n";
  const char err[] = "to stderr\n";
  (void)!write(STDOUT_FILENO, out, sizeof out - 1);
  (void)!write(STDERR_FILENO, err, sizeof err - 1);
  return argc > 1 ? std::atoi(argv[1]) : 0;
}

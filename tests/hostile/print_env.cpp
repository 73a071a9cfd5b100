// Prints its whole environment, one NAME=value per line.
#include <cstdio>
#include <unistd.h>

int main() {
  for (char** entry = environ; *entry; ++entry) std::puts(*entry);
  return 0;
}

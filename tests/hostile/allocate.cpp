// Allocates argv[1] MiB and touches every page. Exits 0 on success, 2 if allocation failed.
#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  const size_t bytes = static_cast<size_t>(argc > 1 ? std::atol(argv[1]) : 0) << 20;
  // volatile: the compiler may otherwise drop an allocation whose contents are never read.
  volatile char* memory = static_cast<volatile char*>(std::malloc(bytes));
  if (!memory) {
    std::printf("allocation of %zu bytes failed\n", bytes);
    return 2;
  }
  for (size_t i = 0; i < bytes; i += 4096) memory[i] = 1;
  std::printf("allocated and touched %zu bytes\n", bytes);
  std::free(const_cast<char*>(memory));
  return 0;
}

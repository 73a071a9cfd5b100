// Lists its open file descriptors: first "listing_fd=N" (the fd it opened to read
// /proc/self/fd), then one "fd=N -> target" line per entry.
#include <climits>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <unistd.h>

int main() {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return 1;
  std::printf("listing_fd=%d\n", dirfd(dir));
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    char link[300], target[PATH_MAX] = {};
    std::snprintf(link, sizeof link, "/proc/self/fd/%s", entry->d_name);
    if (readlink(link, target, sizeof target - 1) < 0) std::strcpy(target, "?");
    std::printf("fd=%s -> %s\n", entry->d_name, target);
  }
  closedir(dir);
  return 0;
}

// Prints what the runner's child setup should have established, one "key=value" per line:
// pid, pgid, sid, parent-death signal, blocked and ignored signal masks, resource limits.
#include <cstdio>
#include <cstring>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace {

void printLimit(const char* name, int resource) {
  rlimit limit{};
  getrlimit(resource, &limit);
  if (limit.rlim_cur == RLIM_INFINITY) std::printf("%s=unlimited\n", name);
  else std::printf("%s=%llu\n", name, static_cast<unsigned long long>(limit.rlim_cur));
}

void printStatusLine(const char* key) {  // e.g. "SigBlk:\t0000000000000000" from /proc/self/status
  FILE* status = std::fopen("/proc/self/status", "r");
  if (!status) return;
  char line[256];
  const size_t key_length = std::strlen(key);
  while (std::fgets(line, sizeof line, status)) {
    if (std::strncmp(line, key, key_length) == 0 && line[key_length] == ':') {
      char* value = line + key_length + 1;
      while (*value == '\t' || *value == ' ') ++value;
      std::printf("%s=%s", key, value);
    }
  }
  std::fclose(status);
}

}  // namespace

int main() {
  std::printf("pid=%d\n", getpid());
  std::printf("pgid=%d\n", getpgid(0));
  std::printf("sid=%d\n", getsid(0));
  int death_signal = 0;
  prctl(PR_GET_PDEATHSIG, &death_signal);
  std::printf("pdeathsig=%d\n", death_signal);
  printStatusLine("SigBlk");
  printStatusLine("SigIgn");
  printLimit("core", RLIMIT_CORE);
  printLimit("cpu", RLIMIT_CPU);
  printLimit("as", RLIMIT_AS);
  printLimit("fsize", RLIMIT_FSIZE);
  printLimit("nofile", RLIMIT_NOFILE);
  printLimit("nproc", RLIMIT_NPROC);
  return 0;
}

// Tries each escape its arguments name, the way code from a malicious npm package would, and
// prints one line per attempt: "<attempt> ok" or "<attempt> <ERRNO NAME>". Always exits 0, so
// the test judges the lines, not the exit code.
//   read:PATH     open and read a byte          list:PATH    read a directory
//   write:PATH    create or open for writing    mknod:PATH   make /dev/null's twin
//   signal:PID    kill(PID, SIGCONT)            ptrace:PID   PTRACE_ATTACH
//   unshare       unshare(CLONE_NEWUSER)        mount        mount a tmpfs on /tmp
//   fill:PATH     write until a write fails; prints the bytes written
//   daemon:TOKEN  fork a child that calls setsid() and sleeps forever as "TOKEN"
//   sleep:TOKEN   (used by daemon) sleep forever
//   connect:PORT  TCP connect to 127.0.0.1:PORT
//   udp:PORT      send a datagram to 127.0.0.1:PORT (DNS as a channel uses UDP)
//   resolve:NAME  getaddrinfo(NAME): prints "ok" only if it resolved
//   proxy:HOST:PORT  CONNECT HOST:PORT through $HTTPS_PROXY (http://127.0.0.1:P); prints
//                 "ok" for a 200, else the status line's code as "HTTP<code>" or the errno
//   id            print uid, gid and the capability sets
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sched.h>
#include <string>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

namespace {

void report(const std::string& attempt, bool ok, int error) {
  std::printf("%s %s\n", attempt.c_str(), ok ? "ok" : strerrorname_np(error));
  std::fflush(stdout);
}

void attempt(const std::string& arg, const char* self) {
  const size_t colon = arg.find(':');
  const std::string verb = arg.substr(0, colon);
  const std::string value = colon == std::string::npos ? "" : arg.substr(colon + 1);
  if (verb == "read") {
    int fd = open(value.c_str(), O_RDONLY);
    char byte;
    bool ok = fd >= 0 && read(fd, &byte, 1) >= 0;
    int error = errno;
    if (fd >= 0) close(fd);
    report(arg, ok, error);
  } else if (verb == "list") {
    DIR* dir = opendir(value.c_str());
    bool ok = dir && readdir(dir) != nullptr;
    int error = errno;
    if (dir) closedir(dir);
    report(arg, ok, error);
  } else if (verb == "write") {
    int fd = open(value.c_str(), O_WRONLY | O_CREAT, 0644);
    bool ok = fd >= 0 && write(fd, "x", 1) == 1;
    int error = errno;
    if (fd >= 0) close(fd);
    report(arg, ok, error);
  } else if (verb == "mknod") {
    report(arg, mknod(value.c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0, errno);
  } else if (verb == "signal") {
    report(arg, kill(std::atoi(value.c_str()), SIGCONT) == 0, errno);
  } else if (verb == "ptrace") {
    report(arg, ptrace(PTRACE_ATTACH, std::atoi(value.c_str()), nullptr, nullptr) == 0, errno);
  } else if (verb == "connect") {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(std::atoi(value.c_str())));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    int error = errno;
    if (fd >= 0) close(fd);
    report(arg, ok, error);
  } else if (verb == "udp") {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int error = errno;
    bool ok = false;
    if (fd >= 0) {
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(static_cast<uint16_t>(std::atoi(value.c_str())));
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ok = sendto(fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&address), sizeof address) == 1;
      error = errno;
      close(fd);
    }
    report(arg, ok, error);
  } else if (verb == "resolve") {
    addrinfo* found = nullptr;
    const int rc = getaddrinfo(value.c_str(), "443", nullptr, &found);
    if (found) freeaddrinfo(found);
    std::printf("%s %s\n", arg.c_str(), rc == 0 ? "ok" : "EAI");
    std::fflush(stdout);
  } else if (verb == "proxy") {
    // The proxy's port from HTTPS_PROXY=http://127.0.0.1:P, as any program in the job finds it.
    const char* proxy = std::getenv("HTTPS_PROXY");
    const char* port_text = proxy ? std::strrchr(proxy, ':') : nullptr;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port_text ? std::atoi(port_text + 1) : 0));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      report(arg, false, errno);
      if (fd >= 0) close(fd);
      return;
    }
    const std::string request = "CONNECT " + value + " HTTP/1.1\r\nHost: " + value + "\r\n\r\n";
    (void)!write(fd, request.data(), request.size());
    char answer[64] = {};
    const ssize_t got = read(fd, answer, sizeof answer - 1);
    close(fd);
    const std::string status = got > 12 ? std::string(answer + 9, 3) : "none";
    std::printf("%s %s\n", arg.c_str(), status == "200" ? "ok" : ("HTTP" + status).c_str());
    std::fflush(stdout);
  } else if (verb == "unshare") {
    report(arg, unshare(CLONE_NEWUSER) == 0, errno);
  } else if (verb == "mount") {
    report(arg, mount("tmpfs", "/tmp", "tmpfs", 0, nullptr) == 0, errno);
  } else if (verb == "fill") {
    int fd = open(value.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    static char block[1 << 16];
    long long written = 0;
    int error = 0;
    if (fd < 0) {
      error = errno;
    } else {
      for (;;) {
        ssize_t n = write(fd, block, sizeof block);
        if (n <= 0) {
          error = errno;
          break;
        }
        written += n;
      }
      close(fd);
    }
    std::printf("%s %s %lld\n", arg.c_str(), strerrorname_np(error), written);
    std::fflush(stdout);
  } else if (verb == "daemon") {
    pid_t child = fork();
    if (child == 0) {
      setsid();
      execl(self, self, ("sleep:" + value).c_str(), static_cast<char*>(nullptr));
      _exit(1);
    }
    report(arg, child > 0, errno);
  } else if (verb == "sleep") {
    for (;;) pause();
  } else if (verb == "id") {
    std::printf("uid=%d gid=%d\n", static_cast<int>(getuid()), static_cast<int>(getgid()));
    FILE* status = fopen("/proc/self/status", "r");
    char line[256];
    while (status && fgets(line, sizeof line, status)) {
      if (std::strncmp(line, "Cap", 3) == 0) std::fputs(line, stdout);
    }
    if (status) fclose(status);
    std::fflush(stdout);
  } else {
    std::printf("%s unknown\n", arg.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGXFSZ, SIG_IGN);  // a file size limit shows as EFBIG, not a death
  for (int i = 1; i < argc; ++i) attempt(argv[i], argv[0]);
  return 0;
}

#include "sandbox/net_ns.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include "sandbox/syscall_error.h"

namespace sandbox {

namespace {

using internal::describeSyscallFailure;
using internal::UniqueFd;

constexpr const char* kNeedsRootFix =
    "run the agent as root (in a container: --cap-add SYS_ADMIN --cap-add NET_ADMIN, or a seccomp "
    "profile that allows unshare(CLONE_NEWNET)), or choose --sandbox=landlock";

// A new namespace's loopback is down: connect() to 127.0.0.1 would fail with ENETUNREACH.
std::string bringLoopbackUp() {
  UniqueFd control(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!control.valid()) return describeSyscallFailure("socket(AF_INET, SOCK_DGRAM) for SIOCSIFFLAGS", errno, "");
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(control.get(), SIOCGIFFLAGS, &request) != 0) {
    return describeSyscallFailure("ioctl(SIOCGIFFLAGS, \"lo\")", errno, "");
  }
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP | IFF_RUNNING);
  if (::ioctl(control.get(), SIOCSIFFLAGS, &request) != 0) {
    return describeSyscallFailure("ioctl(SIOCSIFFLAGS, \"lo\", IFF_UP)", errno, kNeedsRootFix);
  }
  return "";
}

// socket + bind(127.0.0.1:port) + listen in the calling thread's namespace.
std::string listenOnLoopback(uint16_t port, LoopbackNetwork& out) {
  out.listener = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!out.listener.valid()) return describeSyscallFailure("socket(AF_INET, SOCK_STREAM)", errno, "");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(out.listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    return describeSyscallFailure("bind(127.0.0.1:" + std::to_string(port) + ")", errno, "");
  }
  if (::listen(out.listener.get(), 128) != 0) return describeSyscallFailure("listen(127.0.0.1)", errno, "");
  socklen_t length = sizeof address;
  if (::getsockname(out.listener.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return describeSyscallFailure("getsockname(listener)", errno, "");
  }
  out.port = ntohs(address.sin_port);
  return "";
}

}  // namespace

std::optional<LoopbackNetwork> createLoopbackNetwork(uint16_t port, std::string& error) {
  LoopbackNetwork network;
  // The checklist runs on a thread of its own, which ends in the new namespace: no thread of
  // the agent ever has to find its way back to the host's.
  std::thread builder([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      error = describeSyscallFailure("unshare(CLONE_NEWNET)", errno, kNeedsRootFix);
      return;
    }
    network.netns = UniqueFd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!network.netns.valid()) {
      error = describeSyscallFailure("open(\"/proc/thread-self/ns/net\")", errno, "mount /proc in the agent's container");
      return;
    }
    if (error = bringLoopbackUp(); !error.empty()) return;
    error = listenOnLoopback(port, network);
  });
  builder.join();
  if (!error.empty()) return std::nullopt;
  return network;
}

std::optional<LoopbackNetwork> listenOnHostLoopback(std::string& error) {
  LoopbackNetwork network;
  if (error = listenOnLoopback(0, network); !error.empty()) return std::nullopt;
  return network;
}

}  // namespace sandbox

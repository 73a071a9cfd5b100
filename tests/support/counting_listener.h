// A TCP port on 127.0.0.1 that nobody serves: the kernel completes connections into its
// backlog, and accepted() counts them. A canary for "nothing reached this host service".
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

namespace testsupport {

class CountingListener {
 public:
  CountingListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || ::listen(fd_, 64) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      throw std::runtime_error("cannot listen on 127.0.0.1:0");
    }
    port_ = ntohs(address.sin_port);
  }
  ~CountingListener() { ::close(fd_); }
  CountingListener(const CountingListener&) = delete;
  CountingListener& operator=(const CountingListener&) = delete;

  uint16_t port() const { return port_; }

  // Connections that reached this port so far.
  size_t accepted() {
    for (;;) {
      const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) break;
      ::close(fd);
      ++accepted_;
    }
    return accepted_;
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  size_t accepted_ = 0;
};

}  // namespace testsupport

// EgressProxy: a job's forward proxy, exercised over real sockets on 127.0.0.1: what it lets
// through (CONNECT tunnels, absolute-form plain HTTP), what it refuses and how it answers, its
// limits and timeouts, stop(), chaining through an upstream proxy, and its statistics.
// No sleeps: every wait is a poll() or a condition variable with a bound.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "net/egress_proxy.h"

using namespace da::net;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kWait = 3s;  // the bound of every wait that should end much sooner

int remainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left) + 1;
}

uint16_t localPort(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

// A listening socket on 127.0.0.1 with a kernel-chosen port.
int listenLocal(uint16_t& port, int backlog = 64) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  EXPECT_EQ(listen(fd, backlog), 0);
  port = localPort(fd);
  return fd;
}

// A port on 127.0.0.1 where nothing listens (bound, then closed).
uint16_t deadPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  uint16_t port = localPort(fd);
  close(fd);
  return port;
}

bool sendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// A raw TCP client.
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(port);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    EXPECT_TRUE(connected_) << "connect to 127.0.0.1:" << port;
  }
  ~Client() { close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool send(std::string_view data) { return sendAll(fd_, data); }
  uint16_t localPort() const { return ::localPort(fd_); }

  // Reads until `needle` has been received (true), or EOF/timeout (false).
  bool readUntil(std::string_view needle, std::chrono::milliseconds timeout = kWait) {
    const auto deadline = Clock::now() + timeout;
    while (received.find(needle) == std::string::npos) {
      if (!readSome(deadline)) return false;
    }
    return true;
  }
  // Reads until the peer closes (true) or the timeout (false).
  bool readToEof(std::chrono::milliseconds timeout = kWait) {
    const auto deadline = Clock::now() + timeout;
    while (!eof) {
      if (!readSome(deadline) && !eof) return false;
    }
    return true;
  }
  // The status code of the response received so far, or -1.
  int status() const {
    if (received.size() < 12 || received.compare(0, 9, "HTTP/1.1 ") != 0) return -1;
    return std::stoi(received.substr(9, 3));
  }
  std::string body() const {
    auto end = received.find("\r\n\r\n");
    return end == std::string::npos ? std::string() : received.substr(end + 4);
  }

  std::string received;
  bool eof = false;

 private:
  bool readSome(Clock::time_point deadline) {
    if (eof) return false;
    pollfd p{fd_, POLLIN, 0};
    int ready = poll(&p, 1, remainingMs(deadline));
    if (ready <= 0) return false;
    char buffer[65536];
    ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
    if (n <= 0) {  // EOF, or a reset: the connection is over either way
      eof = true;
      return false;
    }
    received.append(buffer, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
};

// A server on 127.0.0.1:0 handing each accepted connection to `handler` on its own thread.
// Records the peer port of every connection accepted, in order.
class TestServer {
 public:
  using Handler = std::function<void(int fd, int stop_fd)>;

  explicit TestServer(Handler handler, int backlog = 64) : handler_(std::move(handler)) {
    listen_fd_ = listenLocal(port_, backlog);
    stop_fd_ = eventfd(0, EFD_CLOEXEC);
    acceptor_ = std::thread([this] { acceptLoop(); });
  }
  ~TestServer() {
    uint64_t one = 1;
    [[maybe_unused]] auto n = write(stop_fd_, &one, sizeof one);
    acceptor_.join();
    for (auto& t : handlers_) t.join();
    close(listen_fd_);
    close(stop_fd_);
  }

  uint16_t port() const { return port_; }
  size_t accepted() const {
    std::lock_guard lock(mutex_);
    return peers_.size();
  }
  // Proves nothing else connected: a direct connection is made and, once it was accepted (the
  // accept queue is FIFO), it must be the only one.
  void expectNoOtherConnections() {
    Client probe(port_);
    const uint16_t probe_port = probe.localPort();
    std::unique_lock lock(mutex_);
    ASSERT_TRUE(changed_.wait_for(lock, kWait, [&] {
      return std::find(peers_.begin(), peers_.end(), probe_port) != peers_.end();
    })) << "the probe connection was never accepted";
    EXPECT_EQ(peers_.size(), 1u) << "the server accepted connections besides the probe";
  }
  bool waitAccepted(size_t count) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, kWait, [&] { return peers_.size() >= count; });
  }

 private:
  void acceptLoop() {
    while (true) {
      pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) continue;
      if (fds[0].revents) return;
      sockaddr_in peer{};
      socklen_t length = sizeof peer;
      int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &length, SOCK_CLOEXEC);
      if (fd < 0) continue;
      {
        std::lock_guard lock(mutex_);
        peers_.push_back(ntohs(peer.sin_port));
      }
      changed_.notify_all();
      handlers_.emplace_back([this, fd] {
        handler_(fd, stop_fd_);
        close(fd);
      });
    }
  }

  Handler handler_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;
  uint16_t port_ = 0;
  std::thread acceptor_;
  std::list<std::thread> handlers_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<uint16_t> peers_;
};

// Waits for `fd` to be readable; false when the server stops or after kWait.
bool waitReadable(int fd, int stop_fd) {
  pollfd fds[2] = {{stop_fd, POLLIN, 0}, {fd, POLLIN, 0}};
  return poll(fds, 2, static_cast<int>(std::chrono::milliseconds(kWait).count())) > 0 && fds[0].revents == 0;
}

// Echoes every byte back until the peer closes.
void echo(int fd, int stop_fd) {
  char buffer[65536];
  while (waitReadable(fd, stop_fd)) {
    ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0 || !sendAll(fd, std::string_view(buffer, static_cast<size_t>(n)))) return;
  }
}

// An HTTP server that records each request head (and Content-Length body) and answers `response`.
struct HttpRecorder {
  explicit HttpRecorder(std::string response_in)
      : response(std::move(response_in)), server([this](int fd, int stop_fd) { handle(fd, stop_fd); }) {}

  void handle(int fd, int stop_fd) {
    std::string data;
    char buffer[8192];
    size_t head_end = std::string::npos;
    while ((head_end = data.find("\r\n\r\n")) == std::string::npos) {
      if (!waitReadable(fd, stop_fd)) return;
      ssize_t n = recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) return;
      data.append(buffer, static_cast<size_t>(n));
    }
    std::string head = data.substr(0, head_end + 4);
    size_t body_length = 0;
    if (auto p = head.find("Content-Length: "); p != std::string::npos) body_length = std::stoul(head.substr(p + 16));
    std::string body = data.substr(head_end + 4);
    while (body.size() < body_length) {
      if (!waitReadable(fd, stop_fd)) return;
      ssize_t n = recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) return;
      body.append(buffer, static_cast<size_t>(n));
    }
    {
      std::lock_guard lock(mutex);
      heads.push_back(head);
      bodies.push_back(body.substr(0, body_length));
    }
    sendAll(fd, response);
  }
  std::vector<std::string> recordedHeads() {
    std::lock_guard lock(mutex);
    return heads;
  }

  std::string response;
  std::mutex mutex;
  std::vector<std::string> heads;
  std::vector<std::string> bodies;
  TestServer server;  // last: its threads use the members above
};

EgressLimits testLimits() {
  EgressLimits limits;
  limits.connect_timeout = 2s;
  limits.idle_timeout = 5s;
  return limits;
}

struct RunningProxy {
  explicit RunningProxy(EgressAllowlist allowlist, EgressLimits limits = testLimits(),
                        std::map<std::string, std::string> env = {}) {
    int fd = listenLocal(port);
    proxy = std::make_unique<EgressProxy>(fd, std::move(allowlist), limits, std::move(env));
  }
  EgressStats stats() const { return proxy->stats(); }
  uint16_t port = 0;
  std::unique_ptr<EgressProxy> proxy;
};

EgressAllowlist allowing(uint16_t port, Trust trust = Trust::kOperator, std::string host = "127.0.0.1") {
  EgressAllowlist allowlist;
  allowlist.allow({std::move(host), port}, trust);
  return allowlist;
}

std::string connectRequest(const std::string& authority) {
  return "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n";
}

std::string local(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

const EgressStats::Allowed* findAllowed(const EgressStats& stats, const std::string& host) {
  for (const auto& entry : stats.allowed) {
    if (entry.host == host) return &entry;
  }
  return nullptr;
}
const EgressStats::Denied* findDenied(const EgressStats& stats, const std::string& host) {
  for (const auto& entry : stats.denied) {
    if (entry.host == host) return &entry;
  }
  return nullptr;
}

// Opens a tunnel through the proxy and checks the 200.
std::unique_ptr<Client> openTunnel(uint16_t proxy_port, const std::string& authority) {
  auto client = std::make_unique<Client>(proxy_port);
  client->send(connectRequest(authority));
  EXPECT_TRUE(client->readUntil("\r\n\r\n")) << client->received;
  EXPECT_EQ(client->received, "HTTP/1.1 200 Connection established\r\n\r\n");
  client->received.clear();
  return client;
}

// ---- CONNECT ----------------------------------------------------------------------------

TEST(EgressProxy, ConnectToAnAllowedDestinationRelaysBothWaysAndCounts) {
  TestServer echo_server(echo);
  RunningProxy proxy(allowing(echo_server.port()));

  auto client = openTunnel(proxy.port, local(echo_server.port()));
  ASSERT_TRUE(client->send("hello through the tunnel"));
  ASSERT_TRUE(client->readUntil("hello through the tunnel"));
  // More than one relay buffer (64 KiB), sent while the echo is already coming back.
  std::string big(150000, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  big += "<end>";
  ASSERT_TRUE(client->send(big));
  ASSERT_TRUE(client->readUntil("<end>"));
  EXPECT_EQ(client->received.size(), 24u + big.size());
  EXPECT_TRUE(client->received == "hello through the tunnel" + big) << "the echo came back altered";

  auto stats = proxy.stats();
  ASSERT_EQ(stats.allowed.size(), 1u);
  EXPECT_EQ(stats.allowed[0].host, local(echo_server.port()));
  EXPECT_EQ(stats.allowed[0].connections, 1u);
  EXPECT_EQ(stats.allowed[0].bytes_out, 24u + big.size());
  EXPECT_EQ(stats.allowed[0].bytes_in, 24u + big.size());
  EXPECT_TRUE(stats.denied.empty());
}

TEST(EgressProxy, BytesSentRightAfterTheConnectHeadGoUpstreamFirst) {
  TestServer echo_server(echo);
  RunningProxy proxy(allowing(echo_server.port()));
  Client client(proxy.port);
  client.send(connectRequest(local(echo_server.port())) + "early bytes");
  ASSERT_TRUE(client.readUntil("early bytes")) << client.received;
  EXPECT_EQ(client.received, "HTTP/1.1 200 Connection established\r\n\r\nearly bytes");
}

TEST(EgressProxy, ConnectToADestinationNotAllowedIs403AndConnectsNothing) {
  TestServer server(echo);
  RunningProxy proxy(allowing(static_cast<uint16_t>(server.port() == 1 ? 2 : server.port() - 1)));

  for (int attempt = 0; attempt < 2; ++attempt) {
    Client client(proxy.port);
    client.send(connectRequest(local(server.port())));
    ASSERT_TRUE(client.readToEof());
    EXPECT_EQ(client.status(), 403) << client.received;
    EXPECT_NE(client.received.find("Connection: close\r\n"), std::string::npos);
    EXPECT_NE(client.received.find("Content-Type: text/plain"), std::string::npos);
    EXPECT_EQ(client.body(), "deploy-agent egress proxy: " + local(server.port()) +
                                 " is not on this job's allowlist\n");
  }
  server.expectNoOtherConnections();

  auto stats = proxy.stats();
  EXPECT_TRUE(stats.allowed.empty());
  ASSERT_EQ(stats.denied.size(), 1u);
  EXPECT_EQ(stats.denied[0].host, local(server.port()));
  EXPECT_EQ(stats.denied[0].attempts, 2u);
  EXPECT_EQ(stats.denied[0].reason, "not_allowed");
}

TEST(EgressProxy, AJobDerivedNameResolvingToLoopbackIsRefusedButAnOperatorsIsNot) {
  TestServer echo_server(echo);
  {
    RunningProxy proxy(allowing(echo_server.port(), Trust::kJobDerived, "localhost"));
    Client client(proxy.port);
    client.send(connectRequest("localhost:" + std::to_string(echo_server.port())));
    ASSERT_TRUE(client.readToEof());
    EXPECT_EQ(client.status(), 403) << client.received;
    EXPECT_NE(client.body().find("internal addresses"), std::string::npos) << client.body();
    auto stats = proxy.stats();
    ASSERT_EQ(stats.denied.size(), 1u);
    EXPECT_EQ(stats.denied[0].reason, "resolves_to_internal_address");
    EXPECT_EQ(stats.denied[0].host, "localhost:" + std::to_string(echo_server.port()));

    // An IP literal taken from the job is held to the same rule.
    EgressAllowlist literal = allowing(echo_server.port(), Trust::kJobDerived, "127.0.0.1");
    RunningProxy literal_proxy(std::move(literal));
    Client literal_client(literal_proxy.port);
    literal_client.send(connectRequest(local(echo_server.port())));
    ASSERT_TRUE(literal_client.readToEof());
    EXPECT_EQ(literal_client.status(), 403) << literal_client.received;
  }
  echo_server.expectNoOtherConnections();

  RunningProxy proxy(allowing(echo_server.port(), Trust::kOperator, "localhost"));
  auto client = openTunnel(proxy.port, "localhost:" + std::to_string(echo_server.port()));
  client->send("ping");
  EXPECT_TRUE(client->readUntil("ping"));
}

TEST(EgressProxy, NothingListeningIs502) {
  const uint16_t port = deadPort();
  RunningProxy proxy(allowing(port));
  Client client(proxy.port);
  client.send(connectRequest(local(port)));
  ASSERT_TRUE(client.readToEof());
  EXPECT_EQ(client.status(), 502) << client.received;
  auto stats = proxy.stats();
  ASSERT_EQ(stats.denied.size(), 1u);
  EXPECT_EQ(stats.denied[0].reason, "upstream_unreachable");
  EXPECT_TRUE(stats.allowed.empty());
}

// A listener whose accept queue is full: further SYNs are dropped, so connects hang.
struct BlackHole {
  BlackHole() {
    fd = listenLocal(port, 0);
    filler = std::make_unique<Client>(port);  // fills the queue of length 0 (+1)
    // A second connect that must not complete proves the queue is full.
    int probe = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(port);
    connect(probe, reinterpret_cast<sockaddr*>(&address), sizeof address);
    pollfd p{probe, POLLOUT, 0};
    full = poll(&p, 1, 100) == 0;
    close(probe);
  }
  ~BlackHole() { close(fd); }
  int fd = -1;
  uint16_t port = 0;
  bool full = false;
  std::unique_ptr<Client> filler;
};

TEST(EgressProxy, AConnectThatDoesNotCompleteIs504) {
  BlackHole hole;
  // Linux leaves a SYN unanswered while the accept queue is full; CI runs Linux, so a kernel
  // that does otherwise is a failure to look at, not a skip.
  ASSERT_TRUE(hole.full) << "this kernel completes connections past a full accept queue";
  EgressLimits limits = testLimits();
  limits.connect_timeout = 200ms;
  RunningProxy proxy(allowing(hole.port), limits);
  Client client(proxy.port);
  const auto start = Clock::now();
  client.send(connectRequest(local(hole.port)));
  ASSERT_TRUE(client.readToEof());
  EXPECT_EQ(client.status(), 504) << client.received;
  EXPECT_GE(Clock::now() - start, 150ms);
  ASSERT_EQ(proxy.stats().denied.size(), 1u);
  EXPECT_EQ(proxy.stats().denied[0].reason, "upstream_timeout");
}

// ---- plain HTTP -------------------------------------------------------------------------

TEST(EgressProxy, AbsoluteFormHttpIsForwardedInOriginFormWithoutProxyHeaders) {
  HttpRecorder origin("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello");
  RunningProxy proxy(allowing(origin.server.port()));
  const std::string authority = local(origin.server.port());

  Client client(proxy.port);
  client.send("POST http://" + authority + "/path/x?token=abc HTTP/1.1\r\n"
              "Host: somewhere-else.example\r\n"
              "Proxy-Authorization: Basic c2VjcmV0\r\n"
              "Proxy-Connection: keep-alive\r\n"
              "Connection: keep-alive, X-Hop\r\n"
              "Keep-Alive: timeout=5\r\n"
              "X-Hop: 1\r\n"
              "User-Agent: npm/11\r\n"
              "Content-Length: 4\r\n"
              "\r\n"
              "body");
  ASSERT_TRUE(client.readToEof()) << "the client is closed when the destination closes";
  EXPECT_EQ(client.status(), 200) << client.received;
  EXPECT_EQ(client.body(), "hello");

  auto heads = origin.recordedHeads();
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(heads[0], "POST /path/x?token=abc HTTP/1.1\r\n"
                      "Host: " + authority + "\r\n"
                      "User-Agent: npm/11\r\n"
                      "Content-Length: 4\r\n"
                      "Connection: close\r\n\r\n");
  EXPECT_EQ(origin.bodies[0], "body");

  auto stats = proxy.stats();
  ASSERT_EQ(stats.allowed.size(), 1u);
  EXPECT_EQ(stats.allowed[0].connections, 1u);
  EXPECT_EQ(stats.allowed[0].bytes_out, heads[0].size() + 4);
  EXPECT_EQ(stats.allowed[0].bytes_in, client.received.size());
}

TEST(EgressProxy, AnAbsoluteUrlWithoutPathIsForwardedAsSlash) {
  HttpRecorder origin("HTTP/1.0 204 No Content\r\n\r\n");
  RunningProxy proxy(allowing(origin.server.port()));
  Client client(proxy.port);
  client.send("GET http://" + local(origin.server.port()) + "?q=1 HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(client.readToEof());
  auto heads = origin.recordedHeads();
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(heads[0].substr(0, heads[0].find("\r\n")), "GET /?q=1 HTTP/1.0");
}

TEST(EgressProxy, BareLineFeedsAreTolerated) {
  HttpRecorder origin("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  RunningProxy proxy(allowing(origin.server.port()));
  Client client(proxy.port);
  client.send("GET http://" + local(origin.server.port()) + "/lf HTTP/1.1\nAccept: */*\n\n");
  ASSERT_TRUE(client.readToEof());
  EXPECT_EQ(client.status(), 200) << client.received;
  auto heads = origin.recordedHeads();
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(heads[0], "GET /lf HTTP/1.1\r\nHost: " + local(origin.server.port()) +
                          "\r\nAccept: */*\r\nConnection: close\r\n\r\n");
}

TEST(EgressProxy, ARedirectPassesThroughButItsTargetIsStillChecked) {
  HttpRecorder other("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  const std::string other_authority = local(other.server.port());
  HttpRecorder origin("HTTP/1.1 302 Found\r\nLocation: http://" + other_authority +
                      "/next\r\nContent-Length: 0\r\n\r\n");
  RunningProxy proxy(allowing(origin.server.port()));

  Client first(proxy.port);
  first.send("GET http://" + local(origin.server.port()) + "/start HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(first.readToEof());
  EXPECT_EQ(first.status(), 302);
  EXPECT_NE(first.received.find("Location: http://" + other_authority + "/next\r\n"), std::string::npos);

  Client second(proxy.port);
  second.send("GET http://" + other_authority + "/next HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(second.readToEof());
  EXPECT_EQ(second.status(), 403) << second.received;
  other.server.expectNoOtherConnections();
}

TEST(EgressProxy, ASecondRequestOnTheSameConnectionIsNeverParsed) {
  HttpRecorder allowed_origin("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  TestServer forbidden(echo);
  RunningProxy proxy(allowing(allowed_origin.server.port()));

  Client client(proxy.port);
  client.send("GET http://" + local(allowed_origin.server.port()) + "/ HTTP/1.1\r\nHost: a\r\n\r\n" +
              "GET http://" + local(forbidden.port()) + "/ HTTP/1.1\r\nHost: b\r\n\r\n");
  ASSERT_TRUE(client.readToEof());
  EXPECT_EQ(client.received, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  forbidden.expectNoOtherConnections();
  EXPECT_TRUE(proxy.stats().denied.empty());
}

TEST(EgressProxy, HttpsInAbsoluteFormIs400) {
  RunningProxy proxy(allowing(443, Trust::kOperator, "registry.npmjs.org"));
  Client client(proxy.port);
  client.send("GET https://registry.npmjs.org/convex HTTP/1.1\r\nHost: registry.npmjs.org\r\n\r\n");
  ASSERT_TRUE(client.readToEof());
  EXPECT_EQ(client.status(), 400) << client.received;
  EXPECT_NE(client.body().find("CONNECT"), std::string::npos) << client.body();
  ASSERT_EQ(proxy.stats().denied.size(), 1u);
  EXPECT_EQ(proxy.stats().denied[0].reason, "https_without_connect");
  EXPECT_EQ(proxy.stats().denied[0].host, "registry.npmjs.org:443");
}

TEST(EgressProxy, OriginFormRequestsToTheProxyAre400) {
  RunningProxy proxy(EgressAllowlist{});
  Client client(proxy.port);
  client.send("GET /secret HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  ASSERT_TRUE(client.readToEof());
  EXPECT_EQ(client.status(), 400) << client.received;
  EXPECT_EQ(client.body().find("/secret"), std::string::npos) << "paths are never echoed";
  ASSERT_EQ(proxy.stats().denied.size(), 1u);
  EXPECT_EQ(proxy.stats().denied[0].reason, "not_a_proxy_request");
}

TEST(EgressProxy, GarbageIs400) {
  RunningProxy proxy(EgressAllowlist{});
  for (const std::string& garbage :
       {std::string("\x16\x03\x01\x02\x00 hello\r\n\r\n", 15), std::string("CONNECT\r\n\r\n"),
        std::string("CONNECT example.com HTTP/1.1\r\n\r\n"), std::string("GET  http://a/ HTTP/1.1\r\n\r\n"),
        std::string("GET http://a/ HTTP/2.0\r\n\r\n"), std::string("GET http://a/ HTTP/1.1\r\n folded\r\n\r\n"),
        std::string("GET http://a/ HTTP/1.1\r\nNo colon here\r\n\r\n"), std::string("GET http://a b/ HTTP/1.1\r\n\r\n")}) {
    Client client(proxy.port);
    client.send(garbage);
    ASSERT_TRUE(client.readToEof());
    EXPECT_EQ(client.status(), 400) << garbage << " -> " << client.received;
  }
  auto stats = proxy.stats();
  ASSERT_EQ(stats.denied.size(), 1u);
  EXPECT_EQ(stats.denied[0].host, "(unparsed)");
  EXPECT_EQ(stats.denied[0].attempts, 8u);
  EXPECT_EQ(stats.denied[0].reason, "malformed_request");
}

TEST(EgressProxy, AnOversizedHeadIs431AndConnectsNothing) {
  HttpRecorder origin("HTTP/1.1 200 OK\r\n\r\n");
  EgressLimits limits = testLimits();
  limits.max_request_head_bytes = 1024;
  RunningProxy proxy(allowing(origin.server.port()), limits);

  Client client(proxy.port);
  client.send("GET http://" + local(origin.server.port()) + "/ HTTP/1.1\r\nX-Big: " + std::string(4000, 'a'));
  ASSERT_TRUE(client.readToEof());
  EXPECT_EQ(client.status(), 431) << client.received;

  // A complete head just over the limit is refused too; one within it passes.
  Client complete(proxy.port);
  std::string head = "GET http://" + local(origin.server.port()) + "/ HTTP/1.1\r\nX-Big: ";
  complete.send(head + std::string(1024 - head.size() - 3, 'a') + "\r\n\r\n");
  ASSERT_TRUE(complete.readToEof());
  EXPECT_EQ(complete.status(), 431) << complete.received;
  origin.server.expectNoOtherConnections();

  Client fits(proxy.port);
  fits.send(head + std::string(1024 - head.size() - 4, 'a') + "\r\n\r\n");
  ASSERT_TRUE(fits.readToEof());
  EXPECT_EQ(fits.status(), 200) << fits.received;

  auto stats = proxy.stats();
  ASSERT_EQ(stats.denied.size(), 1u);
  EXPECT_EQ(stats.denied[0].reason, "request_head_too_large");
  EXPECT_EQ(stats.denied[0].attempts, 2u);
}

// ---- limits, timeouts, stop -------------------------------------------------------------

TEST(EgressProxy, ConnectionsPastTheLimitAre503) {
  TestServer echo_server(echo);
  EgressLimits limits = testLimits();
  limits.max_connections = 2;
  RunningProxy proxy(allowing(echo_server.port()), limits);

  auto first = openTunnel(proxy.port, local(echo_server.port()));
  auto second = openTunnel(proxy.port, local(echo_server.port()));
  Client third(proxy.port);
  ASSERT_TRUE(third.readToEof());
  EXPECT_EQ(third.status(), 503) << third.received;

  // The open tunnels still work.
  first->send("one");
  EXPECT_TRUE(first->readUntil("one"));
  auto stats = proxy.stats();
  EXPECT_EQ(stats.refused_over_limit, 1u);
  EXPECT_TRUE(stats.denied.empty());
  ASSERT_EQ(stats.allowed.size(), 1u);
  EXPECT_EQ(stats.allowed[0].connections, 2u);
}

TEST(EgressProxy, AnIdleTunnelIsCut) {
  TestServer echo_server(echo);
  EgressLimits limits = testLimits();
  limits.idle_timeout = 200ms;
  RunningProxy proxy(allowing(echo_server.port()), limits);

  auto client = openTunnel(proxy.port, local(echo_server.port()));
  client->send("x");
  ASSERT_TRUE(client->readUntil("x"));
  const auto idle_since = Clock::now();
  ASSERT_TRUE(client->readToEof(3s)) << "the idle tunnel was not closed";
  EXPECT_GE(Clock::now() - idle_since, 150ms);
}

TEST(EgressProxy, AClientThatNeverFinishesItsHeadIsCut) {
  EgressLimits limits = testLimits();
  limits.idle_timeout = 200ms;
  RunningProxy proxy(EgressAllowlist{}, limits);
  Client client(proxy.port);
  client.send("CONNECT a.example:443 HTTP/1.1\r\n");
  EXPECT_TRUE(client.readToEof(3s));
}

TEST(EgressProxy, StopCutsOpenTunnelsAndConnectsInFlightPromptly) {
  TestServer echo_server(echo);
  BlackHole hole;
  EgressAllowlist allowlist = allowing(echo_server.port());
  allowlist.allow({"127.0.0.1", hole.port}, Trust::kOperator);
  EgressLimits limits = testLimits();
  limits.connect_timeout = 10s;
  limits.idle_timeout = 60s;
  RunningProxy proxy(std::move(allowlist), limits);

  auto first = openTunnel(proxy.port, local(echo_server.port()));
  auto second = openTunnel(proxy.port, local(echo_server.port()));
  Client idle(proxy.port);  // has not sent its head yet
  Client connecting(proxy.port);
  connecting.send(connectRequest(local(hole.port)));
  // Nothing comes back while the connect hangs (bounded check, not a synchronisation).
  EXPECT_FALSE(connecting.readUntil("HTTP", 100ms));

  const auto start = Clock::now();
  proxy.proxy->stop();
  EXPECT_LT(Clock::now() - start, 1s);
  EXPECT_TRUE(first->readToEof(1s));
  EXPECT_TRUE(second->readToEof(1s));
  EXPECT_TRUE(idle.readToEof(1s));
  EXPECT_TRUE(connecting.readToEof(1s));
  EXPECT_EQ(connecting.received, "");
  proxy.proxy->stop();  // idempotent

  // The listener is closed: nobody accepts any more.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(proxy.port);
  EXPECT_NE(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  close(fd);
  EXPECT_EQ(proxy.stats().allowed[0].connections, 2u);  // stats outlive stop()
}

// ---- chaining through the agent's own proxy ---------------------------------------------

TEST(EgressProxy, ConnectIsChainedThroughTheUpstreamProxy) {
  TestServer echo_server(echo);
  RunningProxy corporate(allowing(echo_server.port()));
  RunningProxy proxy(allowing(echo_server.port()), testLimits(),
                     {{"HTTPS_PROXY", "http://127.0.0.1:" + std::to_string(corporate.port)}});

  auto client = openTunnel(proxy.port, local(echo_server.port()));
  client->send("through two proxies");
  ASSERT_TRUE(client->readUntil("through two proxies"));

  auto corporate_stats = corporate.stats();
  auto entry = findAllowed(corporate_stats, local(echo_server.port()));
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->connections, 1u);
  EXPECT_EQ(entry->bytes_out, 19u);
  auto own_stats = proxy.stats();
  auto own = findAllowed(own_stats, local(echo_server.port()));
  ASSERT_NE(own, nullptr);
  EXPECT_EQ(own->connections, 1u);
}

TEST(EgressProxy, NoProxyBypassesTheUpstreamProxy) {
  TestServer echo_server(echo);
  RunningProxy corporate(allowing(echo_server.port()));
  RunningProxy proxy(allowing(echo_server.port()), testLimits(),
                     {{"HTTPS_PROXY", "http://127.0.0.1:" + std::to_string(corporate.port)},
                      {"NO_PROXY", "localhost,127.0.0.1"}});

  auto client = openTunnel(proxy.port, local(echo_server.port()));
  client->send("direct");
  ASSERT_TRUE(client->readUntil("direct"));
  auto corporate_stats = corporate.stats();
  EXPECT_TRUE(corporate_stats.allowed.empty());
  EXPECT_TRUE(corporate_stats.denied.empty());
}

TEST(EgressProxy, TheAllowlistIsCheckedBeforeTheUpstreamProxyIsAsked) {
  TestServer echo_server(echo);
  TestServer corporate(echo);
  RunningProxy proxy(EgressAllowlist{}, testLimits(),
                     {{"HTTPS_PROXY", "http://127.0.0.1:" + std::to_string(corporate.port())}});
  Client client(proxy.port);
  client.send(connectRequest(local(echo_server.port())));
  ASSERT_TRUE(client.readToEof());
  EXPECT_EQ(client.status(), 403);
  corporate.expectNoOtherConnections();
}

TEST(EgressProxy, UpstreamProxyCredentialsAreSentAndARefusalIs502) {
  HttpRecorder corporate("HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n");
  RunningProxy proxy(allowing(443, Trust::kOperator, "registry.npmjs.org"), testLimits(),
                     {{"https_proxy", "http://user:p%40ss@127.0.0.1:" + std::to_string(corporate.server.port())}});
  Client client(proxy.port);
  client.send(connectRequest("registry.npmjs.org:443"));
  ASSERT_TRUE(client.readToEof());
  EXPECT_EQ(client.status(), 502) << client.received;
  EXPECT_NE(client.body().find("407"), std::string::npos) << client.body();
  EXPECT_EQ(client.body().find("p@ss"), std::string::npos);

  auto heads = corporate.recordedHeads();
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(heads[0], "CONNECT registry.npmjs.org:443 HTTP/1.1\r\nHost: registry.npmjs.org:443\r\n"
                      "Proxy-Authorization: Basic dXNlcjpwQHNz\r\n\r\n");
  ASSERT_EQ(proxy.stats().denied.size(), 1u);
  EXPECT_EQ(proxy.stats().denied[0].reason, "upstream_proxy_refused");
}

TEST(EgressProxy, PlainHttpIsChainedInAbsoluteFormWithTheUpstreamCredentials) {
  HttpRecorder corporate("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  RunningProxy proxy(allowing(80, Trust::kOperator, "mirror.example"), testLimits(),
                     {{"HTTP_PROXY", "http://user:p%40ss@127.0.0.1:" + std::to_string(corporate.server.port())}});
  Client client(proxy.port);
  client.send("GET http://mirror.example/pkg HTTP/1.1\r\nHost: mirror.example\r\n"
              "Proxy-Authorization: Basic am9iOmpvYg==\r\n\r\n");
  ASSERT_TRUE(client.readToEof());
  EXPECT_EQ(client.body(), "ok");
  auto heads = corporate.recordedHeads();
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(heads[0], "GET http://mirror.example/pkg HTTP/1.1\r\nHost: mirror.example\r\n"
                      "Proxy-Authorization: Basic dXNlcjpwQHNz\r\nConnection: close\r\n\r\n");
}

// ---- statistics -------------------------------------------------------------------------

TEST(EgressProxy, HostsPastTheListLimitAreFoldedIntoOther) {
  EgressLimits limits = testLimits();
  limits.max_listed_hosts = 2;
  RunningProxy proxy(EgressAllowlist{}, limits);
  for (const char* host : {"a.example:443", "b.example:443", "c.example:443", "d.example:443", "a.example:443"}) {
    Client client(proxy.port);
    client.send(connectRequest(host));
    ASSERT_TRUE(client.readToEof());
    EXPECT_EQ(client.status(), 403);
  }
  auto stats = proxy.stats();
  ASSERT_EQ(stats.denied.size(), 3u);
  EXPECT_EQ(findDenied(stats, "a.example:443")->attempts, 2u);
  EXPECT_EQ(findDenied(stats, "b.example:443")->attempts, 1u);
  ASSERT_NE(findDenied(stats, "(other)"), nullptr);
  EXPECT_EQ(findDenied(stats, "(other)")->attempts, 2u);
  EXPECT_EQ(findDenied(stats, "(other)")->reason, "not_allowed");
  EXPECT_EQ(findDenied(stats, "c.example:443"), nullptr);
}

TEST(EgressProxy, MergeIntoSumsPerHost) {
  EgressStats total;
  EgressStats run1;
  run1.allowed = {{"b.example:443", 1, 100, 10}, {"registry.npmjs.org:443", 2, 2000, 200}};
  run1.denied = {{"evil.example:443", 1, "not_allowed"}};
  run1.refused_over_limit = 1;
  EgressStats run2;
  run2.allowed = {{"a.example:443", 1, 5, 6}, {"registry.npmjs.org:443", 3, 3000, 300}};
  run2.denied = {{"evil.example:443", 2, "resolves_to_internal_address"}, {"(unparsed)", 1, "malformed_request"}};
  run2.refused_over_limit = 2;

  mergeInto(total, run1);
  mergeInto(total, run2);
  ASSERT_EQ(total.allowed.size(), 3u);
  EXPECT_EQ(total.allowed[0].host, "a.example:443");
  EXPECT_EQ(total.allowed[1].host, "b.example:443");
  EXPECT_EQ(total.allowed[2].host, "registry.npmjs.org:443");
  EXPECT_EQ(total.allowed[2].connections, 5u);
  EXPECT_EQ(total.allowed[2].bytes_in, 5000u);
  EXPECT_EQ(total.allowed[2].bytes_out, 500u);
  ASSERT_EQ(total.denied.size(), 2u);
  EXPECT_EQ(total.denied[0].host, "(unparsed)");
  EXPECT_EQ(total.denied[1].host, "evil.example:443");
  EXPECT_EQ(total.denied[1].attempts, 3u);
  EXPECT_EQ(total.denied[1].reason, "not_allowed");  // the first reason stays
  EXPECT_EQ(total.refused_over_limit, 3u);
}

}  // namespace

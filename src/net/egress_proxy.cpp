#include "net/egress_proxy.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>
#include <list>
#include <mutex>
#include <optional>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "convex/http_options.h"
#include "util/strings.h"

namespace da::net {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kRelayBuffer = 64 * 1024;
constexpr size_t kUpstreamHeadLimit = 16384;
constexpr const char* kUnparsed = "(unparsed)";
constexpr const char* kOther = "(other)";
constexpr auto kAnswerTimeout = std::chrono::milliseconds(2000);
constexpr auto kDrainTimeout = std::chrono::milliseconds(500);
constexpr size_t kDrainLimit = 1 << 20;

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

std::string_view trimOws(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

int remainingMs(Clock::time_point deadline) {
  const auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<long long>(ms, INT_MAX));
}

enum class Wait { kReady, kTimeout, kStopped, kError };

// Waits until `fd` reports `events` (or an error/hangup, which the caller's next call on it
// reports), the deadline passes, or the proxy stops.
Wait waitFor(int stop_fd, int fd, short events, Clock::time_point deadline) {
  while (true) {
    pollfd fds[2] = {{stop_fd, POLLIN, 0}, {fd, events, 0}};
    const int ms = remainingMs(deadline);
    const int n = ::poll(fds, 2, ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Wait::kError;
    }
    if (fds[0].revents != 0) return Wait::kStopped;
    if (fds[1].revents != 0) return Wait::kReady;
    if (ms == 0 || Clock::now() >= deadline) return Wait::kTimeout;
  }
}

bool sendAll(int stop_fd, int fd, std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (waitFor(stop_fd, fd, POLLOUT, deadline) != Wait::kReady) return false;
      continue;
    }
    return false;
  }
  return true;
}

// ---- request heads ----------------------------------------------------------------------

// The offset just past the empty line ending a head (CRLF CRLF, or bare LFs), or npos.
size_t findHeadEnd(std::string_view buffer, size_t scan_from) {
  scan_from = scan_from >= 2 ? scan_from - 2 : 0;
  size_t best = std::string_view::npos;
  if (auto p = buffer.find("\n\r\n", scan_from); p != std::string_view::npos) best = p + 3;
  if (auto p = buffer.find("\n\n", scan_from); p != std::string_view::npos) best = std::min(best, p + 2);
  return best;
}

enum class HeadResult { kOk, kTooLarge, kClosed, kTimeout, kStopped, kError };

// Reads until the head is complete; `buffer` then holds the head and whatever followed it.
HeadResult readHead(int stop_fd, int fd, size_t max_bytes, Clock::time_point deadline, std::string& buffer,
                    size_t& head_end) {
  char chunk[8192];
  while (true) {
    const size_t before = buffer.size();
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer.append(chunk, static_cast<size_t>(n));
      head_end = findHeadEnd(buffer, before);
      if (head_end != std::string::npos) return head_end <= max_bytes ? HeadResult::kOk : HeadResult::kTooLarge;
      if (buffer.size() >= max_bytes) return HeadResult::kTooLarge;
      continue;
    }
    if (n == 0) return HeadResult::kClosed;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return HeadResult::kError;
    switch (waitFor(stop_fd, fd, POLLIN, deadline)) {
      case Wait::kReady: break;
      case Wait::kTimeout: return HeadResult::kTimeout;
      case Wait::kStopped: return HeadResult::kStopped;
      case Wait::kError: return HeadResult::kError;
    }
  }
}

bool isTchar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool isToken(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), isTchar);
}

struct Header {
  std::string name;  // as sent
  std::string lower_name;
  std::string value;
};

struct RequestHead {
  std::string method;
  std::string target;
  std::string version;
  std::vector<Header> headers;
};

// Splits a head into lines (CRLF or bare LF), refusing stray CR and NUL anywhere.
bool splitLines(std::string_view head, std::vector<std::string_view>& lines, std::string& why) {
  while (!head.empty()) {
    auto lf = head.find('\n');
    if (lf == std::string_view::npos) lf = head.size();
    std::string_view line = head.substr(0, lf);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find('\r') != std::string_view::npos || line.find('\0') != std::string_view::npos) {
      why = "a control character inside a line";
      return false;
    }
    lines.push_back(line);
    head.remove_prefix(std::min(head.size(), lf + 1));
  }
  return true;
}

bool parseRequestHead(std::string_view head, RequestHead& request, std::string& why) {
  std::vector<std::string_view> lines;
  if (!splitLines(head, lines, why)) return false;
  if (lines.empty() || lines.front().empty()) {
    why = "no request line";
    return false;
  }
  const std::string_view line = lines.front();
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    why = "the request line is not 'METHOD target HTTP/1.x'";
    return false;
  }
  const auto method = line.substr(0, sp1);
  const auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const auto version = line.substr(sp2 + 1);
  if (!isToken(method)) {
    why = "the method is not a token";
    return false;
  }
  if (target.empty() || !std::all_of(target.begin(), target.end(), [](char c) {
        return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
      })) {
    why = "the request target is empty or holds characters outside printable ASCII";
    return false;
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    why = "the version is not HTTP/1.0 or HTTP/1.1";
    return false;
  }
  request.method = std::string(method);
  request.target = std::string(target);
  request.version = std::string(version);
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string_view field = lines[i];
    if (field.empty()) break;  // the terminating empty line
    if (field.front() == ' ' || field.front() == '\t') {
      why = "a folded header line";
      return false;
    }
    const auto colon = field.find(':');
    if (colon == std::string_view::npos || !isToken(field.substr(0, colon))) {
      why = "a header line is not 'Name: value'";
      return false;
    }
    Header header;
    header.name = std::string(field.substr(0, colon));
    header.lower_name = asciiLower(header.name);
    header.value = std::string(trimOws(field.substr(colon + 1)));
    request.headers.push_back(std::move(header));
  }
  return true;
}

// The status code of an HTTP/1.x response head, or -1.
int responseStatus(std::string_view head) {
  if (head.size() < 12 || head.substr(0, 7) != "HTTP/1.") return -1;
  if (head[8] != ' ') return -1;
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (head[i] < '0' || head[i] > '9') return -1;
    status = status * 10 + (head[i] - '0');
  }
  if (head.size() > 12 && head[12] != ' ' && head[12] != '\r' && head[12] != '\n') return -1;
  return status;
}

std::string base64(std::string_view in) {
  static constexpr char kTable[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += kTable[(v >> 6) & 63];
    out += kTable[v & 63];
  }
  if (i < in.size()) {
    uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += i + 1 < in.size() ? kTable[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string proxyAuthorization(const convex::ProxySettings& proxy) {
  if (proxy.username.empty()) return {};
  return "Proxy-Authorization: Basic " + base64(proxy.username + ":" + proxy.password) + "\r\n";
}

// The Host header value for a destination: the default port 80 is left out, as clients do.
std::string hostHeader(const Destination& destination) {
  if (destination.port != 80) return displayName(destination);
  return destination.host.find(':') != std::string::npos ? "[" + destination.host + "]" : destination.host;
}

// ---- resolution and connecting ----------------------------------------------------------

struct Address {
  sockaddr_storage storage{};
  socklen_t length = 0;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

enum class Outcome { kOk, kNotFound, kRefused, kTimeout, kStopped, kError };

// One getaddrinfo call run by a detached thread (it cannot be interrupted). The waiter and the
// thread share this; whoever lets go last frees it, so a waiter that gave up leaves nothing
// dangling and the thread touches nothing else.
struct ResolveJob {
  Fd done;  // eventfd, readable when finished
  std::mutex mutex;  // orders the results for the memory model (the eventfd orders them in fact)
  int status = 0;
  std::vector<Address> addresses;
};

Outcome resolve(int stop_fd, const std::string& host, uint16_t port, Clock::time_point deadline,
                std::vector<Address>& out) {
  // IP literals need no resolver.
  Address literal;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&literal.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&literal.storage);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    literal.length = sizeof(sockaddr_in);
    out.push_back(literal);
    return Outcome::kOk;
  }
  literal = Address{};
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    literal.length = sizeof(sockaddr_in6);
    out.push_back(literal);
    return Outcome::kOk;
  }

  auto job = std::make_shared<ResolveJob>();
  job->done = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!job->done.valid()) return Outcome::kError;
  try {
    std::thread([job, host, port] {
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* result = nullptr;
      const std::string service = std::to_string(port);
      const int status = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &result);
      std::lock_guard lock(job->mutex);
      job->status = status;
      if (status == 0) {
        for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
          if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
          if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
          Address address;
          std::memcpy(&address.storage, ai->ai_addr, ai->ai_addrlen);
          address.length = ai->ai_addrlen;
          job->addresses.push_back(address);
        }
        ::freeaddrinfo(result);
      }
      const uint64_t one = 1;
      [[maybe_unused]] auto ignored = ::write(job->done.get(), &one, sizeof one);
    }).detach();
  } catch (const std::exception&) {
    return Outcome::kError;
  }
  switch (waitFor(stop_fd, job->done.get(), POLLIN, deadline)) {
    case Wait::kReady: break;
    case Wait::kTimeout: return Outcome::kTimeout;
    case Wait::kStopped: return Outcome::kStopped;
    case Wait::kError: return Outcome::kError;
  }
  std::lock_guard lock(job->mutex);
  if (job->status != 0) return Outcome::kNotFound;
  out = job->addresses;
  return out.empty() ? Outcome::kNotFound : Outcome::kOk;
}

void setNoDelay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Tries each address in order, each for up to `timeout`. kTimeout when no address connected and
// at least one timed out; kRefused when every one failed otherwise.
Outcome connectAny(int stop_fd, const std::vector<Address>& addresses, std::chrono::milliseconds timeout, Fd& out) {
  bool timed_out = false;
  for (const Address& address : addresses) {
    Fd fd(::socket(address.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) continue;
    int rc = ::connect(fd.get(), address.get(), address.length);
    if (rc != 0 && errno == EINPROGRESS) {
      switch (waitFor(stop_fd, fd.get(), POLLOUT, Clock::now() + timeout)) {
        case Wait::kReady: {
          int error = 0;
          socklen_t length = sizeof error;
          if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
          rc = error == 0 ? 0 : -1;
          break;
        }
        case Wait::kTimeout:
          timed_out = true;
          continue;
        case Wait::kStopped:
          return Outcome::kStopped;
        case Wait::kError:
          continue;
      }
    }
    if (rc == 0) {
      setNoDelay(fd.get());
      out = std::move(fd);
      return Outcome::kOk;
    }
  }
  return timed_out ? Outcome::kTimeout : Outcome::kRefused;
}

// What the job is told when its attempt ends before reaching the destination.
struct Refusal {
  int status = 0;
  const char* phrase = "";
  std::string reason;  // for the stats
  std::string body;    // without the "deploy-agent egress proxy: " prefix
};

std::string errorResponse(int status, const char* phrase, const std::string& message) {
  const std::string body = "deploy-agent egress proxy: " + message + "\n";
  return "HTTP/1.1 " + std::to_string(status) + " " + phrase +
         "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

const char* trustName(Trust trust) { return trust == Trust::kOperator ? "operator" : "job-derived"; }

}  // namespace

// ---- stats ------------------------------------------------------------------------------

void mergeInto(EgressStats& into, const EgressStats& from) {
  std::map<std::string, EgressStats::Allowed> allowed;
  std::map<std::string, EgressStats::Denied> denied;
  for (const EgressStats* stats : {static_cast<const EgressStats*>(&into), &from}) {
    for (const auto& entry : stats->allowed) {
      auto& sum = allowed[entry.host];
      sum.host = entry.host;
      sum.connections += entry.connections;
      sum.bytes_in += entry.bytes_in;
      sum.bytes_out += entry.bytes_out;
    }
    for (const auto& entry : stats->denied) {
      auto& sum = denied[entry.host];
      sum.host = entry.host;
      sum.attempts += entry.attempts;
      if (sum.reason.empty()) sum.reason = entry.reason;
    }
  }
  into.refused_over_limit += from.refused_over_limit;
  into.allowed.clear();
  into.denied.clear();
  for (auto& [host, entry] : allowed) into.allowed.push_back(std::move(entry));
  for (auto& [host, entry] : denied) into.denied.push_back(std::move(entry));
}

// ---- the proxy --------------------------------------------------------------------------

struct EgressProxy::Impl {
  Impl(int listening_fd, EgressAllowlist allowlist_in, EgressLimits limits_in,
       std::map<std::string, std::string> env_in)
      : listener(listening_fd), allowlist(std::move(allowlist_in)), limits(limits_in), env(std::move(env_in)) {}

  Fd listener;
  Fd stop_event;
  EgressAllowlist allowlist;
  EgressLimits limits;
  std::map<std::string, std::string> env;

  mutable std::mutex stats_mutex;
  std::map<std::string, EgressStats::Allowed> allowed;
  std::map<std::string, EgressStats::Denied> denied;
  uint64_t refused_over_limit = 0;

  struct Connection {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::mutex connections_mutex;
  std::list<Connection> connections;  // touched by the accept thread, and by stop() after it ended

  std::thread acceptor;
  std::mutex stop_mutex;
  bool stopped = false;

  int stopFd() const { return stop_event.get(); }

  // -- stats (the caller holds stats_mutex) --
  template <typename Map>
  std::string listedKey(const Map& map, const std::string& host) const {
    if (map.count(host) != 0) return host;
    const size_t listed = map.size() - map.count(kOther);
    return listed < limits.max_listed_hosts ? host : std::string(kOther);
  }

  void recordDenied(const std::string& host, const std::string& reason) {
    std::lock_guard lock(stats_mutex);
    const std::string key = listedKey(denied, host);
    auto& entry = denied[key];
    if (entry.attempts == 0) {
      entry.host = key;
      entry.reason = reason;
    }
    ++entry.attempts;
  }

  // Returns the key later byte counts go to.
  std::string recordConnection(const std::string& host) {
    std::lock_guard lock(stats_mutex);
    const std::string key = listedKey(allowed, host);
    auto& entry = allowed[key];
    entry.host = key;
    ++entry.connections;
    return key;
  }

  void addBytes(const std::string& key, uint64_t in, uint64_t out) {
    std::lock_guard lock(stats_mutex);
    auto& entry = allowed[key];
    entry.bytes_in += in;
    entry.bytes_out += out;
  }

  EgressStats snapshot() const {
    std::lock_guard lock(stats_mutex);
    EgressStats stats;
    for (const auto& [host, entry] : allowed) stats.allowed.push_back(entry);
    for (const auto& [host, entry] : denied) stats.denied.push_back(entry);
    stats.refused_over_limit = refused_over_limit;
    return stats;
  }

  // -- connections --

  // Answers an error and closes politely: our FIN first, then what the client still sends is
  // read and dropped for a moment, so closing with unread input does not turn into a reset that
  // destroys the answer before the client reads it.
  void answer(Fd& client, int status, const char* phrase, const std::string& message) {
    if (!sendAll(stopFd(), client.get(), errorResponse(status, phrase, message), Clock::now() + kAnswerTimeout)) {
      return;
    }
    ::shutdown(client.get(), SHUT_WR);
    const auto deadline = Clock::now() + kDrainTimeout;
    size_t drained = 0;
    char sink[8192];
    while (drained < kDrainLimit) {
      const ssize_t n = ::recv(client.get(), sink, sizeof sink, 0);
      if (n > 0) {
        drained += static_cast<size_t>(n);
        continue;
      }
      if (n == 0) return;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return;
      if (waitFor(stopFd(), client.get(), POLLIN, deadline) != Wait::kReady) return;
    }
  }

  void refuse(Fd& client, const std::string& host, const Refusal& refusal) {
    spdlog::debug("egress proxy: {} refused ({})", host, refusal.reason);
    recordDenied(host, refusal.reason);
    answer(client, refusal.status, refusal.phrase, refusal.body);
  }

  struct Upstream {
    Fd fd;
    std::string from_upstream;  // bytes the upstream proxy sent after its 2xx head
    std::optional<convex::ProxySettings> via;
  };

  // Checks, resolves and connects (directly or through the upstream proxy, which for a tunnel
  // has then answered 2xx to our CONNECT). On failure the client has been answered and the
  // denial recorded, or the proxy is stopping; returns nullopt.
  std::optional<Upstream> reach(Fd& client, const Destination& destination, bool tunnel) {
    const std::string name = displayName(destination);
    const auto trust = allowlist.match(destination);
    if (!trust) {
      refuse(client, name, {403, "Forbidden", "not_allowed", name + " is not on this job's allowlist"});
      return std::nullopt;
    }

    const auto options = convex::httpOptionsFromEnvironment(env, (tunnel ? "https://" : "http://") + name);
    if (!options.config_error.empty()) {
      refuse(client, name,
             {502, "Bad Gateway", "upstream_proxy_misconfigured",
              name + " is allowed, but the agent's own proxy setting is unusable"});
      return std::nullopt;
    }

    Upstream upstream;
    const auto deadline = Clock::now() + limits.connect_timeout;
    if (options.proxy) {
      upstream.via = options.proxy;
      std::vector<Address> addresses;
      Outcome outcome = resolve(stopFd(), options.proxy->host, options.proxy->port, deadline, addresses);
      if (outcome == Outcome::kOk) outcome = connectAny(stopFd(), addresses, limits.connect_timeout, upstream.fd);
      if (outcome == Outcome::kStopped) return std::nullopt;
      if (outcome != Outcome::kOk) {
        const bool timeout = outcome == Outcome::kTimeout;
        refuse(client, name,
               {timeout ? 504 : 502, timeout ? "Gateway Timeout" : "Bad Gateway",
                timeout ? "upstream_timeout" : "upstream_proxy_unreachable",
                name + " is allowed, but the upstream proxy (" + options.proxy->source + ") " +
                    (timeout ? "did not answer in time" : "cannot be reached")});
        return std::nullopt;
      }
      if (tunnel) {
        const std::string request = "CONNECT " + name + " HTTP/1.1\r\nHost: " + name + "\r\n" +
                                    proxyAuthorization(*options.proxy) + "\r\n";
        std::string head;
        size_t head_end = 0;
        HeadResult result = HeadResult::kError;
        if (sendAll(stopFd(), upstream.fd.get(), request, deadline)) {
          result = readHead(stopFd(), upstream.fd.get(), kUpstreamHeadLimit, deadline, head, head_end);
        }
        if (result == HeadResult::kStopped) return std::nullopt;
        const int status = result == HeadResult::kOk ? responseStatus(head) : -1;
        if (status < 200 || status > 299) {
          const bool timeout = result == HeadResult::kTimeout;
          refuse(client, name,
                 {timeout ? 504 : 502, timeout ? "Gateway Timeout" : "Bad Gateway",
                  timeout ? "upstream_timeout" : "upstream_proxy_refused",
                  name + " is allowed, but the upstream proxy (" + options.proxy->source + ") " +
                      (timeout ? "did not answer in time"
                               : status > 0 ? "refused the tunnel with status " + std::to_string(status)
                                            : "gave no usable answer")});
          return std::nullopt;
        }
        upstream.from_upstream = head.substr(head_end);
      }
      spdlog::debug("egress proxy: {} allowed ({}), via the upstream proxy", name, trustName(*trust));
      return upstream;
    }

    std::vector<Address> addresses;
    Outcome outcome = resolve(stopFd(), destination.host, destination.port, deadline, addresses);
    if (outcome == Outcome::kOk && *trust == Trust::kJobDerived) {
      std::erase_if(addresses, [](const Address& a) { return isInternalAddress(a.get()); });
      if (addresses.empty()) {
        refuse(client, name,
               {403, "Forbidden", "resolves_to_internal_address",
                name + " resolves only to internal addresses (loopback, link-local, ...), which a "
                       "destination taken from the job may not reach"});
        return std::nullopt;
      }
    }
    if (outcome == Outcome::kOk) outcome = connectAny(stopFd(), addresses, limits.connect_timeout, upstream.fd);
    switch (outcome) {
      case Outcome::kOk:
        spdlog::debug("egress proxy: {} allowed ({})", name, trustName(*trust));
        return upstream;
      case Outcome::kStopped:
        return std::nullopt;
      case Outcome::kNotFound:
        refuse(client, name, {502, "Bad Gateway", "name_not_resolved", name + " is allowed, but the name does not resolve"});
        return std::nullopt;
      case Outcome::kTimeout:
        refuse(client, name, {504, "Gateway Timeout", "upstream_timeout", name + " is allowed, but did not answer in time"});
        return std::nullopt;
      case Outcome::kRefused:
      case Outcome::kError:
        refuse(client, name, {502, "Bad Gateway", "upstream_unreachable", name + " is allowed, but cannot be reached"});
        return std::nullopt;
    }
    return std::nullopt;
  }

  // Moves bytes both ways until both sides have closed (a tunnel) or the destination has closed
  // (`end_on_upstream_eof`, plain HTTP), an error, the idle timeout, or stop().
  // `to_upstream`/`to_client` are sent first (already counted).
  void relay(Fd& client, Fd& upstream, std::string to_upstream, std::string to_client, bool end_on_upstream_eof,
             const std::string& key) {
    struct Direction {
      int from;
      int to;
      std::string buffer;
      size_t start = 0;
      bool eof = false;       // `from` sent its FIN
      bool shut = false;      // we passed the FIN on to `to`
      bool pending() const { return start < buffer.size(); }
    };
    Direction up{client.get(), upstream.get(), std::move(to_upstream)};    // job -> destination
    Direction down{upstream.get(), client.get(), std::move(to_client)};    // destination -> job
    up.buffer.reserve(kRelayBuffer);
    down.buffer.reserve(kRelayBuffer);
    auto last_activity = Clock::now();

    // Returns false when the connection is over.
    auto pump = [&](Direction& d, short revents, bool reading, bool is_down) -> bool {
      if (reading) {
        if ((revents & (POLLIN | POLLHUP | POLLERR)) == 0) return true;
        d.buffer.resize(kRelayBuffer);
        d.start = 0;
        const ssize_t n = ::recv(d.from, d.buffer.data(), kRelayBuffer, 0);
        if (n > 0) {
          d.buffer.resize(static_cast<size_t>(n));
          last_activity = Clock::now();
          // Counted before being passed on, so a reader that saw them sees them counted.
          addBytes(key, is_down ? static_cast<uint64_t>(n) : 0, is_down ? 0 : static_cast<uint64_t>(n));
          return true;
        }
        d.buffer.clear();
        if (n == 0) {
          d.eof = true;
          return true;
        }
        return errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK;
      }
      if ((revents & (POLLOUT | POLLHUP | POLLERR)) == 0) return true;
      const ssize_t n = ::send(d.to, d.buffer.data() + d.start, d.buffer.size() - d.start, MSG_NOSIGNAL);
      if (n > 0) {
        d.start += static_cast<size_t>(n);
        if (d.start == d.buffer.size()) {
          d.buffer.clear();
          d.start = 0;
        }
        last_activity = Clock::now();
        return true;
      }
      return n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK);
    };

    while (true) {
      // Pass a finished side's FIN on once its bytes are out.
      if (up.eof && !up.pending() && !up.shut) {
        ::shutdown(upstream.get(), SHUT_WR);
        up.shut = true;
      }
      if (down.eof && !down.pending()) {
        if (end_on_upstream_eof) return;
        if (!down.shut) {
          ::shutdown(client.get(), SHUT_WR);
          down.shut = true;
        }
      }
      if (up.shut && down.shut) return;

      const bool read_client = !up.eof && !up.pending();
      const bool read_upstream = !down.eof && !down.pending();
      const short client_events = static_cast<short>((read_client ? POLLIN : 0) | (down.pending() ? POLLOUT : 0));
      const short upstream_events = static_cast<short>((read_upstream ? POLLIN : 0) | (up.pending() ? POLLOUT : 0));
      pollfd fds[3] = {{stopFd(), POLLIN, 0},
                       {client_events != 0 ? client.get() : -1, client_events, 0},
                       {upstream_events != 0 ? upstream.get() : -1, upstream_events, 0}};
      const int ms = remainingMs(last_activity + limits.idle_timeout);
      if (ms == 0) {
        spdlog::debug("egress proxy: {} idle for {} ms, closed", key, limits.idle_timeout.count());
        return;
      }
      const int n = ::poll(fds, 3, ms);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[0].revents != 0) return;
      if (n == 0) continue;  // the idle check above decides
      const short cr = fds[1].revents;
      const short ur = fds[2].revents;
      if ((cr | ur) & POLLNVAL) return;
      if (up.pending() ? !pump(up, ur, false, false) : (read_client && !pump(up, cr, true, false))) return;
      if (down.pending() ? !pump(down, cr, false, true) : (read_upstream && !pump(down, ur, true, true))) return;
    }
  }

  void tunnel(Fd& client, const Destination& destination, std::string leftover) {
    auto upstream = reach(client, destination, true);
    if (!upstream) return;
    setNoDelay(client.get());
    const std::string key = recordConnection(displayName(destination));
    addBytes(key, upstream->from_upstream.size(), leftover.size());
    relay(client, upstream->fd, std::move(leftover),
          "HTTP/1.1 200 Connection established\r\n\r\n" + upstream->from_upstream, false, key);
  }

  void forward(Fd& client, const Destination& destination, const RequestHead& request, const std::string& path,
               std::string leftover) {
    auto upstream = reach(client, destination, false);
    if (!upstream) return;

    // Hop-by-hop headers are for this hop; Connection may name more of them. Host is replaced
    // by the checked authority; message framing is kept whatever Connection says (the body is
    // relayed raw and must keep meaning what the job sent).
    std::vector<std::string> dropped = {"proxy-authorization", "proxy-connection", "connection", "keep-alive",
                                        "host"};
    for (const Header& header : request.headers) {
      if (header.lower_name != "connection") continue;
      for (std::string_view rest = header.value; !rest.empty();) {
        const auto comma = rest.find(',');
        const std::string token = asciiLower(trimOws(rest.substr(0, comma)));
        if (!token.empty() && token != "content-length" && token != "transfer-encoding") dropped.push_back(token);
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      }
    }
    std::string head = request.method + " ";
    head += upstream->via ? "http://" + hostHeader(destination) + path : path;
    head += " " + request.version + "\r\nHost: " + hostHeader(destination) + "\r\n";
    for (const Header& header : request.headers) {
      if (std::find(dropped.begin(), dropped.end(), header.lower_name) != dropped.end()) continue;
      head += header.name + ": " + header.value + "\r\n";
    }
    if (upstream->via) head += proxyAuthorization(*upstream->via);
    head += "Connection: close\r\n\r\n";
    head += leftover;

    const std::string key = recordConnection(displayName(destination));
    addBytes(key, 0, head.size());
    relay(client, upstream->fd, std::move(head), {}, true, key);
  }

  void serve(Fd client) {
    std::string buffer;
    size_t head_end = 0;
    switch (readHead(stopFd(), client.get(), limits.max_request_head_bytes, Clock::now() + limits.idle_timeout,
                     buffer, head_end)) {
      case HeadResult::kOk:
        break;
      case HeadResult::kTooLarge:
        refuse(client, kUnparsed,
               {431, "Request Header Fields Too Large", "request_head_too_large",
                "the request head exceeds " + std::to_string(limits.max_request_head_bytes) + " bytes"});
        return;
      default:
        return;
    }
    RequestHead request;
    std::string why;
    if (!parseRequestHead(std::string_view(buffer).substr(0, head_end), request, why)) {
      refuse(client, kUnparsed, {400, "Bad Request", "malformed_request", "malformed request: " + why});
      return;
    }
    std::string leftover = buffer.substr(head_end);
    std::string error;

    if (request.method == "CONNECT") {
      auto destination = parseAuthority(request.target, std::nullopt, error);
      if (!destination) {
        refuse(client, kUnparsed,
               {400, "Bad Request", "malformed_request", "malformed request: CONNECT needs host:port (" + error + ")"});
        return;
      }
      tunnel(client, *destination, std::move(leftover));
      return;
    }

    const auto scheme_end = request.target.find("://");
    if (request.target.front() == '/' || request.target == "*" || scheme_end == std::string::npos) {
      refuse(client, kUnparsed,
             {400, "Bad Request", "not_a_proxy_request",
              "this is a forward proxy: request an absolute URL (http://host/path) or CONNECT host:port"});
      return;
    }
    const std::string scheme = asciiLower(std::string_view(request.target).substr(0, scheme_end));
    std::string_view rest = std::string_view(request.target).substr(scheme_end + 3);
    const auto authority_end = std::min(rest.find_first_of("/?#"), rest.size());
    std::string_view authority = rest.substr(0, authority_end);
    if (auto at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
    std::string path(rest.substr(authority_end));
    if (auto hash = path.find('#'); hash != std::string::npos) path.erase(hash);
    if (path.empty() || path.front() == '?') path.insert(0, "/");

    if (scheme == "https") {
      auto destination = parseAuthority(authority, 443, error);
      const std::string name = destination ? displayName(*destination) : kUnparsed;
      refuse(client, name,
             {400, "Bad Request", "https_without_connect",
              (destination ? name : std::string("an https URL")) +
                  " must be requested with CONNECT host:port; this proxy does not terminate TLS"});
      return;
    }
    if (scheme != "http") {
      refuse(client, kUnparsed,
             {400, "Bad Request", "unsupported_scheme", "only http:// URLs and CONNECT are supported"});
      return;
    }
    auto destination = parseAuthority(authority, 80, error);
    if (!destination) {
      refuse(client, kUnparsed, {400, "Bad Request", "malformed_request", "malformed request: " + error});
      return;
    }
    forward(client, *destination, request, path, std::move(leftover));
  }

  // Joins connection threads that finished; returns how many are still open.
  size_t reap() {
    std::lock_guard lock(connections_mutex);
    for (auto it = connections.begin(); it != connections.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = connections.erase(it);
      } else {
        ++it;
      }
    }
    return connections.size();
  }

  void refuseOverLimit(int fd) {
    {
      std::lock_guard lock(stats_mutex);
      ++refused_over_limit;
    }
    spdlog::debug("egress proxy: more than {} connections, one refused", limits.max_connections);
    const std::string response =
        errorResponse(503, "Service Unavailable",
                      "too many connections (at most " + std::to_string(limits.max_connections) + " at a time)");
    // Best effort, never blocking the accept thread: the socket is fresh, its buffer empty.
    [[maybe_unused]] auto sent = ::send(fd, response.data(), response.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(fd, SHUT_WR);
    char sink[4096];
    while (::recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
    ::close(fd);
  }

  void acceptLoop() {
    while (true) {
      pollfd fds[2] = {{stopFd(), POLLIN, 0}, {listener.get(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        spdlog::error("egress proxy: poll failed: {}", std::strerror(errno));
        return;
      }
      if (fds[0].revents != 0) return;
      if (fds[1].revents & (POLLNVAL | POLLERR | POLLHUP)) {
        spdlog::error("egress proxy: the listening socket failed; no more connections are accepted");
        return;
      }
      const int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED || errno == EPROTO) {
          continue;
        }
        spdlog::warn("egress proxy: accept failed: {}", std::strerror(errno));
        // Out of descriptors or memory: back off instead of spinning.
        if (waitFor(stopFd(), stopFd(), POLLIN, Clock::now() + std::chrono::milliseconds(100)) != Wait::kTimeout) {
          return;
        }
        continue;
      }
      if (reap() >= limits.max_connections) {
        refuseOverLimit(fd);
        continue;
      }
      auto done = std::make_shared<std::atomic<bool>>(false);
      try {
        std::lock_guard lock(connections_mutex);
        connections.push_back({std::thread([this, fd, done] {
                                 try {
                                   serve(Fd(fd));
                                 } catch (const std::exception& e) {
                                   spdlog::warn("egress proxy: a connection ended with an error: {}", e.what());
                                 } catch (...) {
                                   spdlog::warn("egress proxy: a connection ended with an unknown error");
                                 }
                                 done->store(true);
                               }),
                               done});
      } catch (const std::exception& e) {
        // The thread never started: the descriptor is still ours.
        spdlog::warn("egress proxy: cannot start a connection thread: {}", e.what());
        ::close(fd);
      }
    }
  }
};

EgressProxy::EgressProxy(int listening_fd, EgressAllowlist allowlist, EgressLimits limits,
                         std::map<std::string, std::string> upstream_env)
    : impl_(std::make_unique<Impl>(listening_fd, std::move(allowlist), limits, std::move(upstream_env))) {
  impl_->stop_event = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!impl_->stop_event.valid()) throw std::system_error(errno, std::generic_category(), "eventfd");
  // accept4 after poll must not block if the pending connection went away meanwhile.
  const int flags = ::fcntl(listening_fd, F_GETFL);
  if (flags >= 0) ::fcntl(listening_fd, F_SETFL, flags | O_NONBLOCK);
  ::fcntl(listening_fd, F_SETFD, FD_CLOEXEC);
  impl_->acceptor = std::thread([impl = impl_.get()] {
    try {
      impl->acceptLoop();
    } catch (...) {
      spdlog::error("egress proxy: the accept thread ended with an error");
    }
  });
}

EgressProxy::~EgressProxy() { stop(); }

void EgressProxy::stop() {
  std::lock_guard lock(impl_->stop_mutex);
  if (impl_->stopped) return;
  impl_->stopped = true;
  // Never read back: every poll() on it stays woken for good.
  const uint64_t one = 1;
  [[maybe_unused]] auto written = ::write(impl_->stop_event.get(), &one, sizeof one);
  if (impl_->acceptor.joinable()) impl_->acceptor.join();
  std::list<Impl::Connection> connections;
  {
    std::lock_guard connections_lock(impl_->connections_mutex);
    connections.swap(impl_->connections);
  }
  for (auto& connection : connections) {
    if (connection.thread.joinable()) connection.thread.join();
  }
  impl_->listener.reset();
}

EgressStats EgressProxy::stats() const { return impl_->snapshot(); }

}  // namespace da::net

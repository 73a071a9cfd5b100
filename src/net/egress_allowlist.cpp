#include "net/egress_allowlist.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include <arpa/inet.h>
#include <netinet/in.h>
#include "util/strings.h"

namespace da::net {

namespace {

std::string_view stripBrackets(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') return host.substr(1, host.size() - 2);
  return host;
}

// inet_ntop form of an IPv4 or IPv6 literal (IPv4-mapped IPv6 stays IPv6 unless `unmap_v4`),
// or nullopt when `host` is not one. inet_pton takes dotted-quad IPv4 only, by design.
std::optional<std::string> ipLiteral(const std::string& host, bool unmap_v4) {
  char text[INET6_ADDRSTRLEN] = {};
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    if (inet_ntop(AF_INET, &v4, text, sizeof text) == nullptr) return std::nullopt;
    return std::string(text);
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (unmap_v4 && IN6_IS_ADDR_V4MAPPED(&v6)) {
      std::memcpy(&v4, &v6.s6_addr[12], 4);
      if (inet_ntop(AF_INET, &v4, text, sizeof text) == nullptr) return std::nullopt;
      return std::string(text);
    }
    if (inet_ntop(AF_INET6, &v6, text, sizeof text) == nullptr) return std::nullopt;
    return std::string(text);
  }
  return std::nullopt;
}

// The display form of a host: lowercase, no brackets, one trailing dot dropped, IP literals in
// inet_ntop form.
std::string normalizedHost(std::string_view raw) {
  std::string host = asciiLower(stripBrackets(raw));
  if (!host.empty() && host.back() == '.') host.pop_back();
  if (auto ip = ipLiteral(host, false)) return *ip;
  return host;
}

// The form hosts are compared in: as above, and IPv4-mapped IPv6 literals as their IPv4.
std::string comparisonHost(std::string_view raw) {
  std::string host = normalizedHost(raw);
  if (auto ip = ipLiteral(host, true)) return *ip;
  return host;
}

bool validName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    const auto u = static_cast<unsigned char>(c);
    if (!(std::isalnum(u) || c == '-' || c == '_')) return false;
    if (++label > 63) return false;
  }
  return label > 0;
}

std::optional<uint16_t> parsePort(std::string_view digits) {
  if (digits.empty() || digits.size() > 5) return std::nullopt;
  unsigned value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

bool internalV4(uint32_t host_order) {
  const uint32_t a = host_order >> 24;
  if (a == 127) return true;                              // loopback
  if (a == 0) return true;                                // unspecified / "this network"
  if ((host_order & 0xFFFF0000u) == 0xA9FE0000u) return true;  // 169.254/16 link-local, metadata
  if ((a & 0xF0u) == 0xE0u) return true;                  // 224/4 multicast
  if (host_order == 0xFFFFFFFFu) return true;             // limited broadcast
  return false;
}

}  // namespace

std::string displayName(const Destination& destination) {
  if (destination.host.find(':') != std::string::npos) {
    return "[" + destination.host + "]:" + std::to_string(destination.port);
  }
  return destination.host + ":" + std::to_string(destination.port);
}

std::optional<Destination> parseAuthority(std::string_view authority, std::optional<uint16_t> default_port,
                                          std::string& error) {
  error.clear();
  auto fail = [&](const char* why) -> std::optional<Destination> {
    error = why;
    return std::nullopt;
  };
  if (authority.empty()) return fail("the host is missing");

  std::string_view host_text;
  std::string_view port_text;
  bool has_port = false;
  bool bracketed = false;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return fail("an IPv6 literal lacks its closing ']'");
    host_text = authority.substr(1, close - 1);
    bracketed = true;
    auto rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return fail("unexpected text after the IPv6 literal");
      port_text = rest.substr(1);
      has_port = true;
    }
  } else {
    const auto colon = authority.find(':');
    if (colon == std::string_view::npos) {
      host_text = authority;
    } else if (authority.find(':', colon + 1) == std::string_view::npos) {
      host_text = authority.substr(0, colon);
      port_text = authority.substr(colon + 1);
      has_port = true;
    } else {
      host_text = authority;  // a bare IPv6 literal: no port possible
      bracketed = true;
    }
  }

  Destination destination;
  if (has_port) {
    auto port = parsePort(port_text);
    if (!port) return fail(port_text.empty() ? "the port is empty" : "the port is not a number from 1 to 65535");
    destination.port = *port;
  } else if (default_port) {
    destination.port = *default_port;
  } else {
    return fail("the port is missing (expected host:port)");
  }

  std::string host = asciiLower(host_text);
  if (bracketed) {
    in6_addr v6{};
    if (inet_pton(AF_INET6, host.c_str(), &v6) != 1) return fail("not a valid IPv6 literal");
    char text[INET6_ADDRSTRLEN] = {};
    if (inet_ntop(AF_INET6, &v6, text, sizeof text) == nullptr) return fail("not a valid IPv6 literal");
    destination.host = text;
    return destination;
  }
  if (!host.empty() && host.back() == '.') host.pop_back();
  if (auto ip = ipLiteral(host, false)) {
    destination.host = *ip;
    return destination;
  }
  if (!validName(host)) return fail("the host is not a valid name or IP address");
  destination.host = std::move(host);
  return destination;
}

std::optional<Destination> originOf(std::string_view url, std::string& error) {
  error.clear();
  const auto sep = url.find("://");
  if (sep == std::string_view::npos) {
    error = "not an absolute http(s) URL";
    return std::nullopt;
  }
  const std::string scheme = asciiLower(url.substr(0, sep));
  uint16_t default_port = 0;
  if (scheme == "https") {
    default_port = 443;
  } else if (scheme == "http") {
    default_port = 80;
  } else {
    error = "only http and https URLs have an origin here";
    return std::nullopt;
  }
  std::string_view authority = url.substr(sep + 3);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  if (auto at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
  auto destination = parseAuthority(authority, default_port, error);
  if (!destination) error = "the URL's authority is unusable: " + error;
  return destination;
}

void EgressAllowlist::allow(Destination destination, Trust trust) {
  destination.host = normalizedHost(destination.host);
  auto key = std::make_pair(comparisonHost(destination.host), destination.port);
  auto [it, inserted] = entries_.try_emplace(key, destination, trust);
  if (!inserted && trust == Trust::kOperator) it->second.second = Trust::kOperator;
}

bool EgressAllowlist::allowOrigin(std::string_view url, Trust trust, std::string& error) {
  auto destination = originOf(url, error);
  if (!destination) return false;
  allow(std::move(*destination), trust);
  return true;
}

std::optional<Trust> EgressAllowlist::match(const Destination& destination) const {
  auto it = entries_.find(std::make_pair(comparisonHost(destination.host), destination.port));
  if (it == entries_.end()) return std::nullopt;
  return it->second.second;
}

std::vector<std::pair<Destination, Trust>> EgressAllowlist::entries() const {
  std::vector<std::pair<Destination, Trust>> out;
  out.reserve(entries_.size());
  for (const auto& [key, entry] : entries_) out.push_back(entry);
  return out;
}

bool isInternalAddress(const sockaddr* address) {
  if (address == nullptr) return true;
  if (address->sa_family == AF_INET) {
    sockaddr_in v4{};
    std::memcpy(&v4, address, sizeof v4);
    return internalV4(ntohl(v4.sin_addr.s_addr));
  }
  if (address->sa_family == AF_INET6) {
    sockaddr_in6 v6{};
    std::memcpy(&v6, address, sizeof v6);
    const in6_addr& a = v6.sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&a) || IN6_IS_ADDR_UNSPECIFIED(&a)) return true;
    if (IN6_IS_ADDR_LINKLOCAL(&a) || IN6_IS_ADDR_MULTICAST(&a)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&a) || IN6_IS_ADDR_V4COMPAT(&a)) {
      uint32_t embedded = 0;
      std::memcpy(&embedded, &a.s6_addr[12], 4);
      return internalV4(ntohl(embedded));
    }
    return false;
  }
  return true;
}

}  // namespace da::net

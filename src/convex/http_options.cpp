#include "convex/http_options.h"

#include <algorithm>
#include <cctype>

#include <Poco/Exception.h>
#include <Poco/Net/IPAddress.h>
#include <Poco/URI.h>
#include "util/strings.h"

namespace da::convex {

namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return text;
}

// The value of the first of `names` present in `env` (present but empty counts: it decides).
const std::pair<const std::string, std::string>* firstPresent(
    const std::map<std::string, std::string>& env, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (auto it = env.find(name); it != env.end()) return &*it;
  }
  return nullptr;
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

// Splits "host", "host:port", "[v6]" or "[v6]:port". An unbracketed value with more than one
// colon is a bare IPv6 address without a port. `port_text` is empty when there is no port.
bool splitHostPort(std::string_view text, std::string_view& host, std::string_view& port_text) {
  port_text = {};
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return false;
    host = text.substr(1, close - 1);
    auto rest = text.substr(close + 1);
    if (rest.empty()) return true;
    if (rest.front() != ':') return false;
    port_text = rest.substr(1);
    return true;
  }
  auto colon = text.find(':');
  if (colon != std::string_view::npos && text.find(':', colon + 1) == std::string_view::npos) {
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    return true;
  }
  host = text;
  return true;
}

std::optional<Poco::Net::IPAddress> ipLiteral(const std::string& host) {
  Poco::Net::IPAddress address;
  if (Poco::Net::IPAddress::tryParse(host, address)) return address;
  return std::nullopt;
}

std::string normalizeHost(std::string_view host) {
  std::string out = asciiLower(trim(host));
  if (out.size() >= 2 && out.front() == '[' && out.back() == ']') out = out.substr(1, out.size() - 2);
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

bool entryMatches(std::string_view raw_entry, const std::string& host,
                  const std::optional<Poco::Net::IPAddress>& host_ip, uint16_t port) {
  std::string_view entry_host;
  std::string_view entry_port;
  if (!splitHostPort(raw_entry, entry_host, entry_port)) return false;
  if (!entry_port.empty()) {
    auto wanted = parsePort(entry_port);
    if (!wanted || *wanted != port) return false;
  }
  std::string name = normalizeHost(entry_host);
  if (name.rfind("*.", 0) == 0) {
    name.erase(0, 2);
  } else if (!name.empty() && name.front() == '.') {
    name.erase(0, 1);
  }
  if (name.empty()) return false;
  if (auto entry_ip = ipLiteral(name)) {
    // Addresses compare as addresses ("::1" == "0:0::1"), never as domain suffixes.
    return host_ip && *host_ip == *entry_ip;
  }
  if (host_ip) return false;
  if (host == name) return true;
  return host.size() > name.size() && host.compare(host.size() - name.size(), name.size(), name) == 0 &&
         host[host.size() - name.size() - 1] == '.';
}

}  // namespace

bool noProxyMatches(std::string_view no_proxy, std::string_view host, uint16_t port) {
  const std::string target = normalizeHost(host);
  const auto target_ip = ipLiteral(target);
  size_t start = 0;
  while (start <= no_proxy.size()) {
    size_t end = start;
    while (end < no_proxy.size() && no_proxy[end] != ',' &&
           !std::isspace(static_cast<unsigned char>(no_proxy[end]))) {
      ++end;
    }
    std::string_view entry = no_proxy.substr(start, end - start);
    if (entry == "*") return true;
    if (!entry.empty() && entryMatches(entry, target, target_ip, port)) return true;
    start = end + 1;
  }
  return false;
}

std::optional<ProxySettings> parseProxyUrl(std::string_view value, std::string_view variable,
                                           std::string& error) {
  error.clear();
  const std::string name(variable);
  auto fail = [&](const std::string& why) -> std::optional<ProxySettings> {
    error = name + " is not a usable proxy URL: " + why +
            " (expected http://[user:password@]host[:port])";
    return std::nullopt;
  };

  std::string_view rest = trim(value);
  if (rest.empty()) return std::nullopt;

  if (auto sep = rest.find("://"); sep != std::string_view::npos) {
    const std::string scheme = asciiLower(rest.substr(0, sep));
    rest.remove_prefix(sep + 3);
    if (scheme == "https") return fail("TLS to the proxy (https://) is not supported; use http://");
    if (scheme != "http") {
      const bool printable = !scheme.empty() && scheme.size() <= 10 &&
                             std::all_of(scheme.begin(), scheme.end(), [](unsigned char c) {
                               return std::isalnum(c) || c == '+' || c == '-' || c == '.';
                             });
      return fail(printable ? "the scheme '" + scheme + "' is not supported" : "the scheme is not supported");
    }
  }

  // Authority ends at the path, query or fragment; a path other than "/" is ignored, as curl does.
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));

  ProxySettings proxy;
  proxy.source = name;
  // The last '@' ends the credentials: a password may hold an unencoded '@'.
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority.remove_prefix(at + 1);
    auto colon = userinfo.find(':');
    try {
      Poco::URI::decode(std::string(userinfo.substr(0, colon)), proxy.username);
      if (colon != std::string_view::npos) {
        Poco::URI::decode(std::string(userinfo.substr(colon + 1)), proxy.password);
      }
    } catch (const Poco::Exception&) {
      return fail("the credentials are not valid percent-encoding");
    }
    if (proxy.username.empty()) return fail("the user name before '@' is empty");
  }

  std::string_view host;
  std::string_view port_text;
  if (!splitHostPort(authority, host, port_text)) return fail("the host is malformed");
  proxy.host = normalizeHost(host);
  if (proxy.host.empty()) return fail("there is no host");
  if (proxy.host.find_first_of(" \t@[]") != std::string::npos) return fail("the host is malformed");
  if (!port_text.empty()) {
    auto port = parsePort(port_text);
    if (!port) return fail("the port is not a number from 1 to 65535");
    proxy.port = *port;
  } else if (authority.size() > 0 && authority.back() == ':') {
    return fail("the port is empty");
  }
  return proxy;
}

HttpOptions httpOptionsFromEnvironment(const std::map<std::string, std::string>& env,
                                       const std::string& target_url) {
  HttpOptions options;

  // Certificates: every source is added to the system store; see the header for why.
  if (auto it = env.find("SSL_CERT_FILE"); it != env.end() && !trim(it->second).empty()) {
    options.extra_ca.push_back({"SSL_CERT_FILE", std::string(trim(it->second)), false});
  }
  if (auto it = env.find("SSL_CERT_DIR"); it != env.end() && !trim(it->second).empty()) {
    options.extra_ca.push_back({"SSL_CERT_DIR", std::string(trim(it->second)), true});
  }
  if (auto it = env.find("NODE_EXTRA_CA_CERTS"); it != env.end() && !trim(it->second).empty()) {
    options.extra_ca.push_back({"NODE_EXTRA_CA_CERTS", std::string(trim(it->second)), false});
  }

  // Proxy: chosen by the target's scheme. A target that does not parse gets none; the client
  // reports the bad URL itself when called.
  Poco::URI target;
  try {
    target = Poco::URI(target_url);
  } catch (const Poco::Exception&) {
    return options;
  }
  const std::string scheme = asciiLower(target.getScheme());
  const std::pair<const std::string, std::string>* chosen = nullptr;
  if (scheme == "https") {
    chosen = firstPresent(env, {"https_proxy", "HTTPS_PROXY"});
  } else if (scheme == "http") {
    chosen = firstPresent(env, {"http_proxy", "HTTP_PROXY"});
  }
  if (chosen == nullptr || trim(chosen->second).empty()) return options;

  if (auto no_proxy = firstPresent(env, {"no_proxy", "NO_PROXY"});
      no_proxy != nullptr && noProxyMatches(no_proxy->second, target.getHost(), target.getPort())) {
    return options;
  }

  std::string error;
  options.proxy = parseProxyUrl(chosen->second, chosen->first, error);
  if (!error.empty()) options.config_error = error;
  return options;
}

}  // namespace da::convex

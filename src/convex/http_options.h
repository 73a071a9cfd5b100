// How the agent's own HTTP calls (the Management API) reach the network: timeouts, retries,
// the proxy and the certificates trusted, derived from the same environment variables that are
// passed through to npm and the Convex CLI, so the agent's call works wherever the CLI's does.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace da::convex {

// An HTTP forward proxy: plain http:// to the proxy; https targets are tunnelled with CONNECT.
struct ProxySettings {
  std::string host;      // DNS name or IP literal (IPv6 without brackets)
  uint16_t port = 80;
  std::string username;  // percent-decoded; empty: no Proxy-Authorization header
  std::string password;  // percent-decoded; never put in a message or a log
  std::string source;    // the variable it came from, e.g. "https_proxy", for messages
};

// A certificate location trusted in addition to the system store.
struct CaLocation {
  std::string source;      // the variable it came from, e.g. "NODE_EXTRA_CA_CERTS", for messages
  std::string path;        // a PEM file, or for `directory` a ':'-separated list of hashed dirs
  bool directory = false;  // SSL_CERT_DIR style (c_rehash layout)
};

struct HttpOptions {
  std::chrono::milliseconds timeout{30000};
  int attempts = 3;  // network errors only: every HTTP status is an answer

  // The proxy for this call's target, or none (unset, or bypassed through no_proxy). It is used
  // for http:// and https:// targets alike.
  std::optional<ProxySettings> proxy;

  // Trust for https targets: OpenSSL's compiled-in system store (unless `system_ca` is false)
  // plus every location in `extra_ca`. See httpOptionsFromEnvironment for why all are additive.
  bool system_ca = true;
  std::vector<CaLocation> extra_ca;

  // Non-empty: the environment could not be turned into options (e.g. a malformed proxy URL).
  // Every call then fails at once with reason "config_error" and this message, which names the
  // variable and never repeats a password.
  std::string config_error;

  // When it turns true (the agent is stopping), a call in flight ends within ~50 ms with
  // reason "cancelled" instead of waiting out `timeout` on every attempt.
  const std::atomic<bool>* cancel = nullptr;
};

// Options for a call to `target_url` (e.g. settings.convex_url), from passed-through variables:
//
// Proxy: for an https target `https_proxy`, else `HTTPS_PROXY`; for an http target
// `http_proxy`, else `HTTP_PROXY` (lower case first, as curl and Node's undici do). The first
// of the pair that is present decides, so an empty `https_proxy` means "no proxy" even when
// HTTPS_PROXY is set. Accepted forms: "http://[user:password@]host[:port][/]" or the same
// without a scheme ("proxy:3128"); credentials may be percent-encoded; the port defaults to 80.
// An https:// proxy (TLS to the proxy itself) or any other scheme is reported as config_error.
//
// Bypass: no proxy when the target matches `no_proxy` (else `NO_PROXY`), see noProxyMatches.
//
// Certificates: the system store, plus SSL_CERT_FILE, SSL_CERT_DIR and NODE_EXTRA_CA_CERTS,
// all *added* to it. NODE_EXTRA_CA_CERTS is additive by definition (Node: bundled roots + these);
// for OpenSSL SSL_CERT_FILE/SSL_CERT_DIR would *replace* the default store, but the Convex CLI
// (Node) ignores them and keeps the public roots, so replacing here could fail a call the CLI
// makes fine (e.g. a bundle holding only the intercepting proxy's CA while no_proxy sends this
// call direct). Adding only trusts certificates the operator already named. The cost: these
// variables cannot narrow (pin) the agent's trust. npm_config_cafile is npm's own and unused.
// A location that cannot be loaded fails https calls with config_error (Node merely warns about
// a missing NODE_EXTRA_CA_CERTS), so a typo is named instead of surfacing as an unknown CA.
// The process environment is not consulted: OpenSSL's own SSL_CERT_FILE lookup is bypassed, so
// only `env` decides.
HttpOptions httpOptionsFromEnvironment(const std::map<std::string, std::string>& env,
                                       const std::string& target_url);

// Parses a proxy variable's value. Empty or blank: nullopt and no error. On failure: nullopt and
// `error` says why, naming `variable` but never repeating the value (it may hold a password).
std::optional<ProxySettings> parseProxyUrl(std::string_view value, std::string_view variable,
                                           std::string& error);

// Whether `host`:`port` bypasses the proxy under a no_proxy value: entries separated by commas
// or whitespace; "*" matches every host; an entry matches the host itself or any subdomain,
// with or without a leading "." or "*." ("example.com", ".example.com" and "*.example.com" all
// match example.com and api.example.com); an IP address entry matches only that address
// (no CIDR ranges); ":port" on an entry restricts it to that port; case-insensitive.
// Loopback is NOT bypassed implicitly: "localhost" or "127.0.0.1" must be listed, as with curl
// and undici, so a local stand-in behind a configured proxy needs a no_proxy entry.
bool noProxyMatches(std::string_view no_proxy, std::string_view host, uint16_t port);

}  // namespace da::convex

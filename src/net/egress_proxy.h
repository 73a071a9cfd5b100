// A per-run HTTP forward proxy for a sandboxed job's network egress.
//
// The job (npm, the Convex CLI, and anything an npm package runs) lives in a network namespace
// with loopback only. The agent creates a listening TCP socket inside that namespace and hands
// it to an EgressProxy, whose threads run in the agent's (host) namespace: the job reaches the
// proxy at 127.0.0.1:<port> (HTTP_PROXY/HTTPS_PROXY=http://127.0.0.1:<port>) and the proxy
// connects out only to destinations on the job's EgressAllowlist (see egress_allowlist.h).
//
// What it speaks, and why:
// - `CONNECT host:port`: checked, resolved, connected, answered "200 Connection established",
//   then bytes are relayed both ways. TLS is NOT terminated: the proxy holds no CA the job would
//   trust, and the job's TLS goes end to end. The cost: the TLS SNI/Host inside the tunnel is not
//   seen, so a CDN fronting an allowed name together with others could be asked for another
//   site ("domain fronting"); the allowlist bounds which front ends can be reached, not which
//   tenants behind them.
// - Absolute-form plain HTTP (`GET http://host[:port]/path HTTP/1.1`, any method): the head is
//   forwarded in origin form with the Host header rewritten to the checked authority (so a Host
//   header naming another virtual host cannot pick a different site on a shared server), the
//   hop-by-hop and proxy credentials headers dropped and `Connection: close` added; the rest is
//   relayed raw and the client is closed when the destination closes.
// - Exactly one request per client connection. A keep-alive second request could name another
//   host; it is never parsed: after the first head the connection only relays to the first
//   destination.
// - Everything else is answered with a short text/plain error naming the destination and why:
//   400 malformed / origin-form / https absolute-form (use CONNECT), 403 not allowed or
//   resolves only to internal addresses, 431 head too large, 502 unreachable or refused by the
//   upstream proxy, 503 too many connections, 504 connect timeout. Nothing about paths, queries
//   or header values is logged or echoed (they may carry tokens).
// - When the agent itself must use a corporate proxy (upstream_env holds HTTPS_PROXY etc.), the
//   job's allowed connections are chained through it, with the same per-destination choice and
//   no_proxy rules the agent's own calls use (da::convex::httpOptionsFromEnvironment). The
//   allowlist is checked first on the job's destination; the corporate proxy then resolves the
//   name (the internal-address filter cannot apply to addresses the agent never sees).
//
// Threads: one accept thread plus one per open connection, at most max_connections. Name
// resolution (getaddrinfo cannot be interrupted) runs in a detached helper thread that owns only
// its own result; a connection waiting for it gives up at stop() or after connect_timeout, and
// the helper ends on its own when the resolver answers, touching nothing of the proxy.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "net/egress_allowlist.h"

namespace da::net {

struct EgressLimits {
  // Concurrent client connections per proxy. Past it a new connection is answered 503 at once
  // and closed, counted in EgressStats::refused_over_limit (not as a denial: no destination was
  // read).
  size_t max_connections = 64;
  // Per address tried; also bounds name resolution and an upstream proxy's CONNECT answer.
  std::chrono::milliseconds connect_timeout{10000};
  // No byte in either direction (or no complete request head) for this long: the connection is
  // closed.
  std::chrono::milliseconds idle_timeout{300000};
  // A request head longer than this (request line + headers + the empty line): 431.
  size_t max_request_head_bytes = 16384;
  // Distinct hosts listed in each of EgressStats::allowed and ::denied; further hosts are
  // summed into one "(other)" entry, so a job cannot grow the report without bound.
  size_t max_listed_hosts = 64;
};

struct EgressStats {
  // host: displayName of the destination. A connection counts once the destination (or the
  // upstream proxy's tunnel to it) is connected. bytes_in: from the destination to the job;
  // bytes_out: from the job to the destination (the forwarded request head included).
  struct Allowed {
    std::string host;
    uint64_t connections = 0, bytes_in = 0, bytes_out = 0;
  };
  // Attempts that did not reach their destination. host: displayName, or "(unparsed)" when
  // the request never named one. reason of the first: "not_allowed",
  // "resolves_to_internal_address", "malformed_request", "request_head_too_large",
  // "not_a_proxy_request" (origin form), "https_without_connect", "unsupported_scheme",
  // "name_not_resolved", "upstream_unreachable", "upstream_timeout",
  // "upstream_proxy_unreachable", "upstream_proxy_refused", "upstream_proxy_misconfigured".
  struct Denied {
    std::string host;
    uint64_t attempts = 0;
    std::string reason;
  };
  std::vector<Allowed> allowed;  // sorted by host
  std::vector<Denied> denied;    // sorted by host
  uint64_t refused_over_limit = 0;
};

// Sums `from` into `into` per host (a job has one proxy per run; its report shows the total).
// A denied host keeps the reason `into` already had.
void mergeInto(EgressStats& into, const EgressStats& from);

class EgressProxy {
 public:
  // Takes ownership of `listening_fd` (bound and listening; may belong to another network
  // namespace) and starts accepting at once. `upstream_env`: the agent's passed-through proxy
  // variables (HTTPS_PROXY, https_proxy, HTTP_PROXY, NO_PROXY, ...). Throws std::system_error
  // when the stop event or the accept thread cannot be created (the fd is closed then).
  EgressProxy(int listening_fd, EgressAllowlist allowlist, EgressLimits limits,
              std::map<std::string, std::string> upstream_env = {});
  ~EgressProxy();  // stop()

  EgressProxy(const EgressProxy&) = delete;
  EgressProxy& operator=(const EgressProxy&) = delete;

  // Idempotent and thread-safe: closes the listener, cuts every open connection and connect in
  // flight, and joins every thread it started (helper resolver threads aside, see above); after
  // it returns nothing of this proxy runs. Prompt: it does not wait for any timeout.
  void stop();

  // A consistent snapshot, also while running and after stop().
  EgressStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace da::net

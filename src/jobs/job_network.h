// A job's network egress (docs/design.md, "Network egress"): every npm and CLI run reaches
// the network only through an egress proxy of the agent, with the run's own allowlist. In the
// namespaces tier the run has a network namespace with loopback only, where the proxy's
// listener is the one thing to connect to; in the Landlock tier TCP connect() is limited to
// the proxy's port; with --sandbox=none the proxy is offered but nothing forces its use.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "config/settings.h"
#include "net/egress_allowlist.h"
#include "report/deploy_report.h"
#include "sandbox/isolation.h"
#include "sandbox/net_ns.h"

namespace da {

namespace net {
class EgressProxy;
}

// Install (npm): the configured registry, nothing else.
net::EgressAllowlist installAllowlist(const Settings& settings);

// Push (the CLI): the Convex URL (provisioning, Management API and version calls) and the
// deployment's own origin, as the provisioning API named it for the job's key ("" if unknown).
net::EgressAllowlist pushAllowlist(const Settings& settings, const std::string& deployment_url);

// How the configured tier bounds a job's network, and what it cannot stop, in words.
void describeEnforcement(const Settings& settings, NetworkReport& network);

// One run's way out: the listener the job reaches, the proxy behind it, the traffic it saw.
class RunEgress {
 public:
  // Creates the listener (in a new network namespace in the namespaces tier) and starts the
  // proxy. Throws std::runtime_error naming the syscall that failed.
  RunEgress(const Settings& settings, net::EgressAllowlist allowlist);
  ~RunEgress();
  RunEgress(const RunEgress&) = delete;
  RunEgress& operator=(const RunEgress&) = delete;

  // Puts the run into its namespace, or limits its TCP connects to the proxy's port.
  void applyTo(sandbox::Isolation& isolation) const;
  // HTTP(S)_PROXY and npm's proxy settings pointing at the proxy, and an empty NO_PROXY.
  std::map<std::string, std::string> proxyEnvironment() const;
  uint16_t port() const { return network_.port; }

  // Stops the proxy (it serves the job no more) and adds what it saw to `network`.
  void finishInto(NetworkReport& network);

 private:
  const Settings& settings_;
  sandbox::LoopbackNetwork network_;
  std::unique_ptr<net::EgressProxy> proxy_;
};

}  // namespace da

#include "jobs/job_network.h"

#include <algorithm>
#include <stdexcept>
#include <unistd.h>

#include "net/egress_proxy.h"

namespace da {

using sandbox::Tier;

namespace {

// An origin the operator configured: the agent fails at start-up on a malformed one, so a
// failure here is a programming error, reported like one.
void allowConfigured(net::EgressAllowlist& allowlist, const std::string& url, const char* what) {
  std::string error;
  if (!allowlist.allowOrigin(url, net::Trust::kOperator, error)) {
    throw std::runtime_error(std::string("the ") + what + " URL cannot be allowed for jobs: " + error);
  }
}

bool hasFacility(const Settings& settings, const std::string& name) {
  const auto& all = settings.sandbox.facilities;
  return std::find(all.begin(), all.end(), name) != all.end();
}

}  // namespace

net::EgressAllowlist installAllowlist(const Settings& settings) {
  net::EgressAllowlist allowlist;
  allowConfigured(allowlist, settings.npm_registry, "npm registry");
  return allowlist;
}

net::EgressAllowlist pushAllowlist(const Settings& settings, const std::string& deployment_url) {
  net::EgressAllowlist allowlist;
  allowConfigured(allowlist, settings.convex_url, "Convex");
  // Named by the provisioning API, for a key the caller may have chosen: it may not lead the
  // job to the agent's own host (see isInternalAddress). Unusable URLs are simply not allowed.
  std::string ignored;
  if (!deployment_url.empty()) allowlist.allowOrigin(deployment_url, net::Trust::kJobDerived, ignored);
  return allowlist;
}

void describeEnforcement(const Settings& settings, NetworkReport& network) {
  network.not_enforced.clear();
  if (!settings.egress.proxy) {
    network.enforcement = "none";
    network.not_enforced = {"every connection: the agent runs with --job-network=host"};
    return;
  }
  switch (settings.sandbox.tier) {
    case Tier::kNamespaces:
      network.enforcement = "network_namespace";
      break;
    case Tier::kLandlock:
      if (hasFacility(settings, "landlock_tcp_ports")) {
        network.enforcement = "landlock_tcp_port";
        network.not_enforced = {
            "TCP to other hosts on the proxy's port number: Landlock filters connect() by port, not by address",
            "unix sockets of host services at paths the filesystem rules allow"};
      } else {
        network.enforcement = "none";
        network.not_enforced = {"direct TCP connections: this kernel's Landlock (ABI < 4) has no network rules"};
      }
      break;
    case Tier::kNone:
      network.enforcement = "none";
      network.not_enforced = {"direct connections of any kind: the agent runs with --sandbox=none"};
      break;
  }
}

RunEgress::RunEgress(const Settings& settings, net::EgressAllowlist allowlist) : settings_(settings) {
  std::string error;
  auto network = settings.sandbox.tier == Tier::kNamespaces ? sandbox::createLoopbackNetwork(0, error)
                                                             : sandbox::listenOnHostLoopback(error);
  if (!network) throw std::runtime_error("cannot give the job its network: " + error);
  network_ = std::move(*network);
  net::EgressLimits limits;
  limits.max_connections = settings.egress.max_connections;
  limits.idle_timeout = settings.egress.idle_timeout;
  limits.connect_timeout = settings.egress.connect_timeout;
  // The proxy owns a duplicate: the namespace handle and our copy stay valid until the run ends.
  const int listener = ::dup(network_.listener.get());
  if (listener < 0) throw std::runtime_error("cannot give the job its network: dup(listener) failed");
  proxy_ = std::make_unique<net::EgressProxy>(listener, std::move(allowlist), limits, settings.env_passthrough);
}

RunEgress::~RunEgress() {
  if (proxy_) proxy_->stop();
}

void RunEgress::applyTo(sandbox::Isolation& isolation) const {
  if (settings_.sandbox.tier == Tier::kNamespaces) {
    isolation.networkNamespace(network_.netns.get());
  } else if (settings_.sandbox.tier == Tier::kLandlock) {
    isolation.tcpConnectPorts({network_.port});
  }
}

std::map<std::string, std::string> RunEgress::proxyEnvironment() const {
  const std::string url = "http://127.0.0.1:" + std::to_string(network_.port);
  // Both spellings: npm reads lower case first, undici (the CLI) both; npm's own settings too.
  // NO_PROXY is emptied: the agent's own bypass list would send a job around its proxy.
  return {{"HTTP_PROXY", url},        {"HTTPS_PROXY", url},       {"http_proxy", url},
          {"https_proxy", url},       {"npm_config_proxy", url},  {"npm_config_https_proxy", url},
          {"NO_PROXY", ""},           {"no_proxy", ""},           {"npm_config_noproxy", ""}};
}

void RunEgress::finishInto(NetworkReport& network) {
  if (!proxy_) return;
  proxy_->stop();
  const net::EgressStats stats = proxy_->stats();
  net::EgressStats total;
  for (const auto& a : network.allowed) total.allowed.push_back({a.host, a.connections, a.bytes_in, a.bytes_out});
  for (const auto& d : network.denied) total.denied.push_back({d.host, d.attempts, d.reason});
  net::mergeInto(total, stats);
  network_ = {};  // the listener and the namespace: nothing is left to connect to
  network.allowed.clear();
  network.denied.clear();
  for (const auto& a : total.allowed) network.allowed.push_back({a.host, a.connections, a.bytes_in, a.bytes_out});
  for (const auto& d : total.denied) network.denied.push_back({d.host, d.attempts, d.reason});
  network.over_connection_limit += stats.refused_over_limit;
  proxy_.reset();
}

}  // namespace da

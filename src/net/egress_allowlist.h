// Which network destinations a sandboxed job may reach through its egress proxy (see
// egress_proxy.h). The job (npm, the Convex CLI, and whatever an npm package runs) is hostile:
// every rule here assumes the name it asks for was chosen to slip past the check.
//
// Rules, and why:
//
// - A destination is allowed only when its host AND port exactly match an entry. No wildcards,
//   no subdomains, no port ranges: each entry is a decision someone made about one service, and
//   "*.example.com" would let a job reach whatever anyone can put under that name.
//
// - Names are compared as names, never resolved for the comparison. Resolving first would make
//   the decision depend on the resolver a job may influence and on spellings the resolver
//   accepts: "2130706433", "0x7f.1", "127.1" all resolve to 127.0.0.1 through inet_aton, so they
//   match an entry for 127.0.0.1 only when that exact spelling is listed. The only
//   normalisations are those that cannot change which name is meant: case (DNS is
//   case-insensitive), one trailing dot ("localhost." is the fully-qualified "localhost"),
//   brackets around IPv6 literals, and IP literals compared as addresses (inet_pton/inet_ntop, so
//   "0:0:0:0:0:0:0:1" == "::1", and the IPv4-mapped "::ffff:127.0.0.1" == "127.0.0.1": both
//   connect to the same socket). inet_pton accepts only dotted-quad IPv4, so the inet_aton
//   spellings above stay names.
//
// - Who named a destination decides where its name may lead (Trust):
//   kOperator entries (the agent's configuration) may resolve to any address: an operator may
//   run a registry mirror on loopback or on the metadata-adjacent link-local range on purpose.
//   kJobDerived entries (taken from what the job's bundle says, e.g. its deployment URL) must not
//   lead into the agent's host: addresses for which isInternalAddress() holds are dropped from
//   the candidates, and a name that resolves only to such addresses is refused
//   ("resolves_to_internal_address"). Otherwise a bundle naming "my-app.attacker.example" (an A
//   record for 127.0.0.1 or 169.254.169.254) would reach the agent's own API or the cloud
//   metadata service. Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7) stay allowed:
//   corporate backends and self-hosted Convex live there, and the host's own loopback is the
//   asset being protected, not the LAN.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/socket.h>

namespace da::net {

enum class Trust { kOperator, kJobDerived };  // who named the destination

// host: lowercase, no brackets, no trailing dot; an IPv6 literal in inet_ntop form.
struct Destination {
  std::string host;
  uint16_t port = 0;
};

// "host:port", or "[v6]:port" for IPv6 literals.
std::string displayName(const Destination& destination);

// Parses an authority as in CONNECT targets and URLs: "host:port", "[::1]:443", "::1" (a bare
// IPv6 literal has no port), or "host" with `default_port` (nullopt: the port is required).
// Host names are letters, digits, '-', '_' in non-empty dot-separated labels (one trailing dot
// dropped); anything else (percent-encoding, spaces, zone ids, "host:" with an empty port, port
// 0 or > 65535) is refused with `error` saying why (without repeating the input).
std::optional<Destination> parseAuthority(std::string_view authority, std::optional<uint16_t> default_port,
                                          std::string& error);

// The origin of an http(s) URL: "https://x.convex.cloud/path" -> x.convex.cloud:443,
// "http://h/" -> h:80; user info is dropped. Any other scheme, or no host: nullopt + error.
std::optional<Destination> originOf(std::string_view url, std::string& error);

class EgressAllowlist {
 public:
  // Adds `destination` (its host normalised as above). A duplicate keeps the most trusted of
  // the two (kOperator), so a job cannot downgrade an operator's entry nor upgrade its own.
  void allow(Destination destination, Trust trust);
  // allow(originOf(url)); false with `error` when the URL has no http(s) origin.
  bool allowOrigin(std::string_view url, Trust trust, std::string& error);
  // The entry's trust when `destination` matches one exactly (rules above), else nullopt.
  std::optional<Trust> match(const Destination& destination) const;
  // Every entry, ordered by host then port.
  std::vector<std::pair<Destination, Trust>> entries() const;

 private:
  // Key: (comparison form of the host, port).
  std::map<std::pair<std::string, uint16_t>, std::pair<Destination, Trust>> entries_;
};

// Whether a job-derived name must not resolve to `address`: loopback (127/8, ::1), link-local
// (169.254/16 incl. the metadata service 169.254.169.254, fe80::/10), unspecified/"this network"
// (0/8, ::), multicast (224/4, ff00::/8), broadcast (255.255.255.255), and the IPv4-mapped and
// IPv4-compatible IPv6 forms of these. Not private ranges (see above). Null or a family other than
// AF_INET/AF_INET6: true (refuse what is not understood).
bool isInternalAddress(const sockaddr* address);

}  // namespace da::net

// EgressAllowlist: which destinations a job's egress proxy lets through (exact host and port,
// names compared as names, IP literals as addresses) and which addresses a job-derived name
// must not lead to.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>

#include "net/egress_allowlist.h"

using namespace da::net;

namespace {

Destination parsed(std::string_view authority, std::optional<uint16_t> default_port = std::nullopt) {
  std::string error;
  auto destination = parseAuthority(authority, default_port, error);
  EXPECT_TRUE(destination) << authority << ": " << error;
  return destination.value_or(Destination{});
}

bool refused(std::string_view authority, std::optional<uint16_t> default_port = std::nullopt) {
  std::string error;
  auto destination = parseAuthority(authority, default_port, error);
  if (destination) return false;
  EXPECT_FALSE(error.empty()) << authority;
  return true;
}

TEST(EgressAllowlist, MatchesOnlyTheExactHostAndPort) {
  EgressAllowlist allowlist;
  allowlist.allow({"registry.npmjs.org", 443}, Trust::kOperator);
  allowlist.allow({"happy-otter-123.convex.cloud", 443}, Trust::kJobDerived);

  EXPECT_EQ(allowlist.match({"registry.npmjs.org", 443}), Trust::kOperator);
  EXPECT_EQ(allowlist.match({"happy-otter-123.convex.cloud", 443}), Trust::kJobDerived);
  EXPECT_FALSE(allowlist.match({"registry.npmjs.org", 80}));           // wrong port
  EXPECT_FALSE(allowlist.match({"registry.npmjs.org", 4430}));
  EXPECT_FALSE(allowlist.match({"npmjs.org", 443}));                   // parent domain
  EXPECT_FALSE(allowlist.match({"evil.registry.npmjs.org", 443}));     // subdomain
  EXPECT_FALSE(allowlist.match({"registry.npmjs.org.evil.example", 443}));
  EXPECT_FALSE(allowlist.match({"xregistry.npmjs.org", 443}));
  EXPECT_FALSE(allowlist.match({"convex.cloud", 443}));
}

TEST(EgressAllowlist, IgnoresCaseAndOneTrailingDot) {
  EgressAllowlist allowlist;
  allowlist.allow({"Registry.NPMjs.ORG.", 443}, Trust::kOperator);
  allowlist.allow({"localhost", 3210}, Trust::kOperator);

  EXPECT_EQ(allowlist.match({"registry.npmjs.org", 443}), Trust::kOperator);
  EXPECT_EQ(allowlist.match(parsed("REGISTRY.npmjs.org.:443")), Trust::kOperator);
  EXPECT_EQ(allowlist.match(parsed("localhost.:3210")), Trust::kOperator);
  EXPECT_EQ(allowlist.match(parsed("LocalHost:3210")), Trust::kOperator);
  ASSERT_EQ(allowlist.entries().size(), 2u);
  EXPECT_EQ(allowlist.entries()[1].first.host, "registry.npmjs.org");  // stored normalised
}

TEST(EgressAllowlist, ComparesIpLiteralsAsAddresses) {
  EgressAllowlist allowlist;
  allowlist.allow({"127.0.0.1", 3210}, Trust::kOperator);
  allowlist.allow({"[::1]", 443}, Trust::kOperator);
  allowlist.allow({"2001:DB8:0:0::42", 8443}, Trust::kOperator);

  EXPECT_EQ(allowlist.match(parsed("127.0.0.1:3210")), Trust::kOperator);
  EXPECT_EQ(allowlist.match(parsed("[::ffff:127.0.0.1]:3210")), Trust::kOperator);  // IPv4-mapped
  EXPECT_EQ(allowlist.match(parsed("[::FFFF:7f00:1]:3210")), Trust::kOperator);
  EXPECT_EQ(allowlist.match({"::1", 443}), Trust::kOperator);
  EXPECT_EQ(allowlist.match(parsed("[::1]:443")), Trust::kOperator);
  EXPECT_EQ(allowlist.match(parsed("[0:0:0:0:0:0:0:1]:443")), Trust::kOperator);
  EXPECT_EQ(allowlist.match({"0:0:0:0:0:0:0:1", 443}), Trust::kOperator);
  EXPECT_EQ(allowlist.match(parsed("[2001:db8::42]:8443")), Trust::kOperator);

  EXPECT_FALSE(allowlist.match(parsed("[::1]:3210")));    // ::1 is not 127.0.0.1
  EXPECT_FALSE(allowlist.match(parsed("127.0.0.1:443")));  // nor the other way round
  EXPECT_FALSE(allowlist.match(parsed("127.0.0.2:3210")));
  EXPECT_FALSE(allowlist.match(parsed("[::ffff:127.0.0.1]:443")));
}

TEST(EgressAllowlist, OtherSpellingsOfAnAddressAreNamesThatDoNotMatch) {
  // inet_aton (and so getaddrinfo) reads all of these as 127.0.0.1; the allowlist must not.
  EgressAllowlist allowlist;
  allowlist.allow({"127.0.0.1", 80}, Trust::kOperator);
  for (const char* spelling : {"2130706433:80", "0x7f.1:80", "0x7f000001:80", "127.1:80", "0177.0.0.1:80",
                               "127.0.1:80", "localhost:80", "localhost.:80"}) {
    EXPECT_FALSE(allowlist.match(parsed(spelling))) << spelling;
  }
  // The operator may list such a spelling; then it matches, as written.
  allowlist.allow({"2130706433", 80}, Trust::kOperator);
  EXPECT_EQ(allowlist.match(parsed("2130706433:80")), Trust::kOperator);
  EXPECT_FALSE(allowlist.match(parsed("0x7f.1:80")));
}

TEST(EgressAllowlist, KeepsTheMostTrustedOfDuplicates) {
  EgressAllowlist allowlist;
  allowlist.allow({"a.example", 443}, Trust::kJobDerived);
  allowlist.allow({"A.example.", 443}, Trust::kOperator);
  allowlist.allow({"b.example", 443}, Trust::kOperator);
  allowlist.allow({"b.example", 443}, Trust::kJobDerived);
  EXPECT_EQ(allowlist.match({"a.example", 443}), Trust::kOperator);
  EXPECT_EQ(allowlist.match({"b.example", 443}), Trust::kOperator);
  EXPECT_EQ(allowlist.entries().size(), 2u);
}

TEST(EgressAllowlist, ParsesAuthorities) {
  auto d = parsed("Example.COM:443");
  EXPECT_EQ(d.host, "example.com");
  EXPECT_EQ(d.port, 443);
  d = parsed("[::1]:8080");
  EXPECT_EQ(d.host, "::1");
  EXPECT_EQ(d.port, 8080);
  d = parsed("[0:0:0:0:0:0:0:1]:1");
  EXPECT_EQ(d.host, "::1");
  d = parsed("::1", 443);
  EXPECT_EQ(d.host, "::1");
  EXPECT_EQ(d.port, 443);
  d = parsed("example.com", 80);
  EXPECT_EQ(d.port, 80);
  d = parsed("example.com.:65535");
  EXPECT_EQ(d.host, "example.com");
  EXPECT_EQ(d.port, 65535);
  d = parsed("my_host-1.internal:3128");
  EXPECT_EQ(d.host, "my_host-1.internal");

  EXPECT_TRUE(refused("example.com"));  // CONNECT needs a port
  EXPECT_TRUE(refused(""));
  EXPECT_TRUE(refused(":443"));
  EXPECT_TRUE(refused("example.com:"));
  EXPECT_TRUE(refused("example.com:0"));
  EXPECT_TRUE(refused("example.com:65536"));
  EXPECT_TRUE(refused("example.com:44a"));
  EXPECT_TRUE(refused("example.com:+443"));
  EXPECT_TRUE(refused("[::1"));
  EXPECT_TRUE(refused("[::1]x"));
  EXPECT_TRUE(refused("[127.0.0.1]:80"));
  EXPECT_TRUE(refused("[fe80::1%25eth0]:80"));
  EXPECT_TRUE(refused("[not-v6]:80"));
  EXPECT_TRUE(refused("ex ample.com:80"));
  EXPECT_TRUE(refused("a..b:80"));
  EXPECT_TRUE(refused(".:80"));
  EXPECT_TRUE(refused("example.com..:80"));
  EXPECT_TRUE(refused("%65vil.example:80"));
  EXPECT_TRUE(refused("user@example.com:80"));
  EXPECT_TRUE(refused("1:2:3:4:5:6:7:8:9"));
}

TEST(EgressAllowlist, OriginOfHttpAndHttpsUrls) {
  std::string error;
  auto origin = originOf("https://happy-otter-123.convex.cloud/api/push?x=1", error);
  ASSERT_TRUE(origin) << error;
  EXPECT_EQ(displayName(*origin), "happy-otter-123.convex.cloud:443");
  origin = originOf("http://registry.example", error);
  ASSERT_TRUE(origin) << error;
  EXPECT_EQ(displayName(*origin), "registry.example:80");
  origin = originOf("HTTPS://Mirror.Example:8443?q", error);
  ASSERT_TRUE(origin) << error;
  EXPECT_EQ(displayName(*origin), "mirror.example:8443");
  origin = originOf("https://user:p%40ss@npm.example/path#frag", error);
  ASSERT_TRUE(origin) << error;
  EXPECT_EQ(displayName(*origin), "npm.example:443");
  origin = originOf("http://[::1]:3210/", error);
  ASSERT_TRUE(origin) << error;
  EXPECT_EQ(displayName(*origin), "[::1]:3210");

  for (const char* bad : {"ftp://example.com/", "file:///etc/passwd", "example.com", "https:///path",
                          "https://:443/", "ws://example.com", "https://exa mple.com/", ""}) {
    EXPECT_FALSE(originOf(bad, error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }

  EgressAllowlist allowlist;
  EXPECT_TRUE(allowlist.allowOrigin("https://x.convex.cloud/", Trust::kJobDerived, error));
  EXPECT_EQ(allowlist.match({"x.convex.cloud", 443}), Trust::kJobDerived);
  EXPECT_FALSE(allowlist.allowOrigin("gopher://x.convex.cloud/", Trust::kJobDerived, error));
  EXPECT_FALSE(error.empty());
  EXPECT_EQ(allowlist.entries().size(), 1u);
}

TEST(EgressAllowlist, DisplayNameBracketsIpv6) {
  EXPECT_EQ(displayName({"::1", 443}), "[::1]:443");
  EXPECT_EQ(displayName({"example.com", 80}), "example.com:80");
  EXPECT_EQ(displayName({"127.0.0.1", 3210}), "127.0.0.1:3210");
}

bool internal(const char* address) {
  sockaddr_storage storage{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
  } else if (inet_pton(AF_INET6, address, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
  } else {
    ADD_FAILURE() << "not an address: " << address;
  }
  return isInternalAddress(reinterpret_cast<const sockaddr*>(&storage));
}

TEST(EgressAllowlist, InternalAddresses) {
  for (const char* address :
       {"127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "169.254.169.254", "169.254.0.1", "fe80::1",
        "febf::1", "0.0.0.0", "0.1.2.3", "::", "224.0.0.1", "239.255.255.250", "255.255.255.255", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0", "::ffff:224.0.0.1", "::127.0.0.1"}) {
    EXPECT_TRUE(internal(address)) << address;
  }
  for (const char* address : {"10.0.0.1", "172.16.0.1", "192.168.1.1", "8.8.8.8", "1.1.1.1", "100.64.0.1",
                              "169.253.255.255", "169.255.0.1", "128.0.0.1", "2001:4860:4860::8888", "fd00::1",
                              "fec0::1", "::ffff:8.8.8.8", "::ffff:10.0.0.1"}) {
    EXPECT_FALSE(internal(address)) << address;
  }
  EXPECT_TRUE(isInternalAddress(nullptr));
  sockaddr unix_family{};
  unix_family.sa_family = AF_UNIX;
  EXPECT_TRUE(isInternalAddress(&unix_family));
}

}  // namespace

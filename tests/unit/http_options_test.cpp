// httpOptionsFromEnvironment: which proxy a call to the Management API takes, which hosts
// bypass it, and which certificates it trusts, from the passed-through variables.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "convex/http_options.h"

using namespace da::convex;

namespace {

using Env = std::map<std::string, std::string>;

const std::string kApi = "https://api.convex.dev";

TEST(HttpOptions, NoVariablesMeansDirectAndSystemStoreOnly) {
  auto options = httpOptionsFromEnvironment({}, kApi);
  EXPECT_FALSE(options.proxy);
  EXPECT_TRUE(options.config_error.empty());
  EXPECT_TRUE(options.system_ca);
  EXPECT_TRUE(options.extra_ca.empty());
}

TEST(HttpOptions, HttpsTargetPrefersLowerCaseHttpsProxy) {
  auto options = httpOptionsFromEnvironment(
      {{"https_proxy", "http://lower:3128"}, {"HTTPS_PROXY", "http://upper:3128"}}, kApi);
  ASSERT_TRUE(options.proxy);
  EXPECT_EQ(options.proxy->host, "lower");
  EXPECT_EQ(options.proxy->source, "https_proxy");
}

TEST(HttpOptions, HttpsTargetFallsBackToUpperCase) {
  auto options = httpOptionsFromEnvironment({{"HTTPS_PROXY", "http://upper:3128"}}, kApi);
  ASSERT_TRUE(options.proxy);
  EXPECT_EQ(options.proxy->host, "upper");
  EXPECT_EQ(options.proxy->port, 3128);
  EXPECT_EQ(options.proxy->source, "HTTPS_PROXY");
}

TEST(HttpOptions, AnEmptyLowerCaseVariableDecidesNoProxy) {
  // As with curl and undici: the lower-case variable, when present, is the answer.
  auto options = httpOptionsFromEnvironment({{"https_proxy", ""}, {"HTTPS_PROXY", "http://upper:3128"}}, kApi);
  EXPECT_FALSE(options.proxy);
  EXPECT_TRUE(options.config_error.empty());
}

TEST(HttpOptions, HttpTargetUsesHttpProxyNotHttpsProxy) {
  Env env = {{"HTTPS_PROXY", "http://secure-only:3128"}, {"http_proxy", "http://plain:8080"},
             {"HTTP_PROXY", "http://plain-upper:8080"}};
  auto options = httpOptionsFromEnvironment(env, "http://127.0.0.1:3210");
  ASSERT_TRUE(options.proxy);
  EXPECT_EQ(options.proxy->host, "plain");
  EXPECT_EQ(options.proxy->port, 8080);
  EXPECT_EQ(options.proxy->source, "http_proxy");

  env.erase("http_proxy");
  options = httpOptionsFromEnvironment(env, "http://127.0.0.1:3210");
  ASSERT_TRUE(options.proxy);
  EXPECT_EQ(options.proxy->host, "plain-upper");
}

TEST(HttpOptions, HttpsTargetIgnoresHttpProxy) {
  auto options = httpOptionsFromEnvironment({{"HTTP_PROXY", "http://plain:8080"}}, kApi);
  EXPECT_FALSE(options.proxy);
}

TEST(HttpOptions, CredentialsAreParsedAndPercentDecoded) {
  auto options = httpOptionsFromEnvironment(
      {{"HTTPS_PROXY", "http://corp%5Cagent:p%40ss:w0rd@proxy.corp.example:3128/"}}, kApi);
  ASSERT_TRUE(options.proxy) << options.config_error;
  EXPECT_EQ(options.proxy->host, "proxy.corp.example");
  EXPECT_EQ(options.proxy->port, 3128);
  EXPECT_EQ(options.proxy->username, "corp\\agent");
  EXPECT_EQ(options.proxy->password, "p@ss:w0rd");  // the first ':' separates, the rest is password
}

TEST(HttpOptions, AnUnencodedAtInThePasswordStillParses) {
  auto options = httpOptionsFromEnvironment({{"HTTPS_PROXY", "http://agent:p@ss@proxy:3128"}}, kApi);
  ASSERT_TRUE(options.proxy) << options.config_error;
  EXPECT_EQ(options.proxy->host, "proxy");
  EXPECT_EQ(options.proxy->password, "p@ss");
}

TEST(HttpOptions, SchemeLessProxyWorks) {
  auto options = httpOptionsFromEnvironment({{"https_proxy", "proxy.corp:3128"}}, kApi);
  ASSERT_TRUE(options.proxy) << options.config_error;
  EXPECT_EQ(options.proxy->host, "proxy.corp");
  EXPECT_EQ(options.proxy->port, 3128);
  EXPECT_TRUE(options.proxy->username.empty());

  options = httpOptionsFromEnvironment({{"https_proxy", "agent:secret@proxy.corp:3128"}}, kApi);
  ASSERT_TRUE(options.proxy) << options.config_error;
  EXPECT_EQ(options.proxy->username, "agent");
  EXPECT_EQ(options.proxy->password, "secret");
}

TEST(HttpOptions, PortDefaultsTo80AndIpv6IsBracketed) {
  auto options = httpOptionsFromEnvironment({{"https_proxy", "http://proxy.corp"}}, kApi);
  ASSERT_TRUE(options.proxy);
  EXPECT_EQ(options.proxy->port, 80);

  options = httpOptionsFromEnvironment({{"https_proxy", "http://[fd00::1]:3128"}}, kApi);
  ASSERT_TRUE(options.proxy) << options.config_error;
  EXPECT_EQ(options.proxy->host, "fd00::1");
  EXPECT_EQ(options.proxy->port, 3128);
}

TEST(HttpOptions, MalformedProxyIsAConfigErrorNamingTheVariableNotThePassword) {
  for (const std::string value :
       {"http://agent:hunter2@proxy:notaport", "http://agent:hunter2@proxy:70000", "http://agent:hunter2@:3128",
        "socks5://agent:hunter2@proxy:1080", "https://agent:hunter2@proxy:3128", "http://agent:hunter2@proxy:",
        "http://agent:hunter2%zz@proxy:3128", "http://:hunter2@proxy:3128"}) {
    auto options = httpOptionsFromEnvironment({{"HTTPS_PROXY", value}}, kApi);
    EXPECT_FALSE(options.proxy) << value;
    EXPECT_NE(options.config_error.find("HTTPS_PROXY"), std::string::npos) << value << ": " << options.config_error;
    EXPECT_EQ(options.config_error.find("hunter2"), std::string::npos) << options.config_error;
  }
}

TEST(HttpOptions, NoProxyExactSuffixAndLeadingDot) {
  const Env base = {{"HTTPS_PROXY", "http://proxy:3128"}};
  auto bypassed = [&](const std::string& no_proxy, const std::string& target) {
    Env env = base;
    env["NO_PROXY"] = no_proxy;
    auto options = httpOptionsFromEnvironment(env, target);
    EXPECT_TRUE(options.config_error.empty()) << options.config_error;
    return !options.proxy;
  };
  EXPECT_TRUE(bypassed("api.convex.dev", kApi));
  EXPECT_TRUE(bypassed("convex.dev", kApi));               // domain suffix
  EXPECT_TRUE(bypassed(".convex.dev", kApi));              // leading dot
  EXPECT_TRUE(bypassed("*.convex.dev", kApi));             // leading "*."
  EXPECT_TRUE(bypassed(".convex.dev", "https://convex.dev"));
  EXPECT_TRUE(bypassed("CONVEX.DEV", "https://Api.Convex.Dev"));  // case-insensitive
  EXPECT_TRUE(bypassed("example.com, convex.dev", kApi));  // comma and space separated
  EXPECT_TRUE(bypassed("example.com convex.dev", kApi));
  EXPECT_FALSE(bypassed("vex.dev", kApi));                 // a suffix only at a dot
  EXPECT_FALSE(bypassed("example.com", kApi));
  EXPECT_FALSE(bypassed("", kApi));
}

TEST(HttpOptions, NoProxyPortAndStar) {
  const Env base = {{"https_proxy", "http://proxy:3128"}, {"http_proxy", "http://proxy:3128"}};
  auto bypassed = [&](const std::string& no_proxy, const std::string& target) {
    Env env = base;
    env["no_proxy"] = no_proxy;
    return !httpOptionsFromEnvironment(env, target).proxy;
  };
  EXPECT_TRUE(bypassed("*", kApi));
  EXPECT_TRUE(bypassed("example.com,*", "http://anything.example.org:8080"));
  EXPECT_TRUE(bypassed("convex.dev:443", kApi));           // the https default port
  EXPECT_FALSE(bypassed("convex.dev:8443", kApi));
  EXPECT_TRUE(bypassed("127.0.0.1:3210", "http://127.0.0.1:3210"));
  EXPECT_FALSE(bypassed("127.0.0.1:3211", "http://127.0.0.1:3210"));
}

TEST(HttpOptions, LoopbackIsProxiedUnlessListed) {
  const Env base = {{"http_proxy", "http://proxy:3128"}};
  EXPECT_TRUE(httpOptionsFromEnvironment(base, "http://127.0.0.1:3210").proxy);
  EXPECT_TRUE(httpOptionsFromEnvironment(base, "http://localhost:3210").proxy);

  Env env = base;
  env["no_proxy"] = "localhost,127.0.0.1,::1";
  EXPECT_FALSE(httpOptionsFromEnvironment(env, "http://127.0.0.1:3210").proxy);
  EXPECT_FALSE(httpOptionsFromEnvironment(env, "http://localhost:3210").proxy);
  EXPECT_FALSE(httpOptionsFromEnvironment(env, "http://[::1]:3210").proxy);
}

TEST(HttpOptions, IpEntriesMatchOnlyTheAddress) {
  EXPECT_TRUE(noProxyMatches("10.1.2.3", "10.1.2.3", 80));
  EXPECT_FALSE(noProxyMatches("2.3", "10.1.2.3", 80));       // never a suffix of an address
  EXPECT_FALSE(noProxyMatches(".1.2.3", "10.1.2.3", 80));
  EXPECT_TRUE(noProxyMatches("[::1]:3210", "::1", 3210));
  EXPECT_TRUE(noProxyMatches("0:0::1", "[::1]", 80));        // compared as addresses
  EXPECT_FALSE(noProxyMatches("10.0.0.0/8", "10.1.2.3", 80));  // no CIDR support
}

TEST(HttpOptions, LowerCaseNoProxyWinsOverUpperCase) {
  Env env = {{"https_proxy", "http://proxy:3128"}, {"no_proxy", "example.com"}, {"NO_PROXY", "convex.dev"}};
  EXPECT_TRUE(httpOptionsFromEnvironment(env, kApi).proxy);
  env.erase("no_proxy");
  EXPECT_FALSE(httpOptionsFromEnvironment(env, kApi).proxy);
}

TEST(HttpOptions, ABypassedMalformedProxyIsNoError) {
  auto options = httpOptionsFromEnvironment({{"https_proxy", "http://proxy:bad"}, {"no_proxy", "*"}}, kApi);
  EXPECT_FALSE(options.proxy);
  EXPECT_TRUE(options.config_error.empty());
}

TEST(HttpOptions, CertificateVariablesAreAllAddedToTheSystemStore) {
  auto options = httpOptionsFromEnvironment({{"SSL_CERT_FILE", "/etc/corp/bundle.pem"},
                                             {"SSL_CERT_DIR", "/etc/corp/certs:/etc/ssl/certs"},
                                             {"NODE_EXTRA_CA_CERTS", "/etc/corp/proxy-ca.pem"},
                                             {"npm_config_cafile", "/etc/corp/npm.pem"}},
                                            kApi);
  EXPECT_TRUE(options.system_ca);
  ASSERT_EQ(options.extra_ca.size(), 3u);
  EXPECT_EQ(options.extra_ca[0].source, "SSL_CERT_FILE");
  EXPECT_EQ(options.extra_ca[0].path, "/etc/corp/bundle.pem");
  EXPECT_FALSE(options.extra_ca[0].directory);
  EXPECT_EQ(options.extra_ca[1].source, "SSL_CERT_DIR");
  EXPECT_TRUE(options.extra_ca[1].directory);
  EXPECT_EQ(options.extra_ca[2].source, "NODE_EXTRA_CA_CERTS");
  EXPECT_EQ(options.extra_ca[2].path, "/etc/corp/proxy-ca.pem");
}

TEST(HttpOptions, ParseProxyUrlLeavesBlankValuesUnset) {
  std::string error;
  EXPECT_FALSE(parseProxyUrl("   ", "HTTPS_PROXY", error));
  EXPECT_TRUE(error.empty());
}

}  // namespace

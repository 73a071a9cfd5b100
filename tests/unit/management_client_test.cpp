// The Management API client against the in-process stand-in on a real loopback socket.
#include <gtest/gtest.h>

#include <atomic>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <poll.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <Poco/Base64Encoder.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/StreamCopier.h>
#include <Poco/String.h>
#include <Poco/URI.h>

#include "convex/deploy_key.h"
#include "convex/management_client.h"
#include "support/scratch_dir.h"
#include "standin/standin.h"
#include "util/ids.h"

using namespace da::convex;

namespace {

const std::string kTeamToken = "unit-team-token-0123456789";

// What the agent asks for: least privilege, one hour.
DeployKeyRequest keyRequest(const std::string& deployment = "happy-otter-123") {
  DeployKeyRequest r;
  r.deployment_name = deployment;
  r.key_name = "unit test";
  r.allowed_actions = {"deployment:deploy"};
  r.expires_at_ms = da::nowUnixMillis() + 60 * 60 * 1000;
  return r;
}

class ManagementClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    standin::Options options;
    options.team_tokens = {kTeamToken};
    options.deployments = {{"happy-otter-123", "prod"}, {"brave-fox-456", "dev"}};
    standin_ = std::make_unique<standin::Standin>(options);
    standin_->start();
  }
  void TearDown() override { standin_->stop(); }

  std::unique_ptr<standin::Standin> standin_;
};

TEST_F(ManagementClientTest, MintsAKeyForTheDeployment) {
  ManagementClient client(standin_->origin(), kTeamToken);
  auto minted = client.createDeployKey(keyRequest("happy-otter-123"));
  ASSERT_TRUE(minted.deploy_key) << minted.error->message;
  auto info = classifyKey(*minted.deploy_key);
  EXPECT_EQ(info.type, "prod");
  EXPECT_EQ(info.deployment_name, "happy-otter-123");
}

TEST_F(ManagementClientTest, WrongTokenIsUnauthorizedAndNotEchoed) {
  ManagementClient client(standin_->origin(), "wrong-token-0123456789");
  auto minted = client.createDeployKey(keyRequest("happy-otter-123"));
  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "unauthorized");
  EXPECT_EQ(minted.error->http_status, 401);
  EXPECT_EQ(minted.error->message.find("wrong-token"), std::string::npos);
}

TEST_F(ManagementClientTest, UnknownDeploymentIsNotFoundWithTheApisCode) {
  ManagementClient client(standin_->origin(), kTeamToken);
  auto minted = client.createDeployKey(keyRequest("no-such-deployment-1"));
  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "not_found");
  EXPECT_EQ(minted.error->code, "DeploymentNotFound");
}

TEST_F(ManagementClientTest, ExpiryTooSoonIsABadRequest) {
  ManagementClient client(standin_->origin(), kTeamToken);
  auto r = keyRequest("happy-otter-123");
  r.expires_at_ms = da::nowUnixMillis() + 60 * 1000;  // the API wants >= 30 minutes
  auto minted = client.createDeployKey(r);
  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "bad_request");
  EXPECT_EQ(minted.error->http_status, 400);
}

TEST(ManagementClient, UnreachableHostIsANetworkError) {
  // A port bound but never listened on: connecting is refused, and no parallel test can take
  // the port while this socket holds it.
  const int bound_only = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(bound_only, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(bound_only, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  socklen_t length = sizeof address;
  ASSERT_EQ(::getsockname(bound_only, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const uint16_t port = ntohs(address.sin_port);
  HttpOptions options;
  options.attempts = 2;
  options.timeout = std::chrono::milliseconds(2000);
  ManagementClient client("http://127.0.0.1:" + std::to_string(port), kTeamToken, options);
  const DeployKeyRequest r = keyRequest();
  auto minted = client.createDeployKey(r);
  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "network_error");
  EXPECT_EQ(minted.error->http_status, 0);
  ::close(bound_only);
}

}  // namespace

namespace {

// A peer that accepts the call and never answers, as a hung API or a black-holed proxy does.
TEST(ManagementClient, CancelEndsACallThatWouldWaitOutItsTimeout) {
  Poco::Net::ServerSocket silent(Poco::Net::SocketAddress("127.0.0.1", 0));
  HttpOptions options;
  options.attempts = 2;
  options.timeout = std::chrono::milliseconds(20000);
  std::atomic<bool> cancel{false};
  options.cancel = &cancel;
  ManagementClient client("http://127.0.0.1:" + std::to_string(silent.address().port()), kTeamToken,
                          options);
  const DeployKeyRequest r = keyRequest();

  MintResult minted;
  std::thread caller([&] { minted = client.createDeployKey(r); });
  // The request has arrived: the client is now blocked reading the answer.
  Poco::Net::StreamSocket connection = silent.acceptConnection();
  char first_bytes[4] = {};
  ASSERT_EQ(connection.receiveBytes(first_bytes, sizeof first_bytes), 4);
  EXPECT_EQ(std::string(first_bytes, 4), "POST");
  const auto cancelled_at = std::chrono::steady_clock::now();
  cancel = true;
  caller.join();

  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "cancelled") << minted.error->message;
  EXPECT_FALSE(minted.deploy_key);
  // Not a retry after the cancel: one connection only, and nowhere near the 20 s timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - cancelled_at, std::chrono::seconds(5));
  EXPECT_FALSE(silent.poll(Poco::Timespan(0), Poco::Net::Socket::SELECT_READ))
      << "the client connected again after it was cancelled";
}

TEST(ManagementClient, AlreadyCancelledCallsNothing) {
  Poco::Net::ServerSocket silent(Poco::Net::SocketAddress("127.0.0.1", 0));
  std::atomic<bool> cancel{true};
  HttpOptions options;
  options.cancel = &cancel;
  ManagementClient client("http://127.0.0.1:" + std::to_string(silent.address().port()), kTeamToken,
                          options);
  const DeployKeyRequest r = keyRequest();
  auto minted = client.createDeployKey(r);
  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "cancelled");
  EXPECT_FALSE(silent.poll(Poco::Timespan(0), Poco::Net::Socket::SELECT_READ));
}

}  // namespace

// Proxies and certificates: the agent's call goes where the CLI's would.
namespace {

std::string basic(const std::string& user_colon_password) {
  std::ostringstream out;
  Poco::Base64Encoder encoder(out);
  encoder.rdbuf()->setLineLength(0);
  encoder << user_colon_password;
  encoder.close();
  return "Basic " + out.str();
}

// A forward proxy on loopback. An absolute-URI request ("POST http://host:port/path") is sent
// on in origin form to the host it names; CONNECT host:port opens a tunnel, to
// `connect_upstream` when set (so a made-up host name works). With `required_credentials`
// ("user:password") anything without the matching Proxy-Authorization gets a 407.
class TestProxy {
 public:
  struct Seen {
    std::string request_line;
    std::string proxy_authorization;
  };

  explicit TestProxy(std::string required_credentials = "",
                     std::optional<Poco::Net::SocketAddress> connect_upstream = std::nullopt)
      : required_(std::move(required_credentials)), connect_upstream_(std::move(connect_upstream)),
        listener_(Poco::Net::SocketAddress("127.0.0.1", 0)) {
    thread_ = std::thread([this] { run(); });
  }
  ~TestProxy() {
    stop_ = true;
    thread_.join();
  }

  uint16_t port() const { return listener_.address().port(); }
  std::string url(const std::string& userinfo = "") const {
    return "http://" + (userinfo.empty() ? "" : userinfo + "@") + "127.0.0.1:" + std::to_string(port());
  }
  std::vector<Seen> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  static std::string header(const std::string& head, const std::string& name) {
    std::istringstream lines(head);
    std::string line;
    while (std::getline(lines, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string key = line.substr(0, colon);
      if (Poco::icompare(key, name) != 0) continue;
      return std::string(Poco::trim(line.substr(colon + 1)));
    }
    return "";
  }

  bool waitReadable(Poco::Net::StreamSocket& socket) {
    while (!stop_) {
      if (socket.poll(Poco::Timespan(0, 50000), Poco::Net::Socket::SELECT_READ)) return true;
    }
    return false;
  }

  // Copies bytes both ways until both sides have finished (or the proxy stops).
  void pump(Poco::Net::StreamSocket& a, Poco::Net::StreamSocket& b) {
    bool a_open = true, b_open = true;
    char buffer[16384];
    while (!stop_ && (a_open || b_open)) {
      pollfd fds[2] = {{a.impl()->sockfd(), static_cast<short>(a_open ? POLLIN : 0), 0},
                       {b.impl()->sockfd(), static_cast<short>(b_open ? POLLIN : 0), 0}};
      if (::poll(fds, 2, 50) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        auto& from = i == 0 ? a : b;
        auto& to = i == 0 ? b : a;
        int n = 0;
        try {
          n = from.receiveBytes(buffer, sizeof buffer);
        } catch (const Poco::Exception&) {
          n = 0;
        }
        if (n <= 0) {
          (i == 0 ? a_open : b_open) = false;
          try {
            to.shutdownSend();
          } catch (const Poco::Exception&) {
          }
          continue;
        }
        try {
          to.sendBytes(buffer, n);
        } catch (const Poco::Exception&) {
          return;
        }
      }
    }
  }

  void handle(Poco::Net::StreamSocket client) {
    std::string data;
    char buffer[4096];
    size_t head_end;
    while ((head_end = data.find("\r\n\r\n")) == std::string::npos) {
      if (!waitReadable(client)) return;
      int n = client.receiveBytes(buffer, sizeof buffer);
      if (n <= 0) return;
      data.append(buffer, static_cast<size_t>(n));
    }
    const std::string head = data.substr(0, head_end + 2);
    const std::string rest = data.substr(head_end + 4);
    const std::string request_line = head.substr(0, head.find("\r\n"));
    const std::string authorization = header(head, "Proxy-Authorization");
    {
      std::lock_guard lock(mutex_);
      seen_.push_back({request_line, authorization});
    }
    if (!required_.empty() && authorization != basic(required_)) {
      const std::string refusal =
          "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\n"
          "Content-Length: 0\r\nConnection: close\r\n\r\n";
      client.sendBytes(refusal.data(), static_cast<int>(refusal.size()));
      return;
    }
    std::istringstream parts(request_line);
    std::string method, target, version;
    parts >> method >> target >> version;
    Poco::Net::StreamSocket upstream;
    if (method == "CONNECT") {
      upstream.connect(connect_upstream_ ? *connect_upstream_ : Poco::Net::SocketAddress(target));
      const std::string established = "HTTP/1.1 200 Connection established\r\n\r\n";
      client.sendBytes(established.data(), static_cast<int>(established.size()));
    } else {
      Poco::URI uri(target);  // absolute form
      upstream.connect(Poco::Net::SocketAddress(uri.getHost(), uri.getPort()));
      std::string forwarded = method + " " + uri.getPathAndQuery() + " " + version + "\r\n";
      std::istringstream lines(head.substr(head.find("\r\n") + 2));
      std::string line;
      while (std::getline(lines, line)) {
        if (Poco::icompare(line, 0, 6, std::string("Proxy-")) == 0) continue;
        forwarded += line + "\n";
      }
      forwarded += "\r\n";
      upstream.sendBytes(forwarded.data(), static_cast<int>(forwarded.size()));
    }
    if (!rest.empty()) upstream.sendBytes(rest.data(), static_cast<int>(rest.size()));
    pump(client, upstream);
  }

  void run() {
    while (!stop_) {
      if (!listener_.poll(Poco::Timespan(0, 50000), Poco::Net::Socket::SELECT_READ)) continue;
      try {
        handle(listener_.acceptConnection());
      } catch (const Poco::Exception&) {
        // A test that wanted this connection fails on its own assertions.
      }
    }
  }

  std::string required_;
  std::optional<Poco::Net::SocketAddress> connect_upstream_;
  Poco::Net::ServerSocket listener_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::vector<Seen> seen_;
  std::thread thread_;
};


// A self-signed certificate for `host_name`, written as PEM files; made here so no key is
// checked in and none expires.
struct TestCertificate {
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
};

TestCertificate makeCertificate(const std::filesystem::path& dir, const std::string& host_name) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(host_name.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_basic_constraints, std::string("critical,CA:TRUE")},
                            std::pair{NID_key_usage, std::string("critical,keyCertSign,digitalSignature")},
                            std::pair{NID_subject_alt_name, "DNS:" + host_name}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
  X509_sign(cert, key, EVP_sha256());

  TestCertificate out{dir / "server-cert.pem", dir / "server-key.pem"};
  BIO* cert_bio = BIO_new_file(out.cert_file.c_str(), "w");
  PEM_write_bio_X509(cert_bio, cert);
  BIO_free(cert_bio);
  BIO* key_bio = BIO_new_file(out.key_file.c_str(), "w");
  PEM_write_bio_PrivateKey(key_bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  BIO_free(key_bio);
  X509_free(cert);
  EVP_PKEY_free(key);
  return out;
}

// An HTTPS Management API that mints one fixed key and remembers what reached it.
class TlsApi {
 public:
  struct Seen {
    std::string method_and_uri;
    std::string host;
    std::string authorization;
    bool had_proxy_authorization = false;
  };

  explicit TlsApi(const TestCertificate& certificate) {
    Poco::Net::Context::Ptr context =
        new Poco::Net::Context(Poco::Net::Context::TLS_SERVER_USE, certificate.key_file.string(),
                               certificate.cert_file.string(), "", Poco::Net::Context::VERIFY_NONE);
    Poco::Net::SecureServerSocket socket(Poco::Net::SocketAddress("127.0.0.1", 0), 64, context);
    port_ = socket.address().port();
    server_ = std::make_unique<Poco::Net::HTTPServer>(new Factory(*this), socket,
                                                      new Poco::Net::HTTPServerParams);
    server_->start();
  }
  ~TlsApi() { server_->stopAll(true); }

  uint16_t port() const { return port_; }
  std::vector<Seen> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  class Handler : public Poco::Net::HTTPRequestHandler {
   public:
    explicit Handler(TlsApi& api) : api_(api) {}
    void handleRequest(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override {
      {
        std::lock_guard lock(api_.mutex_);
        api_.seen_.push_back({request.getMethod() + " " + request.getURI(), request.getHost(),
                              request.get("Authorization", ""), request.has("Proxy-Authorization")});
      }
      std::string drained;
      Poco::StreamCopier::copyToString(request.stream(), drained);
      const std::string body = R"({"deployKey":"prod:happy-otter-123|tls0123456789abcdef"})";
      response.setContentType("application/json");
      response.setContentLength(static_cast<std::streamsize>(body.size()));
      response.send() << body;
    }

   private:
    TlsApi& api_;
  };
  class Factory : public Poco::Net::HTTPRequestHandlerFactory {
   public:
    explicit Factory(TlsApi& api) : api_(api) {}
    Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest&) override {
      return new Handler(api_);
    }

   private:
    TlsApi& api_;
  };

  uint16_t port_ = 0;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
  mutable std::mutex mutex_;
  std::vector<Seen> seen_;
};

// The made-up name the certificate is for; only the proxy knows where it lives, so a client
// that tried to resolve it itself would fail.
const std::string kTlsHost = "convex-api.test";

TEST_F(ManagementClientTest, HttpTargetGoesThroughTheProxyWithBasicCredentials) {
  // Reserved characters in the password travel percent-encoded in the URL.
  TestProxy proxy("agent:p@ss:w0rd/x");
  const auto options = httpOptionsFromEnvironment(
      {{"http_proxy", proxy.url("agent:p%40ss%3Aw0rd%2Fx")}, {"HTTPS_PROXY", "http://unused.invalid:1"}},
      standin_->origin());
  ASSERT_TRUE(options.proxy);
  ManagementClient client(standin_->origin(), kTeamToken, options);
  auto minted = client.createDeployKey(keyRequest("happy-otter-123"));
  ASSERT_TRUE(minted.deploy_key) << minted.error->reason << ": " << minted.error->message;
  EXPECT_EQ(classifyKey(*minted.deploy_key).deployment_name, "happy-otter-123");

  const auto seen = proxy.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].request_line, "POST " + standin_->origin() +
                                      "/v1/deployments/happy-otter-123/create_deploy_key HTTP/1.1");
  EXPECT_EQ(seen[0].proxy_authorization, basic("agent:p@ss:w0rd/x"));
}

TEST_F(ManagementClientTest, ProxyWithoutCredentialsSendsNoProxyAuthorization) {
  TestProxy proxy;
  ManagementClient client(standin_->origin(), kTeamToken,
                          httpOptionsFromEnvironment({{"HTTP_PROXY", proxy.url()}}, standin_->origin()));
  auto minted = client.createDeployKey(keyRequest("happy-otter-123"));
  ASSERT_TRUE(minted.deploy_key) << minted.error->message;
  const auto seen = proxy.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].proxy_authorization, "");
}

TEST_F(ManagementClientTest, NoProxyBypassesTheProxy) {
  TestProxy proxy;
  ManagementClient client(
      standin_->origin(), kTeamToken,
      httpOptionsFromEnvironment({{"http_proxy", proxy.url()}, {"NO_PROXY", "localhost,127.0.0.1"}},
                                 standin_->origin()));
  auto minted = client.createDeployKey(keyRequest("happy-otter-123"));
  ASSERT_TRUE(minted.deploy_key) << minted.error->message;
  EXPECT_TRUE(proxy.seen().empty());
}

TEST_F(ManagementClientTest, RefusedProxyCredentialsAreAProxyErrorWithoutThePassword) {
  TestProxy proxy("agent:right-password");
  HttpOptions options = httpOptionsFromEnvironment({{"http_proxy", proxy.url("agent:wrong-hunter2")}},
                                                   standin_->origin());
  ManagementClient client(standin_->origin(), kTeamToken, options);
  auto minted = client.createDeployKey(keyRequest("happy-otter-123"));
  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "proxy_error") << minted.error->message;
  EXPECT_EQ(minted.error->http_status, 407);
  EXPECT_NE(minted.error->message.find("http_proxy"), std::string::npos) << minted.error->message;
  EXPECT_EQ(minted.error->message.find("wrong-hunter2"), std::string::npos) << minted.error->message;
  EXPECT_EQ(minted.error->message.find(kTeamToken), std::string::npos);
  EXPECT_EQ(proxy.seen().size(), 1u);  // an answer, not retried
}

TEST_F(ManagementClientTest, MalformedProxyIsAConfigErrorAndNothingIsSent) {
  ManagementClient client(
      standin_->origin(), kTeamToken,
      httpOptionsFromEnvironment({{"http_proxy", "http://agent:hunter2@proxy:notaport"}}, standin_->origin()));
  auto minted = client.createDeployKey(keyRequest("happy-otter-123"));
  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "config_error");
  EXPECT_NE(minted.error->message.find("http_proxy"), std::string::npos) << minted.error->message;
  EXPECT_EQ(minted.error->message.find("hunter2"), std::string::npos) << minted.error->message;
}

TEST(ManagementClient, HttpsTargetTunnelsThroughTheProxyAndTrustsNodeExtraCaCerts) {
  testsupport::ScratchDir dir("http");
  const auto certificate = makeCertificate(dir.path(), kTlsHost);
  TlsApi api(certificate);
  TestProxy proxy("agent:s3cret", Poco::Net::SocketAddress("127.0.0.1", api.port()));
  const std::string target = "https://" + kTlsHost;
  auto options = httpOptionsFromEnvironment(
      {{"HTTPS_PROXY", proxy.url("agent:s3cret")}, {"NODE_EXTRA_CA_CERTS", certificate.cert_file.string()}},
      target);
  options.attempts = 1;
  ManagementClient client(target, kTeamToken, options);
  auto minted = client.createDeployKey(keyRequest());
  ASSERT_TRUE(minted.deploy_key) << minted.error->reason << ": " << minted.error->message;
  EXPECT_EQ(*minted.deploy_key, "prod:happy-otter-123|tls0123456789abcdef");

  const auto tunnels = proxy.seen();
  ASSERT_EQ(tunnels.size(), 1u);
  EXPECT_EQ(tunnels[0].request_line, "CONNECT " + kTlsHost + ":443 HTTP/1.1");
  EXPECT_EQ(tunnels[0].proxy_authorization, basic("agent:s3cret"));
  const auto calls = api.seen();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].method_and_uri, "POST /v1/deployments/happy-otter-123/create_deploy_key");
  EXPECT_EQ(calls[0].authorization, "Bearer " + kTeamToken);
  EXPECT_FALSE(calls[0].had_proxy_authorization) << "proxy credentials leaked into the tunnel";
}

TEST(ManagementClient, HttpsThroughTheProxyStillVerifiesTheCertificate) {
  testsupport::ScratchDir dir("http");
  const auto certificate = makeCertificate(dir.path(), kTlsHost);
  TlsApi api(certificate);
  TestProxy proxy("", Poco::Net::SocketAddress("127.0.0.1", api.port()));
  const std::string target = "https://" + kTlsHost;
  auto options = httpOptionsFromEnvironment({{"https_proxy", proxy.url()}}, target);  // no extra CA
  options.attempts = 1;
  ManagementClient client(target, kTeamToken, options);
  auto minted = client.createDeployKey(keyRequest());
  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "network_error") << minted.error->message;
  EXPECT_TRUE(api.seen().empty());
}

TEST(ManagementClient, AMissingCaFileIsAConfigErrorNamingTheVariable) {
  HttpOptions options = httpOptionsFromEnvironment(
      {{"NODE_EXTRA_CA_CERTS", "/nonexistent/corp-ca.pem"}}, "https://127.0.0.1:1");
  ManagementClient client("https://127.0.0.1:1", kTeamToken, options);
  auto minted = client.createDeployKey(keyRequest());
  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "config_error");
  EXPECT_NE(minted.error->message.find("NODE_EXTRA_CA_CERTS"), std::string::npos) << minted.error->message;
}

// A proxy that takes the connection and never answers CONNECT: the stop must not wait it out.
TEST(ManagementClient, CancelEndsAStalledProxyConnect) {
  Poco::Net::ServerSocket silent(Poco::Net::SocketAddress("127.0.0.1", 0));
  const std::string target = "https://" + kTlsHost;
  auto options = httpOptionsFromEnvironment(
      {{"HTTPS_PROXY", "http://127.0.0.1:" + std::to_string(silent.address().port())}}, target);
  options.attempts = 2;
  options.timeout = std::chrono::milliseconds(20000);
  std::atomic<bool> cancel{false};
  options.cancel = &cancel;
  ManagementClient client(target, kTeamToken, options);

  MintResult minted;
  std::thread caller([&] { minted = client.createDeployKey(keyRequest()); });
  Poco::Net::StreamSocket connection = silent.acceptConnection();
  char first_bytes[7] = {};
  int got = 0;
  while (got < 7) {
    const int n = connection.receiveBytes(first_bytes + got, 7 - got);
    ASSERT_GT(n, 0);
    got += n;
  }
  EXPECT_EQ(std::string(first_bytes, 7), "CONNECT");
  const auto cancelled_at = std::chrono::steady_clock::now();
  cancel = true;
  caller.join();

  ASSERT_TRUE(minted.error);
  EXPECT_EQ(minted.error->reason, "cancelled") << minted.error->message;
  EXPECT_LT(std::chrono::steady_clock::now() - cancelled_at, std::chrono::seconds(5));
  EXPECT_FALSE(silent.poll(Poco::Timespan(0), Poco::Net::Socket::SELECT_READ))
      << "the client connected again after it was cancelled";
}

}  // namespace

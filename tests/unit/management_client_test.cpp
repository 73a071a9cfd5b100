// The Management API client against the in-process stand-in on a real loopback socket.
#include <gtest/gtest.h>

#include <atomic>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <map>
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
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeFormatter.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPResponse.h>
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
#include <nlohmann/json.hpp>

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
  // Nothing was sent (the connect was refused), so even this non-idempotent call is retried.
  EXPECT_EQ(minted.attempts, 2);
  EXPECT_TRUE(minted.error->retryable);
  EXPECT_FALSE(minted.ambiguous);
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
  EXPECT_TRUE(minted.ambiguous) << "the mint request had reached the peer";
  EXPECT_FALSE(minted.error->retryable);
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

// Every call's request and response, retries and ambiguity, against a scripted API on a real
// loopback socket: each connection gets the next step of the script.
namespace {

struct Step {
  enum Kind { kAnswer, kDrop } kind = kAnswer;  // kDrop: read the whole request, then close
  int status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool content_length = true;  // false: the body ends with the connection
};

Step answer(int status, std::string body = "", std::vector<std::pair<std::string, std::string>> headers = {}) {
  Step step;
  step.status = status;
  step.body = std::move(body);
  step.headers = std::move(headers);
  return step;
}
Step apiError(int status, const std::string& code, const std::string& message,
              std::vector<std::pair<std::string, std::string>> headers = {}) {
  return answer(status, nlohmann::json{{"code", code}, {"message", message}}.dump(), std::move(headers));
}
Step dropAfterRequest() {
  Step step;
  step.kind = Step::kDrop;
  return step;
}

class ScriptedApi {
 public:
  struct Seen {
    std::string method;
    std::string target;  // origin form, query included
    std::map<std::string, std::string> headers;  // names in lower case
    std::string body;
    std::string header(const std::string& name) const {
      auto it = headers.find(name);
      return it == headers.end() ? "" : it->second;
    }
    nlohmann::json json() const { return nlohmann::json::parse(body, nullptr, false); }
  };

  explicit ScriptedApi(std::vector<Step> script,
                       Step fallback = apiError(500, "NoScript", "the test's script has no step left"))
      : script_(script.begin(), script.end()), fallback_(std::move(fallback)),
        listener_(Poco::Net::SocketAddress("127.0.0.1", 0)) {
    thread_ = std::thread([this] { run(); });
  }
  ~ScriptedApi() {
    stop_ = true;
    thread_.join();
  }

  std::string origin() const { return "http://127.0.0.1:" + std::to_string(listener_.address().port()); }
  std::vector<Seen> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  bool waitReadable(Poco::Net::StreamSocket& socket) {
    while (!stop_) {
      if (socket.poll(Poco::Timespan(0, 50000), Poco::Net::Socket::SELECT_READ)) return true;
    }
    return false;
  }

  void handle(Poco::Net::StreamSocket connection) {
    std::string data;
    char buffer[4096];
    size_t head_end;
    while ((head_end = data.find("\r\n\r\n")) == std::string::npos) {
      if (!waitReadable(connection)) return;
      const int n = connection.receiveBytes(buffer, sizeof buffer);
      if (n <= 0) return;
      data.append(buffer, static_cast<size_t>(n));
    }
    Seen seen;
    std::istringstream lines(data.substr(0, head_end + 2));
    std::string line;
    std::getline(lines, line);
    std::istringstream request_line(line);
    request_line >> seen.method >> seen.target;
    while (std::getline(lines, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      seen.headers[Poco::toLower(line.substr(0, colon))] = Poco::trim(line.substr(colon + 1));
    }
    const size_t length = seen.headers.count("content-length") ? std::stoul(seen.headers["content-length"]) : 0;
    seen.body = data.substr(head_end + 4);
    while (seen.body.size() < length) {
      if (!waitReadable(connection)) return;
      const int n = connection.receiveBytes(buffer, sizeof buffer);
      if (n <= 0) return;
      seen.body.append(buffer, static_cast<size_t>(n));
    }
    Step step;
    {
      std::lock_guard lock(mutex_);
      seen_.push_back(seen);
      if (script_.empty()) {
        step = fallback_;
      } else {
        step = script_.front();
        script_.pop_front();
      }
    }
    if (step.kind == Step::kDrop) return;  // closed with the request read and no answer
    std::string reply = "HTTP/1.1 " + std::to_string(step.status) + " " +
                        Poco::Net::HTTPResponse::getReasonForStatus(
                            static_cast<Poco::Net::HTTPResponse::HTTPStatus>(step.status)) +
                        "\r\nConnection: close\r\n";
    if (!step.body.empty()) reply += "Content-Type: application/json\r\n";
    if (step.content_length) reply += "Content-Length: " + std::to_string(step.body.size()) + "\r\n";
    for (const auto& [name, value] : step.headers) reply += name + ": " + value + "\r\n";
    reply += "\r\n" + step.body;
    connection.sendBytes(reply.data(), static_cast<int>(reply.size()));
    connection.shutdownSend();
    // Let the client read to the end before the socket closes.
    while (waitReadable(connection)) {
      if (connection.receiveBytes(buffer, sizeof buffer) <= 0) break;
    }
  }

  void run() {
    while (!stop_) {
      if (!listener_.poll(Poco::Timespan(0, 50000), Poco::Net::Socket::SELECT_READ)) continue;
      try {
        handle(listener_.acceptConnection());
      } catch (const Poco::Exception&) {
        // The client went away; the test's own assertions say what that means.
      }
    }
  }

  mutable std::mutex mutex_;
  std::deque<Step> script_;
  Step fallback_;
  std::vector<Seen> seen_;
  Poco::Net::ServerSocket listener_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A clock that only the injected sleep moves, and the list of waits asked for.
struct FakeTime {
  std::chrono::steady_clock::time_point now{std::chrono::hours(1)};
  std::vector<std::chrono::milliseconds> sleeps;

  RetryPolicy policy(int attempts, std::chrono::milliseconds base = std::chrono::milliseconds(100)) {
    return RetryPolicy{}
        .withMaxAttempts(attempts)
        .withBaseDelay(base)
        .withMaxDelay(std::chrono::milliseconds(10000))
        .withTotalBudget(std::chrono::milliseconds(60000))
        .withJitter(Jitter::kNone)
        .withClock([this] { return now; })
        .withSleep([this](std::chrono::milliseconds d, const std::atomic<bool>* cancel) {
          if (cancel && cancel->load()) return false;
          sleeps.push_back(d);
          now += d;
          return true;
        });
  }
};

HttpOptions quickOptions() {
  HttpOptions options;
  options.timeout = std::chrono::milliseconds(10000);
  return options;
}

ManagementClient scriptedClient(const ScriptedApi& api, FakeTime& time, int attempts = 3) {
  return ManagementClient(api.origin(), kTeamToken, quickOptions(), time.policy(attempts));
}

std::string outcomesText(const std::vector<AttemptOutcome>& outcomes) {
  std::string text;
  for (const auto& o : outcomes) text += o.describe() + "; ";
  return text;
}

const std::string kDeploymentJson = R"({"kind":"cloud","id":11,"name":"happy-otter-123","createTime":1,
  "deploymentType":"prod","projectId":5,"region":"aws-ap-southeast-2","isDefault":true,"reference":"production",
  "deploymentUrl":"https://happy-otter-123.convex.cloud","class":"s16","someFutureField":{"nested":[1,2]}})";

// ---- requests and responses ------------------------------------------------------------------

TEST(ManagementClientCalls, TokenDetailsIsABearerGetAndParsesATeamToken) {
  ScriptedApi api({answer(200, R"({"type":"teamToken","id":42,"teamId":7,"name":"ci token",
                                   "createTime":1760000000000,"unknownField":{"x":1}})")});
  FakeTime time;
  auto details = scriptedClient(api, time).tokenDetails();
  ASSERT_TRUE(details.details) << details.error->message;
  EXPECT_EQ(details.details->kind, "teamToken");
  EXPECT_EQ(details.details->team_id, 7);
  EXPECT_FALSE(details.details->project_id);
  EXPECT_EQ(details.details->id, 42);
  EXPECT_EQ(details.details->name, "ci token");
  EXPECT_EQ(details.attempts, 1);
  ASSERT_EQ(details.outcomes.size(), 1u);
  EXPECT_EQ(details.outcomes[0].http_status, 200);

  const auto seen = api.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].target, "/v1/token_details");
  EXPECT_EQ(seen[0].header("authorization"), "Bearer " + kTeamToken);
  EXPECT_EQ(seen[0].body, "");
  EXPECT_EQ(seen[0].header("content-type"), "");
}

TEST(ManagementClientCalls, TokenDetailsKeepsUnknownKindsAndToleratesAMissingId) {
  ScriptedApi api({answer(200, R"({"type":"projectToken","projectId":"99","name":"p","createTime":1})"),
                   answer(200, R"({"type":"personalAccessToken","name":"me"})")});
  FakeTime time;
  auto client = scriptedClient(api, time);
  auto project = client.tokenDetails();
  ASSERT_TRUE(project.details) << project.error->message;
  EXPECT_EQ(project.details->kind, "projectToken");
  EXPECT_EQ(project.details->project_id, 99);  // a numeric string is accepted
  EXPECT_FALSE(project.details->team_id);
  EXPECT_FALSE(project.details->id);  // older responses lack it
  auto other = client.tokenDetails();
  ASSERT_TRUE(other.details) << other.error->message;
  EXPECT_EQ(other.details->kind, "personalAccessToken");
  EXPECT_EQ(other.details->name, "me");
}

TEST(ManagementClientCalls, CreateProjectPostsTheNameAndDeploymentType) {
  ScriptedApi api({answer(200, R"({"projectId":3153479,"id":3153479,"slug":"my-app","deploymentName":
                                   "precious-dogfish-439","deploymentUrl":"https://precious-dogfish-439.convex.cloud",
                                   "brandNew":true})"),
                   answer(200, R"({"projectId":5,"id":5,"slug":"bare","deploymentName":null,"deploymentUrl":null})")});
  FakeTime time;
  auto client = scriptedClient(api, time);
  auto created = client.createProject(7, "My App", "prod");
  ASSERT_TRUE(created.project) << created.error->message;
  EXPECT_EQ(created.project->project_id, 3153479);
  EXPECT_EQ(created.project->slug, "my-app");
  EXPECT_EQ(created.project->deployment_name, "precious-dogfish-439");
  EXPECT_EQ(created.project->deployment_url, "https://precious-dogfish-439.convex.cloud");
  EXPECT_FALSE(created.ambiguous);

  auto bare = client.createProject(7, "Bare", "");
  ASSERT_TRUE(bare.project) << bare.error->message;
  EXPECT_EQ(bare.project->project_id, 5);
  EXPECT_FALSE(bare.project->deployment_name);
  EXPECT_FALSE(bare.project->deployment_url);

  const auto seen = api.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/v1/teams/7/create_project");
  EXPECT_EQ(seen[0].header("authorization"), "Bearer " + kTeamToken);
  EXPECT_EQ(seen[0].header("content-type"), "application/json");
  EXPECT_EQ(seen[0].json(), (nlohmann::json{{"projectName", "My App"}, {"deploymentType", "prod"}}));
  // The spec's body is strict: no deploymentType at all for a project without a deployment.
  EXPECT_EQ(seen[1].json(), (nlohmann::json{{"projectName", "Bare"}}));
}

TEST(ManagementClientCalls, FindProjectsByNameFollowsTheCursorAndKeepsExactMatches) {
  ScriptedApi api({
      answer(200, R"({"items":[
          {"id":30,"name":"My App & Co","slug":"my-app-co","teamId":7,"teamSlug":"acme","createTime":3},
          {"id":29,"name":"my app & co","slug":"my-app-co-2","teamId":7,"teamSlug":"acme","createTime":2},
          {"id":28,"name":"My App & Co 2","slug":"x","teamId":7,"teamSlug":"acme","createTime":2,"extra":1}],
          "pagination":{"hasMore":true,"nextCursor":"c 2/+"}})"),
      answer(200, R"({"items":[
          {"id":10,"name":"My App & Co","slug":"my-app-co-3","teamId":7,"teamSlug":"acme","createTime":1,
           "prodDeploymentName":"happy-otter-123"}],
          "pagination":{"hasMore":false,"nextCursor":null}})"),
  });
  FakeTime time;
  auto found = scriptedClient(api, time).findProjectsByName(7, "My App & Co");
  ASSERT_FALSE(found.error) << found.error->message;
  ASSERT_EQ(found.projects.size(), 2u);
  EXPECT_EQ(found.projects[0].id, 30);
  EXPECT_EQ(found.projects[1].id, 10);
  EXPECT_EQ(found.projects[1].prod_deployment_name, "happy-otter-123");
  EXPECT_TRUE(found.complete);
  EXPECT_EQ(found.pages, 2);
  EXPECT_EQ(found.attempts, 2);

  const auto seen = api.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].target, "/v1/teams/7/projects?q=My%20App%20%26%20Co&limit=100");
  EXPECT_EQ(seen[1].target, "/v1/teams/7/projects?q=My%20App%20%26%20Co&limit=100&cursor=c%202%2F%2B");
}

TEST(ManagementClientCalls, FindProjectsByNameStopsAtThePageBound) {
  auto page = [](const std::string& cursor) {
    return answer(200, R"({"items":[{"id":1,"name":"A","slug":"a","teamId":7,"teamSlug":"t","createTime":1}],
                          "pagination":{"hasMore":true,"nextCursor":")" + cursor + R"("}})");
  };
  ScriptedApi api({page("p2"), page("p3"), page("p4")});
  FakeTime time;
  auto found = scriptedClient(api, time).findProjectsByName(7, "A", 2);
  ASSERT_FALSE(found.error) << found.error->message;
  EXPECT_EQ(found.projects.size(), 2u);
  EXPECT_FALSE(found.complete) << "more pages were left unread";
  EXPECT_EQ(api.seen().size(), 2u);
}

TEST(ManagementClientCalls, GetProjectParsesAProjectResponse) {
  ScriptedApi api({answer(200, R"({"id":5,"name":"My App","slug":"my-app","teamId":7,"teamSlug":"acme",
                                   "createTime":1,"prodDeploymentName":"happy-otter-123","devDeploymentName":null,
                                   "futureField":[1]})")});
  FakeTime time;
  auto project = scriptedClient(api, time).getProject(5);
  ASSERT_TRUE(project.project) << project.error->message;
  EXPECT_EQ(project.project->id, 5);
  EXPECT_EQ(project.project->name, "My App");
  EXPECT_EQ(project.project->slug, "my-app");
  EXPECT_EQ(project.project->team_id, 7);
  EXPECT_EQ(project.project->team_slug, "acme");
  EXPECT_EQ(project.project->prod_deployment_name, "happy-otter-123");
  EXPECT_FALSE(project.project->dev_deployment_name);
  EXPECT_EQ(api.seen().at(0).target, "/v1/projects/5");
  EXPECT_EQ(api.seen().at(0).method, "GET");
}

TEST(ManagementClientCalls, DefaultDeploymentAsksForTheDefaultProdOrDev) {
  ScriptedApi api({answer(200, kDeploymentJson),
                   answer(200, R"({"kind":"cloud","name":"brave-fox-456","deploymentType":"someNewType",
                                   "projectId":5,"deploymentUrl":"https://brave-fox-456.convex.cloud"})")});
  FakeTime time;
  auto client = scriptedClient(api, time);
  auto prod = client.defaultDeployment(5, "prod");
  ASSERT_TRUE(prod.deployment) << prod.error->message;
  EXPECT_EQ(prod.deployment->name, "happy-otter-123");
  EXPECT_EQ(prod.deployment->deployment_url, "https://happy-otter-123.convex.cloud");
  EXPECT_EQ(prod.deployment->deployment_type, "prod");
  EXPECT_EQ(prod.deployment->project_id, 5);
  auto dev = client.defaultDeployment(5, "dev");
  ASSERT_TRUE(dev.deployment) << dev.error->message;
  EXPECT_EQ(dev.deployment->deployment_type, "someNewType");  // unknown values kept as sent

  auto other = client.defaultDeployment(5, "preview");
  ASSERT_TRUE(other.error);
  EXPECT_EQ(other.error->reason, "config_error");
  EXPECT_EQ(other.attempts, 0);

  const auto seen = api.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].target, "/v1/projects/5/deployment?defaultProd=true");
  EXPECT_EQ(seen[1].target, "/v1/projects/5/deployment?defaultDev=true");
  EXPECT_EQ(seen[1].method, "GET");
}

TEST(ManagementClientCalls, GetDeploymentParsesCloudAndLocalDeployments) {
  ScriptedApi api({answer(200, kDeploymentJson),
                   answer(200, R"({"kind":"local","name":"local-me-1","deploymentType":"dev","projectId":5,
                                   "creator":3,"port":3210,"deviceName":"laptop","isActive":true})"),
                   answer(200, R"({"kind":"cloud","name":"no-url-1","deploymentType":"dev","projectId":5})")});
  FakeTime time;
  auto client = scriptedClient(api, time);
  auto cloud = client.getDeployment("happy-otter-123");
  ASSERT_TRUE(cloud.deployment) << cloud.error->message;
  EXPECT_EQ(cloud.deployment->kind, "cloud");
  EXPECT_EQ(cloud.deployment->deployment_url, "https://happy-otter-123.convex.cloud");
  auto local = client.getDeployment("local-me-1");
  ASSERT_TRUE(local.deployment) << local.error->message;
  EXPECT_EQ(local.deployment->kind, "local");
  EXPECT_EQ(local.deployment->deployment_url, "");
  auto broken = client.getDeployment("no-url-1");
  ASSERT_TRUE(broken.error);
  EXPECT_EQ(broken.error->reason, "bad_response");
  EXPECT_FALSE(broken.error->retryable);
  EXPECT_EQ(api.seen().at(0).target, "/v1/deployments/happy-otter-123");
}

TEST_F(ManagementClientTest, TokenDetailsAndGetDeploymentAgainstTheStandin) {
  ManagementClient client(standin_->origin(), kTeamToken);
  auto details = client.tokenDetails();
  ASSERT_TRUE(details.details) << details.error->message;
  EXPECT_EQ(details.details->kind, "teamToken");
  EXPECT_EQ(details.details->team_id, 1);
  auto deployment = client.getDeployment("brave-fox-456");
  ASSERT_TRUE(deployment.deployment) << deployment.error->message;
  EXPECT_EQ(deployment.deployment->deployment_type, "dev");
  EXPECT_EQ(deployment.deployment->deployment_url, standin_->origin());
  auto missing = client.getDeployment("no-such-deployment-1");
  ASSERT_TRUE(missing.error);
  EXPECT_EQ(missing.error->code, "DeploymentNotFound");
  EXPECT_EQ(missing.attempts, 1);
}

TEST(ManagementClientCalls, DeleteDeployKeyPostsTheIdAndA404IsAlreadyGone) {
  const std::string key = "prod:happy-otter-123|secretpart0123456789";
  ScriptedApi api({answer(200), apiError(404, "DeployKeyNotFound", "no key " + key)});
  FakeTime time;
  auto client = scriptedClient(api, time);
  auto deleted = client.deleteDeployKey("happy-otter-123", key);
  EXPECT_TRUE(deleted.deleted);
  EXPECT_FALSE(deleted.already_gone);
  EXPECT_FALSE(deleted.error);
  auto again = client.deleteDeployKey("happy-otter-123", key);
  EXPECT_FALSE(again.error);
  EXPECT_FALSE(again.deleted);
  EXPECT_TRUE(again.already_gone);
  EXPECT_EQ(again.attempts, 1);

  const auto seen = api.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/v1/deployments/happy-otter-123/delete_deploy_key");
  EXPECT_EQ(seen[0].json(), (nlohmann::json{{"id", key}}));
  EXPECT_EQ(seen[0].header("authorization"), "Bearer " + kTeamToken);
}

TEST(ManagementClientCalls, CreatePreviewDeployKeyPostsNameAndExpiry) {
  ScriptedApi api({answer(200, R"({"previewDeployKey":"preview:acme:my-app|ey0123","x":1})"),
                   answer(200, R"({"previewDeployKey":"preview:acme:my-app|ey4567"})")});
  FakeTime time;
  auto client = scriptedClient(api, time);
  auto key = client.createPreviewDeployKey(5, "pr-42", int64_t{1900000000000});
  ASSERT_TRUE(key.preview_deploy_key) << key.error->message;
  EXPECT_EQ(*key.preview_deploy_key, "preview:acme:my-app|ey0123");
  auto no_expiry = client.createPreviewDeployKey(5, "pr-43");
  ASSERT_TRUE(no_expiry.preview_deploy_key) << no_expiry.error->message;

  const auto seen = api.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/v1/projects/5/create_preview_deploy_key");
  EXPECT_EQ(seen[0].json(), (nlohmann::json{{"name", "pr-42"}, {"expiresAt", int64_t{1900000000000}}}));
  EXPECT_EQ(seen[1].json(), (nlohmann::json{{"name", "pr-43"}}));
}

TEST(ManagementClientCalls, DeleteProjectIsAnEmptyPostAndProjectNotFoundIsAlreadyGone) {
  ScriptedApi api({answer(200), apiError(404, "ProjectNotFound", "The requested project does not exist"),
                   apiError(404, "NotFound", "No route for POST /v1/projects/5/delete")});
  FakeTime time;
  auto client = scriptedClient(api, time);
  auto deleted = client.deleteProject(5);
  EXPECT_TRUE(deleted.deleted);
  EXPECT_FALSE(deleted.error);
  auto gone = client.deleteProject(5);
  EXPECT_TRUE(gone.already_gone);
  EXPECT_FALSE(gone.error);
  // A 404 that is not about the project (a wrong base URL) is not success.
  auto wrong = client.deleteProject(5);
  ASSERT_TRUE(wrong.error);
  EXPECT_EQ(wrong.error->reason, "not_found");
  EXPECT_FALSE(wrong.already_gone);

  const auto seen = api.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/v1/projects/5/delete");
  EXPECT_EQ(seen[0].header("content-length"), "0");
  EXPECT_EQ(seen[0].body, "");
}

TEST(ManagementClientCalls, SetEnvironmentVariablesUsesTheConvexSchemeAndNullDeletes) {
  Step empty_ok = answer(200);
  empty_ok.content_length = false;  // 200 with an empty body that ends with the connection
  ScriptedApi api({empty_ok});
  FakeTime time;
  const std::string deploy_key = "prod:happy-otter-123|envkey0123456789";
  auto result = setEnvironmentVariables(api.origin() + "/", deploy_key,
                                        {{"OPENAI_API_KEY", "sk-value-0123"}, {"OLD_VAR", std::nullopt}},
                                        quickOptions(), time.policy(3));
  EXPECT_TRUE(result.ok) << result.error->message;
  EXPECT_EQ(result.attempts, 1);
  const auto seen = api.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/api/v1/update_environment_variables");
  EXPECT_EQ(seen[0].header("authorization"), "Convex " + deploy_key);
  EXPECT_EQ(seen[0].header("content-type"), "application/json");
  EXPECT_EQ(seen[0].json(), nlohmann::json::parse(R"({"changes":[{"name":"OPENAI_API_KEY","value":"sk-value-0123"},
                                                                {"name":"OLD_VAR","value":null}]})"));
}

TEST(ManagementClientCalls, TheFunctionListingIsTheApiSpecSystemQueryOverHttp) {
  ScriptedApi api({answer(200, R"({"status":"success","logLines":[],"value":[
                      {"identifier":"messages.js:list","functionType":"Query","visibility":{"kind":"public"}},
                      {"identifier":"http.js:GET /channels","functionType":"HttpAction"}]})"),
                   answer(200, R"({"status":"error","errorMessage":"no"})")});
  const std::string deploy_key = "prod:happy-otter-123|specskey0123456789";
  auto listed = da::convex::functionSpec(api.origin() + "/", deploy_key, quickOptions());
  ASSERT_TRUE(listed.functions) << listed.error->message;
  ASSERT_EQ(listed.functions->size(), 2u);
  EXPECT_EQ((*listed.functions)[0].identifier, "messages.js:list");
  EXPECT_EQ((*listed.functions)[0].function_type, "Query");
  EXPECT_NE((*listed.functions)[0].signature.find("public"), std::string::npos);
  const auto seen = api.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].target, "/api/query");
  EXPECT_EQ(seen[0].header("authorization"), "Convex " + deploy_key);
  EXPECT_EQ(seen[0].json()["path"], "_system/cli/modules:apiSpec");
  auto refused = da::convex::functionSpec(api.origin(), deploy_key, quickOptions());
  EXPECT_FALSE(refused.functions);
  ASSERT_TRUE(refused.error);
  EXPECT_EQ(refused.error->reason, "bad_response");
}

TEST(ManagementClientCalls, EnvVarValuesNeverAppearInErrors) {
  const std::string secret = "sk-live-RECOGNISABLE-SECRET-42";
  const std::string key = "prod:happy-otter-123|envkey0123456789";
  // The deployment echoes the value back in its message; it must not reach ours.
  ScriptedApi api({apiError(400, "EnvironmentVariableValueTooLarge", "value " + secret + " is too large"),
                   apiError(503, "OptimisticConcurrencyControlFailure", "conflict writing " + secret),
                   apiError(500, "InternalServerError", "boom " + secret + " with key " + key)});
  FakeTime time;
  auto rejected = setEnvironmentVariables(api.origin(), key, {{"BIG", secret}}, quickOptions(), time.policy(1));
  ASSERT_TRUE(rejected.error);
  EXPECT_FALSE(rejected.ok);
  EXPECT_EQ(rejected.error->code, "EnvironmentVariableValueTooLarge");
  EXPECT_EQ(rejected.error->http_status, 400);
  EXPECT_FALSE(rejected.error->retryable);
  EXPECT_EQ(rejected.error->message.find(secret), std::string::npos) << rejected.error->message;
  EXPECT_NE(rejected.error->message.find("[redacted]"), std::string::npos) << rejected.error->message;

  auto retried = setEnvironmentVariables(api.origin(), key, {{"BIG", secret}}, quickOptions(), time.policy(2));
  ASSERT_TRUE(retried.error);
  EXPECT_EQ(retried.attempts, 2);
  for (const auto& text : {retried.error->message, outcomesText(retried.outcomes)}) {
    EXPECT_EQ(text.find(secret), std::string::npos) << text;
    EXPECT_EQ(text.find(key), std::string::npos) << text;
    EXPECT_EQ(text.find("envkey0123456789"), std::string::npos) << text;
  }
}

// ---- retries ---------------------------------------------------------------------------------

TEST(ManagementClientRetry, A429IsRetriedAfterItsRetryAfterSeconds) {
  ScriptedApi api({apiError(429, "RateLimited", "slow down", {{"Retry-After", "2"}}),
                   answer(200, R"({"type":"teamToken","teamId":7,"name":"n"})")});
  FakeTime time;
  auto details = scriptedClient(api, time).tokenDetails();
  ASSERT_TRUE(details.details) << details.error->message;
  EXPECT_EQ(details.attempts, 2);
  EXPECT_EQ(time.sleeps, (std::vector<std::chrono::milliseconds>{std::chrono::milliseconds(2000)}));
  ASSERT_EQ(details.outcomes.size(), 2u);
  EXPECT_EQ(details.outcomes[0].http_status, 429);
  EXPECT_EQ(details.outcomes[0].delay_after, std::chrono::milliseconds(2000));
  EXPECT_EQ(details.outcomes[1].http_status, 200);
  EXPECT_EQ(details.outcomes[0].describe(), "HTTP 429 RateLimited, retried after 2000 ms");
}

TEST(ManagementClientRetry, A429IsRetriedAfterItsRetryAfterDate) {
  const auto wall = std::chrono::system_clock::time_point(std::chrono::seconds(1445412480));
  const std::string date = Poco::DateTimeFormatter::format(
      Poco::Timestamp::fromEpochTime(1445412480 + 3), Poco::DateTimeFormat::HTTP_FORMAT);
  ScriptedApi api({answer(429, "", {{"Retry-After", date}}), answer(200, R"({"type":"teamToken"})")});
  FakeTime time;
  ManagementClient client(api.origin(), kTeamToken, quickOptions(),
                          time.policy(3).withWallClock([wall] { return wall; }));
  auto details = client.tokenDetails();
  ASSERT_TRUE(details.details) << details.error->message;
  EXPECT_EQ(time.sleeps, (std::vector<std::chrono::milliseconds>{std::chrono::milliseconds(3000)}));
}

TEST(ManagementClientRetry, A503OccFailureOfAnEnvUpdateIsRetried) {
  ScriptedApi api({apiError(503, "OptimisticConcurrencyControlFailure", "try again"), answer(200)});
  FakeTime time;
  auto result = setEnvironmentVariables(api.origin(), "prod:x|key0123456789", {{"A", "value-1"}}, quickOptions(),
                                        time.policy(3));
  EXPECT_TRUE(result.ok) << result.error->message;
  EXPECT_EQ(result.attempts, 2);
  EXPECT_EQ(time.sleeps, (std::vector<std::chrono::milliseconds>{std::chrono::milliseconds(100)}));
  const auto seen = api.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].body, seen[1].body) << "the same changes are sent again";
}

TEST(ManagementClientRetry, ADroppedConnectionIsRetriedForAGet) {
  ScriptedApi api({dropAfterRequest(), answer(200, kDeploymentJson)});
  FakeTime time;
  auto deployment = scriptedClient(api, time).getDeployment("happy-otter-123");
  ASSERT_TRUE(deployment.deployment) << deployment.error->message;
  EXPECT_EQ(deployment.attempts, 2);
  ASSERT_EQ(deployment.outcomes.size(), 2u);
  EXPECT_EQ(deployment.outcomes[0].http_status, 0);
  EXPECT_FALSE(deployment.outcomes[0].error.empty());
  EXPECT_EQ(api.seen().size(), 2u);
}

TEST(ManagementClientRetry, ExponentialBackoffUntilTheAttemptsRunOut) {
  ScriptedApi api({}, apiError(502, "", "bad gateway"));
  FakeTime time;
  auto project = scriptedClient(api, time, 4).getProject(5);
  ASSERT_TRUE(project.error);
  EXPECT_EQ(project.error->reason, "server_error");
  EXPECT_EQ(project.error->http_status, 502);
  EXPECT_TRUE(project.error->retryable);
  EXPECT_EQ(project.attempts, 4);
  EXPECT_EQ(api.seen().size(), 4u);
  using std::chrono::milliseconds;
  EXPECT_EQ(time.sleeps, (std::vector<milliseconds>{milliseconds(100), milliseconds(200), milliseconds(400)}));
}

TEST(ManagementClientRetry, OtherClientErrorsAreNeverRetried) {
  for (int status : {400, 401, 403, 404, 409, 422}) {
    ScriptedApi api({}, apiError(status, "NotAllowed", "no"));
    FakeTime time;
    auto client = scriptedClient(api, time, 5);
    auto project = client.getProject(5);
    ASSERT_TRUE(project.error) << status;
    EXPECT_EQ(project.attempts, 1) << status;
    EXPECT_FALSE(project.error->retryable) << status;
    auto deleted = client.deleteDeployKey("happy-otter-123", "name");
    if (status != 404) {
      ASSERT_TRUE(deleted.error) << status;
      EXPECT_EQ(deleted.attempts, 1) << status;
    }
    EXPECT_EQ(api.seen().size(), 2u) << status;
    EXPECT_TRUE(time.sleeps.empty()) << status;
  }
}

TEST(ManagementClientRetry, StopsWhenTheBudgetIsSpent) {
  ScriptedApi api({}, apiError(503, "Overloaded", "busy"));
  FakeTime time;
  ManagementClient client(api.origin(), kTeamToken, quickOptions(),
                          time.policy(10).withTotalBudget(std::chrono::milliseconds(250)));
  auto details = client.tokenDetails();
  ASSERT_TRUE(details.error);
  // Waits of 100 ms, then 200 ms would end at 300 ms > 250 ms: two attempts.
  EXPECT_EQ(details.attempts, 2);
  EXPECT_EQ(time.sleeps, (std::vector<std::chrono::milliseconds>{std::chrono::milliseconds(100)}));
  EXPECT_TRUE(details.error->retryable);
  EXPECT_EQ(details.error->code, "Overloaded");
  EXPECT_NE(details.error->message.find("budget"), std::string::npos) << details.error->message;
}

TEST(ManagementClientRetry, ARetryAfterBeyondTheBudgetEndsTheCallAtOnce) {
  ScriptedApi api({}, apiError(429, "RateLimited", "later", {{"Retry-After", "3600"}}));
  FakeTime time;
  auto details = scriptedClient(api, time, 5).tokenDetails();
  ASSERT_TRUE(details.error);
  EXPECT_EQ(details.error->reason, "rate_limited");
  EXPECT_TRUE(details.error->retryable);
  EXPECT_EQ(details.attempts, 1);
  EXPECT_TRUE(time.sleeps.empty());
  EXPECT_NE(details.error->message.find("3600000 ms"), std::string::npos) << details.error->message;
}

TEST(ManagementClientRetry, CreateProjectIsAmbiguousWhenTheConnectionDropsAfterTheRequest) {
  ScriptedApi api({dropAfterRequest()}, answer(200, R"({"id":1,"projectId":1,"slug":"dup"})"));
  FakeTime time;
  auto created = scriptedClient(api, time, 5).createProject(7, "My App", "prod");
  ASSERT_TRUE(created.error);
  EXPECT_FALSE(created.project);
  EXPECT_EQ(created.error->reason, "ambiguous") << created.error->message;
  EXPECT_TRUE(created.error->ambiguous);
  EXPECT_FALSE(created.error->retryable);
  EXPECT_TRUE(created.ambiguous);
  EXPECT_EQ(created.attempts, 1);
  const auto seen = api.seen();
  ASSERT_EQ(seen.size(), 1u) << "create_project was sent again";
  EXPECT_EQ(seen[0].json()["projectName"], "My App");  // the whole request had arrived
  EXPECT_TRUE(time.sleeps.empty());
}

TEST(ManagementClientRetry, CreateCallsAreAmbiguousOnA5xx) {
  ScriptedApi api({apiError(502, "", "bad gateway"), apiError(500, "InternalServerError", "later"),
                   apiError(503, "Overloaded", "busy")});
  FakeTime time;
  auto client = scriptedClient(api, time, 5);
  auto project = client.createProject(7, "My App", "dev");
  ASSERT_TRUE(project.error);
  EXPECT_EQ(project.error->reason, "ambiguous");
  EXPECT_EQ(project.error->http_status, 502);
  EXPECT_TRUE(project.ambiguous);
  auto key = client.createDeployKey(keyRequest());
  ASSERT_TRUE(key.error);
  EXPECT_EQ(key.error->reason, "ambiguous");
  EXPECT_EQ(key.error->code, "InternalServerError");
  EXPECT_TRUE(key.ambiguous);
  auto preview = client.createPreviewDeployKey(5, "pr");
  ASSERT_TRUE(preview.error);
  EXPECT_EQ(preview.error->reason, "ambiguous");
  EXPECT_TRUE(preview.ambiguous);
  EXPECT_EQ(api.seen().size(), 3u) << "a create was sent again";
  EXPECT_TRUE(time.sleeps.empty());
}

TEST(ManagementClientRetry, CreateCallsAreRetriedOnA429) {
  ScriptedApi api({apiError(429, "RateLimited", "slow", {{"Retry-After", "1"}}),
                   answer(200, R"({"id":9,"projectId":9,"slug":"s"})")});
  FakeTime time;
  auto created = scriptedClient(api, time).createProject(7, "S", "");
  ASSERT_TRUE(created.project) << created.error->message;
  EXPECT_EQ(created.project->project_id, 9);
  EXPECT_EQ(created.attempts, 2);
  EXPECT_FALSE(created.ambiguous);
}

TEST(ManagementClientRetry, CreateDeployKeyIsAmbiguousAfterADroppedConnection) {
  ScriptedApi api({dropAfterRequest()}, answer(200, R"({"deployKey":"prod:happy-otter-123|second"})"));
  FakeTime time;
  auto minted = scriptedClient(api, time, 3).createDeployKey(keyRequest());
  ASSERT_TRUE(minted.error);
  EXPECT_FALSE(minted.deploy_key);
  EXPECT_EQ(minted.error->reason, "ambiguous");
  EXPECT_TRUE(minted.ambiguous);
  EXPECT_EQ(api.seen().size(), 1u);
}

TEST(ManagementClientRetry, DeletesAreRetriedAndALate404MeansGone) {
  // The first delete may have worked before its 503; the retry's 404 then means "gone".
  ScriptedApi api({apiError(503, "Overloaded", "busy"), apiError(404, "DeployKeyNotFound", "gone")});
  FakeTime time;
  auto deleted = scriptedClient(api, time).deleteDeployKey("happy-otter-123", "ci key");
  EXPECT_FALSE(deleted.error);
  EXPECT_TRUE(deleted.already_gone);
  EXPECT_EQ(deleted.attempts, 2);
}

TEST(ManagementClientRetry, UrlForKeyIsRetriedOn5xx) {
  ScriptedApi api({apiError(500, "InternalServerError", "later"), answer(200, R"("https://custom.example.com")")});
  FakeTime time;
  const std::string key = "prod:happy-otter-123|urlkey0123456789";
  auto located = deploymentUrlForKey(api.origin(), key, quickOptions(), time.policy(3));
  ASSERT_TRUE(located.url) << located.error->message;
  EXPECT_EQ(*located.url, "https://custom.example.com");
  EXPECT_EQ(located.attempts, 2);
  const auto seen = api.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].target, "/api/deployment/url_for_key");
  EXPECT_EQ(seen[1].header("authorization"), "Bearer " + key);
  EXPECT_EQ(seen[1].json(), (nlohmann::json{{"deployKey", key}}));
}

TEST(ManagementClientRetry, RetryableFlagTellsTheTruth) {
  struct Row {
    Step step;
    std::string reason;
    bool retryable;
  };
  const std::vector<Row> rows = {
      {apiError(400, "ProjectQuotaReached", "quota"), "bad_request", false},
      {apiError(401, "Unauthenticated", "who"), "unauthorized", false},
      {apiError(403, "NotAllowed", "You do not have permission to perform this action"), "unauthorized", false},
      {apiError(404, "ProjectNotFound", "The requested project does not exist"), "not_found", false},
      {apiError(429, "RateLimited", "slow"), "rate_limited", true},
      {apiError(500, "InternalServerError", "later"), "server_error", true},
      {apiError(501, "", "not implemented"), "server_error", false},
      {apiError(502, "", "gateway"), "server_error", true},
      {apiError(503, "OptimisticConcurrencyControlFailure", "occ"), "server_error", true},
      {apiError(504, "", "timeout"), "server_error", true},
      {answer(200, "not json"), "bad_response", false},
  };
  for (const auto& row : rows) {
    ScriptedApi api({row.step});
    FakeTime time;
    auto project = scriptedClient(api, time, 1).getProject(5);
    ASSERT_TRUE(project.error) << row.step.status;
    EXPECT_EQ(project.error->reason, row.reason) << row.step.status;
    EXPECT_EQ(project.error->retryable, row.retryable) << row.step.status;
    EXPECT_FALSE(project.error->ambiguous) << row.step.status;
    EXPECT_EQ(project.error->http_status, row.step.status);
    if (row.step.status == 503) {
      EXPECT_EQ(project.error->code, "OptimisticConcurrencyControlFailure");
    }
    if (row.step.status == 403) {
      EXPECT_EQ(project.error->code, "NotAllowed");
    }
  }

  // A network error: refused, nothing sent.
  Poco::Net::ServerSocket closed(Poco::Net::SocketAddress("127.0.0.1", 0));
  const std::string refused = "http://127.0.0.1:" + std::to_string(closed.address().port());
  closed.close();
  FakeTime time;
  auto unreachable = ManagementClient(refused, kTeamToken, quickOptions(), time.policy(1)).getProject(5);
  ASSERT_TRUE(unreachable.error);
  EXPECT_EQ(unreachable.error->reason, "network_error");
  EXPECT_TRUE(unreachable.error->retryable);

  // Configuration errors: nothing sent, nothing to retry.
  HttpOptions broken = quickOptions();
  broken.config_error = "http_proxy is not a URL";
  auto config = ManagementClient(refused, kTeamToken, broken, time.policy(3)).getProject(5);
  ASSERT_TRUE(config.error);
  EXPECT_EQ(config.error->reason, "config_error");
  EXPECT_FALSE(config.error->retryable);
  EXPECT_EQ(config.attempts, 0);
}

TEST(ManagementClientRetry, CancelEndsABackoffWait) {
  ScriptedApi api({}, apiError(503, "Overloaded", "busy"));
  std::atomic<bool> cancel{false};
  HttpOptions options = quickOptions();
  options.cancel = &cancel;
  std::promise<void> waiting;
  auto policy = RetryPolicy{}
                    .withMaxAttempts(5)
                    .withBaseDelay(std::chrono::milliseconds(30000))
                    .withMaxDelay(std::chrono::milliseconds(30000))
                    .withJitter(Jitter::kNone)
                    .withSleep([&](std::chrono::milliseconds delay, const std::atomic<bool>* c) {
                      waiting.set_value();  // the one backoff this test lets begin
                      return sleepUnlessCancelled(delay, c);
                    });
  ManagementClient client(api.origin(), kTeamToken, options, policy);
  TokenDetailsResult details;
  std::thread caller([&] { details = client.tokenDetails(); });
  auto in_backoff = waiting.get_future();
  ASSERT_EQ(in_backoff.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  const auto cancelled_at = std::chrono::steady_clock::now();
  cancel = true;
  caller.join();
  const auto took = std::chrono::steady_clock::now() - cancelled_at;

  ASSERT_TRUE(details.error);
  EXPECT_EQ(details.error->reason, "cancelled") << details.error->message;
  EXPECT_FALSE(details.error->retryable);
  EXPECT_EQ(details.attempts, 1);
  EXPECT_EQ(api.seen().size(), 1u);
  EXPECT_LT(took, std::chrono::milliseconds(500)) << "the 30 s backoff was not cut short";
}

}  // namespace

// ---- preview deploy keys: claim_preview_deployment and delete_preview_deploy_key ----------------

namespace {

constexpr int64_t kSeededProject = 1;  // the stand-in's demo-team:demo-project

struct ControlAnswer {
  int status = 0;
  std::string body;
};

// The stand-in's control API (/_standin/...), which the client never calls.
ControlAnswer standinControl(const standin::Standin& standin, const std::string& method, const std::string& path,
                             const std::string& body = "") {
  Poco::Net::HTTPClientSession session("127.0.0.1", standin.port());
  session.setTimeout(Poco::Timespan(10, 0));
  Poco::Net::HTTPRequest request(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
  if (method == "POST") {
    request.setContentType("application/json");
    request.setContentLength(static_cast<std::streamsize>(body.size()));
  }
  session.sendRequest(request) << body;
  Poco::Net::HTTPResponse response;
  std::istream& in = session.receiveResponse(response);
  ControlAnswer result;
  result.status = static_cast<int>(response.getStatus());
  Poco::StreamCopier::copyToString(in, result.body);
  return result;
}

std::string secretPart(const std::string& key) { return key.substr(key.rfind('|') + 1); }

// The stand-in's requests to `path`, oldest first.
std::vector<nlohmann::json> requestsTo(const standin::Standin& standin, const std::string& path) {
  std::vector<nlohmann::json> seen;
  for (const auto& request : standin.requests()) {
    if (request.at("path") == path) seen.push_back(request);
  }
  return seen;
}

// Live preview deployments of a project, by identifier -> name.
std::map<std::string, std::string> previewsOf(const standin::Standin& standin, int64_t project_id) {
  std::map<std::string, std::string> previews;
  for (const auto& project : standin.projects()) {
    if (project.at("id") != project_id) continue;
    for (const auto& deployment : project.at("deployments")) {
      if (deployment.at("type") == "preview") previews[deployment.at("previewIdentifier")] = deployment.at("name");
    }
  }
  return previews;
}

class ManagementPreviewTest : public ManagementClientTest {
 protected:
  std::string mintPreviewKey(const std::string& name, int64_t project_id = kSeededProject) {
    ManagementClient client(standin_->origin(), kTeamToken);
    auto minted = client.createPreviewDeployKey(project_id, name);
    EXPECT_TRUE(minted.preview_deploy_key) << (minted.error ? minted.error->message : "");
    return minted.preview_deploy_key.value_or("");
  }
  void addFault(const nlohmann::json& fault) {
    const auto added = standinControl(*standin_, "POST", "/_standin/faults", fault.dump());
    ASSERT_EQ(added.status, 200) << added.body;
  }
};

TEST_F(ManagementPreviewTest, ClaimCreatesThenReuseKeepsAndReuseFalseReplaces) {
  const std::string key = mintPreviewKey("ci previews");
  ASSERT_EQ(key.rfind("preview:demo-team:demo-project|", 0), 0u) << key;

  auto first = claimPreviewDeployment(standin_->origin(), key, "pr-17", /*reuse=*/true, quickOptions());
  ASSERT_TRUE(first.preview) << first.error->message;
  EXPECT_EQ(first.attempts, 1);
  EXPECT_TRUE(first.preview->is_new);
  EXPECT_EQ(first.preview->reference, "preview/pr-17");
  EXPECT_EQ(first.preview->instance_url, standin_->origin());
  EXPECT_FALSE(first.preview->deployment_name.empty());
  EXPECT_EQ(first.preview->admin_key.rfind("preview:" + first.preview->deployment_name + "|", 0), 0u);
  EXPECT_EQ(previewsOf(*standin_, kSeededProject).at("pr-17"), first.preview->deployment_name);
  // The admin key is a working deployment key.
  auto located = deploymentUrlForKey(standin_->origin(), first.preview->admin_key, quickOptions());
  ASSERT_TRUE(located.url) << located.error->message;

  auto again = claimPreviewDeployment(standin_->origin(), key, "pr-17", /*reuse=*/true, quickOptions());
  ASSERT_TRUE(again.preview) << again.error->message;
  EXPECT_FALSE(again.preview->is_new);
  EXPECT_EQ(again.preview->deployment_name, first.preview->deployment_name);

  auto replaced = claimPreviewDeployment(standin_->origin(), key, "pr-17", /*reuse=*/false, quickOptions());
  ASSERT_TRUE(replaced.preview) << replaced.error->message;
  EXPECT_TRUE(replaced.preview->is_new);
  EXPECT_NE(replaced.preview->deployment_name, first.preview->deployment_name);
  EXPECT_EQ(previewsOf(*standin_, kSeededProject),
            (std::map<std::string, std::string>{{"pr-17", replaced.preview->deployment_name}}));

  // What went on the wire, as the stand-in logged it (never the key).
  const auto claims = requestsTo(*standin_, "/api/claim_preview_deployment");
  ASSERT_EQ(claims.size(), 3u);
  EXPECT_EQ(claims[0].at("auth"), "previewDeployKey");
  EXPECT_EQ(standin_->requests().dump().find(secretPart(key)), std::string::npos);
}

TEST_F(ManagementPreviewTest, ClaimWithAWrongKeyFailsWithTheApisCodeAndNoSecret) {
  const std::string forged = "preview:demo-team:demo-project|forgedSecretValue0123456789";
  auto refused = claimPreviewDeployment(standin_->origin(), forged, "pr-1", true, quickOptions());
  ASSERT_TRUE(refused.error);
  EXPECT_FALSE(refused.preview);
  EXPECT_EQ(refused.error->reason, "unauthorized");
  EXPECT_EQ(refused.error->http_status, 401);
  EXPECT_EQ(refused.error->code, "Unauthenticated");
  EXPECT_FALSE(refused.error->retryable);
  EXPECT_EQ(refused.attempts, 1);
  EXPECT_EQ(refused.error->message.find("forgedSecret"), std::string::npos) << refused.error->message;
  EXPECT_EQ(outcomesText(refused.outcomes).find("forgedSecret"), std::string::npos);

  // Keys that are not preview deploy keys are refused before anything is sent.
  for (const std::string& not_preview :
       {std::string("prod:happy-otter-123|notPreviewSecret0123"),
        std::string("preview:solo-deploy-1|notPreviewSecret0123"), std::string("preview:demo-team:demo-project"),
        std::string("preview::demo-project|notPreviewSecret0123"), std::string("preview:a:b:c|notPreviewSecret0123")}) {
    auto config = claimPreviewDeployment(standin_->origin(), not_preview, "pr-1", true, quickOptions());
    ASSERT_TRUE(config.error) << not_preview;
    EXPECT_EQ(config.error->reason, "config_error") << not_preview;
    EXPECT_EQ(config.attempts, 0);
    EXPECT_EQ(config.error->message.find("notPreviewSecret"), std::string::npos) << config.error->message;
  }
  const std::string key = mintPreviewKey("ci");
  auto empty = claimPreviewDeployment(standin_->origin(), key, "", true, quickOptions());
  ASSERT_TRUE(empty.error);
  EXPECT_EQ(empty.error->reason, "config_error");
  EXPECT_EQ(requestsTo(*standin_, "/api/claim_preview_deployment").size(), 1u) << "only the forged key was sent";
}

TEST_F(ManagementPreviewTest, DeletedKeyIsRefusedByClaimAndASecondDeleteIsAlreadyGone) {
  const std::string key = mintPreviewKey("pr bot");
  ASSERT_TRUE(claimPreviewDeployment(standin_->origin(), key, "pr-2", true, quickOptions()).preview);

  ManagementClient client(standin_->origin(), kTeamToken);
  auto deleted = client.deletePreviewDeployKey(kSeededProject, "pr bot");
  EXPECT_TRUE(deleted.deleted) << (deleted.error ? deleted.error->message : "");
  EXPECT_FALSE(deleted.already_gone);
  EXPECT_FALSE(deleted.error);
  EXPECT_EQ(deleted.attempts, 1);

  auto refused = claimPreviewDeployment(standin_->origin(), key, "pr-2", true, quickOptions());
  ASSERT_TRUE(refused.error);
  EXPECT_EQ(refused.error->http_status, 401);
  EXPECT_EQ(refused.error->reason, "unauthorized");

  auto again = client.deletePreviewDeployKey(kSeededProject, "pr bot");
  EXPECT_FALSE(again.error) << again.error->message;
  EXPECT_TRUE(again.already_gone);
  EXPECT_FALSE(again.deleted);
  EXPECT_EQ(again.attempts, 1);

  // By the full key and by its secret part; neither shows up in what the call reports.
  const std::string by_key = mintPreviewKey("by key");
  const std::string by_secret = mintPreviewKey("by secret");
  EXPECT_TRUE(client.deletePreviewDeployKey(kSeededProject, by_key).deleted);
  EXPECT_TRUE(client.deletePreviewDeployKey(kSeededProject, secretPart(by_secret)).deleted);
  auto gone = client.deletePreviewDeployKey(kSeededProject, by_key);
  EXPECT_TRUE(gone.already_gone);
  EXPECT_EQ(outcomesText(gone.outcomes).find(secretPart(by_key)), std::string::npos);
  for (const auto& k : {by_key, by_secret}) {
    EXPECT_TRUE(claimPreviewDeployment(standin_->origin(), k, "pr-3", true, quickOptions()).error);
  }
}

TEST_F(ManagementPreviewTest, OAuthProjectTokenReachesOnlyItsOwnProject) {
  ManagementClient team(standin_->origin(), kTeamToken);
  auto other = team.createProject(1, "Other App", "");
  ASSERT_TRUE(other.project) << other.error->message;
  const int64_t other_id = other.project->project_id;
  const std::string others_key = mintPreviewKey("other ci", other_id);

  ManagementClient oauth(standin_->origin(), standin_->mintOAuthToken(kSeededProject));
  auto own = oauth.createPreviewDeployKey(kSeededProject, "oauth previews");
  ASSERT_TRUE(own.preview_deploy_key) << own.error->message;
  auto foreign = oauth.createPreviewDeployKey(other_id, "sneaky");
  ASSERT_TRUE(foreign.error);
  EXPECT_EQ(foreign.error->reason, "not_found");
  EXPECT_EQ(foreign.error->code, "ProjectNotFound");

  // The other project's key is out of this token's sight: an error, not "already gone", and
  // the key keeps working.
  auto not_seen = oauth.deletePreviewDeployKey(other_id, "other ci");
  ASSERT_TRUE(not_seen.error);
  EXPECT_EQ(not_seen.error->reason, "not_found");
  EXPECT_EQ(not_seen.error->code, "ProjectNotFound");
  EXPECT_FALSE(not_seen.already_gone);
  EXPECT_FALSE(not_seen.deleted);
  auto still = claimPreviewDeployment(standin_->origin(), others_key, "pr-9", true, quickOptions());
  EXPECT_TRUE(still.preview) << still.error->message;

  // Its own OAuth-minted key claims; deleting it revokes the OAuth grant itself (§9.2).
  auto claimed = claimPreviewDeployment(standin_->origin(), *own.preview_deploy_key, "pr-4", true, quickOptions());
  ASSERT_TRUE(claimed.preview) << claimed.error->message;
  auto deleted = oauth.deletePreviewDeployKey(kSeededProject, "oauth previews");
  EXPECT_TRUE(deleted.deleted) << (deleted.error ? deleted.error->message : "");
  auto revoked = oauth.tokenDetails();
  ASSERT_TRUE(revoked.error);
  EXPECT_EQ(revoked.error->http_status, 401);
  auto refused = claimPreviewDeployment(standin_->origin(), *own.preview_deploy_key, "pr-4", true, quickOptions());
  ASSERT_TRUE(refused.error);
  EXPECT_EQ(refused.error->http_status, 401);
}

TEST_F(ManagementPreviewTest, A503IsRetriedAndCountedAsTwoAttempts) {
  const std::string key = mintPreviewKey("ci");
  addFault({{"path", "/api/claim_preview_deployment"}, {"status", 503}, {"code", "Overloaded"}});
  FakeTime time;
  auto claimed = claimPreviewDeployment(standin_->origin(), key, "pr-5", true, quickOptions(), time.policy(3));
  ASSERT_TRUE(claimed.preview) << claimed.error->message;
  EXPECT_EQ(claimed.attempts, 2);
  ASSERT_EQ(claimed.outcomes.size(), 2u);
  EXPECT_EQ(claimed.outcomes[0].http_status, 503);
  EXPECT_EQ(claimed.outcomes[0].error, "Overloaded");
  EXPECT_EQ(claimed.outcomes[1].http_status, 200);
  EXPECT_EQ(time.sleeps.size(), 1u);
  EXPECT_FALSE(claimed.ambiguous);

  addFault({{"path", "/v1/projects/1/delete_preview_deploy_key"}, {"status", 503}});
  auto deleted = ManagementClient(standin_->origin(), kTeamToken, quickOptions(), time.policy(3))
                     .deletePreviewDeployKey(kSeededProject, "ci");
  EXPECT_TRUE(deleted.deleted) << (deleted.error ? deleted.error->message : "");
  EXPECT_EQ(deleted.attempts, 2);
  EXPECT_EQ(requestsTo(*standin_, "/v1/projects/1/delete_preview_deploy_key").size(), 2u);
}

TEST_F(ManagementPreviewTest, ReplacingClaimIsAmbiguousAfterADropAndNeverResent) {
  const std::string key = mintPreviewKey("ci");
  addFault({{"path", "/api/claim_preview_deployment"}, {"drop_connection", true}, {"after_handling", true}});
  FakeTime time;
  auto claimed = claimPreviewDeployment(standin_->origin(), key, "pr-6", /*reuse=*/false, quickOptions(),
                                        time.policy(5));
  ASSERT_TRUE(claimed.error);
  EXPECT_FALSE(claimed.preview);
  EXPECT_EQ(claimed.error->reason, "ambiguous") << claimed.error->message;
  EXPECT_TRUE(claimed.error->ambiguous);
  EXPECT_FALSE(claimed.error->retryable);
  EXPECT_TRUE(claimed.ambiguous);
  EXPECT_EQ(claimed.attempts, 1);
  EXPECT_TRUE(time.sleeps.empty());
  EXPECT_EQ(requestsTo(*standin_, "/api/claim_preview_deployment").size(), 1u) << "the claim was sent again";
  // It had taken effect: the preview exists.
  EXPECT_EQ(previewsOf(*standin_, kSeededProject).count("pr-6"), 1u);

  // A 5xx is just as ambiguous; a 429 was refused before it was carried out, so it is retried.
  addFault({{"path", "/api/claim_preview_deployment"}, {"status", 500}});
  auto failed = claimPreviewDeployment(standin_->origin(), key, "pr-6", false, quickOptions(), time.policy(5));
  ASSERT_TRUE(failed.error);
  EXPECT_EQ(failed.error->reason, "ambiguous");
  EXPECT_EQ(failed.attempts, 1);
  addFault({{"path", "/api/claim_preview_deployment"}, {"status", 429}});
  auto limited = claimPreviewDeployment(standin_->origin(), key, "pr-6", false, quickOptions(), time.policy(5));
  ASSERT_TRUE(limited.preview) << limited.error->message;
  EXPECT_EQ(limited.attempts, 2);
  EXPECT_TRUE(limited.preview->is_new);
}

TEST_F(ManagementPreviewTest, SecretsNeverAppearInErrorsOrOutcomes) {
  const std::string key = mintPreviewKey("ci");
  // A server that echoes the key's secret in its error message.
  addFault({{"path", "/api/claim_preview_deployment"},
            {"status", 503},
            {"code", "Overloaded"},
            {"message", "busy serving " + key + " / " + secretPart(key)},
            {"times", -1}});
  FakeTime time;
  auto failed = claimPreviewDeployment(standin_->origin(), key, "pr-7", true, quickOptions(), time.policy(2));
  ASSERT_TRUE(failed.error);
  EXPECT_EQ(failed.error->reason, "server_error");
  EXPECT_EQ(failed.attempts, 2);
  EXPECT_EQ(failed.error->message.find(secretPart(key)), std::string::npos) << failed.error->message;
  EXPECT_NE(failed.error->message.find("[redacted]"), std::string::npos) << failed.error->message;
  EXPECT_EQ(outcomesText(failed.outcomes).find(secretPart(key)), std::string::npos);
  ASSERT_EQ(standinControl(*standin_, "POST", "/_standin/reset", "{}").status, 200);

  addFault({{"path", "/v1/projects/1/delete_preview_deploy_key"},
            {"status", 400},
            {"message", "cannot delete " + secretPart(key)}});
  auto refused =
      ManagementClient(standin_->origin(), kTeamToken).deletePreviewDeployKey(kSeededProject, secretPart(key));
  ASSERT_TRUE(refused.error);
  EXPECT_EQ(refused.error->reason, "bad_request");
  EXPECT_EQ(refused.error->message.find(secretPart(key)), std::string::npos) << refused.error->message;
}

TEST(ManagementClientCalls, ClaimPreviewDeploymentSendsTheSlugsAndParsesTolerantly) {
  const std::string key = "preview:my-team:my-app|claimSecret0123456789";
  ScriptedApi api({answer(200, R"({"adminKey":"preview:eager-heron-42|adminSecret0123",
                                   "instanceUrl":"https://x.example","isNewDeployment":true,"futureField":[1]})"),
                   answer(200, R"({"adminKey":"preview:eager-heron-42|adminSecret0123"})"),
                   answer(200, R"({"instanceUrl":"https://x.example","deploymentName":"eager-heron-42"})")});
  FakeTime time;
  auto claimed = claimPreviewDeployment(api.origin() + "/", key, "feature/x", false, quickOptions(), time.policy(3));
  ASSERT_TRUE(claimed.preview) << claimed.error->message;
  EXPECT_EQ(claimed.preview->admin_key, "preview:eager-heron-42|adminSecret0123");
  EXPECT_EQ(claimed.preview->instance_url, "https://x.example");
  EXPECT_EQ(claimed.preview->deployment_name, "eager-heron-42");  // from the admin key
  EXPECT_EQ(claimed.preview->reference, "");
  EXPECT_TRUE(claimed.preview->is_new);
  const auto seen = api.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/api/claim_preview_deployment");
  EXPECT_EQ(seen[0].header("authorization"), "Bearer " + key);
  EXPECT_EQ(seen[0].json(), (nlohmann::json{{"projectSelection",
                                             {{"kind", "teamAndProjectSlugs"},
                                              {"teamSlug", "my-team"},
                                              {"projectSlug", "my-app"}}},
                                            {"identifier", "feature/x"},
                                            {"reuse", false}}));

  for (const char* missing : {"instanceUrl", "adminKey"}) {
    auto bad = claimPreviewDeployment(api.origin(), key, "feature/x", true, quickOptions(), time.policy(3));
    ASSERT_TRUE(bad.error);
    EXPECT_EQ(bad.error->reason, "bad_response");
    EXPECT_NE(bad.error->message.find(missing), std::string::npos) << bad.error->message;
    EXPECT_EQ(bad.error->message.find("adminSecret"), std::string::npos);
    EXPECT_EQ(bad.attempts, 1);
  }
}

TEST(ManagementClientCalls, DeletePreviewDeployKeyPostsTheIdAndA404IsAlreadyGone) {
  const std::string key = "preview:my-team:my-app|deleteSecret0123456789";
  ScriptedApi api({answer(200), apiError(404, "DeployKeyNotFound", "no key " + key), apiError(404, "", "")});
  FakeTime time;
  auto client = scriptedClient(api, time);
  auto deleted = client.deletePreviewDeployKey(5, key);
  EXPECT_TRUE(deleted.deleted);
  auto gone = client.deletePreviewDeployKey(5, key);
  EXPECT_TRUE(gone.already_gone);
  EXPECT_FALSE(gone.error);
  EXPECT_EQ(outcomesText(gone.outcomes).find("deleteSecret"), std::string::npos);
  EXPECT_TRUE(client.deletePreviewDeployKey(5, "by name").already_gone);
  const auto seen = api.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].target, "/v1/projects/5/delete_preview_deploy_key");
  EXPECT_EQ(seen[0].header("authorization"), "Bearer " + kTeamToken);
  EXPECT_EQ(seen[0].json(), (nlohmann::json{{"id", key}}));
}

}  // namespace

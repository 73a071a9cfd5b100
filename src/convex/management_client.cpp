#include "convex/management_client.h"

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPBasicCredentials.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/StreamCopier.h>
#include <Poco/URI.h>
#include <nlohmann/json.hpp>

#include "util/strings.h"

namespace da::convex {

namespace {

constexpr size_t kMaxResponseBytes = 1 << 20;

struct HttpAnswer {
  int status = 0;
  std::string body;
};

// Setting a call up failed before anything was sent: reason "config_error", never retried.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The proxy answered CONNECT with something other than 200.
struct ProxyRefused : std::runtime_error {
  ProxyRefused(int status, const std::string& reason) : std::runtime_error(reason), status(status) {}
  int status;
};

// What every attempt of one call shares, resolved once from the options and the target.
struct CallPlan {
  std::optional<ProxySettings> proxy;
  Poco::Net::Context::Ptr tls;  // https targets only
};

std::string hostForAuthority(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

std::string describeProxy(const ProxySettings& proxy) {
  return "the proxy " + hostForAuthority(proxy.host) + ":" + std::to_string(proxy.port) + " (from " +
         (proxy.source.empty() ? std::string("the options") : proxy.source) + ")";
}


void loadCaLocation(SSL_CTX* ssl, const CaLocation& ca) {
  const std::string named = ca.source + " names '" + ca.path + "', which ";
  if (ca.directory) {
    for (auto dir : splitOn(ca.path, ':')) {
      if (dir.empty()) continue;
      std::error_code ec;
      if (!std::filesystem::is_directory(std::filesystem::path(dir), ec)) {
        throw ConfigError(ca.source + " names '" + std::string(dir) + "', which is not a directory");
      }
    }
    if (SSL_CTX_load_verify_locations(ssl, nullptr, ca.path.c_str()) != 1) {
      ERR_clear_error();
      throw ConfigError(named + "OpenSSL cannot use as certificate directories");
    }
    return;
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(std::filesystem::path(ca.path), ec)) {
    throw ConfigError(named + "does not exist or is not a file");
  }
  if (SSL_CTX_load_verify_locations(ssl, ca.path.c_str(), nullptr) != 1) {
    ERR_clear_error();
    throw ConfigError(named + "holds no PEM certificate OpenSSL can load");
  }
}

// Certificates are verified against OpenSSL's compiled-in system store plus every extra
// location (see httpOptionsFromEnvironment for why all sources are additive). The default
// paths are loaded by name rather than with SSL_CTX_set_default_verify_paths, which would let
// the process's own SSL_CERT_FILE replace the system store behind the options' back.
Poco::Net::Context::Ptr clientTlsContext(const HttpOptions& options) {
  Poco::Net::Context::Ptr context;
  try {
    context = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", "",
                                     Poco::Net::Context::VERIFY_RELAXED, 9, false);
  } catch (const Poco::Exception& e) {
    throw ConfigError("could not set up TLS: " + e.displayText());
  }
  SSL_CTX* ssl = context->sslContext();
  if (options.system_ca) {
    // Either may be missing on a given system; what matters is the sum.
    SSL_CTX_load_verify_locations(ssl, X509_get_default_cert_file(), nullptr);
    SSL_CTX_load_verify_locations(ssl, nullptr, X509_get_default_cert_dir());
    ERR_clear_error();
  }
  for (const auto& ca : options.extra_ca) loadCaLocation(ssl, ca);
  return context;
}

// An HTTPS session tunnelled through an HTTP proxy with CONNECT. Poco's own tunnel
// (HTTPClientSession::proxyConnect) talks to the proxy on a private socket that the cancel
// watch cannot reach, so a black-holed proxy or a stalled handshake would hold a stopping
// agent for the whole timeout; here the tunnel is `tunnel_`, visible to the watch from the
// moment it has a descriptor, and a refused CONNECT keeps its status.
class TunnelledHttpsSession : public Poco::Net::HTTPSClientSession {
 public:
  TunnelledHttpsSession(const std::string& host, uint16_t port, Poco::Net::Context::Ptr context,
                        ProxySettings proxy, Poco::Timespan timeout)
      : HTTPSClientSession(host, port, context), context_(std::move(context)), proxy_(std::move(proxy)),
        timeout_(timeout) {
    // With the proxy's address configured, reconnect() hands connect() the proxy and never
    // resolves the target (a proxied network may not resolve it at all). An https session adds
    // no URI prefix and no Proxy-Authorization to the requests inside the tunnel.
    ProxyConfig config;
    config.host = proxy_.host;
    config.port = proxy_.port;
    config.authMethod = PROXY_AUTH_NONE;
    setProxyConfig(config);
    setTimeout(timeout);
  }

  // The tunnel's descriptor, -1 before it is connected and after it is closed. The
  // StreamSocketImpl behind `tunnel_` is never replaced, so another thread may read it.
  int descriptor() const { return tunnel_.impl()->sockfd(); }

 protected:
  void connect(const Poco::Net::SocketAddress& proxy_address) override {
    if (tunnel_.impl()->initialized()) throw Poco::IllegalStateException("the tunnel was already used");
    tunnel_.connect(proxy_address, timeout_);
    tunnel_.setReceiveTimeout(timeout_);
    tunnel_.setSendTimeout(timeout_);
    tunnel_.setNoDelay(true);

    const std::string target = hostForAuthority(getHost()) + ":" + std::to_string(getPort());
    Poco::Net::HTTPClientSession connect_session(tunnel_);
    connect_session.setProxyConfig(ProxyConfig{});  // never the global proxy
    connect_session.setKeepAlive(true);             // the connection is the tunnel
    Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_CONNECT, target,
                                   Poco::Net::HTTPMessage::HTTP_1_1);
    request.set("Host", target);
    request.set("Proxy-Connection", "keep-alive");
    if (!proxy_.username.empty()) {
      Poco::Net::HTTPBasicCredentials(proxy_.username, proxy_.password).proxyAuthenticate(request);
    }
    connect_session.sendRequest(request);
    Poco::Net::HTTPResponse response;
    connect_session.receiveResponse(response);
    if (response.getStatus() != Poco::Net::HTTPResponse::HTTP_OK) {
      throw ProxyRefused(static_cast<int>(response.getStatus()), response.getReason());
    }
    // The handshake runs on the tunnel's descriptor, so the watch covers it too.
    Poco::Net::SecureStreamSocket secure =
        Poco::Net::SecureStreamSocket::attach(connect_session.detachSocket(), getHost(), context_);
    attachSocket(secure);
  }

 private:
  Poco::Net::Context::Ptr context_;
  ProxySettings proxy_;
  Poco::Timespan timeout_;
  Poco::Net::StreamSocket tunnel_;
};

struct OpenSession {
  std::unique_ptr<Poco::Net::HTTPClientSession> session;
  std::function<int()> descriptor;  // for the cancel watch
};

OpenSession openSession(const Poco::URI& uri, const CallPlan& plan, const HttpOptions& options) {
  const Poco::Timespan timeout(options.timeout.count() * 1000);
  OpenSession open;
  if (uri.getScheme() == "https" && plan.proxy) {
    auto tunnelled = std::make_unique<TunnelledHttpsSession>(uri.getHost(), uri.getPort(), plan.tls,
                                                             *plan.proxy, timeout);
    open.descriptor = [session = tunnelled.get()] { return session->descriptor(); };
    open.session = std::move(tunnelled);
    return open;
  }
  if (uri.getScheme() == "https") {
    open.session = std::make_unique<Poco::Net::HTTPSClientSession>(uri.getHost(), uri.getPort(), plan.tls);
  } else if (plan.proxy) {
    // Poco sends the absolute URI and, with credentials, Proxy-Authorization: Basic.
    Poco::Net::HTTPClientSession::ProxyConfig config;
    config.host = plan.proxy->host;
    config.port = plan.proxy->port;
    config.username = plan.proxy->username;
    config.password = plan.proxy->password;
    // Poco's Basic method sends "Proxy-Authorization" even with no user name; don't.
    config.authMethod = plan.proxy->username.empty() ? Poco::Net::HTTPClientSession::PROXY_AUTH_NONE
                                                     : Poco::Net::HTTPClientSession::PROXY_AUTH_HTTP_BASIC;
    open.session = std::make_unique<Poco::Net::HTTPClientSession>(uri.getHost(), uri.getPort(), config);
  } else {
    open.session = std::make_unique<Poco::Net::HTTPClientSession>(uri.getHost(), uri.getPort(),
                                                                  Poco::Net::HTTPClientSession::ProxyConfig{});
  }
  open.session->setTimeout(timeout);
  // These sessions connect their own socket in place (never replacing it), so the watch may
  // read its descriptor from another thread.
  open.descriptor = [session = open.session.get()] { return session->socket().impl()->sockfd(); };
  return open;
}

bool cancelled(const HttpOptions& options) { return options.cancel && options.cancel->load(); }

// Ends a blocked exchange once `cancel` turns true. shutdown(2) on the raw descriptor wakes
// the blocked read at once and touches no TLS state, which another thread owns; closing the
// descriptor instead could hand its number to an unrelated file mid-read. Before the
// connection exists the descriptor is -1 and the watch keeps trying.
class CancelWatch {
 public:
  CancelWatch(const std::atomic<bool>* cancel, std::function<int()> descriptor) {
    if (cancel == nullptr) return;
    watcher_ = std::thread([this, cancel, descriptor = std::move(descriptor)] {
      std::unique_lock lock(mutex_);
      while (!done_) {
        if (cancel->load()) {
          const int fd = descriptor();
          if (fd >= 0 && ::shutdown(fd, SHUT_RDWR) == 0) return;
        }
        wake_.wait_for(lock, std::chrono::milliseconds(50));
      }
    });
  }
  ~CancelWatch() {
    if (!watcher_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    wake_.notify_one();
    watcher_.join();
  }
  CancelWatch(const CancelWatch&) = delete;
  CancelWatch& operator=(const CancelWatch&) = delete;

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool done_ = false;
  std::thread watcher_;
};

// One exchange; throws Poco exceptions on network failure and ProxyRefused (caught by the caller).
HttpAnswer exchange(const Poco::URI& uri, const std::string& token, const std::string& body,
                    const CallPlan& plan, const HttpOptions& options) {
  auto open = openSession(uri, plan, options);
  auto& session = open.session;
  const CancelWatch watch(options.cancel, open.descriptor);  // ends before `session` is destroyed
  Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_POST, uri.getPathAndQuery(),
                                 Poco::Net::HTTPMessage::HTTP_1_1);
  request.set("Authorization", "Bearer " + token);
  request.set("Convex-Client", std::string("deploy-agent-") + DA_VERSION);
  request.setContentType("application/json");
  request.setContentLength(static_cast<std::streamsize>(body.size()));
  session->sendRequest(request) << body;
  Poco::Net::HTTPResponse response;
  std::istream& in = session->receiveResponse(response);
  HttpAnswer answer;
  answer.status = static_cast<int>(response.getStatus());
  char buffer[8192];
  while (in && answer.body.size() < kMaxResponseBytes) {
    in.read(buffer, sizeof buffer);
    answer.body.append(buffer, static_cast<size_t>(in.gcount()));
  }
  return answer;
}

ApiError proxyRefusal(const ProxySettings& proxy, int status, const std::string& reason,
                      const std::string& target) {
  std::string what;
  if (status == 407) {
    what = describeProxy(proxy) + (proxy.username.empty() ? " requires credentials, and its URL has none"
                                                          : " refused the credentials in its URL");
  } else {
    what = describeProxy(proxy) + " refused to connect to " + target;
  }
  return ApiError{"proxy_error", status, "",
                  what + " (HTTP " + std::to_string(status) + (reason.empty() ? "" : " " + reason) + ")"};
}

// Removes every secret the call knows from a message bound for a report or a log.
std::string scrub(std::string message, const std::string& token, const CallPlan& plan) {
  auto erase = [&message](const std::string& secret) {
    if (secret.empty()) return;
    for (size_t at = message.find(secret); at != std::string::npos; at = message.find(secret, at)) {
      message.replace(at, secret.size(), "[redacted]");
      at += 10;
    }
  };
  erase(token);
  if (plan.proxy) erase(plan.proxy->password);
  return message;
}

ApiError errorFromAnswer(const HttpAnswer& answer, const CallPlan& plan, const Poco::URI& uri) {
  ApiError error;
  error.http_status = answer.status;
  if (answer.status == 407 && plan.proxy) {  // the proxy's answer, not the API's
    return proxyRefusal(*plan.proxy, answer.status, "Proxy Authentication Required",
                        hostForAuthority(uri.getHost()) + ":" + std::to_string(uri.getPort()));
  }
  auto body = nlohmann::json::parse(answer.body, nullptr, false);
  if (body.is_object()) {
    if (body.contains("code") && body["code"].is_string()) error.code = body["code"];
    if (body.contains("message") && body["message"].is_string()) error.message = body["message"];
  }
  if (error.message.empty()) error.message = "HTTP " + std::to_string(answer.status);
  if (answer.status == 401 || answer.status == 403) {
    error.reason = "unauthorized";
  } else if (answer.status == 404) {
    error.reason = "not_found";
  } else if (answer.status >= 400 && answer.status < 500) {
    error.reason = "bad_request";
  } else {
    error.reason = "server_error";
  }
  return error;
}

}  // namespace

ManagementClient::ManagementClient(std::string base_url, std::string team_token,
                                   HttpOptions options)
    : base_url_(std::move(base_url)), team_token_(std::move(team_token)), options_(std::move(options)) {
  while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
}

namespace {

// One JSON POST to `base_url` + `path` with `token` as the bearer, retried on network errors
// only. Success is exactly 200, as the CLI treats its provisioning calls.
struct JsonAnswer {
  std::optional<nlohmann::json> body;
  std::optional<ApiError> error;
};

JsonAnswer postJson(const std::string& base_url, const std::string& path, const std::string& token,
                    const nlohmann::json& body, const HttpOptions& options, CallPlan& plan) {
  JsonAnswer result;
  Poco::URI uri;
  try {
    uri = Poco::URI(base_url + path);
  } catch (const Poco::Exception& e) {
    result.error = ApiError{"bad_request", 0, "", "invalid Convex URL: " + e.displayText()};
    return result;
  }

  // Nothing is sent when the options themselves are unusable.
  if (!options.config_error.empty()) {
    result.error = ApiError{"config_error", 0, "", options.config_error};
    return result;
  }
  try {
    plan.proxy = options.proxy;
    if (uri.getScheme() == "https") plan.tls = clientTlsContext(options);
  } catch (const ConfigError& e) {
    result.error = ApiError{"config_error", 0, "", e.what()};
    return result;
  }
  const std::string target = hostForAuthority(uri.getHost()) + ":" + std::to_string(uri.getPort());
  const std::string route = plan.proxy ? " through " + describeProxy(*plan.proxy) : "";

  std::string last_network_error;
  for (int attempt = 1; attempt <= std::max(1, options.attempts); ++attempt) {
    if (cancelled(options)) break;
    HttpAnswer answer;
    try {
      answer = exchange(uri, token, body.dump(), plan, options);
    } catch (const ProxyRefused& e) {
      if (cancelled(options)) break;
      // 5xx: the proxy could not reach the target, which may pass; 4xx is its decision.
      if (e.status >= 500) {
        last_network_error = describeProxy(*plan.proxy) + " could not connect to " + target + " (HTTP " +
                             std::to_string(e.status) + " " + e.what() + ")";
        continue;
      }
      result.error = proxyRefusal(*plan.proxy, e.status, e.what(), target);
      return result;
    } catch (const Poco::Exception& e) {
      last_network_error = e.displayText();
      continue;
    } catch (const std::exception& e) {
      last_network_error = e.what();
      continue;
    }
    // An answer cut short by the cancel watch is not an answer.
    if (cancelled(options)) break;
    if (answer.status != 200) {
      result.error = errorFromAnswer(answer, plan, uri);
      return result;
    }
    auto parsed = nlohmann::json::parse(answer.body, nullptr, false);
    if (parsed.is_discarded()) {
      result.error = ApiError{"bad_response", answer.status, "", path + " answered 200 with a body that is not JSON"};
      return result;
    }
    result.body = std::move(parsed);
    return result;
  }
  if (cancelled(options)) {
    result.error = ApiError{"cancelled", 0, "", "the call to " + uri.getHost() + " was cancelled"};
    return result;
  }
  result.error = ApiError{"network_error", 0, "",
                          "could not reach " + uri.getHost() + route + ": " + last_network_error};
  return result;
}

}  // namespace

MintResult ManagementClient::createDeployKey(const DeployKeyRequest& request) const {
  nlohmann::json body = {{"name", request.key_name}};
  if (!request.allowed_actions.empty()) body["allowedActions"] = request.allowed_actions;
  if (request.expires_at_ms) body["expiresAt"] = *request.expires_at_ms;
  CallPlan plan;
  auto answer = postJson(base_url_, "/v1/deployments/" + request.deployment_name + "/create_deploy_key",
                         team_token_, body, options_, plan);
  MintResult result;
  if (answer.error) {
    result.error = answer.error;
  } else if (!answer.body->is_object() || !answer.body->contains("deployKey") ||
             !(*answer.body)["deployKey"].is_string() || (*answer.body)["deployKey"].get<std::string>().empty()) {
    result.error = ApiError{"bad_response", 200, "", "create_deploy_key answered 200 without a deployKey string"};
  } else {
    result.deploy_key = (*answer.body)["deployKey"].get<std::string>();
  }
  if (result.error) result.error->message = scrub(result.error->message, team_token_, plan);
  return result;
}

UrlResult deploymentUrlForKey(const std::string& provision_url, const std::string& deploy_key,
                              const HttpOptions& options) {
  std::string base = provision_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  CallPlan plan;
  auto answer = postJson(base, "/api/deployment/url_for_key", deploy_key, {{"deployKey", deploy_key}}, options, plan);
  UrlResult result;
  if (answer.error) {
    result.error = answer.error;
  } else if (!answer.body->is_string() || answer.body->get<std::string>().empty()) {
    result.error = ApiError{"bad_response", 200, "", "url_for_key answered 200 without a URL string"};
  } else {
    result.url = answer.body->get<std::string>();
  }
  if (result.error) result.error->message = scrub(result.error->message, deploy_key, plan);
  return result;
}

}  // namespace da::convex

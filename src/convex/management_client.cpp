#include "convex/management_client.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <limits>
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
                        ProxySettings proxy, Poco::Timespan timeout,
                        std::shared_ptr<std::atomic<bool>> established)
      : HTTPSClientSession(host, port, context), context_(std::move(context)), proxy_(std::move(proxy)),
        timeout_(timeout), established_(std::move(established)) {
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
    established_->store(true);  // from here on the request may reach the API
  }

 private:
  Poco::Net::Context::Ptr context_;
  ProxySettings proxy_;
  Poco::Timespan timeout_;
  Poco::Net::StreamSocket tunnel_;
  std::shared_ptr<std::atomic<bool>> established_;
};

// A session that records when its connection is up (for https: after the handshake, which
// Poco's connect completes). Until then nothing of the request can have reached the server, so
// even a non-idempotent call may be sent again; after it, a failure is ambiguous.
template <class Base>
class TrackedSession : public Base {
 public:
  template <class... Args>
  explicit TrackedSession(std::shared_ptr<std::atomic<bool>> established, Args&&... args)
      : Base(std::forward<Args>(args)...), established_(std::move(established)) {}

 protected:
  void connect(const Poco::Net::SocketAddress& address) override {
    Base::connect(address);
    established_->store(true);
  }

 private:
  std::shared_ptr<std::atomic<bool>> established_;
};

struct OpenSession {
  std::unique_ptr<Poco::Net::HTTPClientSession> session;
  std::function<int()> descriptor;  // for the cancel watch
  std::shared_ptr<std::atomic<bool>> established = std::make_shared<std::atomic<bool>>(false);
};

OpenSession openSession(const Poco::URI& uri, const CallPlan& plan, const HttpOptions& options) {
  const Poco::Timespan timeout(options.timeout.count() * 1000);
  OpenSession open;
  if (uri.getScheme() == "https" && plan.proxy) {
    auto tunnelled = std::make_unique<TunnelledHttpsSession>(uri.getHost(), uri.getPort(), plan.tls,
                                                             *plan.proxy, timeout, open.established);
    open.descriptor = [session = tunnelled.get()] { return session->descriptor(); };
    open.session = std::move(tunnelled);
    return open;
  }
  if (uri.getScheme() == "https") {
    open.session = std::make_unique<TrackedSession<Poco::Net::HTTPSClientSession>>(
        open.established, uri.getHost(), uri.getPort(), plan.tls);
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
    open.session = std::make_unique<TrackedSession<Poco::Net::HTTPClientSession>>(open.established, uri.getHost(),
                                                                                  uri.getPort(), config);
  } else {
    open.session = std::make_unique<TrackedSession<Poco::Net::HTTPClientSession>>(
        open.established, uri.getHost(), uri.getPort(), Poco::Net::HTTPClientSession::ProxyConfig{});
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

struct HttpAnswer {
  int status = 0;
  std::string body;
  std::string retry_after;  // the Retry-After header as sent; empty when absent
};

// What one call sends, and how it may be repeated.
struct CallSpec {
  std::string method;                // "GET" or "POST"
  std::string base_url;              // origin (and base path), no trailing '/'
  std::string path;                  // path and an already encoded query
  std::string auth_scheme;           // "Bearer" (Management API) or "Convex" (deployment API)
  std::string credential;
  std::optional<std::string> body;   // JSON text; none: no body (a POST then sends Content-Length: 0)
  bool idempotent = true;            // false: never re-sent once it may have reached the server
  std::string operation;             // e.g. "create_project", for messages
  std::vector<std::string> secrets;  // removed from every message, besides the credential
  std::vector<std::pair<std::string, std::string>> headers;  // sent besides Authorization
};

// One exchange; throws Poco exceptions on network failure and ProxyRefused (caught by the
// caller). `established` is the session's flag: whether the connection (and TLS) was up, so the
// request may have reached the server.
HttpAnswer exchange(const Poco::URI& uri, const CallSpec& spec, const CallPlan& plan, const HttpOptions& options,
                    std::shared_ptr<std::atomic<bool>>& established) {
  auto open = openSession(uri, plan, options);
  established = open.established;
  auto& session = open.session;
  const CancelWatch watch(options.cancel, open.descriptor);  // ends before `session` is destroyed
  Poco::Net::HTTPRequest request(spec.method, uri.getPathAndQuery(), Poco::Net::HTTPMessage::HTTP_1_1);
  // A webhook carries no credential: its signature is one of `headers`.
  if (!spec.auth_scheme.empty()) request.set("Authorization", spec.auth_scheme + " " + spec.credential);
  request.set("Convex-Client", std::string("deploy-agent-") + DA_VERSION);
  for (const auto& [name, value] : spec.headers) request.set(name, value);
  if (spec.body) {
    request.setContentType("application/json");
    request.setContentLength(static_cast<std::streamsize>(spec.body->size()));
    session->sendRequest(request) << *spec.body;
  } else {
    if (spec.method != Poco::Net::HTTPRequest::HTTP_GET) request.setContentLength(0);
    session->sendRequest(request);
  }
  Poco::Net::HTTPResponse response;
  std::istream& in = session->receiveResponse(response);
  HttpAnswer answer;
  answer.status = static_cast<int>(response.getStatus());
  answer.retry_after = response.get("Retry-After", "");
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

// Removes every secret the call knows from a message bound for a report or a log. Secrets of
// fewer than 4 characters are left alone: they cannot be told apart from ordinary text (an env
// value "1" would otherwise turn "HTTP 401" into nonsense) and guard nothing.
std::string scrub(std::string message, std::vector<std::string> secrets) {
  std::sort(secrets.begin(), secrets.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  static const std::string kRedacted = "[redacted]";
  for (const auto& secret : secrets) {
    if (secret.size() < 4) continue;
    for (size_t at = message.find(secret); at != std::string::npos; at = message.find(secret, at)) {
      message.replace(at, secret.size(), kRedacted);
      at += kRedacted.size();
    }
  }
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
  } else if (answer.status == 429) {
    error.reason = "rate_limited";
  } else if (answer.status >= 400 && answer.status < 500) {
    error.reason = "bad_request";
  } else if (answer.status >= 500) {
    error.reason = "server_error";
  } else {  // 1xx, 3xx: redirects are not followed
    error.reason = "bad_response";
  }
  error.retryable = isRetryableStatus(answer.status);
  return error;
}

// A call's answer: the successful (2xx) response, or the error, plus every attempt made.
struct CallAnswer {
  int status = 0;
  std::string body;
  std::optional<ApiError> error;
  int attempts = 0;
  std::vector<AttemptOutcome> outcomes;
  bool ambiguous = false;
};

std::string plural(int n, const std::string& word) { return std::to_string(n) + " " + word + (n == 1 ? "" : "s"); }

// Sends `spec` as `policy` allows (see the header's class comment), never throwing.
CallAnswer performCall(const CallSpec& spec, const HttpOptions& options, const RetryPolicy& policy) {
  CallAnswer result;
  CallPlan plan;
  auto finish = [&]() -> CallAnswer {
    std::vector<std::string> secrets = spec.secrets;
    secrets.push_back(spec.credential);
    if (plan.proxy) secrets.push_back(plan.proxy->password);
    if (options.proxy) secrets.push_back(options.proxy->password);
    if (result.error) result.error->message = scrub(result.error->message, secrets);
    for (auto& outcome : result.outcomes) outcome.error = scrub(outcome.error, secrets);
    return std::move(result);
  };
  auto fail = [&](ApiError error) -> CallAnswer {
    result.error = std::move(error);
    return finish();
  };

  Poco::URI uri;
  try {
    uri = Poco::URI(spec.base_url + spec.path);
  } catch (const Poco::Exception& e) {
    return fail(ApiError{"config_error", 0, "", "invalid URL for " + spec.operation + ": " + e.displayText()});
  }
  if ((uri.getScheme() != "http" && uri.getScheme() != "https") || uri.getHost().empty()) {
    return fail(ApiError{"config_error", 0, "", "invalid URL for " + spec.operation + ": not an http(s) URL"});
  }
  // Nothing is sent when the options themselves are unusable.
  if (!options.config_error.empty()) return fail(ApiError{"config_error", 0, "", options.config_error});
  try {
    plan.proxy = options.proxy;
    if (uri.getScheme() == "https") plan.tls = clientTlsContext(options);
  } catch (const ConfigError& e) {
    return fail(ApiError{"config_error", 0, "", e.what()});
  } catch (const std::exception& e) {
    return fail(ApiError{"config_error", 0, "", std::string("could not set up the call: ") + e.what()});
  }
  const std::string target = hostForAuthority(uri.getHost()) + ":" + std::to_string(uri.getPort());
  const std::string route = plan.proxy ? " through " + describeProxy(*plan.proxy) : "";
  auto cancelledError = [&](bool after_send) {
    ApiError error{"cancelled", 0, "", "the call to " + uri.getHost() + " was cancelled"};
    if (after_send && !spec.idempotent) {
      error.ambiguous = result.ambiguous = true;
      error.message += " after " + spec.operation + " was sent; it may have taken effect";
    }
    return error;
  };

  const auto started = policy.now();
  std::chrono::milliseconds previous_delay{0};
  for (int attempt = 1;; ++attempt) {
    if (cancelled(options)) return fail(cancelledError(false));
    ++result.attempts;
    AttemptOutcome outcome;
    std::optional<ApiError> failure;  // a failure worth another attempt
    std::optional<std::chrono::milliseconds> retry_after;
    std::shared_ptr<std::atomic<bool>> established;
    std::optional<HttpAnswer> answer;
    std::string network_error;
    try {
      answer = exchange(uri, spec, plan, options, established);
    } catch (const ProxyRefused& e) {
      if (cancelled(options)) {
        outcome.error = "cancelled";
        result.outcomes.push_back(outcome);
        return fail(cancelledError(false));
      }
      if (e.status < 500) {  // 4xx is the proxy's decision
        outcome.http_status = e.status;
        outcome.error = "proxy refused CONNECT";
        result.outcomes.push_back(outcome);
        return fail(proxyRefusal(*plan.proxy, e.status, e.what(), target));
      }
      // 5xx: the proxy could not reach the target, which may pass; the request was not sent.
      network_error = describeProxy(*plan.proxy) + " could not connect to " + target + " (HTTP " +
                      std::to_string(e.status) + " " + e.what() + ")";
    } catch (const Poco::Exception& e) {
      network_error = e.displayText();
    } catch (const std::exception& e) {
      network_error = e.what();
    }
    const bool sent = established && established->load();
    // An answer cut short by the cancel watch is not an answer.
    if (cancelled(options)) {
      outcome.error = "cancelled";
      result.outcomes.push_back(outcome);
      return fail(cancelledError(sent));
    }

    if (!answer) {
      if (network_error.empty()) network_error = "unknown error";
      outcome.error = network_error;
      if (sent && !spec.idempotent) {
        result.outcomes.push_back(outcome);
        result.ambiguous = true;
        ApiError error{"ambiguous", 0, "",
                       "the connection to " + uri.getHost() + route + " failed after " + spec.operation +
                           " was sent (" + network_error + "); it may have taken effect, so it was not sent again"};
        error.ambiguous = true;
        return fail(error);
      }
      failure = ApiError{"network_error", 0, "", "could not reach " + uri.getHost() + route + ": " + network_error};
      failure->retryable = true;
    } else {
      outcome.http_status = answer->status;
      if (answer->status >= 200 && answer->status < 300) {
        result.outcomes.push_back(outcome);
        result.status = answer->status;
        result.body = std::move(answer->body);
        return finish();
      }
      ApiError error = errorFromAnswer(*answer, plan, uri);
      outcome.error = error.code;
      if (!error.retryable) {
        result.outcomes.push_back(outcome);
        return fail(error);
      }
      if (!spec.idempotent && answer->status != 429) {  // 429: refused before it was carried out
        result.outcomes.push_back(outcome);
        result.ambiguous = true;
        error.reason = "ambiguous";
        error.ambiguous = true;
        error.retryable = false;
        error.message = spec.operation + " answered HTTP " + std::to_string(answer->status) +
                        (error.code.empty() ? "" : " " + error.code) + " (" + error.message +
                        "); it may have taken effect, so it was not sent again";
        return fail(error);
      }
      if (!answer->retry_after.empty()) retry_after = parseRetryAfter(answer->retry_after, policy.wallNow());
      failure = std::move(error);
    }

    // Another attempt, if the policy has one left and its wait fits in the budget.
    if (attempt >= policy.attempts()) {
      result.outcomes.push_back(outcome);
      if (attempt > 1) failure->message += " (" + plural(attempt, "attempt") + ")";
      return fail(*failure);
    }
    const auto backoff = backoffDelay(policy, attempt, previous_delay);
    previous_delay = backoff;
    const auto delay = retry_after ? std::max(backoff, *retry_after) : backoff;
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(policy.now() - started);
    if (elapsed + delay > policy.total_budget) {
      result.outcomes.push_back(outcome);
      if (retry_after && *retry_after >= delay) {
        failure->message += " (the server asked to retry after " + std::to_string(retry_after->count()) +
                            " ms, beyond the retry budget; " + plural(attempt, "attempt") + ")";
      } else {
        failure->message += " (retry budget of " + std::to_string(policy.total_budget.count()) + " ms spent; " +
                            plural(attempt, "attempt") + ")";
      }
      return fail(*failure);
    }
    outcome.delay_after = delay;
    result.outcomes.push_back(outcome);
    if (!policy.wait(delay, options.cancel)) return fail(cancelledError(false));
  }
}

CallAnswer performCallGuarded(const CallSpec& spec, const HttpOptions& options, const RetryPolicy& policy) {
  try {
    return performCall(spec, options, policy);
  } catch (const std::exception& e) {  // a bug or an allocation failure; never past this module
    CallAnswer answer;
    answer.error = ApiError{"bad_response", 0, "",
                            scrub(std::string("internal error in ") + spec.operation + ": " + e.what(),
                                  [&] {
                                    auto s = spec.secrets;
                                    s.push_back(spec.credential);
                                    return s;
                                  }())};
    return answer;
  }
}

// Copies a call's error and attempts into a result.
template <class Result>
Result resultOf(const CallAnswer& answer) {
  Result result;
  result.error = answer.error;
  result.attempts = answer.attempts;
  result.outcomes = answer.outcomes;
  result.ambiguous = answer.ambiguous;
  return result;
}

ApiError badResponse(int status, const std::string& what) { return ApiError{"bad_response", status, "", what}; }

// A POST to a provisioning or deployment origin (given with or without a trailing '/'),
// authorised as `auth_scheme credential`.
CallSpec postTo(const std::string& origin, std::string path, std::string auth_scheme, const std::string& credential,
                std::string operation) {
  CallSpec spec;
  spec.method = "POST";
  spec.base_url = origin;
  while (!spec.base_url.empty() && spec.base_url.back() == '/') spec.base_url.pop_back();
  spec.path = std::move(path);
  spec.auth_scheme = std::move(auth_scheme);
  spec.credential = credential;
  spec.operation = std::move(operation);
  return spec;
}

// The 2xx body as a JSON object, or nullopt.
std::optional<nlohmann::json> objectBody(const CallAnswer& answer) {
  auto parsed = nlohmann::json::parse(answer.body, nullptr, false);
  if (!parsed.is_object()) return std::nullopt;
  return parsed;
}

std::optional<std::string> stringField(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

// An integer ID, tolerating a string of digits or an integral float.
std::optional<int64_t> intField(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end()) return std::nullopt;
  if (it->is_number_unsigned()) {
    const auto value = it->get<uint64_t>();
    if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(value);
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_float()) {
    const double value = it->get<double>();
    if (std::floor(value) != value || std::abs(value) > 9.0e15) return std::nullopt;
    return static_cast<int64_t>(value);
  }
  if (it->is_string()) {
    const auto& text = it->get_ref<const std::string&>();
    int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
    return value;
  }
  return std::nullopt;
}

std::optional<ProjectInfo> parseProject(const nlohmann::json& object) {
  if (!object.is_object()) return std::nullopt;
  auto id = intField(object, "id");
  auto name = stringField(object, "name");
  if (!id || !name) return std::nullopt;
  ProjectInfo project;
  project.id = *id;
  project.name = *name;
  project.slug = stringField(object, "slug").value_or("");
  project.team_id = intField(object, "teamId").value_or(0);
  project.team_slug = stringField(object, "teamSlug").value_or("");
  project.prod_deployment_name = stringField(object, "prodDeploymentName");
  project.dev_deployment_name = stringField(object, "devDeploymentName");
  return project;
}

std::optional<DeploymentInfo> parseDeployment(const nlohmann::json& object) {
  auto name = stringField(object, "name");
  if (!name || name->empty()) return std::nullopt;
  DeploymentInfo deployment;
  deployment.name = *name;
  deployment.kind = stringField(object, "kind").value_or("");
  deployment.deployment_url = stringField(object, "deploymentUrl").value_or("");
  // A cloud deployment always has its URL; another kind (local, or one not known yet) may not.
  if (deployment.deployment_url.empty() && (deployment.kind == "cloud" || deployment.kind.empty())) {
    return std::nullopt;
  }
  deployment.deployment_type = stringField(object, "deploymentType").value_or("");
  deployment.project_id = intField(object, "projectId").value_or(0);
  return deployment;
}

std::string pathSegment(const std::string& value) {
  std::string encoded;
  Poco::URI::encode(value, "/?#%;[]@!$&'()*+,=:", encoded);
  return encoded;
}

std::string queryValue(const std::string& value) {
  std::string encoded;
  Poco::URI::encode(value, "/?#%;[]@!$&'()*+,=: ", encoded);
  return encoded;
}

RetryPolicy policyFor(const HttpOptions& options) {
  RetryPolicy policy;
  policy.max_attempts = std::max(1, options.attempts);
  return policy;
}

}  // namespace

std::string AttemptOutcome::describe() const {
  std::string text = http_status ? "HTTP " + std::to_string(http_status) + (error.empty() ? "" : " " + error)
                                 : "network: " + error;
  if (delay_after.count() > 0) text += ", retried after " + std::to_string(delay_after.count()) + " ms";
  return text;
}

ManagementClient::ManagementClient(std::string base_url, std::string team_token, HttpOptions options)
    : ManagementClient(std::move(base_url), std::move(team_token), options, policyFor(options)) {}

ManagementClient::ManagementClient(std::string base_url, std::string team_token, HttpOptions options,
                                   RetryPolicy retry)
    : base_url_(std::move(base_url)), team_token_(std::move(team_token)), options_(std::move(options)),
      retry_(std::move(retry)) {
  while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
}

namespace {

CallSpec managementCall(const std::string& base_url, const std::string& token, std::string method,
                        std::string path, std::string operation) {
  CallSpec spec;
  spec.method = std::move(method);
  spec.base_url = base_url;
  spec.path = "/v1" + path;
  spec.auth_scheme = "Bearer";
  spec.credential = token;
  spec.operation = std::move(operation);
  return spec;
}

}  // namespace

TokenDetailsResult ManagementClient::tokenDetails() const {
  auto spec = managementCall(base_url_, team_token_, "GET", "/token_details", "token_details");
  const auto answer = performCallGuarded(spec, options_, retry_);
  auto result = resultOf<TokenDetailsResult>(answer);
  if (answer.error) return result;
  auto body = objectBody(answer);
  if (!body) {
    result.error = badResponse(answer.status, "token_details answered without a JSON object");
    return result;
  }
  TokenDetails details;
  details.kind = stringField(*body, "type").value_or("");
  details.team_id = intField(*body, "teamId");
  details.project_id = intField(*body, "projectId");
  details.id = intField(*body, "id");
  details.name = stringField(*body, "name").value_or("");
  result.details = std::move(details);
  return result;
}

CreateProjectResult ManagementClient::createProject(int64_t team_id, const std::string& name,
                                                    const std::string& deployment_type) const {
  auto spec = managementCall(base_url_, team_token_, "POST", "/teams/" + std::to_string(team_id) + "/create_project",
                             "create_project");
  nlohmann::json body = {{"projectName", name}};
  if (!deployment_type.empty()) body["deploymentType"] = deployment_type;
  spec.body = body.dump();
  spec.idempotent = false;
  const auto answer = performCallGuarded(spec, options_, retry_);
  auto result = resultOf<CreateProjectResult>(answer);
  if (answer.error) return result;
  auto parsed = objectBody(answer);
  auto id = parsed ? intField(*parsed, "id") : std::nullopt;
  if (parsed && !id) id = intField(*parsed, "projectId");  // the deprecated alias
  if (!id) {
    // It was created, but which project is unknown: as good as ambiguous for the caller.
    result.error = badResponse(answer.status, "create_project answered without a project id");
    result.error->ambiguous = result.ambiguous = true;
    return result;
  }
  ProjectCreated created;
  created.project_id = *id;
  created.slug = stringField(*parsed, "slug").value_or("");
  created.deployment_name = stringField(*parsed, "deploymentName");
  created.deployment_url = stringField(*parsed, "deploymentUrl");
  result.project = std::move(created);
  return result;
}

ProjectListResult ManagementClient::findProjectsByName(int64_t team_id, const std::string& name,
                                                       int max_pages) const {
  ProjectListResult result;
  std::optional<std::string> cursor;
  for (int page = 1; page <= std::max(1, max_pages); ++page) {
    std::string path = "/teams/" + std::to_string(team_id) + "/projects?q=" + queryValue(name) + "&limit=100";
    if (cursor) path += "&cursor=" + queryValue(*cursor);
    auto spec = managementCall(base_url_, team_token_, "GET", path, "list projects");
    const auto answer = performCallGuarded(spec, options_, retry_);
    ++result.pages;
    result.attempts += answer.attempts;
    result.outcomes.insert(result.outcomes.end(), answer.outcomes.begin(), answer.outcomes.end());
    if (answer.error) {
      result.error = answer.error;
      result.complete = false;
      return result;
    }
    auto parsed = nlohmann::json::parse(answer.body, nullptr, false);
    const nlohmann::json* items = nullptr;
    if (parsed.is_array()) {
      items = &parsed;  // a bare array (the legacy list): one page, all of it
    } else if (parsed.is_object() && parsed.contains("items") && parsed["items"].is_array()) {
      items = &parsed["items"];
    } else {
      result.error = badResponse(answer.status, "list projects answered without an `items` array");
      result.complete = false;
      return result;
    }
    for (const auto& item : *items) {
      auto project = parseProject(item);
      if (project && project->name == name) result.projects.push_back(std::move(*project));
    }
    if (!parsed.is_object()) return result;
    bool has_more = false;
    std::optional<std::string> next;
    auto pagination = parsed.find("pagination");
    if (pagination != parsed.end() && pagination->is_object()) {
      auto more = pagination->find("hasMore");
      has_more = more != pagination->end() && more->is_boolean() && more->get<bool>();
      next = stringField(*pagination, "nextCursor");
    }
    if (!has_more) return result;
    if (!next || next->empty() || next == cursor) {  // more, but no way to it
      result.complete = false;
      return result;
    }
    cursor = std::move(next);
  }
  result.complete = false;  // the page bound
  return result;
}

ProjectResult ManagementClient::getProject(int64_t project_id) const {
  auto spec = managementCall(base_url_, team_token_, "GET", "/projects/" + std::to_string(project_id), "get project");
  const auto answer = performCallGuarded(spec, options_, retry_);
  auto result = resultOf<ProjectResult>(answer);
  if (answer.error) return result;
  auto parsed = objectBody(answer);
  auto project = parsed ? parseProject(*parsed) : std::nullopt;
  if (!project) {
    result.error = badResponse(answer.status, "get project answered without a project's id and name");
    return result;
  }
  result.project = std::move(project);
  return result;
}

namespace {

DeploymentResult deploymentResult(const CallAnswer& answer, const std::string& operation) {
  auto result = resultOf<DeploymentResult>(answer);
  if (answer.error) return result;
  auto parsed = objectBody(answer);
  auto deployment = parsed ? parseDeployment(*parsed) : std::nullopt;
  if (!deployment) {
    result.error = badResponse(answer.status, operation + " answered without a deployment's name and URL");
    return result;
  }
  result.deployment = std::move(deployment);
  return result;
}

}  // namespace

DeploymentResult ManagementClient::defaultDeployment(int64_t project_id, const std::string& type) const {
  if (type != "prod" && type != "dev") {
    DeploymentResult result;
    result.error = ApiError{"config_error", 0, "", "the default deployment is asked for \"prod\" or \"dev\", not \"" +
                                                       type + "\""};
    return result;
  }
  auto spec = managementCall(base_url_, team_token_, "GET",
                             "/projects/" + std::to_string(project_id) + "/deployment?" +
                                 (type == "prod" ? "defaultProd=true" : "defaultDev=true"),
                             "get default " + type + " deployment");
  return deploymentResult(performCallGuarded(spec, options_, retry_), spec.operation);
}

DeploymentResult ManagementClient::getDeployment(const std::string& name) const {
  auto spec = managementCall(base_url_, team_token_, "GET", "/deployments/" + pathSegment(name), "get deployment");
  return deploymentResult(performCallGuarded(spec, options_, retry_), spec.operation);
}

MintResult ManagementClient::createDeployKey(const DeployKeyRequest& request) const {
  nlohmann::json body = {{"name", request.key_name}};
  if (!request.allowed_actions.empty()) body["allowedActions"] = request.allowed_actions;
  if (request.expires_at_ms) body["expiresAt"] = *request.expires_at_ms;
  auto spec = managementCall(base_url_, team_token_, "POST",
                             "/deployments/" + pathSegment(request.deployment_name) + "/create_deploy_key",
                             "create_deploy_key");
  spec.body = body.dump();
  spec.idempotent = false;
  const auto answer = performCallGuarded(spec, options_, retry_);
  auto result = resultOf<MintResult>(answer);
  if (answer.error) return result;
  auto parsed = objectBody(answer);
  auto key = parsed ? stringField(*parsed, "deployKey") : std::nullopt;
  if (!key || key->empty()) {
    result.error = badResponse(answer.status, "create_deploy_key answered without a deployKey string");
    return result;
  }
  result.deploy_key = std::move(key);
  return result;
}

DeleteResult ManagementClient::deleteDeployKey(const std::string& deployment_name,
                                               const std::string& id_or_key_or_name) const {
  auto spec = managementCall(base_url_, team_token_, "POST",
                             "/deployments/" + pathSegment(deployment_name) + "/delete_deploy_key",
                             "delete_deploy_key");
  spec.body = nlohmann::json{{"id", id_or_key_or_name}}.dump();
  spec.secrets = {id_or_key_or_name};  // it may be the key itself
  const auto answer = performCallGuarded(spec, options_, retry_);
  auto result = resultOf<DeleteResult>(answer);
  if (answer.error && answer.error->http_status == 404 && answer.error->reason == "not_found") {
    result.error.reset();
    result.already_gone = true;
  } else if (!answer.error) {
    result.deleted = true;
  }
  return result;
}

PreviewKeyResult ManagementClient::createPreviewDeployKey(int64_t project_id, const std::string& name,
                                                          std::optional<int64_t> expires_at_ms) const {
  auto spec = managementCall(base_url_, team_token_, "POST",
                             "/projects/" + std::to_string(project_id) + "/create_preview_deploy_key",
                             "create_preview_deploy_key");
  nlohmann::json body = {{"name", name}};
  if (expires_at_ms) body["expiresAt"] = *expires_at_ms;
  spec.body = body.dump();
  spec.idempotent = false;
  const auto answer = performCallGuarded(spec, options_, retry_);
  auto result = resultOf<PreviewKeyResult>(answer);
  if (answer.error) return result;
  auto parsed = objectBody(answer);
  auto key = parsed ? stringField(*parsed, "previewDeployKey") : std::nullopt;
  if (!key || key->empty()) {
    result.error = badResponse(answer.status, "create_preview_deploy_key answered without a previewDeployKey string");
    return result;
  }
  result.preview_deploy_key = std::move(key);
  return result;
}

DeleteResult ManagementClient::deletePreviewDeployKey(int64_t project_id,
                                                      const std::string& id_or_key_or_name) const {
  auto spec = managementCall(base_url_, team_token_, "POST",
                             "/projects/" + std::to_string(project_id) + "/delete_preview_deploy_key",
                             "delete_preview_deploy_key");
  spec.body = nlohmann::json{{"id", id_or_key_or_name}}.dump();
  // It may be the key itself or its secret part.
  spec.secrets = {id_or_key_or_name};
  if (const auto bar = id_or_key_or_name.rfind('|'); bar != std::string::npos) {
    spec.secrets.push_back(id_or_key_or_name.substr(bar + 1));
  }
  const auto answer = performCallGuarded(spec, options_, retry_);
  auto result = resultOf<DeleteResult>(answer);
  // The API's code for a missing key is undocumented, so any 404 means the key is not there,
  // except ProjectNotFound: that says nothing about the key (the token may just not see the
  // project, and the key would live on), so it stays an error.
  if (answer.error && answer.error->http_status == 404 && answer.error->reason == "not_found" &&
      answer.error->code != "ProjectNotFound") {
    result.error.reset();
    result.already_gone = true;
  } else if (!answer.error) {
    result.deleted = true;
  }
  return result;
}

DeleteResult ManagementClient::deleteProject(int64_t project_id) const {
  auto spec = managementCall(base_url_, team_token_, "POST", "/projects/" + std::to_string(project_id) + "/delete",
                             "delete project");
  const auto answer = performCallGuarded(spec, options_, retry_);
  auto result = resultOf<DeleteResult>(answer);
  if (answer.error && answer.error->http_status == 404 && answer.error->reason == "not_found" &&
      (answer.error->code == "ProjectNotFound" || answer.error->code.empty())) {
    result.error.reset();
    result.already_gone = true;
  } else if (!answer.error) {
    result.deleted = true;
  }
  return result;
}

UrlResult deploymentUrlForKey(const std::string& provision_url, const std::string& deploy_key,
                              const HttpOptions& options) {
  return deploymentUrlForKey(provision_url, deploy_key, options, policyFor(options));
}

UrlResult deploymentUrlForKey(const std::string& provision_url, const std::string& deploy_key,
                              const HttpOptions& options, const RetryPolicy& retry) {
  CallSpec spec = postTo(provision_url, "/api/deployment/url_for_key", "Bearer", deploy_key, "url_for_key");
  spec.body = nlohmann::json{{"deployKey", deploy_key}}.dump();
  const auto answer = performCallGuarded(spec, options, retry);
  auto result = resultOf<UrlResult>(answer);
  if (answer.error) return result;
  auto parsed = nlohmann::json::parse(answer.body, nullptr, false);
  if (!parsed.is_string() || parsed.get<std::string>().empty()) {
    result.error = badResponse(answer.status, "url_for_key answered without a URL string");
    return result;
  }
  result.url = parsed.get<std::string>();
  return result;
}

namespace {

struct PreviewKeySlugs {
  std::string team;
  std::string project;
};

// `preview:<team>:<project>|<secret>`, classified as the CLI does (the part before the first
// '|' splits on ':' into exactly three parts, the first "preview"); slugs must not be empty.
std::optional<PreviewKeySlugs> previewKeySlugs(const std::string& key) {
  const auto bar = key.find('|');
  if (bar == std::string::npos || bar + 1 >= key.size()) return std::nullopt;
  const auto parts = splitOn(std::string_view(key).substr(0, bar), ':');
  if (parts.size() != 3 || parts[0] != "preview" || parts[1].empty() || parts[2].empty()) {
    return std::nullopt;
  }
  return PreviewKeySlugs{std::string(parts[1]), std::string(parts[2])};
}

// `<type>:<name>|…` or `<name>|…` -> name; empty when the key has no '|'.
std::string deploymentNameOfKey(const std::string& key) {
  const auto bar = key.find('|');
  if (bar == std::string::npos) return "";
  const std::string prefix = key.substr(0, bar);
  const auto colon = prefix.rfind(':');
  return colon == std::string::npos ? prefix : prefix.substr(colon + 1);
}

}  // namespace

PreviewClaimResult claimPreviewDeployment(const std::string& provision_url, const std::string& preview_deploy_key,
                                          const std::string& identifier, bool reuse, const HttpOptions& options) {
  return claimPreviewDeployment(provision_url, preview_deploy_key, identifier, reuse, options, policyFor(options));
}

PreviewClaimResult claimPreviewDeployment(const std::string& provision_url, const std::string& preview_deploy_key,
                                          const std::string& identifier, bool reuse, const HttpOptions& options,
                                          const RetryPolicy& retry) {
  PreviewClaimResult result;
  const auto slugs = previewKeySlugs(preview_deploy_key);
  if (!slugs) {
    result.error = ApiError{"config_error", 0, "",
                            "claim_preview_deployment needs a preview deploy key of the form "
                            "preview:<team>:<project>|<secret>; the key given is not one"};
    return result;
  }
  if (identifier.empty()) {
    result.error = ApiError{"config_error", 0, "", "claim_preview_deployment needs a non-empty preview identifier"};
    return result;
  }
  CallSpec spec = postTo(provision_url, "/api/claim_preview_deployment", "Bearer", preview_deploy_key,
                         "claim_preview_deployment");
  spec.secrets = {preview_deploy_key.substr(preview_deploy_key.find('|') + 1)};
  const nlohmann::json selection = {
      {"kind", "teamAndProjectSlugs"}, {"teamSlug", slugs->team}, {"projectSlug", slugs->project}};
  spec.body = nlohmann::json{{"projectSelection", selection}, {"identifier", identifier}, {"reuse", reuse}}.dump();
  // Without reuse a repeat would replace the preview this request may already have created.
  spec.idempotent = reuse;
  const auto answer = performCallGuarded(spec, options, retry);
  result = resultOf<PreviewClaimResult>(answer);
  if (answer.error) return result;
  auto parsed = objectBody(answer);
  auto admin_key = parsed ? stringField(*parsed, "adminKey") : std::nullopt;
  auto instance_url = parsed ? stringField(*parsed, "instanceUrl") : std::nullopt;
  if (!admin_key || admin_key->empty() || !instance_url || instance_url->empty()) {
    std::string missing;
    if (!admin_key || admin_key->empty()) missing = "adminKey";
    if (!instance_url || instance_url->empty()) missing += missing.empty() ? "instanceUrl" : " and instanceUrl";
    result.error = badResponse(answer.status, "claim_preview_deployment answered HTTP " +
                                                  std::to_string(answer.status) + " without " + missing +
                                                  (reuse ? "" : "; the preview deployment may have been created"));
    return result;
  }
  ClaimedPreview preview;
  preview.deployment_name = stringField(*parsed, "deploymentName").value_or("");
  if (preview.deployment_name.empty()) preview.deployment_name = deploymentNameOfKey(*admin_key);
  preview.admin_key = std::move(*admin_key);
  preview.instance_url = std::move(*instance_url);
  preview.reference = stringField(*parsed, "reference").value_or("");
  const auto is_new = parsed->find("isNewDeployment");
  preview.is_new = is_new != parsed->end() && is_new->is_boolean() && is_new->get<bool>();
  result.preview = std::move(preview);
  return result;
}

EnvVarsResult setEnvironmentVariables(const std::string& deployment_url, const std::string& auth_key,
                                      const std::vector<EnvVarChange>& changes, const HttpOptions& options) {
  return setEnvironmentVariables(deployment_url, auth_key, changes, options, policyFor(options));
}

EnvVarsResult setEnvironmentVariables(const std::string& deployment_url, const std::string& auth_key,
                                      const std::vector<EnvVarChange>& changes, const HttpOptions& options,
                                      const RetryPolicy& retry) {
  CallSpec spec = postTo(deployment_url, "/api/v1/update_environment_variables", "Convex", auth_key,
                         "update_environment_variables");
  nlohmann::json list = nlohmann::json::array();
  for (const auto& change : changes) {
    list.push_back({{"name", change.name}, {"value", change.value ? nlohmann::json(*change.value) : nlohmann::json()}});
    if (change.value) spec.secrets.push_back(*change.value);
  }
  spec.body = nlohmann::json{{"changes", std::move(list)}}.dump();
  const auto answer = performCallGuarded(spec, options, retry);
  auto result = resultOf<EnvVarsResult>(answer);
  result.ok = !answer.error;  // 2xx, with or without a body
  return result;
}

}  // namespace da::convex

namespace da::convex {

WebhookPostResult postWebhook(const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers,
                              const std::string& body, const HttpOptions& options) {
  CallSpec spec;
  spec.method = "POST";
  spec.base_url = url;
  spec.operation = "callback";
  spec.body = body;
  spec.headers = headers;
  // The delivery schedules its own retries, minutes apart, each one signed afresh.
  const auto answer = performCallGuarded(spec, options, RetryPolicy{}.withMaxAttempts(1));
  WebhookPostResult result;
  result.error = answer.error;
  result.outcomes = answer.outcomes;
  result.http_status = answer.outcomes.empty() ? 0 : answer.outcomes.back().http_status;
  return result;
}

}  // namespace da::convex

namespace da::convex {

ModuleHashesResult moduleHashes(const std::string& deployment_url, const std::string& admin_key,
                                const std::string& cli_version, const HttpOptions& options) {
  CallSpec spec = postTo(deployment_url, "/api/get_config_hashes", "Convex", admin_key, "get_config_hashes");
  // As the CLI sends it: the key in the body too.
  spec.body = nlohmann::json{{"version", cli_version}, {"adminKey", admin_key}}.dump();
  const auto answer = performCallGuarded(spec, options, policyFor(options));
  auto result = resultOf<ModuleHashesResult>(answer);
  if (answer.error) return result;
  auto parsed = nlohmann::json::parse(answer.body, nullptr, false);
  if (!parsed.is_object() || !parsed.contains("moduleHashes") || !parsed["moduleHashes"].is_array()) {
    result.error = badResponse(answer.status, "get_config_hashes answered without moduleHashes");
    return result;
  }
  std::vector<ModuleHash> modules;
  for (const auto& entry : parsed["moduleHashes"]) {
    if (!entry.is_object() || !entry.contains("path") || !entry["path"].is_string()) continue;
    ModuleHash module;
    module.path = entry["path"].get<std::string>();
    if (entry.contains("environment") && entry["environment"].is_string()) module.environment = entry["environment"];
    if (entry.contains("hash") && entry["hash"].is_string()) module.hash = entry["hash"];
    modules.push_back(std::move(module));
  }
  result.modules = std::move(modules);
  return result;
}

}  // namespace da::convex

namespace da::convex {

FunctionSpecResult functionSpec(const std::string& deployment_url, const std::string& admin_key,
                                const HttpOptions& options) {
  CallSpec spec = postTo(deployment_url, "/api/query", "Convex", admin_key, "function_spec");
  spec.body = nlohmann::json{{"path", "_system/cli/modules:apiSpec"}, {"args", nlohmann::json::object()},
                             {"format", "convex_encoded_json"}}
                  .dump();
  const auto answer = performCallGuarded(spec, options, policyFor(options));
  auto result = resultOf<FunctionSpecResult>(answer);
  if (answer.error) return result;
  auto parsed = nlohmann::json::parse(answer.body, nullptr, false);
  if (!parsed.is_object() || parsed.value("status", "") != "success" || !parsed.contains("value") ||
      !parsed["value"].is_array()) {
    result.error = badResponse(answer.status, "the function listing answered without a list of functions");
    return result;
  }
  std::vector<FunctionSpec> functions;
  for (const auto& entry : parsed["value"]) {
    if (!entry.is_object() || !entry.contains("identifier") || !entry["identifier"].is_string()) continue;
    FunctionSpec function;
    function.identifier = entry["identifier"].get<std::string>();
    if (entry.contains("functionType") && entry["functionType"].is_string()) function.function_type = entry["functionType"];
    nlohmann::json rest = entry;
    rest.erase("identifier");
    function.signature = rest.dump();
    functions.push_back(std::move(function));
  }
  result.functions = std::move(functions);
  return result;
}

}  // namespace da::convex

#include "convex/management_client.h"

#include <condition_variable>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include <sys/socket.h>

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/StreamCopier.h>
#include <Poco/URI.h>
#include <nlohmann/json.hpp>

namespace da::convex {

namespace {

constexpr size_t kMaxResponseBytes = 1 << 20;

struct HttpAnswer {
  int status = 0;
  std::string body;
};

Poco::Net::Context::Ptr clientTlsContext(const std::string& ca_file) {
  // Certificates are verified against the system store, plus an extra bundle when the
  // network intercepts TLS (the same file NODE_EXTRA_CA_CERTS gives the CLI).
  return new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", ca_file,
                                Poco::Net::Context::VERIFY_RELAXED, 9, true);
}

std::unique_ptr<Poco::Net::HTTPClientSession> openSession(const Poco::URI& uri,
                                                          const HttpOptions& options) {
  std::unique_ptr<Poco::Net::HTTPClientSession> session;
  if (uri.getScheme() == "https") {
    session = std::make_unique<Poco::Net::HTTPSClientSession>(uri.getHost(), uri.getPort(),
                                                              clientTlsContext(options.ca_file));
  } else {
    session = std::make_unique<Poco::Net::HTTPClientSession>(uri.getHost(), uri.getPort());
  }
  if (!options.https_proxy.empty() && uri.getScheme() == "https") {
    Poco::URI proxy(options.https_proxy);
    session->setProxy(proxy.getHost(), proxy.getPort());
  }
  session->setTimeout(Poco::Timespan(options.timeout.count() * 1000));
  return session;
}

bool cancelled(const HttpOptions& options) { return options.cancel && options.cancel->load(); }

// Ends a blocked exchange once `cancel` turns true. shutdown(2) on the raw descriptor wakes
// the blocked read at once and touches no TLS state, which another thread owns; closing the
// descriptor instead could hand its number to an unrelated file mid-read. Before the
// connection exists the descriptor is -1 and the watch keeps trying.
class CancelWatch {
 public:
  CancelWatch(const std::atomic<bool>* cancel, Poco::Net::HTTPClientSession& session) {
    if (cancel == nullptr) return;
    watcher_ = std::thread([this, cancel, &session] {
      std::unique_lock lock(mutex_);
      while (!done_) {
        if (cancel->load()) {
          const auto fd = session.socket().impl()->sockfd();
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

// One exchange; throws Poco exceptions on network failure (caught by the caller).
HttpAnswer exchange(const Poco::URI& uri, const std::string& token, const std::string& body,
                    const HttpOptions& options) {
  auto session = openSession(uri, options);
  const CancelWatch watch(options.cancel, *session);  // ends before `session` is destroyed
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

ApiError errorFromAnswer(const HttpAnswer& answer) {
  ApiError error;
  error.http_status = answer.status;
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

MintResult ManagementClient::createDeployKey(const DeployKeyRequest& request) const {
  nlohmann::json body = {{"name", request.key_name}};
  if (!request.allowed_actions.empty()) body["allowedActions"] = request.allowed_actions;
  if (request.expires_at_ms) body["expiresAt"] = *request.expires_at_ms;

  MintResult result;
  Poco::URI uri;
  try {
    uri = Poco::URI(base_url_ + "/v1/deployments/" + request.deployment_name + "/create_deploy_key");
  } catch (const Poco::Exception& e) {
    result.error = ApiError{"bad_request", 0, "", "invalid Convex URL: " + e.displayText()};
    return result;
  }

  std::string last_network_error;
  for (int attempt = 1; attempt <= std::max(1, options_.attempts); ++attempt) {
    if (cancelled(options_)) break;
    HttpAnswer answer;
    try {
      answer = exchange(uri, team_token_, body.dump(), options_);
    } catch (const Poco::Exception& e) {
      last_network_error = e.displayText();
      continue;
    } catch (const std::exception& e) {
      last_network_error = e.what();
      continue;
    }
    // An answer cut short by the cancel watch is not an answer.
    if (cancelled(options_)) break;
    // Exactly 200 is success, as the CLI treats its provisioning calls.
    if (answer.status != 200) {
      result.error = errorFromAnswer(answer);
      return result;
    }
    auto parsed = nlohmann::json::parse(answer.body, nullptr, false);
    if (!parsed.is_object() || !parsed.contains("deployKey") || !parsed["deployKey"].is_string() ||
        parsed["deployKey"].get<std::string>().empty()) {
      result.error = ApiError{"bad_response", answer.status, "",
                              "create_deploy_key answered 200 without a deployKey string"};
      return result;
    }
    result.deploy_key = parsed["deployKey"].get<std::string>();
    return result;
  }
  if (cancelled(options_)) {
    result.error = ApiError{"cancelled", 0, "", "the call to " + uri.getHost() + " was cancelled"};
    return result;
  }
  result.error = ApiError{"network_error", 0, "",
                          "could not reach " + uri.getHost() + ": " + last_network_error};
  return result;
}

}  // namespace da::convex

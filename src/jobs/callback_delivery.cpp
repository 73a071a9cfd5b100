#include "jobs/callback_delivery.h"

#include <algorithm>

#include <Poco/URI.h>
#include <spdlog/spdlog.h>

#include "convex/management_client.h"
#include "net/egress_allowlist.h"
#include "util/digest.h"
#include "util/ids.h"

namespace da {

namespace {

constexpr size_t kMaxOutcomeBytes = 200;  // a receiver's error code is its own text

std::string hostOf(const std::string& url) {
  try {
    return Poco::URI(url).getHost();
  } catch (const std::exception&) {
    return "?";
  }
}

int64_t unixSeconds() { return nowUnixMillis() / 1000; }

CallbackDelivery::Answer postThroughAgentNetwork(const Settings& settings, const std::string& url,
                                                 const std::vector<std::pair<std::string, std::string>>& headers,
                                                 const std::string& body, const std::atomic<bool>& stopping) {
  auto options = convex::httpOptionsFromEnvironment(settings.env_passthrough, url);
  options.timeout = settings.callbacks.timeout;
  options.attempts = 1;
  options.cancel = &stopping;
  const auto result = convex::postWebhook(url, headers, body, options);
  CallbackDelivery::Answer answer;
  answer.http_status = result.http_status;
  answer.delivered = !result.error;
  answer.retryable = result.error && result.error->retryable;
  if (!result.outcomes.empty()) {
    answer.outcome = result.outcomes.back().describe();
  } else if (result.error) {
    answer.outcome = "not sent: " + result.error->message;
  }
  return answer;
}

}  // namespace

std::optional<std::string> callbackUrlRefusal(const std::string& url, const CallbackSettings& settings) {
  std::string error;
  auto origin = net::originOf(url, error);
  if (!origin) return "callback_url must be an http:// or https:// URL (" + error + ")";
  if (std::any_of(url.begin(), url.end(), [](unsigned char c) { return c <= 0x20 || c == 0x7f || c == '\\'; })) {
    return "callback_url must not contain spaces, backslashes or control characters";
  }
  // The host checked must be the host the sender connects to: the request is made with
  // Poco::URI's reading of the URL, so it has to agree with the allowlist's.
  Poco::URI parsed;
  try {
    parsed = Poco::URI(url);
  } catch (const std::exception&) {
    return "callback_url is not a URL the agent can send to";
  }
  if (!parsed.getUserInfo().empty()) return "callback_url must not carry credentials (user info)";
  if (!parsed.getFragment().empty() || url.find('#') != std::string::npos) {
    return "callback_url must not have a fragment";
  }
  std::string ignored;
  const auto sent_to = net::parseAuthority(parsed.getHost(), parsed.getPort(), ignored);
  if (!sent_to || net::displayName(*sent_to) != net::displayName(*origin)) {
    return "callback_url's host is ambiguous: it reads differently to the allowlist and to the sender";
  }
  if (settings.allowed_hosts.empty()) {
    return "this agent sends no callbacks: its operator has allowed no callback host (--callback-hosts)";
  }
  net::EgressAllowlist allowed;
  for (const auto& entry : settings.allowed_hosts) {
    if (auto destination = net::parseAuthority(entry, 443, ignored)) allowed.allow(*destination, net::Trust::kOperator);
  }
  if (!allowed.match(*origin)) {
    return "callback_url's host " + net::displayName(*origin) +
           " is not one the operator allowed (--callback-hosts); an agent that posts wherever it is told "
           "would be a request forgery tool";
  }
  return std::nullopt;
}

std::string callbackSignature(const std::string& secret, int64_t unix_seconds, const std::string& body) {
  const std::string t = std::to_string(unix_seconds);
  return "t=" + t + ",v1=" + hmacSha256Hex(secret, t + "." + body);
}

std::chrono::milliseconds CallbackDelivery::retryDelay(const CallbackSettings& settings, int attempt) {
  auto delay = settings.first_retry;
  for (int i = 1; i < attempt && delay < settings.max_retry; ++i) delay *= 2;
  return std::min(delay, std::max(settings.max_retry, settings.first_retry));
}

CallbackDelivery::CallbackDelivery(const Settings& settings, JobStore& store, Post post)
    : settings_(settings), store_(store), post_(std::move(post)) {
  if (!post_) {
    post_ = [this](const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers,
                   const std::string& body, const std::atomic<bool>& stopping) {
      return postThroughAgentNetwork(settings_, url, headers, body, stopping);
    };
  }
}

CallbackDelivery::~CallbackDelivery() { stop(); }

void CallbackDelivery::start() {
  const auto now_steady = std::chrono::steady_clock::now();
  const int64_t now_ms = nowUnixMillis();
  size_t resumed = 0;
  for (const auto& report : store_.list(std::nullopt, std::numeric_limits<size_t>::max(), std::nullopt)) {
    if (!isTerminal(report.status) || !report.callback || report.callback->status != "pending") continue;
    const int64_t wait_ms = std::max<int64_t>(0, report.callback->next_attempt_at_ms - now_ms);
    schedule(report.id, now_steady + std::chrono::milliseconds(wait_ms));
    ++resumed;
  }
  if (resumed) spdlog::info("{} callback(s) of finished deploys are still to be delivered", resumed);
  for (unsigned i = 0; i < std::max(1u, settings_.callbacks.senders); ++i) {
    senders_.emplace_back([this] { send(); });
  }
}

void CallbackDelivery::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& sender : senders_) {
    if (sender.joinable()) sender.join();
  }
  senders_.clear();
}

void CallbackDelivery::jobFinished(const DeployReport& report) {
  if (report.callback && report.callback->status == "pending") schedule(report.id, std::chrono::steady_clock::now());
}

void CallbackDelivery::schedule(const std::string& job_id, std::chrono::steady_clock::time_point due) {
  {
    std::lock_guard lock(mutex_);
    // One delivery per job at a time: a resume at start and a finish cannot both send.
    for (const auto& [when, id] : due_) {
      if (id == job_id) return;
    }
    due_.emplace(due, job_id);
  }
  wake_.notify_one();
}

void CallbackDelivery::send() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (due_.empty()) {
      wake_.wait(lock);
      continue;
    }
    const auto next = due_.begin();
    if (next->first > std::chrono::steady_clock::now()) {
      wake_.wait_until(lock, next->first);
      continue;
    }
    const std::string job_id = next->second;
    due_.erase(next);
    ++in_flight_;
    lock.unlock();
    try {
      attempt(job_id);
    } catch (const std::exception& e) {
      spdlog::error("deploy {}: the callback attempt failed inside the agent: {}", job_id, e.what());
    }
    lock.lock();
    --in_flight_;
    idle_.notify_all();
  }
}

void CallbackDelivery::waitUntilIdle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  idle_.wait_for(lock, timeout, [this] {
    const bool due_now = !due_.empty() && due_.begin()->first <= std::chrono::steady_clock::now();
    return senders_.empty() || (in_flight_ == 0 && !due_now);
  });
}

void CallbackDelivery::attempt(const std::string& job_id) {
  auto report = store_.get(job_id);
  if (!report || !report->callback || report->callback->status != "pending") return;
  const std::string url = report->callback->url;
  const int number = static_cast<int>(report->callback->attempts.size()) + 1;

  CallbackReport::Attempt attempt;
  attempt.at_ms = nowUnixMillis();
  Answer answer;
  // The allowlist may have changed since the job was accepted (a restart with other settings).
  if (callbackUrlRefusal(url, settings_.callbacks)) {
    answer.outcome = "not sent: the host is not allowed (--callback-hosts)";
  } else {
    // The body is the report as it finished; the delivery's own progress is not part of it.
    nlohmann::json body_json = report->toJson();
    body_json.erase("callback");
    const std::string body = body_json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    const std::vector<std::pair<std::string, std::string>> headers = {
        {"User-Agent", std::string("deploy-agent/") + DA_VERSION},
        {"Deploy-Agent-Event", "deploy.finished"},
        {"Deploy-Agent-Delivery", job_id},
        {"Deploy-Agent-Attempt", std::to_string(number)},
        {"Deploy-Agent-Signature", callbackSignature(settings_.callbacks.secret, unixSeconds(), body)},
    };
    const auto started = std::chrono::steady_clock::now();
    answer = post_(url, headers, body, stopping_);
    attempt.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    // Stopping cut the attempt short: it says nothing of the receiver, and it is made again
    // after the restart.
    if (stopping_ && !answer.delivered) return;
  }
  if (answer.outcome.size() > kMaxOutcomeBytes) answer.outcome.resize(kMaxOutcomeBytes);
  attempt.http_status = answer.http_status;
  attempt.outcome = answer.outcome;

  std::string status = "delivered";
  std::chrono::milliseconds retry_in{0};
  if (!answer.delivered) {
    status = answer.retryable && number < settings_.callbacks.max_attempts ? "pending" : "failed";
    if (status == "pending") retry_in = retryDelay(settings_.callbacks, number);
  }
  const bool kept = store_.update(job_id, [&](DeployReport& stored) {
    if (!stored.callback) return;
    stored.callback->attempts.push_back(attempt);
    stored.callback->status = status;
    stored.callback->next_attempt_at_ms = status == "pending" ? attempt.at_ms + attempt.duration_ms + retry_in.count() : 0;
  });
  if (!kept) return;  // deleted meanwhile: nobody is left to tell
  if (on_attempt_) on_attempt_(status == "pending" ? "retrying" : status);
  if (status == "pending") {
    spdlog::warn("deploy {}: callback attempt {} to {}: {}; next in {} ms", job_id, number, hostOf(url),
                 attempt.outcome, retry_in.count());
    schedule(job_id, std::chrono::steady_clock::now() + retry_in);
  } else if (status == "delivered") {
    spdlog::info("deploy {}: callback delivered to {} ({}, attempt {})", job_id, hostOf(url), attempt.outcome, number);
  } else {
    spdlog::error("deploy {}: callback to {} failed for good after {} attempt(s): {}", job_id, hostOf(url), number,
                  attempt.outcome);
  }
}

}  // namespace da

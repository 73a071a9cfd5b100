#include "api/handlers.h"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <optional>
#include <set>

#include <Poco/Net/HTMLForm.h>
#include <Poco/Net/MessageHeader.h>
#include <Poco/Net/NameValueCollection.h>
#include <Poco/Net/PartHandler.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/URI.h>
#include <spdlog/spdlog.h>

#include "api/deploy_options.h"
#include "api/metrics.h"
#include "api/problem.h"
#include "convex/deploy_key.h"
#include "jobs/callback_delivery.h"
#include "jobs/idempotency_index.h"
#include "jobs/job_network.h"
#include "util/digest.h"
#include "util/ids.h"
#include "util/redactor.h"
#include "util/strings.h"

namespace da::api {

namespace fs = std::filesystem;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

namespace {

constexpr const char* kDeployKeyHeader = "Convex-Deploy-Key";
constexpr const char* kAccessTokenHeader = "Convex-Access-Token";
constexpr const char* kAdminKeyHeader = "Convex-Admin-Key";
constexpr const char* kIdempotencyKeyHeader = "Idempotency-Key";
constexpr size_t kMaxIdempotencyKeyBytes = 255;
// How long a request waits for another with the same Idempotency-Key to be taken in.
constexpr std::chrono::seconds kIdempotencyWait{30};
constexpr size_t kMaxOptionsBytes = 256 * 1024;
constexpr int kMaxWaitSeconds = 60;
// The server has 32 threads plus one per event stream (api_server.cpp). Past this many long
// polls at once, a GET answers at once instead of waiting, so /healthz and new deploys are
// never starved of threads.
constexpr int kMaxWaitingRequests = 16;
std::atomic<int> waiting_requests{0};

// Holds one of the kMaxWaitingRequests places, if one is free.
class WaitingPlace {
 public:
  WaitingPlace() {
    int now = waiting_requests.load();
    while (now < kMaxWaitingRequests && !waiting_requests.compare_exchange_weak(now, now + 1)) {
    }
    held_ = now < kMaxWaitingRequests;
  }
  ~WaitingPlace() {
    if (held_) waiting_requests.fetch_sub(1);
  }
  WaitingPlace(const WaitingPlace&) = delete;
  WaitingPlace& operator=(const WaitingPlace&) = delete;
  bool held() const { return held_; }

 private:
  bool held_ = false;
};

// Read-only view of the query string; a missing parameter reads as "" and is never inserted.
class QueryParameters {
 public:
  // RouteFactory has refused repeated names already (firstRepeatedParameter), so no value is lost.
  explicit QueryParameters(const HTTPServerRequest& request) {
    for (const auto& [name, value] : Poco::URI(request.getURI()).getQueryParameters()) values_[name] = value;
  }
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const {
    auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
  }
  const std::map<std::string, std::string>& all() const { return values_; }

 private:
  std::map<std::string, std::string> values_;
};

// `?target=dev&target=prod` must not quietly become one of the two: which one wins is a
// parser detail, and here it decides whether production is pushed.
std::optional<std::string> firstRepeatedParameter(const Poco::URI::QueryParameters& parameters) {
  std::set<std::string> seen;
  for (const auto& [name, value] : parameters) {
    if (!seen.insert(name).second) return name;
  }
  return std::nullopt;
}

class FixedProblemHandler : public Poco::Net::HTTPRequestHandler {
 public:
  explicit FixedProblemHandler(Problem problem, std::string allow = "")
      : problem_(std::move(problem)), allow_(std::move(allow)) {}
  void handleRequest(HTTPServerRequest&, HTTPServerResponse& response) override {
    if (problem_.status == 401) response.set("WWW-Authenticate", "Bearer");
    if (!allow_.empty()) response.set("Allow", allow_);
    sendProblem(response, problem_);
  }

 private:
  Problem problem_;
  std::string allow_;  // the methods a 405 names
};

bool authorized(const HTTPServerRequest& request, const std::string& token) {
  const std::string header = request.get("Authorization", "");
  const std::string prefix = "Bearer ";
  if (header.size() <= prefix.size() || header.compare(0, prefix.size(), prefix) != 0) return false;
  return constantTimeEquals(header.substr(prefix.size()), token);
}

std::string trim(std::string s) {
  size_t start = s.find_first_not_of(" \t");
  size_t end = s.find_last_not_of(" \t");
  return start == std::string::npos ? std::string() : s.substr(start, end - start + 1);
}

// Streams the request body to `path`, refusing more than `limit` bytes. Returns bytes written.
std::optional<uint64_t> receiveBody(std::istream& in, const fs::path& path, uint64_t limit,
                                    std::string& first_bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  char buffer[64 * 1024];
  uint64_t total = 0;
  while (in) {
    in.read(buffer, sizeof buffer);
    const auto got = static_cast<size_t>(in.gcount());
    if (got == 0) break;
    total += got;
    if (total > limit) return std::nullopt;
    if (first_bytes.size() < 512) first_bytes.append(buffer, std::min<size_t>(got, 512 - first_bytes.size()));
    out.write(buffer, static_cast<std::streamsize>(got));
  }
  out.flush();
  if (!out) throw std::runtime_error("cannot write the upload to " + path.string());
  return total;
}

bool isMultipart(const std::string& content_type) {
  return trim(asciiLower(content_type.substr(0, content_type.find(';')))) == "multipart/form-data";
}

// A multipart body: the `bundle` file part streams to the upload file under the size limit;
// the `options` part (JSON) is kept; anything else is refused.
struct ReceivedForm {
  bool bundle_received = false;  // false with no problem: over the limit
  uint64_t bundle_bytes = 0;
  std::string first_bytes;
  std::string bundle_content_type;
  std::optional<nlohmann::json> options_json;
  std::optional<OptionsProblem> problem;
};

class BundlePartHandler : public Poco::Net::PartHandler {
 public:
  BundlePartHandler(const fs::path& path, uint64_t limit, ReceivedForm& form) : path_(path), limit_(limit), form_(form) {}

  void handlePart(const Poco::Net::MessageHeader& header, std::istream& stream) override {
    std::string disposition;
    Poco::Net::NameValueCollection parameters;
    Poco::Net::MessageHeader::splitParameters(header.get("Content-Disposition", ""), disposition, parameters);
    const std::string name = parameters.get("name", "");
    if (name == "options" && !form_.options_json && !form_.problem) {
      // Sent as a file (some clients do for application/json parts): kept like the field.
      std::string text;
      char buffer[4096];
      while (stream && text.size() <= kMaxOptionsBytes) {
        stream.read(buffer, sizeof buffer);
        text.append(buffer, static_cast<size_t>(stream.gcount()));
      }
      auto parsed = nlohmann::json::parse(text, nullptr, false);
      if (text.size() > kMaxOptionsBytes || parsed.is_discarded()) {
        form_.problem = OptionsProblem{400, "invalid_options", "the options part is not JSON of at most " +
                                                                   std::to_string(kMaxOptionsBytes) + " bytes", "options"};
      } else {
        form_.options_json = std::move(parsed);
      }
      stream.ignore(std::numeric_limits<std::streamsize>::max());
      return;
    }
    if (name != "bundle" || seen_bundle_) {
      if (!form_.problem) {
        form_.problem = OptionsProblem{400, "unexpected_part",
                                       seen_bundle_ && name == "bundle" ? "the body has two bundle parts"
                                                                        : "a file part named '" + name +
                                                                              "' is not expected; send the archive as 'bundle'",
                                       name.empty() ? "body" : name};
      }
      stream.ignore(std::numeric_limits<std::streamsize>::max());
      return;
    }
    seen_bundle_ = true;
    form_.bundle_content_type = header.get("Content-Type", "");
    const auto received = receiveBody(stream, path_, limit_, form_.first_bytes);
    if (!received) {
      over_limit_ = true;
      stream.ignore(std::numeric_limits<std::streamsize>::max());
      return;
    }
    form_.bundle_bytes = *received;
    form_.bundle_received = true;
  }

  bool sawBundle() const { return seen_bundle_; }
  bool overLimit() const { return over_limit_; }

 private:
  fs::path path_;
  uint64_t limit_;
  ReceivedForm& form_;
  bool seen_bundle_ = false;
  bool over_limit_ = false;
};

ReceivedForm receiveMultipart(HTTPServerRequest& request, const fs::path& upload, uint64_t max_bytes) {
  ReceivedForm form;
  BundlePartHandler handler(upload, max_bytes, form);
  Poco::Net::HTMLForm fields;
  fields.setFieldLimit(8);
  fields.setValueLengthLimit(static_cast<int>(kMaxOptionsBytes));
  try {
    fields.load(request, request.stream(), handler);
  } catch (const Poco::Exception& e) {
    form.problem = OptionsProblem{400, "invalid_multipart", "the multipart body cannot be read: " + e.message() +
                                                               " (options part at most " + std::to_string(kMaxOptionsBytes) +
                                                               " bytes, at most 8 parts)", "body"};
    return form;
  }
  if (form.problem) return form;
  if (handler.overLimit()) return form;
  if (!handler.sawBundle()) {
    form.problem = OptionsProblem{400, "missing_bundle",
                                  "the multipart body has no file part named 'bundle' (with a filename) holding the archive",
                                  "bundle"};
    return form;
  }
  // HTMLForm also holds the query string's parameters: those are not parts.
  std::multiset<std::pair<std::string, std::string>> from_query;
  for (const auto& parameter : Poco::URI(request.getURI()).getQueryParameters()) from_query.insert(parameter);
  for (const auto& [name, value] : fields) {
    if (auto it = from_query.find({name, value}); it != from_query.end()) {
      from_query.erase(it);
      continue;
    }
    if (name != "options") {
      form.problem = OptionsProblem{400, "unexpected_part",
                                    name == "bundle" ? "the bundle part must be a file part (with a filename), not a field"
                                                     : "a part named '" + name + "' is not expected (bundle, options)",
                                    name};
      return form;
    }
    if (form.options_json) {
      form.problem = OptionsProblem{400, "unexpected_part", "the body has two options parts", "options"};
      return form;
    }
    auto parsed = nlohmann::json::parse(value, nullptr, false);
    if (parsed.is_discarded()) {
      form.problem = OptionsProblem{400, "invalid_options", "the options part is not valid JSON", "options"};
      return form;
    }
    form.options_json = std::move(parsed);
  }
  return form;
}

// A caller's deploy key must fit the target it is used for (see convex::keyTargetConflict).
std::optional<OptionsProblem> keyConflict(const DeployOptions& options, const CallerCredentials& credentials) {
  if (credentials.deploy_key.empty() || !options.target) return std::nullopt;
  const auto info = convex::classifyKey(credentials.deploy_key);
  if (!options.preview.empty()) {
    if (info.kind != convex::KeyKind::kPreviewKey) {
      return OptionsProblem{422, "deploy_key_conflict", "preview needs a preview deploy key (preview:<team>:<project>|...)",
                            "Convex-Deploy-Key"};
    }
    return std::nullopt;
  }
  if (auto conflict = convex::keyTargetConflict(info, *options.target, options.deployment)) {
    return OptionsProblem{422, "deploy_key_conflict", *conflict, "Convex-Deploy-Key"};
  }
  return std::nullopt;
}

Problem intakeProblem(const bundle::IntakeError& error) {
  Problem problem;
  if (error.reason == "io_error" || error.reason == "internal_error" || error.reason == "invalid_destination") {
    // The agent's own disk or code failed, not the bundle.
    return Problem{500, error.reason, "The agent could not unpack the bundle", error.message, {}};
  }
  problem.status = error.limit.empty() ? 422 : 413;
  problem.reason = error.reason;
  problem.title = error.limit.empty() ? "The bundle was refused" : "The bundle exceeds a limit";
  problem.detail = error.message;
  if (!error.entry.empty()) problem.extra["entry"] = error.entry;
  if (!error.limit.empty()) problem.extra["limit"] = error.limit;
  // A refusal of the archive as a whole (corrupt, not what Content-Type said) names the body.
  if (error.entry.empty() && error.limit.empty()) problem.extra["field"] = "body";
  return problem;
}

Problem deployNotFound(const std::string& id) {
  return {404, "deploy_not_found", "No such deploy", "no deploy has the id " + id, {}};
}

}  // namespace

void GuardedHandler::handleRequest(HTTPServerRequest& request, HTTPServerResponse& response) {
  std::string failure;
  try {
    handle(request, response);
    return;
  } catch (const Poco::Exception& e) {
    failure = e.displayText();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  failure = redactKeyShapes(failure);
  spdlog::error("{} {} failed: {}", request.getMethod(), Poco::URI(request.getURI()).getPath(), failure);
  if (!response.sent()) {
    sendProblem(response, {500, "internal_error", "The agent failed to handle the request", failure, {}});
  }
}

void HealthHandler::handle(HTTPServerRequest&, HTTPServerResponse& response) {
  const SandboxSettings& sandbox = context_.settings.sandbox;
  NetworkReport network;
  describeEnforcement(context_.settings, network);
  sendJson(response, 200,
           {{"status", "ok"},
            {"version", DA_VERSION},
            {"waiting_requests", waiting_requests.load()},
            {"sandbox", {{"tier", sandbox::tierName(sandbox.tier)}, {"facilities", sandbox.facilities}}},
            {"network", {{"enforcement", network.enforcement}, {"not_enforced", network.not_enforced}}}});
}

void ReadyHandler::handle(HTTPServerRequest&, HTTPServerResponse& response) {
  const Settings& settings = context_.settings;
  std::vector<std::string> reasons;
  std::error_code ec;
  for (const auto& [what, path] : {std::pair<const char*, fs::path>{"node", settings.toolchain.node},
                                   {"the Convex CLI", settings.toolchain.convex_cli},
                                   {"npm", settings.toolchain.npm_cli}}) {
    if (!fs::exists(path, ec)) reasons.push_back(std::string(what) + " is missing at " + path.string());
  }
  const std::string tier = sandbox::tierName(settings.sandbox.tier);
  if (settings.sandbox.requested != "auto" && settings.sandbox.requested != tier) {
    reasons.push_back("the sandbox tier is " + tier + ", not the " + settings.sandbox.requested + " asked for");
  }
  // Writable: a file can be created and removed where reports go.
  const fs::path probe = settings.state_dir / (".ready-" + newDeployId());
  std::string write_error;
  if (!replaceFileDurably(probe, "ok", write_error)) reasons.push_back("the state directory is not writable: " + write_error);
  fs::remove(probe, ec);
  const auto space = fs::space(settings.state_dir, ec);
  const uint64_t free_bytes = ec ? 0 : space.available;
  if (ec) {
    reasons.push_back("cannot read the free space of the state directory: " + ec.message());
  } else if (free_bytes < settings.min_free_bytes) {
    reasons.push_back("the state directory has " + std::to_string(free_bytes) + " bytes free, under the " +
                      std::to_string(settings.min_free_bytes) + " required (--min-free-bytes)");
  }
  const size_t queued = context_.runner.queuedCount();
  if (!context_.runner.hasRoom()) reasons.push_back("the queue is full (" + std::to_string(queued) + " deploys waiting)");
  const bool draining = context_.draining && context_.draining->load();
  if (draining) reasons.push_back("the agent is draining after SIGTERM and takes no new deploys");
  if (!reasons.empty()) response.set("Retry-After", "10");
  sendJson(response, reasons.empty() ? 200 : 503,
           {{"ready", reasons.empty()},
            {"reasons", reasons},
            {"toolchain",
             {{"node", settings.toolchain.node_version.empty() ? nlohmann::json() : nlohmann::json(settings.toolchain.node_version)},
              {"convex_cli", settings.toolchain.convex_cli_version}}},
            {"sandbox", {{"requested", settings.sandbox.requested}, {"tier", tier}}},
            {"state", {{"free_bytes", free_bytes}, {"min_free_bytes", settings.min_free_bytes}}},
            {"queue", {{"queued", queued}, {"running", context_.runner.runningCount()}, {"max_queued", settings.max_queued_jobs}}},
            {"draining", draining}});
}

void MetricsHandler::handle(HTTPServerRequest&, HTTPServerResponse& response) {
  Metrics::Now now;
  now.queued = context_.runner.queuedCount();
  now.running = context_.runner.runningCount();
  now.draining = context_.draining && context_.draining->load();
  const std::string text = context_.metrics->render(now);
  response.setStatusAndReason(Poco::Net::HTTPResponse::HTTP_OK);
  response.setContentType("text/plain; version=0.0.4; charset=utf-8");
  response.setContentLength(static_cast<std::streamsize>(text.size()));
  response.sendBuffer(text.data(), text.size());
}

void CreateDeployHandler::handle(HTTPServerRequest& request, HTTPServerResponse& response) {
  const Settings& settings = context_.settings;
  const QueryParameters params(request);
  auto refuse = [&](int status, std::string reason, std::string title, std::string detail,
                    nlohmann::json extra = nlohmann::json::object()) {
    sendProblem(response, Problem{status, std::move(reason), std::move(title), std::move(detail), std::move(extra)});
  };
  if (context_.draining && context_.draining->load()) {
    response.set("Retry-After", "30");
    return refuse(503, "draining", "The agent is shutting down",
                  "the agent is draining after SIGTERM and takes no new deploys; send it to another agent or retry later");
  }
  auto refuseOptions = [&](const OptionsProblem& problem) {
    const char* title = problem.status == 422 ? "The request cannot be carried out" : "Invalid deploy options";
    sendProblem(response, Problem{problem.status, problem.reason, title, problem.detail,
                                  problem.field.empty() ? nlohmann::json::object() : nlohmann::json{{"field", problem.field}}});
  };

  // 1. Options, all checked before a byte of the body is read (a multipart body's JSON options
  //    part is checked again, merged, once it has arrived).
  DeployOptions options;
  if (auto problem = optionsFromQuery(params.all(), options)) return refuseOptions(*problem);
  CallerCredentials credentials;
  credentials.deploy_key = trim(request.get(kDeployKeyHeader, ""));
  credentials.access_token = trim(request.get(kAccessTokenHeader, ""));
  credentials.admin_key = trim(request.get(kAdminKeyHeader, ""));
  const std::string idempotency_key = trim(request.get(kIdempotencyKeyHeader, ""));
  if (request.has(kIdempotencyKeyHeader)) {
    const bool printable = std::all_of(idempotency_key.begin(), idempotency_key.end(),
                                       [](unsigned char c) { return c > 0x20 && c < 0x7f; });
    if (idempotency_key.empty() || idempotency_key.size() > kMaxIdempotencyKeyBytes || !printable) {
      return refuse(400, "invalid_idempotency_key", "Invalid Idempotency-Key",
                    "Idempotency-Key must be 1-" + std::to_string(kMaxIdempotencyKeyBytes) +
                        " printable ASCII characters without spaces, e.g. a UUID",
                    {{"field", kIdempotencyKeyHeader}});
    }
    if (!context_.idempotency) {
      return refuse(422, "idempotency_unavailable", "Idempotency-Key is not available",
                    "this agent keeps no idempotency index", {{"field", kIdempotencyKeyHeader}});
    }
  }
  // A callback host the operator did not allow is refused before anything is received.
  auto callbackProblem = [&]() -> std::optional<OptionsProblem> {
    if (options.callback_url.empty()) return std::nullopt;
    if (auto why = callbackUrlRefusal(options.callback_url, settings.callbacks)) {
      return OptionsProblem{400, "callback_not_allowed", *why, "callback_url"};
    }
    return std::nullopt;
  };
  const bool multipart = isMultipart(request.getContentType());
  if (!multipart) {
    if (auto problem = checkTargeting(options, credentials, !settings.team_token.empty())) {
      return refuseOptions(*problem);
    }
    if (auto problem = keyConflict(options, credentials)) return refuseOptions(*problem);
    if (auto problem = callbackProblem()) return refuseOptions(*problem);
  }
  const uint64_t max_bytes = settings.intake_limits.max_archive_bytes;
  if (request.hasContentLength() && request.getContentLength64() > static_cast<int64_t>(max_bytes)) {
    return refuse(413, "too_large", "The bundle exceeds a limit",
                  "the body is " + std::to_string(request.getContentLength64()) + " bytes; the limit is " +
                      std::to_string(max_bytes),
                  {{"limit", "max_archive_bytes"}});
  }

  auto refuseQueueFull = [&] {
    response.set("Retry-After", "30");
    refuse(503, "queue_full", "Too many deploys queued",
           "the agent already has " + std::to_string(settings.max_queued_jobs) +
               " deploys queued; retry later",
           {{"limit", "max_queued_jobs"}});
  };
  // Before a byte of the upload: receiving and unpacking 100 MB only to answer 503 wastes both.
  if (!context_.runner.hasRoom()) {
    return refuseQueueFull();
  }

  // 2. Intake into a fresh job directory that is removed again on any refusal.
  const std::string id = newDeployId();
  const fs::path job_dir = context_.store.jobDir(id);
  bool accepted = false;
  struct RemoveUnlessAccepted {
    const fs::path& dir;
    const bool& accepted;
    ~RemoveUnlessAccepted() {
      if (!accepted) { std::error_code ignored; fs::remove_all(dir, ignored); }
    }
  } cleanup{job_dir, accepted};

  fs::create_directories(job_dir / "work");
  const fs::path upload = job_dir / "bundle.upload";
  std::string first_bytes;
  std::string bundle_content_type = request.getContentType();
  std::optional<uint64_t> received;
  if (multipart) {
    auto form = receiveMultipart(request, upload, max_bytes);
    if (form.problem) return refuseOptions(*form.problem);
    if (!form.bundle_received) {
      return refuse(413, "too_large", "The bundle exceeds a limit",
                    "the bundle part is larger than the limit of " + std::to_string(max_bytes) + " bytes",
                    {{"limit", "max_archive_bytes"}});
    }
    received = form.bundle_bytes;
    first_bytes = std::move(form.first_bytes);
    bundle_content_type = form.bundle_content_type;
    if (form.options_json) {
      if (auto problem = mergeJsonOptions(*form.options_json, options)) return refuseOptions(*problem);
    }
    if (auto problem = checkTargeting(options, credentials, !settings.team_token.empty())) {
      return refuseOptions(*problem);
    }
    if (auto problem = keyConflict(options, credentials)) return refuseOptions(*problem);
    if (auto problem = callbackProblem()) return refuseOptions(*problem);
  } else {
    received = receiveBody(request.stream(), upload, max_bytes, first_bytes);
  }
  if (!received) {
    return refuse(413, "too_large", "The bundle exceeds a limit",
                  "the body is larger than the limit of " + std::to_string(max_bytes) + " bytes",
                  {{"limit", "max_archive_bytes"}});
  }
  // A connection that dropped mid-upload ends the body early; a tar cut on a block boundary
  // or a zip with its directory intact could still unpack, and would push part of an app.
  if (!multipart && request.hasContentLength() && *received != static_cast<uint64_t>(request.getContentLength64())) {
    return refuse(400, "incomplete_body", "The upload was cut short",
                  "received " + std::to_string(*received) + " of the " +
                      std::to_string(request.getContentLength64()) +
                      " bytes Content-Length announced; nothing was accepted",
                  {{"field", "body"}});
  }
  if (*received == 0) {
    return refuse(400, "empty_body", "Empty body", "the request body must be the bundle archive",
                  {{"field", "body"}});
  }
  // The same key and the same request: the job the first one made. Claimed before intake, so
  // concurrent identical requests make one job.
  struct ReleaseUnlessAccepted {
    IdempotencyIndex* index = nullptr;
    std::string key;
    const bool& accepted;
    ~ReleaseUnlessAccepted() {
      if (index && !accepted) index->release(key);
    }
  } idempotency_claim{nullptr, idempotency_key, accepted};
  if (!idempotency_key.empty()) {
    const auto bundle_sha256 = sha256FileHex(upload);
    if (!bundle_sha256) throw std::runtime_error("cannot read back the upload " + upload.string());
    const std::string fingerprint =
        context_.idempotency->fingerprint(canonicalRequest(options, credentials), *bundle_sha256);
    const auto claim = context_.idempotency->claim(idempotency_key, fingerprint, kIdempotencyWait);
    switch (claim.kind) {
      case IdempotencyIndex::Claim::Kind::kClaimed:
        idempotency_claim.index = context_.idempotency;
        break;
      case IdempotencyIndex::Claim::Kind::kReplay: {
        const auto earlier = context_.store.get(claim.job_id);
        if (!earlier) {
          return refuse(409, "idempotency_key_reused", "Idempotency-Key already used",
                        "this Idempotency-Key made deploy " + claim.job_id + ", which has since been deleted",
                        {{"field", kIdempotencyKeyHeader}});
        }
        const std::string location = "/v1/deploys/" + claim.job_id;
        response.set("Location", location);
        response.set("Idempotent-Replayed", "true");
        return sendJson(response, 200,
                        {{"id", claim.job_id}, {"status", statusName(earlier->status)}, {"location", location}});
      }
      case IdempotencyIndex::Claim::Kind::kConflict:
        return refuse(409, "idempotency_conflict", "Idempotency-Key used for another request",
                      "this Idempotency-Key was used with a different bundle or different options" +
                          (claim.job_id.empty() ? std::string() : " (deploy " + claim.job_id + ")"),
                      {{"field", kIdempotencyKeyHeader}});
      case IdempotencyIndex::Claim::Kind::kBusy:
        response.set("Retry-After", "5");
        return refuse(409, "idempotency_key_in_use", "A request with this Idempotency-Key is being taken in",
                      "another request with this Idempotency-Key is still being taken in; retry", {{"field", kIdempotencyKeyHeader}});
    }
  }
  const auto format = bundle::detectFormat(bundle_content_type, first_bytes);
  if (format == bundle::Format::kUnknown) {
    return refuse(415, "unsupported_format", "Unsupported bundle format",
                  "the body is not a gzip'd tar, tar or zip archive (Content-Type '" +
                      bundle_content_type + "' and the first bytes say neither)",
                  {{"field", "body"}});
  }
  auto extracted = bundle::extractArchive(upload, format, job_dir / "work" / "bundle", settings.intake_limits);
  if (!extracted.ok()) return sendProblem(response, intakeProblem(*extracted.error));
  auto inspected = bundle::inspectApp(extracted.extracted->root, {.npm_registry = settings.npm_registry});
  if (!inspected.ok()) return sendProblem(response, intakeProblem(*inspected.error));

  // 3. Accept: the report exists before the job is queued, so a worker always finds it.
  DeployReport report;
  report.id = id;
  report.target = *options.target;
  // A caller's key names its deployment; the report says so from the start.
  report.deployment_name = options.deployment.empty() ? convex::classifyKey(credentials.deploy_key).deployment_name
                                                      : options.deployment;
  if (!options.self_hosted_url.empty()) report.deployment_url = options.self_hosted_url;
  for (const auto& [name, value] : options.env) report.env_names.push_back(name);
  if (!options.callback_url.empty()) {
    report.callback.emplace();
    report.callback->url = options.callback_url;
  }
  report.created_at_ms = nowUnixMillis();
  report.cli_version = settings.toolchain.convex_cli_version;
  report.sandbox_tier = sandbox::tierName(settings.sandbox.tier);
  report.sandbox_facilities = settings.sandbox.facilities;
  describeEnforcement(settings, report.network);
  if (!settings.egress.proxy) {
    report.warnings.push_back("the job network is the agent's (--job-network=host): npm and the Convex CLI can "
                              "reach any host the agent can");
  }
  if (settings.sandbox.tier == sandbox::Tier::kNone) {
    report.warnings.push_back("the sandbox is off (--sandbox=none): npm and the Convex CLI run with the agent's "
                              "user and see its whole filesystem");
  }
  report.bundle.format = bundle::formatName(format);
  report.bundle.bytes = *received;
  report.bundle.entries = extracted.extracted->entries;
  report.bundle.unpacked_bytes = extracted.extracted->unpacked_bytes;
  report.bundle.removed = inspected.app->removed;
  // Accepting a job whose report cannot be stored would lose it at the next restart.
  if (!context_.store.put(report)) {
    context_.store.discard(id);
    return refuse(507, "state_unwritable", "The agent cannot store the deploy",
                  "the agent could not write this deploy's report to its state directory (disk "
                  "full or read-only?); nothing was accepted");
  }

  DeployJob job;
  job.id = id;
  job.target = *options.target;
  job.deployment_name = options.deployment;
  job.deploy_key = credentials.deploy_key;
  job.access_token = credentials.access_token;
  job.admin_key = credentials.admin_key;
  job.project_id = options.project_id;
  job.create_project = options.create_project;
  job.ttl_seconds = options.ttl_seconds;
  job.preview = options.preview;
  job.self_hosted_url = options.self_hosted_url;
  job.env = options.env;
  job.job_dir = job_dir;
  job.app_dir = inspected.app->app_root;
  job.typecheck = options.typecheck;
  if (!context_.runner.submit(std::move(job))) {
    context_.store.discard(id);
    return refuseQueueFull();
  }
  accepted = true;
  if (context_.metrics) context_.metrics->bytesReceived(*received);
  if (idempotency_claim.index) {
    std::string error;
    if (!context_.idempotency->accept(idempotency_key, id, error)) {
      spdlog::error("deploy {}: its Idempotency-Key could not be stored ({}); a retry after a restart would make "
                    "another deploy", id, error);
    }
  }
  spdlog::info("deploy {} accepted: target {}, {} bytes {}", id, targetName(*options.target), *received,
               bundle::formatName(format));
  const std::string location = "/v1/deploys/" + id;
  response.set("Location", location);
  sendJson(response, 202, {{"id", id}, {"status", "queued"}, {"location", location}});
}

void GetDeployHandler::handle(HTTPServerRequest& request, HTTPServerResponse& response) {
  const QueryParameters params(request);
  int wait_seconds = 0;
  if (params.has("wait")) {
    try {
      size_t used = 0;
      wait_seconds = std::stoi(params.get("wait"), &used);
      if (used != params.get("wait").size()) wait_seconds = -1;
    } catch (const std::exception&) {
      wait_seconds = -1;
    }
    if (wait_seconds < 0 || wait_seconds > kMaxWaitSeconds) {
      return sendProblem(response, {400, "invalid_wait", "Invalid wait",
                                    "wait must be a whole number of seconds from 0 to " +
                                        std::to_string(kMaxWaitSeconds),
                                    {{"field", "wait"}}});
    }
  }
  // until=finished (default): the report is terminal; until=callback: also its callback is
  // delivered or has failed for good (a job without callback_url: as finished).
  const std::string until = params.get("until", "finished");
  if (until != "finished" && until != "callback") {
    return sendProblem(response, {400, "invalid_until", "Invalid until", "until must be finished or callback",
                                  {{"field", "until"}}});
  }
  std::optional<WaitingPlace> place;
  if (wait_seconds > 0) {
    place.emplace();
    // The answer is the current report either way; the client polls again.
    if (!place->held()) wait_seconds = 0;
  }
  auto settled = [&until](const DeployReport& report) {
    if (!isTerminal(report.status)) return false;
    return until != "callback" || !report.callback || report.callback->status != "pending";
  };
  auto report = wait_seconds > 0 ? context_.store.waitUntil(id_, settled, std::chrono::seconds(wait_seconds))
                                 : context_.store.get(id_);
  if (!report) {
    return sendProblem(response, deployNotFound(id_));
  }
  sendJson(response, 200, report->toJson());
}

void GetDeployLogHandler::handle(HTTPServerRequest& request, HTTPServerResponse& response) {
  const QueryParameters params(request);
  const std::string phase = params.get("phase", "push");
  if (phase != "push" && phase != "install") {
    return sendProblem(response, {400, "invalid_phase", "Invalid phase", "phase must be push or install",
                                  {{"field", "phase"}}});
  }
  auto report = context_.store.get(id_);
  if (!report) {
    return sendProblem(response, deployNotFound(id_));
  }
  const fs::path path = context_.store.jobDir(id_) / (phase == "push" ? "cli.log" : "install.log");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return sendProblem(response, {404, "log_not_available", "No output yet",
                                  "deploy " + id_ + " has no " + phase + " output (it is " +
                                      statusName(report->status) + ", phase " + report->phase + ")",
                                  {}});
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  sendText(response, 200, text);
}

void CancelDeployHandler::handle(HTTPServerRequest&, HTTPServerResponse& response) {
  auto report = context_.store.get(id_);
  if (!report) return sendProblem(response, deployNotFound(id_));
  if (isTerminal(report->status)) return sendJson(response, 200, report->toJson());
  const auto outcome = context_.runner.cancel(id_);
  if (outcome == JobRunner::CancelOutcome::kStopping) {
    spdlog::info("deploy {}: cancel requested while {}", id_, report->phase);
  }
  // Stopping kills process groups and cancels HTTP calls in flight: it takes well under a second.
  report = context_.store.waitForTerminal(id_, std::chrono::seconds(10));
  if (!report) return sendProblem(response, deployNotFound(id_));
  sendJson(response, isTerminal(report->status) ? 200 : 202, report->toJson());
}

namespace {

std::atomic<size_t> open_event_streams{0};

// Holds one of the --max-event-streams places, if one is free, and counts it in /metrics.
class EventStreamPlace {
 public:
  EventStreamPlace(size_t max, Metrics* metrics) : metrics_(metrics) {
    size_t now = open_event_streams.load();
    while (now < max && !open_event_streams.compare_exchange_weak(now, now + 1)) {
    }
    held_ = now < max;
    if (held_ && metrics_) metrics_->sseStreamOpened();
  }
  ~EventStreamPlace() {
    if (!held_) return;
    open_event_streams.fetch_sub(1);
    if (metrics_) metrics_->sseStreamClosed();
  }
  EventStreamPlace(const EventStreamPlace&) = delete;
  EventStreamPlace& operator=(const EventStreamPlace&) = delete;
  bool held() const { return held_; }

 private:
  Metrics* metrics_;
  bool held_ = false;
};

constexpr size_t kEventsPerRead = 500;

}  // namespace

void DeployEventsHandler::handle(HTTPServerRequest& request, HTTPServerResponse& response) {
  if (!context_.store.get(id_)) return sendProblem(response, deployNotFound(id_));
  const QueryParameters params(request);
  std::string last = request.get("Last-Event-ID", params.get("last_event_id"));
  uint64_t after = 0;
  if (!last.empty()) {
    const bool digits = last.size() <= 18 && std::all_of(last.begin(), last.end(), ::isdigit);
    if (!digits) {
      return sendProblem(response, {400, "invalid_last_event_id", "Invalid Last-Event-ID",
                                    "Last-Event-ID must be the id of an event of this stream (a whole number)",
                                    {{"field", "Last-Event-ID"}}});
    }
    after = std::stoull(last);
  }
  EventStreamPlace place(context_.settings.max_event_streams, context_.metrics);
  if (!place.held()) {
    response.set("Retry-After", "5");
    return sendProblem(response, {503, "too_many_streams", "Too many event streams",
                                  "the agent already serves " + std::to_string(context_.settings.max_event_streams) +
                                      " event streams; poll GET /v1/deploys/" + id_ + "?wait= or retry later",
                                  {{"limit", "max_event_streams"}}});
  }
  response.setChunkedTransferEncoding(true);
  response.setContentType("text/event-stream");
  response.set("Cache-Control", "no-cache");
  response.set("X-Accel-Buffering", "no");  // proxies must not hold events back
  std::ostream& out = response.send();
  out << "retry: 2000\n\n";
  out.flush();
  while (out) {
    bool finished = false;
    const auto events = context_.store.eventsAfter(id_, after, kEventsPerRead, context_.settings.event_heartbeat, finished);
    if (events.empty()) {
      if (finished || !context_.store.get(id_)) break;
      out << ": keep-alive\n\n";
    }
    for (const auto& event : events) {
      out << "id: " << event.id << "\nevent: " << event.type << "\ndata: "
          << event.data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n\n";
      after = event.id;
    }
    out.flush();
    if (finished) break;
  }
}

void DeleteDeployHandler::handle(HTTPServerRequest&, HTTPServerResponse& response) {
  switch (context_.store.remove(id_)) {
    case JobStore::RemoveResult::kNotFound:
      return sendProblem(response, deployNotFound(id_));
    case JobStore::RemoveResult::kNotFinished:
      return sendProblem(response, {409, "deploy_not_finished", "The deploy is not finished",
                                    "deploy " + id_ + " is still queued or running; cancel it first "
                                    "(POST /v1/deploys/" + id_ + "/cancel)",
                                    {}});
    case JobStore::RemoveResult::kRemoved:
      spdlog::info("deploy {} removed on request", id_);
      response.setStatusAndReason(Poco::Net::HTTPResponse::HTTP_NO_CONTENT);
      response.setContentLength(0);
      response.send();
      return;
  }
}

namespace {

constexpr size_t kDefaultListLimit = 20;
constexpr size_t kMaxListLimit = 100;

// A cursor is "<created_at_ms>.<id>" of the last item of the previous page: stable while jobs
// come and go, since it names a position, not an offset.
std::string cursorAfter(const DeployReport& report) {
  return std::to_string(report.created_at_ms) + "." + report.id;
}

std::optional<JobStore::ListPosition> parseCursor(const std::string& cursor) {
  const size_t dot = cursor.find('.');
  if (dot == std::string::npos || dot == 0 || dot > 15) return std::nullopt;
  const std::string millis = cursor.substr(0, dot);
  if (!std::all_of(millis.begin(), millis.end(), ::isdigit)) return std::nullopt;
  JobStore::ListPosition position{std::stoll(millis), cursor.substr(dot + 1)};
  if (!isValidDeployId(position.id)) return std::nullopt;
  return position;
}

nlohmann::json summaryOf(const DeployReport& report) {
  const nlohmann::json full = report.toJson();
  nlohmann::json summary;
  for (const char* field : {"id", "status", "phase", "target", "deployment", "created_at", "finished_at"}) {
    summary[field] = full[field];
  }
  summary["error"] = report.error ? nlohmann::json{{"reason", report.error->reason}, {"retryable", report.error->retryable}}
                                  : nlohmann::json();
  return summary;
}

}  // namespace

void ListDeploysHandler::handle(HTTPServerRequest& request, HTTPServerResponse& response) {
  const QueryParameters params(request);
  for (const auto& [name, value] : params.all()) {
    if (name != "status" && name != "limit" && name != "cursor") {
      return sendProblem(response, {400, "unknown_parameter", "Unknown query parameter",
                                    "'" + name + "' is not a parameter of GET /v1/deploys (status, limit, cursor)",
                                    {{"field", name}}});
    }
  }
  std::optional<DeployStatus> status;
  if (params.has("status")) {
    status = parseStatus(params.get("status"));
    if (!status) {
      return sendProblem(response, {400, "invalid_status", "Invalid status",
                                    "status must be queued, running, succeeded, failed or cancelled",
                                    {{"field", "status"}}});
    }
  }
  size_t limit = kDefaultListLimit;
  if (params.has("limit")) {
    const std::string text = params.get("limit");
    const bool digits = !text.empty() && text.size() <= 3 && std::all_of(text.begin(), text.end(), ::isdigit);
    limit = digits ? std::stoul(text) : 0;
    if (limit < 1 || limit > kMaxListLimit) {
      return sendProblem(response, {400, "invalid_limit", "Invalid limit",
                                    "limit must be a whole number from 1 to " + std::to_string(kMaxListLimit),
                                    {{"field", "limit"}}});
    }
  }
  std::optional<JobStore::ListPosition> after;
  if (params.has("cursor")) {
    after = parseCursor(params.get("cursor"));
    if (!after) {
      return sendProblem(response, {400, "invalid_cursor", "Invalid cursor",
                                    "cursor must be a next_cursor from a previous page", {{"field", "cursor"}}});
    }
  }
  // One more than asked tells whether another page follows.
  auto page = context_.store.list(status, limit + 1, after);
  const bool more = page.size() > limit;
  if (more) page.resize(limit);
  nlohmann::json items = nlohmann::json::array();
  for (const auto& report : page) items.push_back(summaryOf(report));
  sendJson(response, 200,
           {{"items", std::move(items)}, {"next_cursor", more ? nlohmann::json(cursorAfter(page.back())) : nlohmann::json()}});
}

namespace {

// Counts every answer by route and status code for /metrics, whatever handler gave it.
class CountedHandler : public Poco::Net::HTTPRequestHandler {
 public:
  CountedHandler(Poco::Net::HTTPRequestHandler* inner, std::string route, Metrics& metrics)
      : inner_(inner), route_(std::move(route)), metrics_(metrics) {}
  void handleRequest(HTTPServerRequest& request, HTTPServerResponse& response) override {
    inner_->handleRequest(request, response);
    metrics_.requestAnswered(route_, static_cast<int>(response.getStatus()));
  }

 private:
  std::unique_ptr<Poco::Net::HTTPRequestHandler> inner_;
  std::string route_;
  Metrics& metrics_;
};

}  // namespace

Poco::Net::HTTPRequestHandler* RouteFactory::createRequestHandler(const HTTPServerRequest& request) {
  std::string route = "unmatched";
  Poco::Net::HTTPRequestHandler* handler = dispatch(request, route);
  if (!context_.metrics) return handler;
  return new CountedHandler(handler, std::move(route), *context_.metrics);
}

Poco::Net::HTTPRequestHandler* RouteFactory::dispatch(const HTTPServerRequest& request, std::string& route) {
  std::string path;
  std::optional<std::string> repeated;
  try {
    Poco::URI uri(request.getURI());
    repeated = firstRepeatedParameter(uri.getQueryParameters());  // a bad escape throws here
    path = uri.getPath();
  } catch (const Poco::Exception& e) {
    return new FixedProblemHandler({400, "invalid_uri", "Invalid request URI", e.displayText(), {{"field", "uri"}}});
  }
  if (repeated) {
    return new FixedProblemHandler({400, "duplicate_parameter", "Repeated query parameter",
                                    "'" + *repeated + "' is given more than once; give it once",
                                    {{"field", *repeated}}});
  }
  const std::string& method = request.getMethod();
  auto methodNotAllowed = [&](const std::string& allowed) {
    return new FixedProblemHandler({405, "method_not_allowed", "Method not allowed",
                                    method + " is not allowed on " + path + "; use " + allowed, {}},
                                   allowed);
  };

  if (path == "/healthz") {
    route = path;
    return method == "GET" ? static_cast<Poco::Net::HTTPRequestHandler*>(new HealthHandler(context_))
                           : methodNotAllowed("GET");
  }
  if (path == "/readyz") {
    route = path;
    return method == "GET" ? static_cast<Poco::Net::HTTPRequestHandler*>(new ReadyHandler(context_))
                           : methodNotAllowed("GET");
  }
  if (path == "/metrics" && context_.metrics) {
    route = path;
    return method == "GET" ? static_cast<Poco::Net::HTTPRequestHandler*>(new MetricsHandler(context_))
                           : methodNotAllowed("GET");
  }
  if (!authorized(request, context_.settings.api_token)) {
    return new FixedProblemHandler({401, "unauthorized", "Unauthorized",
                                    "send the agent's API token as 'Authorization: Bearer <token>'", {}});
  }
  if (path == "/v1/deploys") {
    route = path;
    if (method == "POST") return new CreateDeployHandler(context_);
    if (method == "GET") return new ListDeploysHandler(context_);
    return methodNotAllowed("GET, POST");
  }
  const std::string prefix = "/v1/deploys/";
  if (path.rfind(prefix, 0) == 0) {
    const std::string rest = path.substr(prefix.size());
    const size_t slash = rest.find('/');
    const std::string id = rest.substr(0, slash);
    const std::string sub = slash == std::string::npos ? "" : rest.substr(slash + 1);
    if (isValidDeployId(id)) {
      route = "/v1/deploys/{id}" + (sub.empty() ? std::string() : "/" + sub);
      if (sub.empty()) {
        if (method == "GET") return new GetDeployHandler(context_, id);
        if (method == "DELETE") return new DeleteDeployHandler(context_, id);
        return methodNotAllowed("GET, DELETE");
      }
      if (sub == "log") return method == "GET" ? static_cast<Poco::Net::HTTPRequestHandler*>(new GetDeployLogHandler(context_, id))
                                               : methodNotAllowed("GET");
      if (sub == "events") return method == "GET" ? static_cast<Poco::Net::HTTPRequestHandler*>(new DeployEventsHandler(context_, id))
                                                  : methodNotAllowed("GET");
      if (sub == "cancel") return method == "POST" ? static_cast<Poco::Net::HTTPRequestHandler*>(new CancelDeployHandler(context_, id))
                                                   : methodNotAllowed("POST");
    }
  }
  return new FixedProblemHandler({404, "not_found", "Not found", "no route for " + method + " " + path, {}});
}

}  // namespace da::api

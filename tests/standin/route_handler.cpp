#include "standin/route_handler.h"

#include <algorithm>

#include <chrono>
#include <sstream>

#include <Poco/Exception.h>
#include <Poco/InflatingStream.h>
#include <Poco/Logger.h>
#include <Poco/Net/HTTPServerRequestImpl.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/String.h>
#include <Poco/URI.h>

#include "standin/brotli_decode.h"
#include "standin/json_fields.h"

namespace standin {
namespace {

Poco::Logger& requestLogger() { return Poco::Logger::get("convex-standin"); }

std::string defaultCodeForStatus(int status) {
  switch (status) {
    case 400: return "BadRequest";
    case 401: return "Unauthenticated";
    case 403: return "Forbidden";
    case 404: return "NotFound";
    case 409: return "Conflict";
    case 429: return "RateLimited";
    case 503: return "Overloaded";
    default: return status >= 500 ? "InternalServerError" : "InjectedFault";
  }
}

// Reads the whole body even when the route ignores it, so the connection stays usable.
std::string readRawBody(Poco::Net::HTTPServerRequest& request) {
  if (request.hasContentLength() &&
      request.getContentLength64() > static_cast<Poco::Int64>(kMaxBodyBytes)) {
    throw ApiError(413, "PayloadTooLarge",
                   "The request body exceeds " + std::to_string(kMaxBodyBytes) + " bytes");
  }
  std::string body;
  std::istream& in = request.stream();
  char chunk[64 * 1024];
  while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
    body.append(chunk, static_cast<std::size_t>(in.gcount()));
    if (body.size() > kMaxBodyBytes) {
      throw ApiError(413, "PayloadTooLarge",
                     "The request body exceeds " + std::to_string(kMaxBodyBytes) + " bytes");
    }
  }
  return body;
}

// gzip and deflate, as the backend's tower-http RequestDecompressionLayer accepts them too.
std::string inflate(const std::string& raw, Poco::InflatingStreamBuf::StreamType type,
                    const std::string& encoding) {
  std::istringstream compressed(raw);
  Poco::InflatingInputStream in(compressed, type);
  std::string body;
  char chunk[64 * 1024];
  try {
    while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
      body.append(chunk, static_cast<std::size_t>(in.gcount()));
      if (body.size() > kMaxBodyBytes) {
        throw ApiError(413, "PayloadTooLarge", "The decompressed body is too large");
      }
    }
  } catch (const Poco::Exception& e) {
    throw badRequest("Could not decompress the " + encoding + " body: " + e.displayText());
  }
  return body;
}

std::string decodeBody(const Poco::Net::HTTPServerRequest& request, std::string raw) {
  const std::string encoding = Poco::toLower(Poco::trim(request.get("Content-Encoding", "")));
  if (encoding.empty() || encoding == "identity") return raw;
  if (encoding == "gzip") return inflate(raw, Poco::InflatingStreamBuf::STREAM_GZIP, encoding);
  // HTTP's "deflate" is zlib-wrapped (RFC 9110 8.4.1.2).
  if (encoding == "deflate") return inflate(raw, Poco::InflatingStreamBuf::STREAM_ZLIB, encoding);
  if (encoding != "br") {
    throw ApiError(415, "UnsupportedContentEncoding",
                   "Unsupported Content-Encoding `" + encoding + "`; br, gzip and deflate are accepted");
  }
  try {
    return decodeBrotli(raw, kMaxBodyBytes);
  } catch (const DecodedBodyTooLarge& e) {
    throw ApiError(413, "PayloadTooLarge", std::string("The decompressed body is too large: ") +
                                               e.what());
  } catch (const InvalidBrotliStream& e) {
    throw badRequest(std::string("Could not decompress the br body: ") + e.what());
  }
}

// Ends the connection with a TCP reset and no response, as a crashed or cut-off server would.
void dropConnection(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) {
  response.setKeepAlive(false);
  auto* impl = dynamic_cast<Poco::Net::HTTPServerRequestImpl*>(&request);
  if (!impl) return;
  Poco::Net::StreamSocket& socket = impl->socket();
  socket.setLinger(true, 0);
  socket.close();
}

void sendReply(Poco::Net::HTTPServerResponse& response, const Reply& reply) {
  const std::string body = reply.body.is_null() ? std::string() : reply.body.dump();
  response.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(reply.status));
  if (!body.empty()) response.setContentType("application/json");
  if (!reply.retry_after.empty()) response.set("Retry-After", reply.retry_after);
  response.setContentLength(static_cast<std::streamsize>(body.size()));
  response.sendBuffer(body.data(), body.size());
}


}  // namespace

std::string authorizationCredentials(const Poco::Net::HTTPServerRequest& request,
                                     const std::string& scheme) {
  const std::string header = Poco::trim(request.get("Authorization", ""));
  if (header.size() <= scheme.size() ||
      Poco::icompare(header.substr(0, scheme.size()), scheme) != 0 ||
      header[scheme.size()] != ' ') {
    return {};
  }
  return Poco::trim(header.substr(scheme.size() + 1));
}

nlohmann::json Exchange::jsonBody() const { return parseJsonObject(body); }

void RouteHandler::handleRequest(Poco::Net::HTTPServerRequest& request,
                                 Poco::Net::HTTPServerResponse& response) {
  const auto started = std::chrono::steady_clock::now();
  Exchange exchange{.request = request, .method = request.getMethod(), .params = params_};

  const std::optional<Reply> reply = respond(exchange, response);
  const int status = reply ? reply->status : 0;
  // Logged before the client can see the answer (or the reset), so a test that asks
  // /_standin/requests right after its call finds the call there.
  if (!isControlRoute()) {
    state_.recordRequest(
        {exchange.method, exchange.path, exchange.deployment, status, exchange.log_details});
  }
  if (reply) {
    try {
      sendReply(response, *reply);
    } catch (const std::exception& error) {
      requestLogger().warning("could not send the response to " + exchange.path + ": " +
                              error.what());
    }
  } else {
    dropConnection(exchange.request, response);
  }
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  std::ostringstream line;
  line << exchange.method << ' ' << exchange.path << " -> "
       << (reply ? std::to_string(status) : std::string("dropped"));
  if (exchange.deployment) line << " [" << *exchange.deployment << ']';
  line << ' ' << elapsed.count() << "ms";
  requestLogger().information(line.str());
}

namespace {

// The reply for the exception being handled: an ApiError's own, anything else a 500.
Reply replyForCurrentException(Poco::Net::HTTPServerResponse& response) {
  try {
    throw;
  } catch (const ApiError& error) {
    // After a 413 the body may be partly unread, so the connection cannot carry another request.
    if (error.status() == 413) response.setKeepAlive(false);
    return Reply{error.status(), error.body()};
  } catch (const std::exception& error) {
    return Reply{500, {{"code", "InternalServerError"}, {"message", error.what()}}};
  } catch (...) {
    return Reply{500, {{"code", "InternalServerError"}, {"message", "an exception of unknown type"}}};
  }
}

}  // namespace

std::optional<Reply> RouteHandler::respond(Exchange& exchange,
                                           Poco::Net::HTTPServerResponse& response) {
  try {
    try {
      exchange.path = Poco::URI(exchange.request.getURI()).getPath();
    } catch (const Poco::SyntaxException&) {
      throw badRequest("The request target is not a valid URI");
    }
    std::string raw_body = readRawBody(exchange.request);
    nameDeploymentFromCredentials(exchange);

    const auto fault =
        isControlRoute() ? std::nullopt : state_.takeFault(exchange.method, exchange.path);
    if (fault) exchange.log_details["fault"] = true;
    if (fault && fault->after_handling) {
      // The route does its work (a project really gets created), then the client sees the
      // fault: the ambiguous outcome of a timeout or 5xx after the server committed.
      const Reply handled = handleCatching(exchange, std::move(raw_body), response);
      exchange.log_details["handled_status"] = handled.status;
      auto reply = faultReply(exchange, *fault);
      if (fault->drop_connection) return std::nullopt;
      return reply ? *reply : handled;
    }
    if (fault) {
      if (auto reply = faultReply(exchange, *fault); reply || fault->drop_connection) {
        return reply;
      }
    }
    return handleCatching(exchange, std::move(raw_body), response);
  } catch (...) {
    return replyForCurrentException(response);
  }
}

Reply RouteHandler::handleCatching(Exchange& exchange, std::string raw_body,
                                   Poco::Net::HTTPServerResponse& response) {
  try {
    exchange.body = decodeBody(exchange.request, std::move(raw_body));
    return handle(exchange);
  } catch (...) {
    return replyForCurrentException(response);
  }
}

// Applies a fault's delay, then drops the connection (nullopt) or answers its status; nullopt
// without a drop means "serve normally".
std::optional<Reply> RouteHandler::faultReply(Exchange& exchange, const Fault& fault) {
  if (fault.delay_ms > 0) state_.pause(std::chrono::milliseconds(fault.delay_ms));
  if (fault.drop_connection) return std::nullopt;  // handleRequest drops it once logged
  if (!fault.status) return std::nullopt;
  const int status = *fault.status;
  return Reply{status,
               {{"code", fault.code.empty() ? defaultCodeForStatus(status) : fault.code},
                {"message", fault.message.empty() ? "Injected by the Convex stand-in"
                                                  : fault.message}},
               fault.retry_after};
}

// Lets the log name the deployment even when a fault answers before the route authenticates.
void RouteHandler::nameDeploymentFromCredentials(Exchange& exchange) const {
  for (const char* scheme : {"Convex", "Bearer"}) {
    const std::string key = authorizationCredentials(exchange.request, scheme);
    if (const auto deployment = key.empty() ? std::nullopt : state_.deploymentForKey(key)) {
      exchange.deployment = deployment->name;
    }
  }
}

AccessToken RouteHandler::requireToken(Exchange& exchange,
                                       const std::vector<TokenKind>& accepted) const {
  const std::string presented = authorizationCredentials(exchange.request, "Bearer");
  if (presented.empty()) {
    throw ApiError(401, "Unauthenticated",
                   "Missing access token: send `Authorization: Bearer <access token>`");
  }
  const auto token = state_.accessToken(presented);
  if (!token) throw ApiError(401, "Unauthenticated", "The provided access token is not valid");
  exchange.log_details["auth"] = tokenKindName(token->kind);
  if (std::find(accepted.begin(), accepted.end(), token->kind) == accepted.end()) {
    throw ApiError(403, "NotAllowed",
                   std::string("You do not have permission to perform this action (") +
                       tokenKindName(token->kind) + " is not accepted here)");
  }
  return *token;
}

Project RouteHandler::requireProject(const AccessToken& caller, int64_t project_id) const {
  const auto project = state_.findProject(project_id);
  if (!project || (caller.project_id && *caller.project_id != project_id)) {
    throw ApiError(404, "ProjectNotFound", "The requested project does not exist");
  }
  return *project;
}

HostedDeployment RouteHandler::requireDeployment(Exchange& exchange, const AccessToken& caller,
                                                 const std::string& name) const {
  const auto deployment = state_.findDeployment(name);
  if (!deployment || deployment->self_hosted ||
      (caller.project_id && *caller.project_id != deployment->project_id)) {
    throw ApiError(404, "DeploymentNotFound",
                   "The requested deployment " + name + " does not exist");
  }
  exchange.deployment = deployment->name;
  return *deployment;
}

HostedDeployment RouteHandler::requireAdminKey(Exchange& exchange,
                                               const nlohmann::json* body,
                                               const char* required_action) const {
  const ApiError bad_key(401, "BadAdminKey", "The provided admin key was invalid for this instance");
  std::string key = authorizationCredentials(exchange.request, "Convex");
  std::optional<std::string> body_key;
  if (body) body_key = optionalString(*body, "adminKey");
  if (key.empty() && body_key) key = *body_key;
  if (key.empty()) {
    throw ApiError(401, "Unauthenticated",
                   "Missing admin key: send `Authorization: Convex <admin or deploy key>`");
  }

  // Every deployment shares this origin; a Host of `<deployment>.<anything>` names one.
  std::string host = exchange.request.getHost();
  host = host.substr(0, host.find_first_of(".:"));
  using Outcome = DeploymentCredential::Outcome;
  const DeploymentCredential credential = state_.resolveDeploymentCredential(key, host);
  if (!credential.deployment_name.empty()) exchange.deployment = credential.deployment_name;
  if (!credential.kind.empty()) exchange.log_details["auth"] = credential.kind;
  // The backend's keybroker and roles checks (convex-cli-protocol.md, error bodies).
  const ApiError invalid_deploy_key(
      403, "BadDeployKey",
      "The provided deploy key was invalid for deployment '" + credential.deployment_name +
          "'. Double check that the environment this key was generated for matches "
          "the desired deployment.");
  switch (credential.outcome) {
    case Outcome::kOk: break;
    case Outcome::kUnknown: throw bad_key;
    case Outcome::kRevoked:
    case Outcome::kExpired: throw invalid_deploy_key;
    case Outcome::kDeploymentGone:
      throw ApiError(404, "DeploymentNotFound",
                     "The requested deployment " + credential.deployment_name + " does not exist");
    case Outcome::kAmbiguous:
      throw ApiError(400, "AmbiguousDeployment",
                     "This credential reaches several deployments and they all share this "
                     "origin; use a deploy key, or a Host of `<deployment>.localhost`");
  }
  const HostedDeployment& deployment = *credential.deployment;
  // The CLI repeats the key in the body; a body key for another deployment is a client bug.
  if (body_key && *body_key != key) {
    const auto body_deployment = state_.deploymentForKey(*body_key);
    if (!body_deployment || body_deployment->name != deployment.name) throw bad_key;
  }
  exchange.deployment = deployment.name;

  if (required_action && credential.allowed_actions &&
      std::find(credential.allowed_actions->begin(), credential.allowed_actions->end(),
                required_action) == credential.allowed_actions->end()) {
    throw ApiError(403, "OperationNotPermitted",
                   std::string("You do not have permission to perform this operation (") +
                       required_action + ").");
  }
  return deployment;
}

Reply UnmatchedRouteHandler::handle(Exchange& exchange) {
  if (path_exists_) {
    throw ApiError(405, "MethodNotAllowed",
                   "Method " + exchange.method + " is not allowed on " + exchange.path);
  }
  throw ApiError(404, "NotFound", "No route for " + exchange.method + " " + exchange.path);
}

}  // namespace standin

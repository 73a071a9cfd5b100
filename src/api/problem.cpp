#include "api/problem.h"

namespace da::api {

void sendProblem(Poco::Net::HTTPServerResponse& response, const Problem& problem) {
  nlohmann::json body = problem.extra;
  body["type"] = "urn:deploy-agent:problem:" + problem.reason;
  body["title"] = problem.title;
  body["status"] = problem.status;
  body["detail"] = problem.detail;
  body["reason"] = problem.reason;
  // Details quote tools' output, which need not be UTF-8: replace such bytes, never throw.
  const std::string text = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  // A refusal may come before the request body was read; closing the connection keeps an
  // unread body from being parsed as the next request.
  response.setKeepAlive(false);
  response.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(problem.status));
  response.setContentType("application/problem+json");
  response.setContentLength(static_cast<std::streamsize>(text.size()));
  response.send() << text;
}

void sendJson(Poco::Net::HTTPServerResponse& response, int status, const nlohmann::json& body) {
  const std::string text = body.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
  response.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
  response.setContentType("application/json");
  response.setContentLength(static_cast<std::streamsize>(text.size()));
  response.send() << text;
}

void sendText(Poco::Net::HTTPServerResponse& response, int status, const std::string& body) {
  response.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
  response.setContentType("text/plain; charset=utf-8");
  response.setContentLength(static_cast<std::streamsize>(body.size()));
  response.send() << body;
}

}  // namespace da::api

// RFC 9457 problem details: every refusal names the rule it broke and, where one is to
// blame, the field, bundle entry or limit.
#pragma once

#include <string>

#include <Poco/Net/HTTPServerResponse.h>
#include <nlohmann/json.hpp>

namespace da::api {

struct Problem {
  int status = 400;
  std::string reason;   // stable snake_case code, also the last segment of `type`
  std::string title;
  std::string detail;
  nlohmann::json extra = nlohmann::json::object();  // field / entry / limit / ...
};

void sendProblem(Poco::Net::HTTPServerResponse& response, const Problem& problem);
void sendJson(Poco::Net::HTTPServerResponse& response, int status, const nlohmann::json& body);
void sendText(Poco::Net::HTTPServerResponse& response, int status, const std::string& body);

}  // namespace da::api

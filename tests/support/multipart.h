// A multipart/form-data body, as a client of POST /v1/deploys sends the bundle with its options.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace testsupport {

struct FormPart {
  std::string name;
  std::string filename;      // empty: a plain field
  std::string content_type;  // empty: none
  std::string body;
};

// Returns {Content-Type header value, body}.
inline std::pair<std::string, std::string> multipartBody(const std::vector<FormPart>& parts) {
  const std::string boundary = "da-test-boundary-7f3c2a9e";
  std::string body;
  for (const auto& part : parts) {
    body += "--" + boundary + "\r\n";
    body += "Content-Disposition: form-data; name=\"" + part.name + "\"";
    if (!part.filename.empty()) body += "; filename=\"" + part.filename + "\"";
    body += "\r\n";
    if (!part.content_type.empty()) body += "Content-Type: " + part.content_type + "\r\n";
    body += "\r\n" + part.body + "\r\n";
  }
  body += "--" + boundary + "--\r\n";
  return {"multipart/form-data; boundary=" + boundary, body};
}

}  // namespace testsupport

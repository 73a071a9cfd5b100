#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace da {

// Every piece between separators, empty ones included: "a//b" -> {"a", "", "b"}. The views
// point into `text`, which must outlive them.
inline std::vector<std::string_view> splitOn(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t found = text.find(separator, start);
    parts.push_back(text.substr(start, found == std::string_view::npos ? std::string_view::npos : found - start));
    if (found == std::string_view::npos) return parts;
    start = found + 1;
  }
}

// ASCII lower case, as hosts, header names and schemes compare; never locale-dependent.
inline std::string asciiLower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace da

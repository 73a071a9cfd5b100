#pragma once

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

}  // namespace da

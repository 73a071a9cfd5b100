#include "util/ids.h"

#include <array>
#include <cstdio>
#include <ctime>
#include <random>

namespace da {

std::string newDeployId() {
  std::random_device random;  // reads the kernel's random source on Linux
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "dep_";
  for (int i = 0; i < 24; ++i) id.push_back(kHex[random() & 0xF]);
  return id;
}

bool isValidDeployId(std::string_view id) {
  if (id.size() != 28 || id.substr(0, 4) != "dep_") return false;
  for (char c : id.substr(4)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

int64_t nowUnixMillis() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string formatRfc3339(int64_t unix_millis) {
  std::time_t seconds = static_cast<std::time_t>(unix_millis / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  std::array<char, 40> buffer{};
  std::snprintf(buffer.data(), buffer.size(), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
                utc.tm_sec, static_cast<int>(unix_millis % 1000));
  return buffer.data();
}

bool constantTimeEquals(std::string_view a, std::string_view b) {
  // Lengths are not secret; the bytes are compared without an early exit.
  if (a.size() != b.size() || a.empty()) return false;
  unsigned char difference = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return difference == 0;
}

}  // namespace da

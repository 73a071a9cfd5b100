// Keeps secrets out of everything the agent writes: logs, reports, stored CLI output and
// error bodies. Known secret values are replaced wherever they appear, and anything shaped
// like a Convex key is replaced even when the agent never saw its value (a CLI or npm
// message can echo a key the bundle carried).
#pragma once

#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace da {

inline constexpr std::string_view kRedacted = "[REDACTED]";

class Redactor {
 public:
  Redactor() = default;
  Redactor(const Redactor& other);
  Redactor& operator=(const Redactor& other);

  // Values shorter than 6 characters are not registered: replacing them would shred ordinary text.
  void addSecret(std::string value);
  std::string redact(std::string_view text) const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> secrets_;
};

// Only the shape-based part: `type:name|secret` keys, a long secret after a bar whose key
// name was cut off, and Bearer/Convex values of Authorization headers. Runs in time linear in
// the input without recursion, because it sees every chunk of untrusted npm and CLI output.
std::string redactKeyShapes(std::string_view text);

}  // namespace da

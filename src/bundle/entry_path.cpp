#include "bundle/entry_path.h"
#include "util/strings.h"

#include <cctype>
#include <vector>

#include "bundle/refusal.h"
#include "bundle/utf8_names.h"

namespace da::bundle::detail {
namespace {

bool hasControlCharacter(std::string_view path) {
  for (unsigned char c : path) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

// `C:/x` or `C:\x`: harmless bytes on POSIX, but an absolute path to any Windows tool that
// later touches the tree, and never part of a legitimate app bundle.
bool hasDriveLetter(std::string_view path) {
  return path.size() >= 3 && std::isalpha(static_cast<unsigned char>(path[0])) &&
         path[1] == ':' && (path[2] == '/' || path[2] == '\\');
}

std::string_view stripLeadingDotSlash(std::string_view path) {
  while (path.substr(0, 2) == "./") path.remove_prefix(2);
  return path;
}

}  // namespace

std::string normalizeEntryPath(std::string_view raw, const IntakeLimits& limits) {
  // Checked before anything else: every later refusal puts the name into JSON, which needs
  // valid UTF-8, and a name in raw bytes of some legacy code page would not survive the CLI.
  if (!isValidUtf8(raw)) {
    const std::string escaped = escapeInvalidUtf8(raw);
    refuse("invalid_path", "entry name is not valid UTF-8: '" + escaped + "'", escaped);
  }
  const std::string entry(raw);
  // libarchive hands names over as C strings, so a NUL inside a stored name has already cut
  // it short by the time it reaches us; what is left is still checked below.
  if (raw.empty()) refuse("invalid_path", "entry has an empty name", entry);
  if (hasControlCharacter(raw)) {
    refuse("invalid_path", "entry name contains a control character", entry);
  }
  if (raw.size() > limits.max_path_bytes) {
    refuse("path_too_long",
           "entry name is " + std::to_string(raw.size()) + " bytes, limit is " +
               std::to_string(limits.max_path_bytes),
           entry, "max_path_bytes");
  }
  if (raw.front() == '/' || hasDriveLetter(raw)) {
    refuse("absolute_path", "entry name is an absolute path", entry);
  }
  // Zip tools written for Windows use `\` as a separator; on POSIX it would silently become
  // part of one odd file name (`..\..\x`), so such names are refused rather than guessed at.
  // (libarchive 3.6's zip reader already turns `\` into `/` in names without any `/`, so
  // `..\..\x` arrives here as `../../x` and is refused as a traversal instead.)
  if (raw.find('\\') != std::string_view::npos) {
    refuse("invalid_path", "entry name contains a backslash", entry);
  }

  std::string_view relative = stripLeadingDotSlash(raw);
  if (relative == "." || relative.empty()) return "";  // the archive root, e.g. `tar -C app .`
  if (relative.back() == '/') relative.remove_suffix(1);  // directory entries end in `/`

  const std::vector<std::string_view> components = da::splitOn(relative, '/');
  // `..` is checked over all components first so it wins over lesser complaints.
  for (std::string_view component : components) {
    if (component == "..") refuse("path_traversal", "entry name has a '..' component", entry);
  }
  for (std::string_view component : components) {
    if (component.empty() || component == ".") {
      refuse("invalid_path", "entry name has an empty or '.' component", entry);
    }
    if (component.size() > kMaxComponentBytes) {
      refuse("path_too_long",
             "entry name has a component longer than " + std::to_string(kMaxComponentBytes) +
                 " bytes",
             entry);
    }
  }
  // Every component is a directory to create and walk; bounding the depth bounds that work
  // (and the inodes a single entry can imply).
  if (components.size() > limits.max_path_depth) {
    refuse("path_too_long",
           "entry name has " + std::to_string(components.size()) + " components, limit is " +
               std::to_string(limits.max_path_depth),
           entry, "max_path_depth");
  }
  return std::string(relative);
}

}  // namespace da::bundle::detail

// Internal to src/bundle: the path rules every archive entry name must pass before anything
// is written. libarchive's own SECURE_* flags only cover POSIX `..` and leading `/`; names
// with backslashes, drive letters or control characters are ordinary bytes to it, so the
// whole check lives here and does not depend on how entries are written.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "bundle/intake.h"

namespace da::bundle::detail {

// Longest single path component Linux accepts (NAME_MAX); longer ones fail at open().
inline constexpr size_t kMaxComponentBytes = 255;

// Returns the entry's path relative to the extraction root: `/`-separated, without leading
// `./` and without a trailing `/`. The archive root itself ("./" or ".") maps to "".
// Throws Refusal (absolute_path, path_traversal, invalid_path, path_too_long) naming `raw`;
// a name that is not valid UTF-8 is refused first, and named with its bad bytes escaped.
// Uses limits.max_path_bytes and limits.max_path_depth.
std::string normalizeEntryPath(std::string_view raw, const IntakeLimits& limits);

}  // namespace da::bundle::detail

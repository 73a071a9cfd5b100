// Internal to src/bundle: the path rules every archive entry name must pass before anything
// is written. libarchive's own SECURE_* flags only cover POSIX `..` and leading `/`; names
// with backslashes, drive letters or control characters are ordinary bytes to it, so the
// whole check lives here and does not depend on how entries are written.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace da::bundle::detail {

// Longest single path component Linux accepts (NAME_MAX); longer ones fail at open().
inline constexpr size_t kMaxComponentBytes = 255;

// Returns the entry's path relative to the extraction root: `/`-separated, without leading
// `./` and without a trailing `/`. The archive root itself ("./" or ".") maps to "".
// Throws Refusal (absolute_path, path_traversal, invalid_path, path_too_long) naming `raw`.
std::string normalizeEntryPath(std::string_view raw, uint64_t max_path_bytes);

}  // namespace da::bundle::detail

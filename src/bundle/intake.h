// Bundle intake: turns an uploaded archive (gzip'd tar, tar, zip) into a directory of app
// files, refusing anything that could escape or exhaust the destination. All-or-nothing:
// on any error the destination directory does not exist afterwards.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace da::bundle {

enum class Format { kUnknown, kTarGz, kTar, kZip };
const char* formatName(Format f);

// Content-Type wins when it names a format we know; otherwise the first bytes decide.
Format detectFormat(std::string_view content_type, std::string_view first_bytes);

struct IntakeLimits {
  uint64_t max_archive_bytes = 100ull << 20;        // the upload itself
  uint64_t max_unpacked_bytes = 512ull << 20;       // sum of regular file sizes
  uint64_t max_entries = 20000;
  uint64_t max_path_bytes = 1024;
  // Components in one entry name (`a/b/c.ts` has 3). Each is a directory to create and to
  // walk through, so a deep tree costs CPU and inodes out of proportion to its bytes. App
  // sources, and node_modules as npm (>= 3) lays them out mostly flat, stay well below this.
  uint64_t max_path_depth = 32;
  uint64_t max_compression_ratio = 200;             // unpacked / archive, zip-bomb guard
  // The ratio is only enforced once this much has been unpacked: a few hundred bytes of
  // archive holding some KiB of repetitive generated code is no bomb.
  uint64_t ratio_exempt_unpacked_bytes = 1ull << 20;
};

// A refusal names the rule (`reason`, a stable snake_case code), the entry when one is
// to blame, and the limit when one was exceeded. Message and entry are always valid UTF-8.
//
// extractArchive reasons:
//   destination_exists   dest (or anything at that path, even a dangling symlink) exists
//   unsupported_format   Format::kUnknown was passed
//   format_mismatch      the bytes are not the declared format (e.g. gzip but not a tar inside)
//   corrupt_archive      libarchive could not read it (truncated, bad CRC, ...); message has its
//                        error. Also: a plain tar without its end-of-archive marker (two zero
//                        blocks; without them a cut-off upload looks complete), a zip without a
//                        usable end-of-central-directory record
//   empty_archive        no regular file in the archive
//   absolute_path        entry name starts with `/` or a drive letter (`C:/`)
//   path_traversal       entry name has a `..` component
//   invalid_path         empty name, not valid UTF-8 (entry and message show bad bytes as \xFF),
//                        control character, backslash, empty or `.` component
//   path_too_long        name longer than max_path_bytes or deeper than max_path_depth (limit
//                        set), or a component > 255 bytes
//   link_entry           symlink or hardlink
//   special_file         device, fifo, socket or any other non-file, non-directory entry
//   encrypted_entry      encrypted zip entry
//   duplicate_entry      same path twice, or a path used both as a file and as a directory
//   too_many_entries     more than max_entries; for zip also checked on the central directory
//                        before it is loaded (entry empty then)
//   too_large            archive over max_archive_bytes, or unpacked over max_unpacked_bytes
//   compression_ratio    unpacked bytes over max_compression_ratio x archive size on disk
//   invalid_destination  dest is empty or ends in `.`/`..`
//   io_error             the filesystem failed us (disk full, permissions, missing parent dir)
//   internal_error       anything unexpected (e.g. out of memory); still reported, never thrown
// inspectApp reasons are listed on InspectionResult (plus io_error).
struct IntakeError {
  std::string reason;     // e.g. "absolute_path", "path_traversal", "link_entry", "too_many_entries"
  std::string message;
  std::string entry;      // archive path of the offending entry, empty if none
  std::string limit;      // name of the IntakeLimits field exceeded, empty if none
};

struct Extracted {
  std::filesystem::path root;   // destination directory that was created
  uint64_t entries = 0;
  uint64_t unpacked_bytes = 0;
};

struct IntakeResult {
  std::optional<Extracted> extracted;
  std::optional<IntakeError> error;
  bool ok() const { return extracted.has_value(); }
};

// Extracts `archive` (a file on disk) into `dest`, which must not exist yet. Entry names are
// read as UTF-8 whatever the process locale (the calling thread's locale is switched for the
// duration of the call and restored).
IntakeResult extractArchive(const std::filesystem::path& archive, Format format,
                            const std::filesystem::path& dest, const IntakeLimits& limits);

// The public npm registry: the default for Settings::npm_registry, and always accepted in a
// lockfile's `resolved` URLs (npm rewrites this host to the configured registry).
inline constexpr const char* kPublicNpmRegistry = "https://registry.npmjs.org/";

struct InspectOptions {
  // The registry npm installs from: http(s), ending in exactly one '/' (agent/config.cpp
  // normalises it). Lockfile entries must be resolved below it or below kPublicNpmRegistry.
  std::string npm_registry = kPublicNpmRegistry;
};

// What the agent needs to know about an unpacked Convex app before it spends time on it.
struct AppInspection {
  std::filesystem::path app_root;        // dir holding package.json (bundle root or its single top dir)
  std::string functions_dir = "convex";  // from convex.json "functions", relative to app_root
  std::string convex_dependency;         // the version range the app declares for `convex`
  std::string lockfile;                  // "package-lock.json", "npm-shrinkwrap.json" or empty
  std::vector<std::string> removed;      // untrusted paths deleted before install (node_modules, .npmrc, .env*)
};

struct InspectionResult {
  std::optional<AppInspection> app;
  std::optional<IntakeError> error;      // reasons: missing_package_json, invalid_package_json,
                                         // missing_convex_dependency, missing_functions_dir,
                                         // invalid_convex_json (and io_error, internal_error)
  bool ok() const { return app.has_value(); }
};

// Locates the app, deletes what must never be trusted from a bundle, and checks it is a
// Convex app with a functions folder (without one the CLI pushes an EMPTY app).
InspectionResult inspectApp(const std::filesystem::path& extracted_root, const InspectOptions& options = {});

}  // namespace da::bundle

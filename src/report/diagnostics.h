// Diagnostics: every esbuild and tsc error and warning, npm's install errors and the Convex
// push failures a code change can fix (schema validation, a rejected module), parsed out of
// the tools' output into {file, line, column, severity, message, tool}, so an AI code
// generator can hand them straight to its model.
//
// Shapes parsed (convex 1.49.0, its esbuild and the app's tsc, npm 11; captured outputs in
// tests/fixtures/diagnostics/, see the README there):
//   esbuild  `✘ [ERROR] <message>` / `▲ [WARNING] <message> [<id>]`, a blank line, then
//            `    <file>:<line>:<column>:` (line 1-based, column 0-BASED), a code frame, and
//            notes indented by two spaces (each with its own location).
//            The CLI repeats each warning as `esbuild warning: <message>` (no location).
//   tsc      `<file>:<line>:<column> - error TS<n>: <message>` (`--pretty true`, coloured even
//            without a TTY; line and column 1-based), chained lines indented below it; also
//            the plain `<file>(<line>,<column>): error TS<n>: <message>` and `error TS<n>: …`.
//   convex   `✖ Schema validation failed.` and the backend's error text below it;
//            `✖ Error fetching POST  <url> 400 Bad Request: <Code>: <message>` (a push the
//            deployment refused as invalid; 401/403/404/5xx are not the code's fault and left
//            to the run's error).
//   npm      `npm error code E…` and the `npm error` lines after it (`npm ERR!` for old npm).
//
// Lines and columns are 1-based in the result (esbuild's columns are shifted by one); 0 means
// unknown. Paths under the app root come out relative to it (`/job/app/convex/x.ts` and
// `convex/x.ts` both give `convex/x.ts`), any other path as printed. ANSI colour codes are
// removed; identical diagnostics are reported once; at most kMaxDiagnostics are kept and each
// message is cut at kMaxDiagnosticMessageBytes. Text is valid UTF-8 (invalid bytes become
// U+FFFD), so the JSON never fails to serialise. The parsers never throw on odd input.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace da {

struct Diagnostic {
  std::string file;      // relative to the app root when under it; empty when none
  int line = 0;          // 1-based; 0 when unknown
  int column = 0;        // 1-based; 0 when unknown
  std::string severity;  // "error" | "warning"
  std::string message;
  std::string tool;      // "esbuild" | "tsc" | "npm" | "convex"

  bool operator==(const Diagnostic&) const = default;
};

inline constexpr size_t kMaxDiagnostics = 200;
inline constexpr size_t kMaxDiagnosticMessageBytes = 2000;

// Parses the Convex CLI's merged stdout+stderr. `app_root_prefixes` are absolute prefixes to
// strip (e.g. "/job/app/"; a missing trailing slash is implied).
std::vector<Diagnostic> parseCliDiagnostics(std::string_view cli_output,
                                            const std::vector<std::string>& app_root_prefixes);

// Parses npm's output (`npm ci|install --loglevel=warn`): one error per failure. A file is named
// only when npm names one (EJSONPARSE: `package.json`, with npm's line and column).
std::vector<Diagnostic> parseNpmDiagnostics(std::string_view npm_output,
                                            const std::vector<std::string>& app_root_prefixes = {});

// {file (null when none), line (null when 0), column (null when 0), severity, message, tool}
nlohmann::json toJson(const Diagnostic& diagnostic);
nlohmann::json toJson(const std::vector<Diagnostic>& diagnostics);
// The inverse, for stored reports: members that are missing or of another type read as empty.
std::vector<Diagnostic> diagnosticsFromJson(const nlohmann::json& array);

}  // namespace da

// The diagnostics parsers against real output of the pinned toolchain (convex 1.49.0, its
// esbuild, TypeScript 5.9.3, npm 11.21.2): tests/fixtures/diagnostics/, see the README there.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "report/diagnostics.h"

using da::Diagnostic;
using da::parseCliDiagnostics;
using da::parseNpmDiagnostics;

namespace {

const std::vector<std::string> kAppRoot = {"/job/app/"};

std::string fixture(const std::string& name) {
  const std::string path = std::string(DA_SOURCE_DIR) + "/tests/fixtures/diagnostics/" + name;
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

// A fixture that must exist and be non-empty, so a lost file never passes as "no diagnostics".
std::string requireFixture(const std::string& name) {
  std::string text = fixture(name);
  EXPECT_FALSE(text.empty()) << "missing fixture " << name;
  return text;
}

std::string replaceAll(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

std::string describe(const std::vector<Diagnostic>& diagnostics) { return da::toJson(diagnostics).dump(1); }

Diagnostic diag(std::string file, int line, int column, std::string severity, std::string message, std::string tool) {
  return Diagnostic{std::move(file), line, column, std::move(severity), std::move(message), std::move(tool)};
}

void expectDiagnostics(const std::vector<Diagnostic>& actual, const std::vector<Diagnostic>& expected) {
  EXPECT_EQ(actual, expected) << "actual:\n" << describe(actual) << "\nexpected:\n" << describe(expected);
}

// Whatever the input, the result keeps its bounds and serialises.
void expectWellFormed(const std::vector<Diagnostic>& diagnostics) {
  ASSERT_LE(diagnostics.size(), da::kMaxDiagnostics);
  for (const Diagnostic& d : diagnostics) {
    EXPECT_LE(d.message.size(), da::kMaxDiagnosticMessageBytes);
    EXPECT_FALSE(d.message.empty());
    EXPECT_TRUE(d.severity == "error" || d.severity == "warning") << d.severity;
    EXPECT_TRUE(d.tool == "esbuild" || d.tool == "tsc" || d.tool == "npm" || d.tool == "convex") << d.tool;
    EXPECT_GE(d.line, 0);
    EXPECT_GE(d.column, 0);
    if (d.line == 0) {
      EXPECT_EQ(d.column, 0);
    }
    std::string dumped;
    EXPECT_NO_THROW(dumped = da::toJson(d).dump());
  }
  EXPECT_NO_THROW((void)da::toJson(diagnostics).dump());
}

const char* const kSchemaMessage =
    "Document with ID \"k572f4x9pn3cbhhpm7q2r8a8dh7vm1xz\" in table \"messages\" does not match the schema: "
    "Object is missing the required field `author`. Consider wrapping the field validator in "
    "`v.optional(...)` if this is expected.\n"
    "\n"
    "Object: {body: \"hello\", channelId: \"jh7bv5qz6c0e3kx1a8yr2m4n9d7vm0wa\"}\n"
    "Validator: v.object({author: v.string(), body: v.string(), channelId: v.id(\"channels\"), "
    "summary: v.optional(v.string())})";

// ---- the six cases of the issue --------------------------------------------------------------

// esbuild prints `convex/channels.ts:25:21:`, a 0-based column (its caret sits under the `;`,
// the 22nd character); the diagnostic's column is 1-based.
TEST(Diagnostics, SyntaxErrorIsEsbuildsWithAOneBasedColumn) {
  expectDiagnostics(parseCliDiagnostics(requireFixture("syntax_error.txt"), kAppRoot),
                    {diag("convex/channels.ts", 25, 22, "error", "Expected identifier but found \";\"", "esbuild")});
}

// tsc (`--pretty true`, coloured without a TTY) prints 1-based lines and columns: kept as they are.
TEST(Diagnostics, TypeErrorIsTscsWithColoursRemoved) {
  const auto expected = std::vector<Diagnostic>{
      diag("convex/channels.ts", 25, 14, "error", "TS2322: Type 'string' is not assignable to type 'number'.", "tsc")};
  expectDiagnostics(parseCliDiagnostics(requireFixture("type_error.txt"), kAppRoot), expected);
  expectDiagnostics(parseCliDiagnostics(requireFixture("type_error_dev.txt"), kAppRoot), expected);
}

// Bundling runs before tsc, so esbuild reports it and tsc never runs.
TEST(Diagnostics, MissingImportIsEsbuildsNoMatchingExport) {
  expectDiagnostics(parseCliDiagnostics(requireFixture("missing_import.txt"), kAppRoot),
                    {diag("convex/channels.ts", 2, 10, "error",
                          "No matching export in \"convex/messages.ts\" for import \"nope\"", "esbuild")});
}

TEST(Diagnostics, MissingModuleIsEsbuildsCouldNotResolve) {
  expectDiagnostics(parseCliDiagnostics(requireFixture("missing_module.txt"), kAppRoot),
                    {diag("convex/channels.ts", 2, 24, "error", "Could not resolve \"./lib/helpers\"", "esbuild")});
}

TEST(Diagnostics, SchemaValidationFailureIsAConvexErrorWithoutAFile) {
  const auto expected = std::vector<Diagnostic>{diag("", 0, 0, "error", kSchemaMessage, "convex")};
  expectDiagnostics(parseCliDiagnostics(requireFixture("schema_validation.txt"), kAppRoot), expected);
  expectDiagnostics(parseCliDiagnostics(requireFixture("schema_validation_dev.txt"), kAppRoot), expected);
}

TEST(Diagnostics, SchemaValidationFailureInAComponentSaysWhich) {
  const std::string output =
      "✖ Schema validation failed in component \"rateLimiter\".\n"
      "Document with ID \"abc\" in table \"limits\" does not match the schema: Value does not match validator.\n"
      "Path: .count\n";
  expectDiagnostics(parseCliDiagnostics(output, kAppRoot),
                    {diag("", 0, 0, "error",
                          "In component \"rateLimiter\": Document with ID \"abc\" in table \"limits\" does not match the "
                          "schema: Value does not match validator.\nPath: .count",
                          "convex")});
}

TEST(Diagnostics, NpmVersionThatDoesNotExist) {
  expectDiagnostics(parseNpmDiagnostics(requireFixture("npm_etarget.txt")),
                    {diag("", 0, 0, "error",
                          "ETARGET: No matching version found for convex@9.9.9.\n"
                          "In most cases you or one of your dependencies are requesting a package version that "
                          "doesn't exist.",
                          "npm")});
}

// Offline (the agent's --offline setting), npm cannot tell a missing version from an uncached one.
TEST(Diagnostics, NpmOfflineWithoutTheVersionCached) {
  expectDiagnostics(parseNpmDiagnostics(requireFixture("npm_enotcached_offline.txt")),
                    {diag("", 0, 0, "error",
                          "ENOTCACHED: request to https://registry.npmjs.org/convex failed: cache mode is "
                          "'only-if-cached' but no cached response is available.",
                          "npm")});
}

// ---- more real shapes ------------------------------------------------------------------------

TEST(Diagnostics, NpmCiOutOfSyncLeavesTheUsageOut) {
  expectDiagnostics(parseNpmDiagnostics(requireFixture("npm_ci_out_of_sync.txt")),
                    {diag("", 0, 0, "error",
                          "EUSAGE: `npm ci` can only install packages when your package.json and package-lock.json "
                          "or npm-shrinkwrap.json are in sync. Please update your lock file with `npm install` "
                          "before continuing.\n\nInvalid: lock file's convex@1.49.0 does not satisfy convex@1.48.0",
                          "npm")});
}

TEST(Diagnostics, NpmPeerConflictKeepsTheExplanation) {
  expectDiagnostics(
      parseNpmDiagnostics(requireFixture("npm_eresolve.txt")),
      {diag("", 0, 0, "error",
            "ERESOLVE could not resolve\n\n"
            "While resolving: convex@1.49.0\nFound: react@17.0.2\nnode_modules/react\n"
            "  react@\"17.0.2\" from the root project\n\n"
            "Could not resolve dependency:\n"
            "peerOptional react@\"^18.0.0 || ^19.0.0-0 || ^19.0.0\" from convex@1.49.0\n"
            "node_modules/convex\n  convex@\"1.49.0\" from the root project\n\n"
            "Conflicting peer dependency: react@19.3.1\nnode_modules/react\n"
            "  peerOptional react@\"^18.0.0 || ^19.0.0-0 || ^19.0.0\" from convex@1.49.0\n"
            "  node_modules/convex\n    convex@\"1.49.0\" from the root project\n\n"
            "Fix the upstream dependency conflict, or retry this command with --force or --legacy-peer-deps to "
            "accept an incorrect (and potentially broken) dependency resolution.",
            "npm")});
}

TEST(Diagnostics, NpmBrokenPackageJsonNamesTheFileLineAndColumn) {
  expectDiagnostics(parseNpmDiagnostics(requireFixture("npm_ejsonparse.txt")),
                    {diag("package.json", 5, 3, "error",
                          "EJSONPARSE: Invalid package.json: JSONParseError: Expected ',' or '}' after property "
                          "value in JSON at position 66 (line 5 column 3) while parsing near \"...  \\\"private\\\": "
                          "true\\n  \\\"description\\\": \\\"A sm...\"\n"
                          "Failed to parse JSON data.\n"
                          "Note: package.json must be actual JSON, not just JavaScript.",
                          "npm")});
}

TEST(Diagnostics, NpmOldStyleAndPathLines) {
  const std::string output =
      "npm warn deprecated inflight@1.0.6: This module is not supported\n"
      "npm ERR! code ENOENT\n"
      "npm ERR! syscall open\n"
      "npm ERR! path /job/app/package.json\n"
      "npm ERR! errno -2\n"
      "npm ERR! enoent Could not read package.json: Error: ENOENT: no such file or directory\n";
  expectDiagnostics(parseNpmDiagnostics(output, kAppRoot),
                    {diag("package.json", 0, 0, "error",
                          "ENOENT: Could not read package.json: Error: ENOENT: no such file or directory", "npm")});
  // npm's warnings are not install errors.
  EXPECT_TRUE(parseNpmDiagnostics("npm warn deprecated inflight@1.0.6: not supported\n").empty());
}

TEST(Diagnostics, SeveralTscErrorsWithAChainedMessage) {
  expectDiagnostics(
      parseCliDiagnostics(requireFixture("multiple_type_errors.txt"), kAppRoot),
      {diag("convex/channels.ts", 25, 14, "error", "TS2322: Type 'string' is not assignable to type 'number'.", "tsc"),
       diag("convex/channels.ts", 26, 14, "error",
            "TS2322: Type '(x: string) => string' is not assignable to type '(x: number) => string'.\n"
            "  Types of parameters 'x' and 'x' are incompatible.\n"
            "    Type 'number' is not assignable to type 'string'.",
            "tsc"),
       diag("convex/messages.ts", 65, 14, "error", "TS2304: Cannot find name 'missingName'.", "tsc")});
}

TEST(Diagnostics, TscRelatedInformationJoinsTheMessage) {
  expectDiagnostics(parseCliDiagnostics(requireFixture("type_error_related_info.txt"), kAppRoot),
                    {diag("convex/channels.ts", 25, 35, "error",
                          "TS2322: Type 'string' is not assignable to type 'number'.\n"
                          "The expected type comes from property 'a' which is declared here on type "
                          "'{ a: number; }' (convex/channels.ts:25:19)",
                          "tsc")});
}

TEST(Diagnostics, TscErrorInTsconfig) {
  expectDiagnostics(
      parseCliDiagnostics(requireFixture("tsconfig_unknown_option.txt"), kAppRoot),
      {diag("convex/tsconfig.json", 4, 5, "error", "TS5023: Unknown compiler option 'notAnOption'.", "tsc")});
}

TEST(Diagnostics, EsbuildErrorsAndWarningsWithNotes) {
  expectDiagnostics(parseCliDiagnostics(requireFixture("esbuild_errors_and_warning.txt"), kAppRoot),
                    {diag("convex/channels.ts", 25, 22, "error", "Expected identifier but found \";\"", "esbuild"),
                     diag("convex/http.ts", 21, 28, "warning",
                          "Duplicate key \"a\" in object literal [duplicate-object-key]\n"
                          "The original key \"a\" is here: convex/http.ts:21:22",
                          "esbuild"),
                     diag("convex/messages.ts", 2, 24, "error", "Could not resolve \"./lib/helpers\"", "esbuild")});
}

// The CLI repeats esbuild's warning as `esbuild warning: ...` without a location: reported once.
// esbuild's 0-based 21:27 and tsc's 1-based 21:28 point at the same key.
TEST(Diagnostics, EsbuildWarningRepeatedByTheCliIsReportedOnce) {
  expectDiagnostics(parseCliDiagnostics(requireFixture("esbuild_warning_then_tsc_error.txt"), kAppRoot),
                    {diag("convex/http.ts", 21, 28, "warning",
                          "Duplicate key \"a\" in object literal [duplicate-object-key]\n"
                          "The original key \"a\" is here: convex/http.ts:21:22",
                          "esbuild"),
                     diag("convex/http.ts", 21, 28, "error",
                          "TS1117: An object literal cannot have multiple properties with the same name.", "tsc")});
  // Alone, the CLI's line is still a (file-less) warning.
  expectDiagnostics(parseCliDiagnostics("esbuild warning: Something odd\n", kAppRoot),
                    {diag("", 0, 0, "warning", "Something odd", "esbuild")});
}

TEST(Diagnostics, EsbuildNoteLocationsAreOneBasedToo) {
  expectDiagnostics(parseCliDiagnostics(requireFixture("redeclared_symbol.txt"), kAppRoot),
                    {diag("convex/channels.ts", 26, 7, "error",
                          "The symbol \"twice\" has already been declared\n"
                          "The symbol \"twice\" was originally declared here: convex/channels.ts:25:7",
                          "esbuild")});
}

TEST(Diagnostics, NodeBuiltinErrorCarriesTheUseNodeAdvice) {
  expectDiagnostics(
      parseCliDiagnostics(requireFixture("node_builtin_without_use_node.txt"), kAppRoot),
      {diag("convex/channels.ts", 2, 30, "error",
            "Could not resolve \"fs\"\n"
            "The package \"fs\" wasn't found on the file system but is built into node. Are you trying to bundle "
            "for node? You can use \"platform: 'node'\" to do that, which will remove this error.\n"
            "It looks like you are using Node APIs from a file without the \"use node\" directive.\n"
            "Split out actions using Node.js APIs like this into a new file only containing actions that uses "
            "\"use node\" so these actions will run in a Node.js environment.\n"
            "For more information see https://docs.convex.dev/functions/runtimes#nodejs-runtime",
            "esbuild")});
}

TEST(Diagnostics, MissingPackageInAUseNodeFile) {
  expectDiagnostics(parseCliDiagnostics(requireFixture("missing_package_use_node.txt"), kAppRoot),
                    {diag("convex/nodeActions.ts", 2, 21, "error",
                          "Could not resolve \"left-pad-not-installed\"\n"
                          "You can mark the path \"left-pad-not-installed\" as external to exclude it from the "
                          "bundle, which will remove this error and leave the unresolved path in the bundle.",
                          "esbuild")});
}

// A 400 from a push route is a problem of the code; the backend's source-mapped stack frame
// (relative to the CLI's out/ folder) names the file.
TEST(Diagnostics, PushRejectedAsInvalidNamesTheFileOfItsStackFrame) {
  expectDiagnostics(parseCliDiagnostics(requireFixture("push_invalid_modules.txt"), kAppRoot),
                    {diag("convex/channels.ts", 4, 9, "error",
                          "InvalidModules: Hit an error while pushing:\n"
                          "Loading the pushed modules encountered the following error:\n"
                          "Failed to analyze channels.js: Uncaught Error: CHANNEL_LIMIT is not set\n"
                          "    at <anonymous> (../convex/channels.ts:4:9)",
                          "convex")});
}

TEST(Diagnostics, FailuresThatAreNotTheCodesAreNoDiagnostics) {
  EXPECT_TRUE(parseCliDiagnostics(requireFixture("push_forbidden.txt"), kAppRoot).empty());
  EXPECT_TRUE(parseCliDiagnostics(requireFixture("deploy_success.txt"), kAppRoot).empty());
  const std::string unauthorized =
      "✖ Error: Unable to start push to http://127.0.0.1:4010\n"
      "Error fetching POST  http://127.0.0.1:4010/api/deploy2/start_push 401 Unauthorized: "
      "BadAdminKey: The provided admin key was invalid for this instance\n"
      "✖ Error fetching POST  http://127.0.0.1:4010/api/deployment/url_for_key 400 Bad Request: "
      "InvalidDeployKey: not a key\n";
  EXPECT_TRUE(parseCliDiagnostics(unauthorized, kAppRoot).empty()) << describe(parseCliDiagnostics(unauthorized, kAppRoot));
  // The same framing with 400 on a push route is one.
  const auto rejected = parseCliDiagnostics(
      "Error fetching POST  http://127.0.0.1:4010/api/deploy2/start_push 400 Bad Request: InvalidSchema: bad index\n",
      kAppRoot);
  expectDiagnostics(rejected, {diag("", 0, 0, "error", "InvalidSchema: bad index", "convex")});
}

// ---- paths -----------------------------------------------------------------------------------

TEST(Diagnostics, AbsolutePathsUnderTheAppRootBecomeRelative) {
  for (const std::vector<std::string>& roots : {std::vector<std::string>{"/job/app/"}, std::vector<std::string>{"/job/app"},
                                                std::vector<std::string>{"/elsewhere/", "/job/app"}}) {
    const std::string esbuild = replaceAll(fixture("esbuild_errors_and_warning.txt"), "convex/", "/job/app/convex/");
    const auto found = parseCliDiagnostics(esbuild, roots);
    ASSERT_EQ(found.size(), 3u) << describe(found);
    EXPECT_EQ(found[0].file, "convex/channels.ts");
    EXPECT_EQ(found[1].file, "convex/http.ts");
    EXPECT_EQ(found[1].message,
              "Duplicate key \"a\" in object literal [duplicate-object-key]\n"
              "The original key \"a\" is here: convex/http.ts:21:22");
    EXPECT_EQ(found[2].file, "convex/messages.ts");

    const std::string tsc = replaceAll(fixture("type_error.txt"), "convex/channels.ts", "/job/app/convex/channels.ts");
    expectDiagnostics(parseCliDiagnostics(tsc, roots),
                      {diag("convex/channels.ts", 25, 14, "error",
                            "TS2322: Type 'string' is not assignable to type 'number'.", "tsc")});
  }
  // `./convex/x.ts` is `convex/x.ts`; a path outside the app root stays as printed.
  const std::string outside =
      "./convex/a.ts:1:2 - error TS1005: ';' expected.\n"
      "/opt/lib/b.d.ts:3:4 - error TS1005: ';' expected.\n"
      "node_modules/convex/dist/x.d.ts:5:6 - warning TS6385: deprecated.\n"
      "/job/application/c.ts:7:8 - error TS1005: ';' expected.\n";
  expectDiagnostics(parseCliDiagnostics(outside, kAppRoot),
                    {diag("convex/a.ts", 1, 2, "error", "TS1005: ';' expected.", "tsc"),
                     diag("/opt/lib/b.d.ts", 3, 4, "error", "TS1005: ';' expected.", "tsc"),
                     diag("node_modules/convex/dist/x.d.ts", 5, 6, "warning", "TS6385: deprecated.", "tsc"),
                     diag("/job/application/c.ts", 7, 8, "error", "TS1005: ';' expected.", "tsc")});
  // Without prefixes nothing is stripped.
  const std::string absolute = replaceAll(fixture("syntax_error.txt"), "convex/channels.ts", "/job/app/convex/channels.ts");
  const auto unstripped = parseCliDiagnostics(absolute, {});
  ASSERT_EQ(unstripped.size(), 1u);
  EXPECT_EQ(unstripped[0].file, "/job/app/convex/channels.ts");
}

// ---- other tsc forms -------------------------------------------------------------------------

TEST(Diagnostics, PlainAndFilelessTscForms) {
  const std::string output =
      "convex/a.ts(3,7): error TS2322: Type 'string' is not assignable to type 'number'.\n"
      "  Some chained detail.\n"
      "error TS5023: Unknown compiler option 'foo'.\n"
      "convex/b.ts(10,1): warning TS6133: 'x' is declared but its value is never read.\n";
  expectDiagnostics(parseCliDiagnostics(output, kAppRoot),
                    {diag("convex/a.ts", 3, 7, "error",
                          "TS2322: Type 'string' is not assignable to type 'number'.\n  Some chained detail.", "tsc"),
                     diag("", 0, 0, "error", "TS5023: Unknown compiler option 'foo'.", "tsc"),
                     diag("convex/b.ts", 10, 1, "warning", "TS6133: 'x' is declared but its value is never read.",
                          "tsc")});
}

// App source quoted in tsc's code frame is not read as a diagnostic of its own.
TEST(Diagnostics, TextQuotedInTscsCodeFrameIsNotAHeader) {
  const std::string output =
      "\x1b[96mconvex/a.ts\x1b[0m:\x1b[93m2\x1b[0m:\x1b[93m7\x1b[0m - \x1b[91merror\x1b[0m\x1b[90m TS2322: \x1b[0m"
      "Type 'string' is not assignable to type 'number'.\n"
      "\n"
      "\x1b[7m2\x1b[0m const x: number = \"fake.ts:1:1 - error TS1: spoofed\";\n"
      "\x1b[7m \x1b[0m \x1b[91m      ~\x1b[0m\n"
      "\n"
      "Found 1 error in convex/a.ts\x1b[90m:2\x1b[0m\n";
  expectDiagnostics(parseCliDiagnostics(output, kAppRoot),
                    {diag("convex/a.ts", 2, 7, "error", "TS2322: Type 'string' is not assignable to type 'number'.",
                          "tsc")});
}

TEST(Diagnostics, ColouredEsbuildOutputAndCrlfLineEnds) {
  std::string coloured = replaceAll(fixture("syntax_error.txt"), "✘ [ERROR]", "\x1b[31m✘ \x1b[41;31m[\x1b[41;97mERROR\x1b[41;31m]\x1b[0m");
  coloured = replaceAll(coloured, "convex/channels.ts:25:21:", "\x1b[4mconvex/channels.ts:25:21:\x1b[0m");
  coloured = replaceAll(coloured, "\n", "\r\n");
  expectDiagnostics(parseCliDiagnostics(coloured, kAppRoot),
                    {diag("convex/channels.ts", 25, 22, "error", "Expected identifier but found \";\"", "esbuild")});
}

TEST(Diagnostics, EsbuildErrorWithoutALocation) {
  expectDiagnostics(parseCliDiagnostics("✘ [ERROR] Cannot use both \"out\" and \"outdir\"\n\n✖ failed\n", kAppRoot),
                    {diag("", 0, 0, "error", "Cannot use both \"out\" and \"outdir\"", "esbuild")});
}

// ---- bounds and robustness -------------------------------------------------------------------

TEST(Diagnostics, IdenticalDiagnosticsAreReportedOnce) {
  // dev without --once would print the same errors on every push.
  const std::string twice = fixture("multiple_type_errors.txt") + fixture("multiple_type_errors.txt") +
                            fixture("syntax_error.txt") + fixture("syntax_error.txt");
  const auto found = parseCliDiagnostics(twice, kAppRoot);
  ASSERT_EQ(found.size(), 4u) << describe(found);
  EXPECT_EQ(found[3].tool, "esbuild");
  EXPECT_EQ(parseNpmDiagnostics(fixture("npm_etarget.txt") + fixture("npm_etarget.txt")).size(), 1u);
}

TEST(Diagnostics, AtMostTwoHundredDiagnosticsOfAtMostTwoThousandBytes) {
  std::string many;
  for (int i = 1; i <= 500; ++i) {
    many += "convex/f" + std::to_string(i) + ".ts:" + std::to_string(i) + ":1 - error TS1005: ';' expected.\n";
  }
  const auto found = parseCliDiagnostics(many, kAppRoot);
  ASSERT_EQ(found.size(), da::kMaxDiagnostics);
  EXPECT_EQ(found.front().file, "convex/f1.ts");
  EXPECT_EQ(found.back().file, "convex/f200.ts");

  // A long message is cut at a character boundary, within the bound.
  std::string long_line = "convex/a.ts:1:1 - error TS2322: ";
  for (int i = 0; i < 3000; ++i) long_line += "é";
  const auto cut = parseCliDiagnostics(long_line + "\n", kAppRoot);
  ASSERT_EQ(cut.size(), 1u);
  EXPECT_LE(cut[0].message.size(), da::kMaxDiagnosticMessageBytes);
  EXPECT_GT(cut[0].message.size(), da::kMaxDiagnosticMessageBytes - 8);
  EXPECT_TRUE(cut[0].message.ends_with("…"));
  EXPECT_NO_THROW((void)da::toJson(cut[0]).dump());

  // A schema message of many lines too.
  std::string schema = "✖ Schema validation failed.\n";
  for (int i = 0; i < 5000; ++i) schema += "Validator line " + std::to_string(i) + "\n";
  const auto bounded = parseCliDiagnostics(schema, kAppRoot);
  ASSERT_EQ(bounded.size(), 1u);
  EXPECT_LE(bounded[0].message.size(), da::kMaxDiagnosticMessageBytes);
  EXPECT_TRUE(bounded[0].message.starts_with("Validator line 0\nValidator line 1\n"));
}

TEST(Diagnostics, InvalidUtf8BecomesReplacementCharacters) {
  const std::string output = "convex/a\xff.ts:1:2 - error TS2322: bad \xc3\x28 byte \xed\xa0\x80 end\n";
  const auto found = parseCliDiagnostics(output, kAppRoot);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].file, "convex/a\xEF\xBF\xBD.ts");
  EXPECT_EQ(found[0].message, "TS2322: bad \xEF\xBF\xBD( byte \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD end");
  EXPECT_NO_THROW((void)da::toJson(found).dump());
  // toJson also cleans a Diagnostic built elsewhere.
  EXPECT_NO_THROW((void)da::toJson(diag("x\xff", 1, 1, "error", "m\xfe", "tsc")).dump());
}

TEST(Diagnostics, JsonHasNullsForWhatIsUnknown) {
  EXPECT_EQ(da::toJson(diag("", 0, 0, "error", "Document does not match", "convex")),
            nlohmann::json::parse(R"({"file":null,"line":null,"column":null,"severity":"error",
                                      "message":"Document does not match","tool":"convex"})"));
  EXPECT_EQ(da::toJson(diag("convex/a.ts", 3, 7, "warning", "m", "esbuild")),
            nlohmann::json::parse(R"({"file":"convex/a.ts","line":3,"column":7,"severity":"warning",
                                      "message":"m","tool":"esbuild"})"));
  EXPECT_EQ(da::toJson(std::vector<Diagnostic>{}), nlohmann::json::array());
}

const char* const kAllFixtures[] = {
    "syntax_error.txt", "type_error.txt", "type_error_dev.txt", "missing_import.txt", "missing_module.txt",
    "schema_validation.txt", "schema_validation_dev.txt", "multiple_type_errors.txt", "type_error_related_info.txt",
    "esbuild_errors_and_warning.txt", "esbuild_warning_then_tsc_error.txt", "redeclared_symbol.txt",
    "node_builtin_without_use_node.txt", "missing_package_use_node.txt", "tsconfig_unknown_option.txt",
    "push_invalid_modules.txt", "push_forbidden.txt", "deploy_success.txt", "npm_etarget.txt",
    "npm_enotcached_offline.txt", "npm_ci_out_of_sync.txt", "npm_eresolve.txt", "npm_ejsonparse.txt"};

// Output cut off anywhere (a killed CLI, a capture at its bound) parses without throwing.
TEST(Diagnostics, EveryTruncationOfEveryFixtureIsHandled) {
  for (const char* name : kAllFixtures) {
    const std::string text = requireFixture(name);
    for (size_t cut = 0; cut <= text.size(); ++cut) {
      const std::string_view part(text.data(), cut);
      std::vector<Diagnostic> cli, npm;
      ASSERT_NO_THROW(cli = parseCliDiagnostics(part, kAppRoot)) << name << " cut at " << cut;
      ASSERT_NO_THROW(npm = parseNpmDiagnostics(part, kAppRoot)) << name << " cut at " << cut;
      expectWellFormed(cli);
      expectWellFormed(npm);
      if (HasFailure()) FAIL() << name << " cut at " << cut;
    }
  }
  // Cut right after the location line, the syntax error is already complete.
  const std::string syntax = fixture("syntax_error.txt");
  const size_t after_location = syntax.find("25:21:\n") + 7;
  expectDiagnostics(parseCliDiagnostics(std::string_view(syntax).substr(0, after_location), kAppRoot),
                    {diag("convex/channels.ts", 25, 22, "error", "Expected identifier but found \";\"", "esbuild")});
}

TEST(Diagnostics, RandomBytesAndMutatedFixturesNeverThrow) {
  std::mt19937 random(20261205);
  std::uniform_int_distribution<int> byte(0, 255);
  // Pieces of the real grammar, so the random input reaches deep into the parsers.
  const std::vector<std::string> pieces = {
      "✘ [ERROR] ", "▲ [WARNING] ", "\n", "\n\n", "    ", "  ", "convex/a.ts:", "1:", "0:", ":", "│", "╵", " - error TS",
      "2322: ", "): error TS1: ", "(", ",", ")", "✖ Schema validation failed", "✖ Error fetching POST  ",
      "http://x/api/deploy2/start_push 400 Bad Request: ", "npm error code E", "npm error ", "npm ERR! ",
      "\x1b[", "\x1b]8;;", "\x07", "\x1b", "~~~", "25 ", "esbuild warning: ", "Usage:", "(line 1 column ",
      "It looks like you are using Node APIs from a file without the", "\r", "\xff", "\xe2\x9c", "999999999999"};
  std::uniform_int_distribution<size_t> pick(0, pieces.size() - 1);
  for (int round = 0; round < 3000; ++round) {
    std::string input;
    const int length = round % 200;
    for (int k = 0; k < length; ++k) {
      if (round % 3 == 0) {
        input.push_back(static_cast<char>(byte(random)));
      } else {
        input += pieces[pick(random)];
      }
    }
    std::vector<Diagnostic> cli, npm;
    ASSERT_NO_THROW(cli = parseCliDiagnostics(input, kAppRoot));
    ASSERT_NO_THROW(npm = parseNpmDiagnostics(input, kAppRoot));
    expectWellFormed(cli);
    expectWellFormed(npm);
    if (HasFailure()) FAIL() << "round " << round;
  }
  for (const char* name : kAllFixtures) {
    const std::string text = requireFixture(name);
    for (int round = 0; round < 200; ++round) {
      std::string mutated = text;
      std::uniform_int_distribution<size_t> where(0, mutated.size() - 1);
      for (int k = 0; k < 1 + round % 8; ++k) mutated[where(random)] = static_cast<char>(byte(random));
      std::vector<Diagnostic> cli, npm;
      ASSERT_NO_THROW(cli = parseCliDiagnostics(mutated, kAppRoot));
      ASSERT_NO_THROW(npm = parseNpmDiagnostics(mutated, kAppRoot));
      expectWellFormed(cli);
      expectWellFormed(npm);
      if (HasFailure()) FAIL() << name << " round " << round;
    }
  }
}

TEST(Diagnostics, PathologicalInputStaysLinear) {
  // An escape with a million parameter bytes, a million-byte line, many unclosed frames.
  std::string escapes = "\x1b[" + std::string(1'000'000, '1') + "\n";
  EXPECT_TRUE(parseCliDiagnostics(escapes, kAppRoot).empty());
  std::string headers;
  for (int i = 0; i < 100'000; ++i) headers += "✘ [ERROR] x\n  note\n";
  const auto found = parseCliDiagnostics(headers, kAppRoot);
  ASSERT_EQ(found.size(), 1u);  // all identical
  EXPECT_EQ(found[0].message, "x\nnote");
  std::string long_line(2'000'000, '(');
  EXPECT_NO_THROW((void)parseCliDiagnostics("Error fetching POST  http://x/api/deploy2/start_push 400 Bad Request: " +
                                                long_line,
                                            kAppRoot));
  EXPECT_TRUE(parseNpmDiagnostics(std::string(1'000'000, '\n')).empty());
}

}  // namespace

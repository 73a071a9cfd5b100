#include "report/diagnostics.h"

#include <set>
#include <tuple>
#include <utility>

namespace da {

namespace {

constexpr size_t kMaxFileBytes = 1024;
constexpr std::string_view kEllipsis = "…";

// ---- text --------------------------------------------------------------------------------

// Removes terminal escape sequences: CSI (`ESC [ … final`, tsc's colours), OSC (`ESC ] … BEL` or
// `ESC ] … ESC \`, hyperlinks) and two-byte escapes. By hand rather than with std::regex, whose
// libstdc++ engine recurses per character and can overflow the stack on untrusted output. Linear.
std::string stripEscapes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const char c = text[pos];
    if (c != '\x1B') {
      out.push_back(c);
      ++pos;
      continue;
    }
    if (pos + 1 >= text.size()) break;  // a lone ESC at the end
    const char kind = text[pos + 1];
    if (kind == '[') {
      size_t end = pos + 2;
      while (end < text.size() && ((text[end] >= '0' && text[end] <= '?'))) ++end;  // parameters
      while (end < text.size() && text[end] >= ' ' && text[end] <= '/') ++end;       // intermediates
      if (end < text.size() && text[end] >= '@' && text[end] <= '~') {
        pos = end + 1;
      } else {
        pos += 1;  // not a complete sequence: drop the ESC alone, keep what follows
      }
    } else if (kind == ']') {
      size_t end = pos + 2;
      while (end < text.size() && text[end] != '\x07' && text[end] != '\x1B' && text[end] != '\n') ++end;
      if (end < text.size() && text[end] == '\x07') {
        pos = end + 1;
      } else if (end + 1 < text.size() && text[end] == '\x1B' && text[end + 1] == '\\') {
        pos = end + 2;
      } else {
        pos = end;  // unterminated: drop up to the line end or the next escape
      }
    } else if (kind >= '@' && kind <= '_') {
      pos += 2;
    } else {
      pos += 1;
    }
  }
  return out;
}

// Valid UTF-8, each invalid byte replaced by U+FFFD (nlohmann::json refuses to dump invalid
// UTF-8, and a report must always serialise).
std::string validUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  auto cont = [&](size_t at) { return at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80; };
  while (i < text.size()) {
    const auto b = static_cast<unsigned char>(text[i]);
    size_t len = 0;
    if (b < 0x80) {
      len = 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
      len = cont(i + 1) ? 2 : 0;
    } else if (b >= 0xE0 && b <= 0xEF) {
      if (cont(i + 1) && cont(i + 2)) {
        const auto b1 = static_cast<unsigned char>(text[i + 1]);
        const bool overlong = b == 0xE0 && b1 < 0xA0;
        const bool surrogate = b == 0xED && b1 >= 0xA0;
        len = overlong || surrogate ? 0 : 3;
      }
    } else if (b >= 0xF0 && b <= 0xF4) {
      if (cont(i + 1) && cont(i + 2) && cont(i + 3)) {
        const auto b1 = static_cast<unsigned char>(text[i + 1]);
        const bool overlong = b == 0xF0 && b1 < 0x90;
        const bool too_big = b == 0xF4 && b1 >= 0x90;
        len = overlong || too_big ? 0 : 4;
      }
    }
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(text.substr(i, len));
      i += len;
    }
  }
  return out;
}

// At most `max_bytes`, cut at a character boundary, "…" marking a cut. `text` is valid UTF-8.
std::string bounded(std::string text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t cut = max_bytes - kEllipsis.size();
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  text.resize(cut);
  text += kEllipsis;
  return text;
}

std::string_view trimLeft(std::string_view s) {
  size_t start = s.find_first_not_of(" \t");
  return start == std::string_view::npos ? std::string_view() : s.substr(start);
}

std::string_view trimRight(std::string_view s) {
  size_t end = s.find_last_not_of(" \t");
  return end == std::string_view::npos ? std::string_view() : s.substr(0, end + 1);
}

std::string_view trim(std::string_view s) { return trimRight(trimLeft(s)); }

bool isBlank(std::string_view s) { return trim(s).empty(); }

size_t indentOf(std::string_view s) {
  size_t n = s.find_first_not_of(' ');
  return n == std::string_view::npos ? s.size() : n;
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// 1 to 9 digits and nothing else, so the value fits an int.
bool parseNumber(std::string_view digits, int& out) {
  if (digits.empty() || digits.size() > 9) return false;
  int value = 0;
  for (char c : digits) {
    if (!isDigit(c)) return false;
    value = value * 10 + (c - '0');
  }
  out = value;
  return true;
}

// The lines as a terminal shows them: split on '\n', a trailing '\r' dropped, and of a line a
// spinner rewrote with '\r' only what follows the last one.
std::vector<std::string_view> splitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    std::string_view line = text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    while (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (size_t cr = line.rfind('\r'); cr != std::string_view::npos) line.remove_prefix(cr + 1);
    lines.push_back(line);
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return lines;
}

// ---- paths -------------------------------------------------------------------------------

std::string relativePath(std::string_view path, const std::vector<std::string>& prefixes) {
  for (const std::string& given : prefixes) {
    if (given.empty() || given == "/") continue;
    std::string prefix = given;
    if (prefix.back() != '/') prefix += '/';
    if (path.size() > prefix.size() && path.starts_with(prefix)) {
      path.remove_prefix(prefix.size());
      break;
    }
  }
  while (path.starts_with("./")) path.remove_prefix(2);
  return std::string(path);
}

// `<path>:<line>:<column>`, parsed from the right (a path may hold ':').
bool parseColonLocation(std::string_view text, std::string_view& path, int& line, int& column) {
  size_t second = text.rfind(':');
  if (second == std::string_view::npos || second == 0) return false;
  size_t first = text.rfind(':', second - 1);
  if (first == std::string_view::npos || first == 0) return false;
  if (!parseNumber(text.substr(first + 1, second - first - 1), line)) return false;
  if (!parseNumber(text.substr(second + 1), column)) return false;
  path = text.substr(0, first);
  return !path.empty() && path.find_first_of("\t") == std::string_view::npos;
}

bool hasSourceExtension(std::string_view path) {
  for (std::string_view ext : {".ts", ".tsx", ".mts", ".cts", ".js", ".jsx", ".mjs", ".cjs"}) {
    if (path.ends_with(ext)) return true;
  }
  return false;
}

// ---- collection --------------------------------------------------------------------------

class Collector {
 public:
  explicit Collector(const std::vector<std::string>& prefixes) : prefixes_(prefixes) {}

  // `file` as printed; made relative here. Duplicates and anything past the bound are dropped.
  void add(std::string_view file, int line, int column, std::string severity, std::string message,
           std::string tool) {
    Diagnostic d;
    d.file = bounded(validUtf8(relativePath(file, prefixes_)), kMaxFileBytes);
    d.line = line > 0 ? line : 0;
    d.column = d.line > 0 && column > 0 ? column : 0;
    d.severity = std::move(severity);
    d.message = bounded(validUtf8(trimRight(message)), kMaxDiagnosticMessageBytes);
    d.tool = std::move(tool);
    if (d.message.empty()) return;
    if (out_.size() >= kMaxDiagnostics) return;
    if (!seen_.insert(std::make_tuple(d.file, d.line, d.column, d.severity, d.message, d.tool)).second) return;
    out_.push_back(std::move(d));
  }

  std::vector<Diagnostic>& result() { return out_; }
  const std::vector<std::string>& prefixes() const { return prefixes_; }

 private:
  const std::vector<std::string>& prefixes_;
  std::vector<Diagnostic> out_;
  std::set<std::tuple<std::string, int, int, std::string, std::string, std::string>> seen_;
};

// Appends a line to a message being built, without growing past what will be kept.
void appendLine(std::string& message, std::string_view line) {
  if (message.size() > kMaxDiagnosticMessageBytes) return;
  if (!message.empty()) message += '\n';
  message.append(line.substr(0, kMaxDiagnosticMessageBytes + 1));
}

// ---- esbuild -----------------------------------------------------------------------------

constexpr std::string_view kEsbuildError = "✘ [ERROR] ";
constexpr std::string_view kEsbuildWarning = "▲ [WARNING] ";

bool isCodeFrameLine(std::string_view line) {
  return line.find("│") != std::string_view::npos || line.find("╵") != std::string_view::npos ||
         line.find("╷") != std::string_view::npos;
}

// `    convex/x.ts:25:21:` (indented, a colon at the end). esbuild's column is 0-based.
bool parseEsbuildLocation(std::string_view line, std::string_view& path, int& line_no, int& column) {
  if (indentOf(line) < 2) return false;
  std::string_view text = trimRight(trimLeft(line));
  if (!text.ends_with(':')) return false;
  text.remove_suffix(1);
  return parseColonLocation(text, path, line_no, column);
}

// The message without esbuild's trailing ` [warning-id]`, as the CLI's `esbuild warning:` repeats it.
std::string_view withoutEsbuildId(std::string_view message) {
  message = trimRight(message);
  if (!message.ends_with(']')) return message;
  size_t open = message.rfind(" [");
  if (open == std::string_view::npos) return message;
  for (char c : message.substr(open + 2, message.size() - open - 3)) {
    if (!((c >= 'a' && c <= 'z') || isDigit(c) || c == '-')) return message;
  }
  return message.substr(0, open);
}

std::string locationText(std::string_view path, int line, int column, const std::vector<std::string>& prefixes) {
  return relativePath(path, prefixes) + ":" + std::to_string(line) + ":" + std::to_string(column);
}

// Parses one esbuild message starting at lines[i]; returns the index after it.
size_t parseEsbuildBlock(const std::vector<std::string_view>& lines, size_t i, Collector& collector,
                         std::set<std::pair<std::string, std::string>>& esbuild_seen) {
  std::string_view header = trimLeft(lines[i]);
  const bool is_error = header.starts_with(kEsbuildError);
  header.remove_prefix(is_error ? kEsbuildError.size() : kEsbuildWarning.size());
  const std::string severity = is_error ? "error" : "warning";
  std::string message(trimRight(header));
  const std::string headline = message;

  auto skipBlanks = [&](size_t at) {
    while (at < lines.size() && isBlank(lines[at])) ++at;
    return at;
  };
  auto skipFrame = [&](size_t at) {
    while (at < lines.size() && !isBlank(lines[at]) && isCodeFrameLine(lines[at])) ++at;
    return at;
  };

  size_t next = i + 1;
  std::string_view path;
  int line_no = 0, column = 0;
  bool located = false;
  if (size_t at = skipBlanks(next); at < lines.size() && parseEsbuildLocation(lines[at], path, line_no, column)) {
    located = true;
    next = skipFrame(at + 1);
  }
  // Notes: two spaces in, each optionally with a location (four spaces in) and a code frame.
  for (size_t guard = 0; guard < lines.size(); ++guard) {
    size_t at = skipBlanks(next);
    if (at >= lines.size() || indentOf(lines[at]) != 2) break;
    std::string note(trim(lines[at]));
    size_t after = at + 1;
    std::string_view note_path;
    int note_line = 0, note_column = 0;
    if (size_t loc = skipBlanks(after);
        loc < lines.size() && parseEsbuildLocation(lines[loc], note_path, note_line, note_column)) {
      note += " " + locationText(note_path, note_line, note_column + 1, collector.prefixes());
      after = skipFrame(loc + 1);
    }
    appendLine(message, note);
    next = after;
  }
  esbuild_seen.emplace(severity, std::string(withoutEsbuildId(headline)));
  // esbuild prints 1-based lines and 0-based columns (its caret sits under column + 1): shifted.
  collector.add(located ? path : std::string_view(), located ? line_no : 0, located ? column + 1 : 0, severity,
                std::move(message), "esbuild");
  return next;
}

// ---- tsc ---------------------------------------------------------------------------------

struct TscHeader {
  std::string_view path;
  int line = 0;
  int column = 0;
  std::string severity;
  std::string_view message;  // "TS2322: Type ..."
};

// After `error ` / `warning `: `TS<digits>: <message>`.
bool parseTscCode(std::string_view rest, std::string_view& message) {
  if (!rest.starts_with("TS")) return false;
  size_t digits = 2;
  while (digits < rest.size() && isDigit(rest[digits])) ++digits;
  if (digits == 2 || !rest.substr(digits).starts_with(":")) return false;
  message = trim(rest);
  return true;
}

bool parseTscHeader(std::string_view line, TscHeader& out) {
  if (line.empty() || line[0] == ' ' || line[0] == '\t') return false;
  for (std::string_view severity : {"error", "warning"}) {
    // --pretty: `convex/x.ts:25:14 - error TS2322: ...`
    const std::string pretty = " - " + std::string(severity) + " ";
    if (size_t at = line.find(pretty); at != std::string_view::npos) {
      if (parseColonLocation(line.substr(0, at), out.path, out.line, out.column) &&
          parseTscCode(line.substr(at + pretty.size()), out.message)) {
        out.severity = severity;
        return true;
      }
    }
    // plain: `convex/x.ts(25,14): error TS2322: ...`
    const std::string plain = "): " + std::string(severity) + " ";
    if (size_t at = line.find(plain); at != std::string_view::npos) {
      std::string_view left = line.substr(0, at);
      size_t open = left.rfind('(');
      size_t comma = left.rfind(',');
      if (open != std::string_view::npos && open > 0 && comma != std::string_view::npos && comma > open &&
          parseNumber(left.substr(open + 1, comma - open - 1), out.line) &&
          parseNumber(left.substr(comma + 1), out.column) &&
          parseTscCode(line.substr(at + plain.size()), out.message)) {
        out.path = left.substr(0, open);
        out.severity = severity;
        return true;
      }
    }
    // no file: `error TS5023: Unknown compiler option 'x'.`
    const std::string bare = std::string(severity) + " ";
    if (line.starts_with(bare) && parseTscCode(line.substr(bare.size()), out.message)) {
      out.path = {};
      out.line = out.column = 0;
      out.severity = severity;
      return true;
    }
  }
  return false;
}

// tsc's code frame: `25 export const x…` over a line of spaces and `~`, pairs of them.
bool isTscSquiggle(std::string_view line) {
  return line.find('~') != std::string_view::npos && line.find_first_not_of(" ~") == std::string_view::npos;
}

bool isTscSourceLine(std::string_view line) {
  std::string_view text = trimLeft(line);
  size_t digits = 0;
  while (digits < text.size() && isDigit(text[digits])) ++digits;
  return digits > 0 && (digits == text.size() || text[digits] == ' ');
}

// Skips tsc's code frame from `at` (blank lines first); returns where it ends, or `at` if none.
size_t skipTscFrame(const std::vector<std::string_view>& lines, size_t at) {
  size_t k = at;
  while (k < lines.size() && isBlank(lines[k])) ++k;
  bool skipped = false;
  while (k + 1 < lines.size() && isTscSourceLine(lines[k]) && isTscSquiggle(lines[k + 1])) {
    k += 2;
    skipped = true;
  }
  return skipped ? k : at;
}

size_t parseTscDiagnostic(const std::vector<std::string_view>& lines, size_t i, const TscHeader& header,
                          Collector& collector) {
  std::string message(header.message);
  size_t next = i + 1;
  // A chained message: lines indented below the header, up to a blank line.
  TscHeader other;
  while (next < lines.size() && !isBlank(lines[next]) && indentOf(lines[next]) >= 2 &&
         !parseTscHeader(lines[next], other)) {
    appendLine(message, trimRight(lines[next]));
    ++next;
  }
  // The code frame is skipped, so source text quoted in it is never read as a header.
  next = skipTscFrame(lines, next);
  // Related information: `  <file>:<line>:<column>` two spaces in, its frame, then its text four
  // spaces in ("The expected type comes from property 'a' which is declared here ...").
  for (size_t guard = 0; guard < lines.size(); ++guard) {
    size_t at = next;
    while (at < lines.size() && isBlank(lines[at])) ++at;
    std::string_view path;
    int line_no = 0, column = 0;
    if (at >= lines.size() || indentOf(lines[at]) != 2 ||
        !parseColonLocation(trim(lines[at]), path, line_no, column)) {
      break;
    }
    size_t k = skipTscFrame(lines, at + 1);
    std::string text;
    while (k < lines.size() && !isBlank(lines[k]) && indentOf(lines[k]) >= 4 && !isTscSourceLine(lines[k])) {
      if (!text.empty()) text += ' ';
      text += trim(lines[k]);
      ++k;
    }
    appendLine(message, (text.empty() ? std::string() : text + " ") + "(" +
                            locationText(path, line_no, column, collector.prefixes()) + ")");
    next = k;
  }
  collector.add(header.path, header.line, header.column, header.severity, std::move(message), "tsc");
  return next;
}

// ---- convex ------------------------------------------------------------------------------

constexpr std::string_view kFailureMarker = "✖";

// A line where the CLI, or esbuild, starts saying something new.
bool isMarkerLine(std::string_view line) {
  std::string_view text = trimLeft(line);
  for (std::string_view marker : {"✖", "✔", "✘", "▲", "▌", "⚠"}) {
    if (text.starts_with(marker)) return true;
  }
  return false;
}

// The lines after `i` up to the next marker line (or the end), blank lines at either end dropped.
std::string bodyAfter(const std::vector<std::string_view>& lines, size_t i, size_t& next) {
  size_t end = i + 1;
  while (end < lines.size() && !isMarkerLine(lines[end])) ++end;
  next = end;
  size_t first = i + 1;
  while (first < end && isBlank(lines[first])) ++first;
  size_t last = end;
  while (last > first && isBlank(lines[last - 1])) --last;
  std::string body;
  for (size_t k = first; k < last; ++k) appendLine(body, trimRight(lines[k]));
  return body;
}

// The first source-mapped stack frame of the app in a backend message, `(../convex/x.ts:4:9)`.
// Source maps name files relative to the CLI's `out/` build folder, so one leading `../` is the
// app root. Frames in node_modules or the bundler's `_deps/` chunks are not the app's code.
bool findStackFrame(std::string_view message, std::string& path, int& line, int& column) {
  size_t open = 0;
  while ((open = message.find('(', open)) != std::string_view::npos) {
    size_t close = message.find_first_of(")\n", open + 1);
    if (close == std::string_view::npos) return false;
    std::string_view inside = message.substr(open + 1, close - open - 1);
    std::string_view candidate;
    if (message[close] == ')' && parseColonLocation(inside, candidate, line, column) &&
        hasSourceExtension(candidate) && candidate.find("node_modules/") == std::string_view::npos &&
        candidate.find("_deps/") == std::string_view::npos && candidate.find(' ') == std::string_view::npos) {
      if (candidate.starts_with("../")) candidate.remove_prefix(3);
      path = std::string(candidate);
      return true;
    }
    open = close;
  }
  return false;
}

void addConvex(Collector& collector, std::string message) {
  message = bounded(std::move(message), kMaxDiagnosticMessageBytes);  // before any search in it
  std::string path;
  int line = 0, column = 0;
  if (!findStackFrame(message, path, line, column)) {
    path.clear();
    line = column = 0;
  }
  collector.add(path, line, column, "error", std::move(message), "convex");
}

// `✖ Schema validation failed[ in component "x"].` and the backend's error on the lines below.
size_t parseSchemaFailure(const std::vector<std::string_view>& lines, size_t i, Collector& collector) {
  std::string_view headline = trimLeft(lines[i]);
  headline.remove_prefix(kFailureMarker.size());
  headline = trim(headline);
  size_t next = i + 1;
  std::string body = bodyAfter(lines, i, next);
  std::string message = body.empty() ? std::string(headline) : body;
  constexpr std::string_view kComponent = " in component ";
  if (size_t at = headline.find(kComponent); at != std::string_view::npos && !body.empty()) {
    std::string_view component = headline.substr(at + kComponent.size());
    if (component.ends_with('.')) component.remove_suffix(1);
    message = "In component " + std::string(component) + ": " + body;
  }
  addConvex(collector, std::move(message));
  return next;
}

// `[✖ ]Error fetching POST  <url> 400 Bad Request: <Code>: <message>` and its continuation.
// Only 400/422: what the deployment refused as invalid code, config or schema. 401/403/404,
// 408, 429 and 5xx are not the app code's fault, and the run's error already says what happened.
bool parsePushRejection(const std::vector<std::string_view>& lines, size_t i, Collector& collector, size_t& next) {
  std::string_view text = trimLeft(lines[i]);
  if (text.starts_with(kFailureMarker)) text = trimLeft(text.substr(kFailureMarker.size()));
  constexpr std::string_view kFetching = "Error fetching ";
  if (!text.starts_with(kFetching)) return false;
  text.remove_prefix(kFetching.size());
  size_t method_end = text.find(' ');
  if (method_end == std::string_view::npos) return false;
  text = trimLeft(text.substr(method_end));
  size_t url_end = text.find(' ');
  if (url_end == std::string_view::npos) return false;
  std::string_view url = text.substr(0, url_end);
  text = trimLeft(text.substr(url_end));
  int status = 0;
  if (text.size() < 3 || !parseNumber(text.substr(0, 3), status)) return false;
  if (status != 400 && status != 422) return false;
  size_t colon = text.find(": ");
  if (colon == std::string_view::npos) return false;
  // Only the deployment's push routes; provisioning calls carry no code problems.
  if (url.find("/api/") == std::string_view::npos || url.find("/api/deployment/") != std::string_view::npos) {
    return false;
  }
  std::string message(trim(text.substr(colon + 2)));
  size_t end = i + 1;
  std::string rest = bodyAfter(lines, i, end);
  if (!rest.empty()) appendLine(message, rest);
  next = end;
  addConvex(collector, std::move(message));
  return true;
}

// ---- npm ---------------------------------------------------------------------------------

struct NpmGroup {
  std::string code;
  std::string file;
  std::vector<std::string> lines;
};

// npm's heading words that only label a line (`npm error notarget No matching version ...`).
std::string_view withoutNpmHeading(std::string_view line) {
  for (std::string_view heading : {"notarget ", "JSON.parse ", "enoent "}) {
    if (line.starts_with(heading)) return line.substr(heading.size());
  }
  return line;
}

void finishNpmGroup(NpmGroup& group, Collector& collector) {
  std::vector<std::string>& body = group.lines;
  // EUSAGE ends with the command's usage: from its one-line description before `Usage:` on.
  for (size_t k = 0; k < body.size(); ++k) {
    if (body[k] == "Usage:") {
      size_t cut = k;
      while (cut > 0 && body[cut - 1].empty()) --cut;
      if (cut > 0) --cut;  // the description ("Clean install a project")
      body.resize(cut);
      break;
    }
  }
  // Paragraphs kept apart by one blank line, blank lines at either end dropped.
  std::string message;
  bool pending_blank = false;
  for (const std::string& line : body) {
    if (line.empty()) {
      pending_blank = !message.empty();
      continue;
    }
    if (message.size() > kMaxDiagnosticMessageBytes) break;
    if (message.empty()) {
      if (!group.code.empty() && !line.starts_with(group.code)) message = group.code + ": ";
    } else {
      message += pending_blank ? "\n\n" : "\n";
    }
    message += line;
    pending_blank = false;
  }
  if (message.empty() && !group.code.empty()) message = group.code;
  if (message.empty()) return;

  std::string file = group.file;
  int line = 0, column = 0;
  if (file.empty() && message.find("Invalid package.json") != std::string::npos) file = "package.json";
  // EJSONPARSE: `... at position 66 (line 5 column 3) while parsing ...`
  if (!file.empty()) {
    if (size_t at = message.find("(line "); at != std::string::npos) {
      std::string_view rest = std::string_view(message).substr(at + 6);
      size_t space = rest.find(' ');
      if (space != std::string_view::npos && parseNumber(rest.substr(0, space), line) &&
          rest.substr(space).starts_with(" column ")) {
        rest.remove_prefix(space + 8);
        size_t close = rest.find(')');
        if (close == std::string_view::npos || !parseNumber(rest.substr(0, close), column)) column = 0;
      } else {
        line = 0;
      }
    }
  }
  collector.add(file, line, column, "error", std::move(message), "npm");
}

}  // namespace

std::vector<Diagnostic> parseCliDiagnostics(std::string_view cli_output,
                                            const std::vector<std::string>& app_root_prefixes) {
  Collector collector(app_root_prefixes);
  try {
    const std::string text = validUtf8(stripEscapes(cli_output));
    const std::vector<std::string_view> lines = splitLines(text);
    std::set<std::pair<std::string, std::string>> esbuild_seen;  // (severity, message) with a location
    std::string use_node_hint;

    size_t i = 0;
    while (i < lines.size()) {
      const std::string_view line = lines[i];
      const std::string_view text_start = trimLeft(line);
      TscHeader tsc;
      size_t next = i + 1;
      if (text_start.starts_with(kEsbuildError) || text_start.starts_with(kEsbuildWarning)) {
        next = parseEsbuildBlock(lines, i, collector, esbuild_seen);
      } else if (text_start.starts_with("esbuild warning: ") || text_start.starts_with("esbuild error: ")) {
        // The CLI's repeat of a message esbuild already printed with its location.
        const bool is_error = text_start.starts_with("esbuild error: ");
        std::string_view message = trim(text_start.substr(is_error ? 15 : 17));
        std::string severity = is_error ? "error" : "warning";
        if (!esbuild_seen.count({severity, std::string(withoutEsbuildId(message))})) {
          collector.add({}, 0, 0, severity, std::string(message), "esbuild");
        }
      } else if (parseTscHeader(line, tsc)) {
        next = parseTscDiagnostic(lines, i, tsc, collector);
      } else if (text_start.starts_with(kFailureMarker) &&
                 trimLeft(text_start.substr(kFailureMarker.size())).starts_with("Schema validation failed")) {
        next = parseSchemaFailure(lines, i, collector);
      } else if (parsePushRejection(lines, i, collector, next)) {
        // consumed up to `next`
      } else if (text_start.starts_with("It looks like you are using Node APIs from a file without the")) {
        // The CLI's advice after esbuild could not resolve a Node builtin; it belongs to those errors.
        size_t end = i;
        while (end < lines.size() && !isBlank(lines[end]) && !isMarkerLine(lines[end])) {
          appendLine(use_node_hint, trim(lines[end]));
          ++end;
        }
        next = end;
      }
      i = next > i ? next : i + 1;
    }

    if (!use_node_hint.empty()) {
      for (Diagnostic& d : collector.result()) {
        if (d.tool == "esbuild" && d.message.find("Are you trying to bundle for node?") != std::string::npos) {
          d.message = bounded(d.message + "\n" + validUtf8(use_node_hint), kMaxDiagnosticMessageBytes);
        }
      }
    }
  } catch (...) {
    // Never fail a report over its diagnostics: what was parsed so far stands.
  }
  return std::move(collector.result());
}

std::vector<Diagnostic> parseNpmDiagnostics(std::string_view npm_output,
                                            const std::vector<std::string>& app_root_prefixes) {
  Collector collector(app_root_prefixes);
  try {
    const std::string text = validUtf8(stripEscapes(npm_output));
    const std::vector<std::string_view> lines = splitLines(text);
    NpmGroup group;
    bool in_group = false;
    bool skip_next = false;
    for (std::string_view raw : lines) {
      std::string_view line = raw;
      bool matched = false;
      for (std::string_view prefix : {"npm error", "npm ERR!"}) {
        if (line.starts_with(prefix) && (line.size() == prefix.size() || line[prefix.size()] == ' ')) {
          line.remove_prefix(prefix.size());
          matched = true;
          break;
        }
      }
      if (!matched) continue;
      if (!line.empty()) line.remove_prefix(1);
      line = trimRight(line);
      if (skip_next) {
        skip_next = false;
        continue;
      }
      if (line.starts_with("code ") && line.find(' ', 5) == std::string_view::npos) {
        if (in_group) finishNpmGroup(group, collector);
        group = NpmGroup{};
        group.code = std::string(line.substr(5));
        in_group = true;
        continue;
      }
      in_group = true;
      if (line.starts_with("errno ") || line.starts_with("syscall ")) continue;
      if (line.starts_with("path ") || line.starts_with("file ")) {
        std::string_view named = trim(line.substr(line.find(' ') + 1));
        if (group.file.empty()) group.file = std::string(named);
        continue;
      }
      if (line.starts_with("A complete log of this run can be found in")) continue;
      if (line.starts_with("Log files were not written")) continue;
      if (line == "For a full report see:") {
        skip_next = true;
        continue;
      }
      if (group.lines.size() < 400) group.lines.emplace_back(withoutNpmHeading(line));
    }
    if (in_group) finishNpmGroup(group, collector);
  } catch (...) {
  }
  return std::move(collector.result());
}

nlohmann::json toJson(const Diagnostic& d) {
  nlohmann::json j = nlohmann::json::object();
  // Re-validated: a Diagnostic built elsewhere must not make the report fail to serialise.
  j["file"] = d.file.empty() ? nlohmann::json(nullptr) : nlohmann::json(validUtf8(d.file));
  j["line"] = d.line > 0 ? nlohmann::json(d.line) : nlohmann::json(nullptr);
  j["column"] = d.column > 0 ? nlohmann::json(d.column) : nlohmann::json(nullptr);
  j["severity"] = validUtf8(d.severity);
  j["message"] = validUtf8(d.message);
  j["tool"] = validUtf8(d.tool);
  return j;
}

nlohmann::json toJson(const std::vector<Diagnostic>& diagnostics) {
  nlohmann::json out = nlohmann::json::array();
  for (const Diagnostic& d : diagnostics) out.push_back(toJson(d));
  return out;
}

std::vector<Diagnostic> diagnosticsFromJson(const nlohmann::json& array) {
  std::vector<Diagnostic> out;
  if (!array.is_array()) return out;
  auto text = [](const nlohmann::json& j, const char* key) {
    return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
  };
  auto number = [](const nlohmann::json& j, const char* key) {
    return j.contains(key) && j[key].is_number_integer() ? j[key].get<int>() : 0;
  };
  for (const auto& j : array) {
    if (!j.is_object()) continue;
    out.push_back({text(j, "file"), number(j, "line"), number(j, "column"), text(j, "severity"), text(j, "message"),
                   text(j, "tool")});
  }
  return out;
}

}  // namespace da

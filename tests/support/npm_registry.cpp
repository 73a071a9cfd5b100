#include "support/npm_registry.h"

#include <archive.h>
#include <archive_entry.h>

#include <fstream>
#include <iterator>
#include <condition_variable>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include <Poco/Base64Decoder.h>
#include <Poco/Base64Encoder.h>
#include <Poco/Crypto/DigestEngine.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/ThreadPool.h>
#include <Poco/URI.h>
#include <nlohmann/json.hpp>

#include "support/archive_builder.h"

namespace testsupport {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

struct PackageVersion {
  std::shared_ptr<const std::string> tarball;
  std::string integrity;
  Json manifest;  // package.json of the tarball, with dist added when the packument is built
};

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// "@scope/name" -> "name"; "name" -> "name".
std::string basenameOf(const std::string& name) { return name.substr(name.find('/') + 1); }

// The package.json of an npm tarball: the one file `<top dir>/package.json` (npm's own
// tarballs use package/, a few old ones another folder name).
Json manifestOfTarball(const std::string& tarball) {
  std::unique_ptr<archive, int (*)(archive*)> reader(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(reader.get());
  archive_read_support_format_tar(reader.get());
  if (archive_read_open_memory(reader.get(), tarball.data(), tarball.size()) != ARCHIVE_OK) {
    throw std::runtime_error(std::string("npm registry: not a tarball: ") + archive_error_string(reader.get()));
  }
  archive_entry* entry = nullptr;
  while (archive_read_next_header(reader.get(), &entry) == ARCHIVE_OK) {
    const std::string path = archive_entry_pathname(entry);
    const size_t slash = path.find('/');
    if (slash == std::string::npos || path.substr(slash + 1) != "package.json") continue;
    std::string content;
    char buffer[16384];
    for (la_ssize_t n; (n = archive_read_data(reader.get(), buffer, sizeof buffer)) > 0;) content.append(buffer, n);
    return Json::parse(content);
  }
  throw std::runtime_error("npm registry: the tarball has no package/package.json");
}

std::vector<unsigned char> base64Decode(const std::string& text) {
  std::istringstream in(text);
  Poco::Base64Decoder decoder(in);
  return std::vector<unsigned char>((std::istreambuf_iterator<char>(decoder)), std::istreambuf_iterator<char>());
}

}  // namespace

struct NpmRegistry::State {
  mutable std::mutex mutex;
  std::string origin;  // "http://127.0.0.1:PORT", set by start()
  std::map<std::string, std::map<std::string, PackageVersion>> packages;
  std::map<std::string, std::string> latest;
  std::vector<std::string> requests;
  // holdRequests(): every request waits here until releaseRequests() or stop().
  bool holding = false;
  size_t held = 0;
  std::condition_variable hold_changed;

  std::string tarballUrl(const std::string& name, const std::string& version) const {
    return origin + tarballPath(name, version);
  }

  Json packument(const std::string& name) const {
    Json versions = Json::object();
    for (const auto& [version, package] : packages.at(name)) {
      Json manifest = package.manifest;
      manifest["name"] = name;
      manifest["version"] = version;
      manifest["dist"] = {{"tarball", tarballUrl(name, version)}, {"integrity", package.integrity}};
      versions[version] = std::move(manifest);
    }
    return {{"_id", name}, {"name", name}, {"dist-tags", {{"latest", latest.at(name)}}}, {"versions", versions}};
  }
};

namespace {

class RegistryHandler : public Poco::Net::HTTPRequestHandler {
 public:
  explicit RegistryHandler(std::shared_ptr<NpmRegistry::State> state) : state_(std::move(state)) {}

  void handleRequest(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override {
    const std::string target = request.getURI();
    std::string path;
    try {
      Poco::URI::decode(target.substr(0, target.find('?')), path);
    } catch (const Poco::Exception&) {
      path.clear();
    }
    std::shared_ptr<const std::string> tarball;
    std::string packument;
    {
      std::unique_lock<std::mutex> lock(state_->mutex);
      state_->requests.push_back(target);
      if (state_->holding) {
        ++state_->held;
        state_->hold_changed.notify_all();
        state_->hold_changed.wait(lock, [&] { return !state_->holding; });
        --state_->held;
      }
      if (const size_t dash = path.find("/-/"); dash != std::string::npos && path.size() > 1) {
        const std::string name = path.substr(1, dash - 1), file = path.substr(dash + 3);
        if (auto package = state_->packages.find(name); package != state_->packages.end()) {
          for (const auto& [version, entry] : package->second) {
            if (file == basenameOf(name) + "-" + version + ".tgz") tarball = entry.tarball;
          }
        }
      } else if (path.size() > 1 && state_->packages.count(path.substr(1))) {
        packument = state_->packument(path.substr(1)).dump();
      }
    }
    if (request.getMethod() != "GET" && request.getMethod() != "HEAD") {
      return send(response, Poco::Net::HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "application/json",
                  R"({"error":"method not allowed"})");
    }
    if (tarball) return send(response, Poco::Net::HTTPResponse::HTTP_OK, "application/octet-stream", *tarball);
    if (!packument.empty()) return send(response, Poco::Net::HTTPResponse::HTTP_OK, "application/json", packument);
    send(response, Poco::Net::HTTPResponse::HTTP_NOT_FOUND, "application/json", R"({"error":"Not found"})");
  }

 private:
  static void send(Poco::Net::HTTPServerResponse& response, Poco::Net::HTTPResponse::HTTPStatus status,
                   const std::string& content_type, const std::string& body) {
    response.setStatus(status);
    response.setContentType(content_type);
    response.setContentLength(static_cast<std::streamsize>(body.size()));
    response.send().write(body.data(), static_cast<std::streamsize>(body.size()));
  }

  std::shared_ptr<NpmRegistry::State> state_;
};

class RegistryHandlerFactory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit RegistryHandlerFactory(std::shared_ptr<NpmRegistry::State> state) : state_(std::move(state)) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest&) override {
    return new RegistryHandler(state_);
  }

 private:
  std::shared_ptr<NpmRegistry::State> state_;
};

}  // namespace

// Handlers hold State, not the registry, so a request still in flight at stop() is safe.
struct NpmRegistry::Impl {
  // npm opens many keep-alive sockets at once, and each holds a thread while open.
  Poco::ThreadPool threads{2, 64};
  std::unique_ptr<Poco::Net::HTTPServer> server;
};

NpmRegistry::NpmRegistry() : state_(std::make_shared<State>()), impl_(std::make_unique<Impl>()) {}

NpmRegistry::~NpmRegistry() { stop(); }

void NpmRegistry::start() {
  if (impl_->server) return;
  Poco::Net::ServerSocket socket;
  socket.bind(Poco::Net::SocketAddress("127.0.0.1", 0), /*reuseAddress=*/true);
  socket.listen(128);
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->origin = "http://127.0.0.1:" + std::to_string(socket.address().port());
  }
  Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
  params->setMaxThreads(64);
  params->setMaxQueued(256);
  params->setKeepAlive(true);
  params->setThreadIdleTime(Poco::Timespan(0, 200 * 1000));  // a prompt stop()
  impl_->server = std::make_unique<Poco::Net::HTTPServer>(new RegistryHandlerFactory(state_), impl_->threads,
                                                          socket, params);
  impl_->server->start();
}

void NpmRegistry::holdRequests() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->holding = true;
}

void NpmRegistry::releaseRequests() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->holding = false;
  }
  state_->hold_changed.notify_all();
}

bool NpmRegistry::waitUntilARequestIsHeld(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(state_->mutex);
  return state_->hold_changed.wait_for(lock, timeout, [&] { return state_->held > 0; });
}

void NpmRegistry::stop() {
  releaseRequests();
  if (!impl_->server) return;
  impl_->server->stopAll(/*abortCurrent=*/true);
  impl_->threads.joinAll();
  impl_->server.reset();
}

std::string NpmRegistry::url() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->origin.empty()) throw std::logic_error("NpmRegistry::url() before start()");
  return state_->origin + "/";
}

std::string NpmRegistry::addPackage(const std::string& name, const std::string& version, std::string tarball) {
  PackageVersion package;
  package.integrity = npmIntegrity(tarball);
  package.manifest = manifestOfTarball(tarball);
  package.tarball = std::make_shared<const std::string>(std::move(tarball));
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->packages[name][version] = package;
  state_->latest[name] = version;
  return package.integrity;
}

std::string NpmRegistry::addPackageFromFiles(const std::string& name, const std::string& version,
                                             const PackageFiles& files) {
  ArchiveBuilder builder;
  if (!files.count("package.json")) {
    builder.addFile("package/package.json", Json{{"name", name}, {"version", version}}.dump(2));
  }
  for (const auto& [path, content] : files) {
    builder.addFile("package/" + path, content, path.rfind("bin/", 0) == 0 ? 0755 : 0644);
  }
  return addPackage(name, version, builder.build(ArchiveBuilder::Format::kTarGz));
}

std::string NpmRegistry::addPackageFromNpmCache(const fs::path& cache_dir, const std::string& name,
                                                const std::string& version, const std::string& integrity) {
  const fs::path content = npmCacheContentPath(cache_dir, integrity);
  std::string tarball = readFile(content);
  if (npmIntegrity(tarball) != integrity) {
    throw std::runtime_error("npm cache content " + content.string() + " does not match " + integrity);
  }
  return addPackage(name, version, std::move(tarball));
}

std::vector<std::string> NpmRegistry::servePackagesOfLockfile(const fs::path& lockfile_path,
                                                              const fs::path& cache_dir) {
  const Json lock = Json::parse(readFile(lockfile_path));
  if (!lock.contains("packages")) throw std::runtime_error(lockfile_path.string() + " has no \"packages\" (lockfileVersion 1?)");
  std::vector<std::string> served;
  for (const auto& [path, entry] : lock["packages"].items()) {
    if (path.empty() || entry.value("link", false) || !entry.contains("integrity")) continue;
    const size_t at = path.rfind("node_modules/");
    const std::string name = entry.value("name", at == std::string::npos ? path : path.substr(at + 13));
    const std::string version = entry.at("version");
    if (!fs::exists(npmCacheContentPath(cache_dir, entry["integrity"])) && entry.value("optional", false)) continue;
    addPackageFromNpmCache(cache_dir, name, version, entry["integrity"]);
    served.push_back(name + "@" + version);
  }
  return served;
}

std::string NpmRegistry::tarballPath(const std::string& name, const std::string& version) {
  return "/" + name + "/-/" + basenameOf(name) + "-" + version + ".tgz";
}

std::string NpmRegistry::tarballUrl(const std::string& name, const std::string& version) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->tarballUrl(name, version);
}

std::string NpmRegistry::integrityOf(const std::string& name, const std::string& version) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->packages.at(name).at(version).integrity;
}

std::vector<std::string> NpmRegistry::requests() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->requests;
}

size_t NpmRegistry::requestCount(const std::string& path) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  size_t count = 0;
  for (const auto& request : state_->requests) {
    const bool any_tarball = path == "*.tgz" && request.size() > 4 && request.compare(request.size() - 4, 4, ".tgz") == 0;
    if (request == path || any_tarball) ++count;
  }
  return count;
}

std::string npmIntegrity(const std::string& bytes) {
  Poco::Crypto::DigestEngine engine("SHA512");
  engine.update(bytes.data(), bytes.size());
  const auto& digest = engine.digest();
  std::ostringstream out;
  Poco::Base64Encoder encoder(out);
  encoder.rdbuf()->setLineLength(0);
  encoder.write(reinterpret_cast<const char*>(digest.data()), static_cast<std::streamsize>(digest.size()));
  encoder.close();
  return "sha512-" + out.str();
}

fs::path npmCacheContentPath(const fs::path& cache_dir, const std::string& integrity) {
  const std::string prefix = "sha512-";
  if (integrity.rfind(prefix, 0) != 0) throw std::runtime_error("not a sha512 integrity: " + integrity);
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  for (unsigned char byte : base64Decode(integrity.substr(prefix.size()))) {
    hex += kHex[byte >> 4];
    hex += kHex[byte & 0xf];
  }
  if (hex.size() != 128) throw std::runtime_error("not a sha512 integrity: " + integrity);
  return cache_dir / "_cacache/content-v2/sha512" / hex.substr(0, 2) / hex.substr(2, 2) / hex.substr(4);
}

PackageFiles hostileTypescriptFiles(const std::string& script_js) {
  const Json package = {{"name", "typescript"},
                        {"version", kHostileTypescriptVersion},
                        {"description", "a crafted typescript whose tsc runs test code"},
                        {"license", "MIT"},
                        {"bin", {{"tsc", "bin/tsc"}}}};
  // The Convex CLI runs `tsc --version`, then `tsc --project <dir> --listFiles` with its
  // output captured (stdout is read as the list of files), and only when that fails runs
  // `tsc --project <dir> --pretty true` once more with its output shown in the CLI's log, and
  // goes on with the deploy if that run exits 0.
  const std::string prelude =
      "if (process.argv.includes('--version')) { console.log('Version " + std::string(kHostileTypescriptVersion) +
      "'); process.exit(0); }\n"
      "if (process.argv.includes('--listFiles')) process.exit(1);\n";
  return {{"package.json", package.dump(2)}, {"bin/tsc", "#!/usr/bin/env node\n" + prelude + script_js}};
}

std::string hostileReadScript(const std::vector<std::string>& paths_to_read) {
  std::string script =
      "const fs = require('fs');\n"
      "console.log('HOSTILE_TSC_RAN');\n"
      "for (const path of " + Json(paths_to_read).dump() + ") {\n"
      "  try {\n"
      "    fs.readFileSync(path);\n"
      "    console.log(`READ ${path}: ok`);\n"
      "  } catch (e) {\n"
      "    console.log(`READ ${path}: error ${e.code || e.message}`);\n"
      "  }\n"
      "}\n"
      "process.exit(0);\n";
  return script;
}

void writeAppWithTypescript(const fs::path& app_dir, const fs::path& dest, const std::string& version,
                            const std::string& resolved, const std::string& integrity) {
  if (fs::exists(dest)) throw std::runtime_error(dest.string() + " exists already");
  fs::create_directories(dest);
  for (const auto& entry : fs::directory_iterator(app_dir)) {
    if (entry.path().filename() == "node_modules") continue;
    fs::copy(entry.path(), dest / entry.path().filename(), fs::copy_options::recursive);
  }
  auto setTypescript = [&](Json& package) {
    for (const char* section : {"dependencies", "devDependencies"}) {
      if (package.contains(section) && package[section].contains("typescript")) package[section]["typescript"] = version;
    }
    if (!package.contains("devDependencies") || !package["devDependencies"].contains("typescript")) {
      if (!package.contains("dependencies") || !package["dependencies"].contains("typescript")) {
        package["devDependencies"]["typescript"] = version;
      }
    }
  };
  Json package = Json::parse(readFile(dest / "package.json"));
  setTypescript(package);
  std::ofstream(dest / "package.json") << package.dump(2) << "\n";

  Json lock = Json::parse(readFile(dest / "package-lock.json"));
  setTypescript(lock["packages"][""]);
  Json& entry = lock["packages"]["node_modules/typescript"];
  const bool dev = !lock["packages"][""].contains("dependencies") ||
                   !lock["packages"][""]["dependencies"].contains("typescript");
  entry = {{"version", version}, {"resolved", resolved}, {"integrity", integrity},
           {"license", "MIT"}, {"bin", {{"tsc", "bin/tsc"}}}};
  if (dev) entry["dev"] = true;
  std::ofstream(dest / "package-lock.json") << lock.dump(2) << "\n";
}

}  // namespace testsupport

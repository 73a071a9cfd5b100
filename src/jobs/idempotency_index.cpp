#include "jobs/idempotency_index.h"


#include <fstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "jobs/job_store.h"
#include "util/digest.h"
#include "util/ids.h"

namespace da {

namespace fs = std::filesystem;

namespace {

constexpr const char* kHmacKeyFile = "hmac.key";
constexpr size_t kHmacKeyBytes = 32;

}  // namespace

IdempotencyIndex::IdempotencyIndex(fs::path dir, std::chrono::milliseconds keep_for)
    : dir_(std::move(dir)), keep_for_(keep_for) {}

std::string IdempotencyIndex::load() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return "cannot create " + dir_.string() + ": " + ec.message();
  fs::permissions(dir_, fs::perms::owner_all, ec);
  const fs::path key_path = dir_ / kHmacKeyFile;
  {
    std::ifstream in(key_path, std::ios::binary);
    if (in) hmac_key_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (hmac_key_.size() != kHmacKeyBytes) {
    hmac_key_ = randomBytes(kHmacKeyBytes);
    std::string error;
    if (!replaceFileDurably(key_path, hmac_key_, error)) return error;
    fs::permissions(key_path, fs::perms::owner_read | fs::perms::owner_write, ec);
  }
  const int64_t oldest = nowUnixMillis() - keep_for_.count();
  size_t loaded = 0;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (it->path().extension() != ".json") continue;
    try {
      std::ifstream in(it->path());
      const auto j = nlohmann::json::parse(in);
      Entry entry{j.at("fingerprint").get<std::string>(), j.at("job_id").get<std::string>(),
                  j.at("created_at_ms").get<int64_t>()};
      const std::string hash = it->path().stem().string();
      if (entry.created_at_ms < oldest || !isValidDeployId(entry.job_id)) {
        std::error_code ignored;
        fs::remove(it->path(), ignored);
        continue;
      }
      std::lock_guard lock(mutex_);
      entries_[hash] = std::move(entry);
      ++loaded;
    } catch (const std::exception& e) {
      spdlog::warn("idempotency: ignoring {}: {}", it->path().string(), e.what());
    }
  }
  if (loaded) spdlog::info("idempotency: {} key(s) kept from before", loaded);
  return {};
}

std::string IdempotencyIndex::keyHash(const std::string& key) const { return hmacSha256Hex(hmac_key_, "key\n" + key); }

std::string IdempotencyIndex::fingerprint(const std::string& canonical_request, const std::string& bundle_sha256) const {
  return hmacSha256Hex(hmac_key_, "request\n" + canonical_request + "\nbundle " + bundle_sha256);
}

IdempotencyIndex::Claim IdempotencyIndex::claim(const std::string& key, const std::string& fingerprint,
                                                std::chrono::milliseconds wait) {
  const std::string hash = keyHash(key);
  std::unique_lock lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (true) {
    auto it = entries_.find(hash);
    if (it != entries_.end() && it->second.created_at_ms < nowUnixMillis() - keep_for_.count()) {
      entries_.erase(it);  // expired: as if never used
      it = entries_.end();
    }
    if (it == entries_.end()) {
      entries_[hash] = Entry{fingerprint, "", nowUnixMillis()};
      return {Claim::Kind::kClaimed, ""};
    }
    if (it->second.fingerprint != fingerprint) return {Claim::Kind::kConflict, it->second.job_id};
    if (!it->second.job_id.empty()) return {Claim::Kind::kReplay, it->second.job_id};
    if (settled_.wait_until(lock, deadline) == std::cv_status::timeout) {
      auto again = entries_.find(hash);
      if (again != entries_.end() && again->second.job_id.empty()) return {Claim::Kind::kBusy, ""};
    }
  }
}

bool IdempotencyIndex::accept(const std::string& key, const std::string& job_id, std::string& error) {
  const std::string hash = keyHash(key);
  Entry entry;
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(hash);
    if (it == entries_.end()) return true;
    it->second.job_id = job_id;
    entry = it->second;
  }
  settled_.notify_all();
  const nlohmann::json stored = {
      {"fingerprint", entry.fingerprint}, {"job_id", entry.job_id}, {"created_at_ms", entry.created_at_ms}};
  return replaceFileDurably(dir_ / (hash + ".json"), stored.dump() + "\n", error);
}

void IdempotencyIndex::release(const std::string& key) {
  const std::string hash = keyHash(key);
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(hash);
    if (it != entries_.end() && it->second.job_id.empty()) entries_.erase(it);
  }
  settled_.notify_all();
}

size_t IdempotencyIndex::expire() {
  const int64_t oldest = nowUnixMillis() - keep_for_.count();
  std::vector<std::string> gone;
  {
    std::lock_guard lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (!it->second.job_id.empty() && it->second.created_at_ms < oldest) {
        gone.push_back(it->first);
        it = entries_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& hash : gone) {
    std::error_code ignored;
    fs::remove(dir_ / (hash + ".json"), ignored);
  }
  return gone.size();
}

size_t IdempotencyIndex::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace da

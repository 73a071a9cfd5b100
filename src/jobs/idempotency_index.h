// Idempotency-Key of POST /v1/deploys: the same key with the same request answers the job the
// first one made; the same key with a different request is a conflict. Kept on disk (one small
// file per key under <state>/idempotency/) for at least the retention time, so a client that
// retries across a restart of the agent still gets its job, never a second one.
//
// A request's fingerprint is an HMAC-SHA256, under a random key kept in the same folder, of
// everything that decides what the deploy does: the bundle's bytes, the options, env values and
// the credentials. A plain hash of secrets on disk could be tested against guesses; an HMAC
// under a key nobody outside the agent has cannot. Keys are stored hashed as well.
//
// Concurrent requests with one key: the first to finish its upload claims the key; the others
// wait (bounded) until it is accepted, then answer its job, or, if it was refused, one of them
// claims the key in turn.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace da {

class IdempotencyIndex {
 public:
  IdempotencyIndex(std::filesystem::path dir, std::chrono::milliseconds keep_for);

  // Creates the folder and its HMAC key, loads the entries still young enough. "" or a problem.
  std::string load();

  // The fingerprint of a request: `canonical_request` (options, env values, credentials, as one
  // string) and the bundle's SHA-256.
  std::string fingerprint(const std::string& canonical_request, const std::string& bundle_sha256) const;

  struct Claim {
    enum class Kind {
      kClaimed,   // this request owns the key now: accept() or release() it
      kReplay,    // an earlier request with this key and this fingerprint made job_id
      kConflict,  // the key was used with another request
      kBusy,      // another request with the key is still being taken in after `wait`
    } kind;
    std::string job_id;
  };
  Claim claim(const std::string& key, const std::string& fingerprint, std::chrono::milliseconds wait);
  // The claimed request became job `job_id`: persisted (false and `error` if it cannot be; the
  // entry stays in memory, so this process still answers replays).
  bool accept(const std::string& key, const std::string& job_id, std::string& error);
  // The claimed request was refused: the key is free again.
  void release(const std::string& key);

  // Forgets entries older than the retention time (memory and disk). Returns how many.
  size_t expire();
  size_t size() const;

 private:
  struct Entry {
    std::string fingerprint;
    std::string job_id;  // empty while the claiming request is being taken in
    int64_t created_at_ms = 0;
  };
  std::string keyHash(const std::string& key) const;

  std::filesystem::path dir_;
  std::chrono::milliseconds keep_for_;
  std::string hmac_key_;
  mutable std::mutex mutex_;
  std::condition_variable settled_;
  std::map<std::string, Entry> entries_;  // by keyHash
};

}  // namespace da

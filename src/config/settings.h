// Everything the library needs to run, already resolved. agent/ fills it from flags,
// environment and a properties file; tests fill it directly.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bundle/intake.h"
#include "sandbox/isolation.h"

namespace da {

inline constexpr const char* kDefaultConvexUrl = "https://api.convex.dev";

struct Toolchain {
  std::filesystem::path node;            // Node >= 22 binary
  std::filesystem::path convex_cli;      // convex/bin/main.js of the pinned CLI
  std::filesystem::path npm_cli;         // npm/bin/npm-cli.js
  std::string convex_cli_version;        // read from the CLI's package.json at start-up
  std::string node_version;              // what `node --version` printed at start-up, e.g. "v22.23.3"
};

// How npm and the CLI are isolated (docs/design.md, "The sandbox"). `tier` and `facilities`
// are what the start-up probe found; the rest are per-job bounds.
struct SandboxSettings {
  std::string requested = "auto";        // auto | namespaces | landlock | none
  sandbox::Tier tier = sandbox::Tier::kNone;
  std::vector<std::string> facilities;   // what the tier enforces on this host
  uid_t job_uid = 60000;                 // host ids jobs run as when the agent is root
  gid_t job_gid = 60000;
  uint64_t memory_bytes = 4ull << 30;    // per npm or CLI run, through a cgroup where one is writable
  uint64_t max_processes = 1024;
  uint64_t disk_bytes = 4ull << 30;      // the job's writable space (namespaces tier as root); 0 = host disk
};

// The egress proxy of every npm and CLI run (docs/design.md, "Network egress").
struct EgressSettings {
  // false (--job-network=host): runs share the agent's network with no proxy. For measuring
  // what the proxy costs and for hosts where jobs are trusted; every report warns.
  bool proxy = true;
  size_t max_connections = 64;                 // open at once, per run; npm opens up to ~16
  std::chrono::seconds idle_timeout{300};      // a tunnel with no byte either way is cut
  std::chrono::seconds connect_timeout{10};
};

// Webhooks: where a deploy's `callback_url` may point, and how its final report is signed and
// retried (docs/design.md, "Webhooks").
struct CallbackSettings {
  // "host:port" entries (a bare host means port 443), matched exactly: no wildcards, names
  // compared as names (net::EgressAllowlist's rules). Empty: callback_url is refused.
  std::vector<std::string> allowed_hosts;
  std::string secret;                          // HMAC-SHA256 key of Deploy-Agent-Signature
  int max_attempts = 8;                        // the first included
  std::chrono::milliseconds first_retry{2000};  // doubling after each failed attempt
  std::chrono::milliseconds max_retry{300000};
  std::chrono::seconds timeout{10};            // one attempt, connect to last byte
  unsigned senders = 2;                        // deliveries in flight at once
};

struct Settings {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 8080;
  std::filesystem::path state_dir;
  std::string api_token;                 // required on every route but /healthz
  std::string convex_url = kDefaultConvexUrl;
  std::string team_token;                // optional: without it callers must send a deploy key
  Toolchain toolchain;

  // Passed from the agent's own environment to npm and the CLI, for networks that proxy or
  // intercept HTTPS. Names are configurable; values are captured once at start-up.
  std::vector<std::string> env_passthrough_names = {
      "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy",
      "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "npm_config_cafile"};
  std::map<std::string, std::string> env_passthrough;

  bundle::IntakeLimits intake_limits;
  unsigned workers = 2;
  size_t max_queued_jobs = 64;
  std::chrono::seconds install_timeout{600};
  std::chrono::seconds cli_timeout{600};
  uint64_t max_log_bytes = 8ull << 20;   // stored output per phase; the rest is dropped and noted

  std::filesystem::path npm_cache;       // default <state_dir>/npm-cache
  bool npm_offline = false;              // install only from npm_cache (tests, air-gapped hosts)
  // Where npm installs from (npm_config_registry), ending in exactly one '/'. Lockfile entries
  // resolved here or on the public registry are accepted at intake.
  std::string npm_registry = bundle::kPublicNpmRegistry;

  // The team create_project creates in; unset: the team of the token (token_details), one API
  // call per created project.
  std::optional<int64_t> convex_team_id;
  // Least privilege for minted keys; the Management API's default would be full access.
  std::vector<std::string> deploy_key_actions = {"deployment:deploy"};
  std::chrono::minutes deploy_key_ttl{60};  // the API requires at least 30 minutes
  bool keep_workdirs = false;            // keep unpacked app and node_modules after a job
  // Finished jobs (report, logs) are removed after this long, and oldest first while the jobs
  // folder is over the budget (work folders kept by keep_workdirs go before any report).
  std::chrono::hours retention_age{24 * 7};
  uint64_t retention_bytes = 4ull << 30;
  // Idempotency-Keys are answered for this long (at least a day).
  std::chrono::hours idempotency_age{24};
  // /readyz is 503 when the state directory has less free space than this.
  uint64_t min_free_bytes = 1ull << 30;
  size_t max_event_streams = 32;         // GET .../events open at once; past it 503
  std::chrono::seconds event_heartbeat{15};  // a comment line on an idle event stream
  std::string log_format = "text";       // text | json (one JSON object per line)
  // After SIGTERM: how long running deploys may take to finish before they are cancelled.
  // 25 s fits inside Kubernetes' default terminationGracePeriodSeconds of 30.
  std::chrono::seconds drain_grace{25};
  SandboxSettings sandbox;
  EgressSettings egress;
  CallbackSettings callbacks;
};

}  // namespace da

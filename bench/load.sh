#!/usr/bin/env bash
# Load benchmark: many concurrent status, SSE and metrics clients against the agent while
# deploys run, against a plain static server measured in the same run (loopback only). See
# docs/benchmarks.md ("Load") for results and reading.
#
# Builds nothing: the binaries must already be in BENCH_BIN (default build/bin):
#   cmake --build build --target deploy-agent convex-standin bench-load bench-static-server
#
# One run, three phases of BENCH_SECONDS each, the same clients every time (bench-load, see
# bench/load_main.cpp): BENCH_STATUS_CLIENTS pollers, BENCH_SSE_CLIENTS event-stream followers,
# BENCH_METRICS_CLIENTS scrapers, each closed-loop on its own keep-alive connection.
#   static         bench-static-server (bench/static_server_main.cpp) answering with a real
#                  report, event stream and scrape taken from the agent's warm-up deploy
#   agent-idle     the agent, nothing running, the clients reading the warm-up deploy
#   agent-deploys  the agent while BENCH_DEPLOYS bundles, posted at the start, queue and run
# Before the phases, one untimed warm-up deploy (npm's cache, the stand-in, the bodies above).
#
# Exits non-zero on any error, any lost, repeated or out-of-order event, any deploy that did not
# succeed, or an agent whose resident memory ever exceeded BENCH_MAX_RSS_MB (see below). Every
# phase ends by itself (bench-load's window plus a bounded grace for deploys still running);
# the servers are killed on exit.
#
# Environment: BENCH_BIN, BENCH_OUT (build/bench/load), BENCH_SECONDS (20), BENCH_DEPLOYS (4),
# BENCH_STATUS_CLIENTS (8), BENCH_SSE_CLIENTS (16), BENCH_METRICS_CLIENTS (4),
# BENCH_GRACE_SECONDS (240), BENCH_MAX_RSS_MB (64), BENCH_KEEP=1 keeps the temp dir.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BENCH_BIN:-$ROOT/build/bin}"
OUT="${BENCH_OUT:-$ROOT/build/bench/load}"
WINDOW="${BENCH_SECONDS:-20}"
DEPLOYS="${BENCH_DEPLOYS:-4}"
STATUS_CLIENTS="${BENCH_STATUS_CLIENTS:-8}"
SSE_CLIENTS="${BENCH_SSE_CLIENTS:-16}"
METRICS_CLIENTS="${BENCH_METRICS_CLIENTS:-4}"
GRACE="${BENCH_GRACE_SECONDS:-240}"
# The bound on the agent's resident memory. Idle, the agent is about 10 MB; what it holds per
# request is a report (a few KB) and per stream a batch of at most 500 stored events, so the
# 28 clients here account for well under a megabyte; thread stacks are mapped but barely
# touched. 64 MB is about three times the peak measured (19.5 MB, docs/benchmarks.md): room for
# the allocator's per-thread arenas, and still tight enough that memory growing with requests
# served (about 415 000 to the agent in a 20-second run) or with events streamed would cross it.
MAX_RSS_MB="${BENCH_MAX_RSS_MB:-64}"
NPM_CACHE="$ROOT/toolchain/npm-cache"
APP_SRC="$ROOT/examples/chat-app"
DEPLOYMENT=happy-otter-123

for f in "$BIN/deploy-agent" "$BIN/convex-standin" "$BIN/bench-load" "$BIN/bench-static-server" \
         "$ROOT/toolchain/bin/node"; do
  [ -e "$f" ] || { echo "load: missing $f (build the targets named at the top of $0, run scripts/setup.sh)" >&2; exit 1; }
done
command -v curl >/dev/null && command -v python3 >/dev/null || { echo "load: needs curl and python3" >&2; exit 1; }

# The agent serves --max-event-streams (32 by default) streams; more would be refused with 503.
# The warm-up's own stream is closed before the phases, so the clients may use all of them.
EXTRA_AGENT_ARGS=()
if [ "$SSE_CLIENTS" -gt 32 ]; then EXTRA_AGENT_ARGS+=(--max-event-streams "$SSE_CLIENTS"); fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-load.XXXXXX")"
PIDS=()
cleanup() {
  stop_servers
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "load: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT"

source "$ROOT/scripts/lib/servers.sh"


# ---- the stand-in, a deploy key, the bundle, the agent --------------------------------------

start_server standin "$BIN/convex-standin" --listen 127.0.0.1:0
STANDIN="$SERVER_URL"
KEY="$(mint_standin_key "$STANDIN" "$DEPLOYMENT")"
[ -n "$KEY" ] || { echo "load: the stand-in minted no key" >&2; exit 1; }

BUNDLE="$WORK/bundle.tar.gz"
tar -C "$APP_SRC" --exclude=node_modules --exclude='.env*' -czf "$BUNDLE" .

export DEPLOY_AGENT_TOKEN="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# Heartbeats every 2 s (default 15) so the streams of queued deploys carry some within a phase.
start_server agent "$BIN/deploy-agent" --listen 127.0.0.1:0 --state-dir "$WORK/state" \
  --toolchain "$ROOT/toolchain" --convex-url "$STANDIN" --npm-cache "$NPM_CACHE" --npm-offline \
  --event-heartbeat-seconds 2 "${EXTRA_AGENT_ARGS[@]}"
AGENT="$SERVER_URL"
AGENT_PID="${PIDS[-1]}"
AUTH="Authorization: Bearer $DEPLOY_AGENT_TOKEN"
echo "load: stand-in at $STANDIN, agent at $AGENT (pid $AGENT_PID)" >&2

# ---- warm-up: one deploy, followed; its report, stream and a scrape become the static bodies --

BODIES="$WORK/static"
mkdir -p "$BODIES"
accepted="$(curl -sS --max-time 30 -X POST "$AGENT/v1/deploys?target=prod" -H "$AUTH" -H "Convex-Deploy-Key: $KEY" \
  -H 'Content-Type: application/gzip' --data-binary @"$BUNDLE")"
WARM_ID="$(printf '%s' "$accepted" | json_get 'j.get("id")' 2>/dev/null || true)"
[ -n "$WARM_ID" ] || { echo "load: the agent did not accept the warm-up bundle: $accepted" >&2; exit 1; }
# The stream ends by itself after the report event; --max-time only bounds a stuck deploy.
curl -sS -N --max-time 300 "$AGENT/v1/deploys/$WARM_ID/events" -H "$AUTH" >"$BODIES/events.txt"
curl -sS -f --max-time 10 "$AGENT/v1/deploys/$WARM_ID" -H "$AUTH" >"$BODIES/report.json"
curl -sS -f --max-time 10 "$AGENT/metrics" -H "$AUTH" >"$BODIES/metrics.txt"
status="$(json_get 'j["status"]' <"$BODIES/report.json")"
[ "$status" = succeeded ] || { echo "load: warm-up deploy $WARM_ID ended '$status'" >&2; cat "$BODIES/report.json" >&2; exit 1; }
echo "load: warm-up deploy $WARM_ID succeeded; bodies: report $(wc -c <"$BODIES/report.json") B," \
  "events $(wc -c <"$BODIES/events.txt") B ($(grep -c '^id: ' "$BODIES/events.txt") events)," \
  "metrics $(wc -c <"$BODIES/metrics.txt") B" >&2

start_server static "$BIN/bench-static-server" --listen 127.0.0.1:0 --body "$BODIES/report.json" \
  --events "$BODIES/events.txt" --metrics "$BODIES/metrics.txt"
STATIC="$SERVER_URL"
STATIC_PID="${PIDS[-1]}"
echo "load: static server at $STATIC (pid $STATIC_PID)" >&2

# ---- the phases -----------------------------------------------------------------------------

CLIENT_ARGS=(--seconds "$WINDOW" --grace-seconds "$GRACE" --status-clients "$STATUS_CLIENTS"
             --sse-clients "$SSE_CLIENTS" --metrics-clients "$METRICS_CLIENTS" --token "$DEPLOY_AGENT_TOKEN")
echo "load: load average before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/load.txt" >&2
failed=0
phase() {  # phase LABEL ARGS...: one bench-load run; its JSON goes to $OUT/LABEL.json
  local label="$1"; shift
  echo "load: phase $label (${WINDOW} s)" >&2
  if ! "$BIN/bench-load" --label "$label" --json "$OUT/$label.json" "${CLIENT_ARGS[@]}" "$@" >"$WORK/$label.out"; then
    echo "load: phase $label FAILED:" >&2
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(json.dumps({k: j[k] for k in ("errors","error_samples","sse","deploys")}, indent=1))' \
      "$OUT/$label.json" >&2 || cat "$WORK/$label.out" >&2
    failed=1
  fi
}
phase static --base "$STATIC" --pid "$STATIC_PID" --id "$WARM_ID"
phase agent-idle --base "$AGENT" --pid "$AGENT_PID" --id "$WARM_ID"
phase agent-deploys --base "$AGENT" --pid "$AGENT_PID" --id "$WARM_ID" \
  --deploys "$DEPLOYS" --bundle "$BUNDLE" --deploy-key "$KEY"
echo "load: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt" >&2
cp "$BODIES/report.json" "$OUT/warmup-report.json"

# ---- the table and the verdict --------------------------------------------------------------

table_ok=0
python3 - "$OUT" "$MAX_RSS_MB" <<'PY' | tee "$OUT/table.md" || table_ok=1
import json, os, sys
out, max_rss_mb = sys.argv[1], float(sys.argv[2])
phases = ["static", "agent-idle", "agent-deploys"]
runs = {p: json.load(open(os.path.join(out, p + ".json"))) for p in phases}
names = {"static": "static server", "agent-idle": "agent, idle", "agent-deploys": "agent, deploys running"}
c = runs["static"]["clients"]
print(f"{runs['static']['window_s']} s per phase; clients: {c['status']} status, {c['sse']} SSE "
      f"({c['sse_live']} following running deploys), {c['metrics']} metrics")
print()
print("requests/s, p50 / p99 ms; ratio = requests/s against the static server's")
print()
print("| | " + " | ".join(names[p] for p in phases) + " | ratio idle | ratio deploys |")
print("|---|" + "---|" * (len(phases) + 2))
def cell(k):
    return f"{k['per_second']:.0f}/s, {k['p50_ms']:.2f} / {k['p99_ms']:.1f}"
def ratio(k, ref):
    return f"{k['per_second'] / ref['per_second']:.2f}" if ref["per_second"] else "-"
for kind, label in [("status", "GET /v1/deploys/{id}"), ("list", "GET /v1/deploys"),
                    ("metrics", "GET /metrics"), ("events", "GET .../events (to headers)")]:
    ks = [runs[p]["kinds"][kind] for p in phases]
    print(f"| {label} | " + " | ".join(cell(k) for k in ks) + f" | {ratio(ks[1], ks[0])} | {ratio(ks[2], ks[0])} |")
def row(label, f):
    print(f"| {label} | " + " | ".join(str(f(runs[p])) for p in phases) + " | | |")
row("streams read to the report (live)", lambda r: f"{r['sse']['streams_complete']} ({r['sse']['streams_live']})")
row("events received (heartbeats)", lambda r: f"{r['sse']['events']} ({r['sse']['heartbeats']})")
row("errors", lambda r: r["errors"])
row("lost / repeated / out-of-order events", lambda r: r["sse"]["event_order_errors"])
row("streams disagreeing with another of the same deploy", lambda r: r["sse"]["inconsistent_streams"])
row("report event status != final GET", lambda r: r["sse"]["report_mismatches"])
row("deploys posted / succeeded", lambda r: "-" if not r["deploys"]["asked"] else
    f"{r['deploys']['posted']} / {r['deploys']['succeeded']}")
warm = json.load(open(os.path.join(out, "warmup-report.json")))["timings_ms"]
row("deploy run s (timings_ms.run), median / max", lambda r: f"{warm['run'] / 1000:.1f} (warm-up, no load)" if not r["deploys"]["asked"] else
    f"{r['deploys']['run_ms_p50'] / 1000:.1f} / {r['deploys']['run_ms_max'] / 1000:.1f}")
row("deploy POST to end s (timings_ms.total), median / max", lambda r: "-" if not r["deploys"]["asked"] else
    f"{r['deploys']['total_ms_p50'] / 1000:.1f} / {r['deploys']['total_ms_max'] / 1000:.1f}")
mb = lambda kb: f"{kb / 1024:.1f}"
row("server RSS MB: start / peak / end", lambda r: f"{mb(r['process']['rss_start_kb'])} / {mb(r['process']['rss_peak_kb'])} / {mb(r['process']['rss_end_kb'])}")
row("server VmHWM MB at end", lambda r: mb(r["process"]["hwm_end_kb"]))
row("server threads: start / peak / end", lambda r: f"{r['process']['threads_start']} / {r['process']['threads_peak']} / {r['process']['threads_end']}")
row("server open fds: start / end", lambda r: f"{r['process']['fds_start']} / {r['process']['fds_end']}")
print()
verdict = []
for p in ("agent-idle", "agent-deploys"):
    peak_mb = max(runs[p]["process"]["rss_peak_kb"], runs[p]["process"]["hwm_end_kb"]) / 1024
    if peak_mb > max_rss_mb:
        verdict.append(f"{p}: agent peak RSS {peak_mb:.1f} MB > bound {max_rss_mb:.0f} MB")
for p in phases:
    if not runs[p]["passed"]:
        verdict.append(f"{p}: failed (errors {runs[p]['errors']}; see {p}.json)")
print("verdict: " + ("PASS" if not verdict else "FAIL: " + "; ".join(verdict)) +
      f" (agent peak RSS bound {max_rss_mb:.0f} MB)")
sys.exit(1 if verdict else 0)
PY
[ "$failed" = 0 ] && [ "$table_ok" = 0 ]

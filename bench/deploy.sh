#!/usr/bin/env bash
# Deploy benchmark: the whole agent path against the bare Convex CLI, in the same run, against
# the local Convex stand-in (loopback only). See docs/benchmarks.md for results and reading.
#
#   cli      the reference: `node convex/bin/main.js deploy` in an app folder whose
#            node_modules is already installed (what a developer's machine does)
#   npm-ci   a second reference: `npm ci` with the flags the agent uses, same cache
#   agent    POST the example as a tar.gz to a running deploy-agent (caller's key in
#            Convex-Deploy-Key) and wait with GET ?wait=60 until the report is terminal:
#            intake + queue + npm ci + CLI deploy + report, measured by this script from
#            before the POST to the terminal answer. The report's timings_ms (install, push)
#            show where that time goes. This agent runs with its default sandbox (auto: the
#            strongest tier the machine allows; the report names it).
#   agent-nosandbox  the same against a second agent started with --sandbox=none: the
#            reference for what the sandbox costs a whole deploy.
#   agent-hostnet  the same against a third agent with the default sandbox but
#            --job-network=host: no egress proxy, no network namespace. The reference for what
#            the egress proxy costs a whole deploy.
#
# One untimed warm-up round, then BENCH_RUNS (5) rounds; each round runs cli, npm-ci, agent and
# agent-nosandbox and agent-hostnet once, interleaved, so background load on a shared machine hits all alike.
# Environment: BENCH_RUNS (5), BENCH_OUT (build/bench/deploy), BENCH_KEEP=1 keeps the temp dir,
# BENCH_SANDBOXED_ARGS: more flags for the sandboxed agent (e.g. "--job-disk-bytes 0").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${BENCH_RUNS:-5}"
OUT="${BENCH_OUT:-$ROOT/build/bench/deploy}"
BIN="$ROOT/build/bin"
NODE="$ROOT/toolchain/bin/node"
NPM_CLI="$ROOT/toolchain/node_modules/npm/bin/npm-cli.js"
CONVEX_CLI="$ROOT/toolchain/node_modules/convex/bin/main.js"
NPM_CACHE="$ROOT/toolchain/npm-cache"
APP_SRC="$ROOT/examples/chat-app"
DEPLOYMENT=happy-otter-123

# ---- table (also: bench/deploy.sh --table RUNS_TSV reprints it from a saved runs.tsv) -----

print_table() {  # print_table RUNS_TSV
python3 - "$1" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
col = lambda k: [int(r[k]) for r in rows]
cli, npm, agent = col("cli_ms"), col("npm_ci_ms"), col("agent_ms")
bare_agent = col("agent_nosandbox_ms")
hostnet = col("agent_hostnet_ms")
hostnet_push = col("agent_hostnet_push_ms")
post, inst, push = col("agent_post_ms"), col("agent_install_ms"), col("agent_push_ms")
run, total = col("agent_run_ms"), col("agent_total_ms")
inside = [r - i - p for r, i, p in zip(run, inst, push)]
after = [a - t - p for a, t, p in zip(agent, total, post)]
queued = [t - r for t, r in zip(total, run)]
ref = [c + n for c, n in zip(cli, npm)]
med = statistics.median
print(f"{len(rows)} rounds (after 1 warm-up round); ms, median [min-max]")
print()
print("| what | ms |")
print("|---|---|")
def row(name, xs):
    print(f"| {name} | {med(xs):.0f} [{min(xs)}-{max(xs)}] |")
row("bare CLI `convex deploy` (node_modules present)", cli)
row("bare `npm ci --offline` (same flags as the agent)", npm)
row("bare npm ci + CLI deploy (sum per round)", ref)
row("**agent, POST to terminal report**", agent)
row("- POST answered (upload, unpack, inspect, report, queue)", post)
row("- queued (timings_ms.total - run)", queued)
row("- install (timings_ms.install)", inst)
row("- push (timings_ms.push)", push)
row("- rest of the job (run - install - push)", inside)
row("- after the job (work dir removal, report, wake-up, driver's curl + python3)", after)
row("agent with --sandbox=none, POST to terminal report", bare_agent)
row("agent with --job-network=host (no egress proxy), POST to terminal report", hostnet)
row("- its push (timings_ms.push)", hostnet_push)
print()
print(f"sandbox: {rows[-1].get('sandbox', '?')}")
print(f"ratio sandboxed agent / agent with --sandbox=none: {med(agent) / med(bare_agent):.3f} (medians)")
print(f"ratio agent through the egress proxy / agent with --job-network=host: {med(agent) / med(hostnet):.3f} (medians)")
print(f"ratio push through the egress proxy / push with --job-network=host: {med(push) / med(hostnet_push):.3f} (medians)")
print(f"ratio agent / bare CLI deploy: {med(agent) / med(cli):.2f} (medians)")
print(f"ratio agent / (bare npm ci + CLI deploy): {med(agent) / med(ref):.2f} (medians)")
print(f"ratio agent push / bare CLI deploy: {med(push) / med(cli):.2f} (medians)")
print(f"ratio agent install / bare npm ci: {med(inst) / med(npm):.2f} (medians)")
PY
}

if [ "${1:-}" = --table ]; then print_table "$2"; exit 0; fi


for f in "$BIN/deploy-agent" "$BIN/convex-standin" "$NODE" "$NPM_CLI" "$CONVEX_CLI"; do
  [ -e "$f" ] || { echo "deploy: missing $f (run scripts/setup.sh)" >&2; exit 1; }
done
command -v curl >/dev/null && command -v python3 >/dev/null ||
  { echo "deploy: needs curl and python3" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-deploy.XXXXXX")"
PIDS=()
cleanup() {
  stop_servers
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "deploy: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
mkdir -p "$OUT"

source "$ROOT/scripts/lib/servers.sh"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# ---- the stand-in and a deploy key ----------------------------------------------------------

start_server standin "$BIN/convex-standin" --listen 127.0.0.1:0
STANDIN="$SERVER_URL"
KEY="$(mint_standin_key "$STANDIN" "$DEPLOYMENT")"
[ -n "$KEY" ] || { echo "deploy: the stand-in minted no key" >&2; exit 1; }
echo "deploy: stand-in at $STANDIN, deploy key for $DEPLOYMENT minted" >&2

# ---- the bare CLI's app folder (installed once) and the agent's bundle ----------------------

APP="$WORK/app"
cp -r "$APP_SRC" "$APP"
rm -rf "$APP/node_modules" "$APP"/.env*
npm_ci() {  # npm_ci DIR LOG: the agent's install command, same cache, same flags
  (cd "$1" && env -i PATH="$ROOT/toolchain/bin:/usr/bin:/bin" HOME="$WORK/home-npm" LANG=C.UTF-8 CI=1 \
     npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false \
     "$NODE" "$NPM_CLI" ci --offline --cache "$NPM_CACHE" --ignore-scripts --no-audit --no-fund \
     --loglevel=warn) >"$2" 2>&1
}
mkdir -p "$WORK/home-npm"
npm_ci "$APP" "$WORK/npm-prepare.log" || { cat "$WORK/npm-prepare.log" >&2; exit 1; }
NPM_APP="$WORK/app-npm"  # a separate copy for the timed npm ci runs
cp -r "$APP_SRC" "$NPM_APP"

BUNDLE="$WORK/bundle.tar.gz"
tar -C "$APP_SRC" --exclude=node_modules --exclude='.env*' -czf "$BUNDLE" .

cli_deploy() {  # cli_deploy LOG: the bare CLI, fresh HOME, the env the agent would give it
  local home; home="$(mktemp -d "$WORK/home-cli.XXXXXX")"
  (cd "$APP" && env -i PATH="$ROOT/toolchain/bin:/usr/bin:/bin" HOME="$home" LANG=C.UTF-8 CI=1 \
     CONVEX_DEPLOY_KEY="$KEY" CONVEX_PROVISION_HOST="$STANDIN" CONVEX_VERSION_API_ORIGIN="$STANDIN" \
     "$NODE" "$CONVEX_CLI" deploy) >"$1" 2>&1
}

# ---- the agent ------------------------------------------------------------------------------

export DEPLOY_AGENT_TOKEN="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
start_server agent "$BIN/deploy-agent" --listen 127.0.0.1:0 --state-dir "$WORK/state" \
  --convex-url "$STANDIN" --npm-cache "$NPM_CACHE" --npm-offline ${BENCH_SANDBOXED_ARGS:-}
AGENT_SANDBOXED="$SERVER_URL"
start_server agent-nosandbox "$BIN/deploy-agent" --listen 127.0.0.1:0 --state-dir "$WORK/state-nosandbox" \
  --convex-url "$STANDIN" --npm-cache "$NPM_CACHE" --npm-offline --sandbox none
AGENT_BARE="$SERVER_URL"
start_server agent-hostnet "$BIN/deploy-agent" --listen 127.0.0.1:0 --state-dir "$WORK/state-hostnet" \
  --convex-url "$STANDIN" --npm-cache "$NPM_CACHE" --npm-offline --job-network host ${BENCH_SANDBOXED_ARGS:-}
AGENT_HOSTNET="$SERVER_URL"
echo "deploy: agent at $AGENT_SANDBOXED, with --sandbox=none at $AGENT_BARE, with --job-network=host at $AGENT_HOSTNET" >&2
AUTH="Authorization: Bearer $DEPLOY_AGENT_TOKEN"

# agent_deploy AGENT_URL REPORT: prints "wall_ms post_ms" and leaves the terminal report in REPORT.
agent_deploy() {
  local AGENT="$1"; shift
  local t0 t1 accepted id post_s report status
  t0="$(now_ms)"
  accepted="$(curl -sS -X POST "$AGENT/v1/deploys?target=prod" -H "$AUTH" -H "Convex-Deploy-Key: $KEY" \
    -H 'Content-Type: application/gzip' --data-binary @"$BUNDLE" -w '\n%{time_total}')"
  post_s="${accepted##*$'\n'}"
  accepted="${accepted%$'\n'*}"
  id="$(printf '%s' "$accepted" | json_get 'j.get("id")' 2>/dev/null || true)"
  [ -n "$id" ] || { echo "deploy: the agent did not accept the bundle: $accepted" >&2; return 1; }
  for _ in 1 2 3 4 5; do  # bounded: at most 5 x 60 s
    report="$(curl -sS "$AGENT/v1/deploys/$id?wait=60" -H "$AUTH")"
    status="$(printf '%s' "$report" | json_get 'j.get("status")')"
    [ "$status" = succeeded ] || [ "$status" = failed ] && break
  done
  t1="$(now_ms)"
  printf '%s' "$report" >"$1"
  [ "$status" = succeeded ] || { echo "deploy: agent deploy $id ended '$status': $report" >&2; return 1; }
  echo "$((t1 - t0)) $(python3 -c "print(round($post_s * 1000))")"
}

# ---- rounds ---------------------------------------------------------------------------------

RAW="$OUT/runs.tsv"
printf 'round\tcli_ms\tnpm_ci_ms\tagent_ms\tagent_post_ms\tagent_install_ms\tagent_push_ms\tagent_run_ms\tagent_total_ms\tagent_nosandbox_ms\tagent_hostnet_ms\tagent_hostnet_push_ms\tsandbox\n' >"$RAW"
echo "deploy: load average before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/load.txt" >&2
for round in $(seq 0 "$RUNS"); do
  label="round $round"; [ "$round" = 0 ] && label="warm-up"

  t0="$(now_ms)"
  if ! cli_deploy "$WORK/cli-$round.log" || ! grep -q 'Deployed Convex functions' "$WORK/cli-$round.log"; then
    echo "deploy: bare CLI deploy failed:" >&2; cat "$WORK/cli-$round.log" >&2; exit 1
  fi
  cli_ms=$(( $(now_ms) - t0 ))

  t0="$(now_ms)"
  npm_ci "$NPM_APP" "$WORK/npm-$round.log" || { cat "$WORK/npm-$round.log" >&2; exit 1; }
  npm_ms=$(( $(now_ms) - t0 ))

  read -r agent_ms post_ms < <(agent_deploy "$AGENT_SANDBOXED" "$WORK/report-$round.json") || exit 1
  read -r bare_ms _ < <(agent_deploy "$AGENT_BARE" "$WORK/report-nosandbox-$round.json") || exit 1
  read -r hostnet_ms _ < <(agent_deploy "$AGENT_HOSTNET" "$WORK/report-hostnet-$round.json") || exit 1
  hostnet_push_ms="$(json_get 'j["timings_ms"].get("push", "")' <"$WORK/report-hostnet-$round.json")"
  tier="$(json_get 'j["sandbox"]["tier"]' <"$WORK/report-$round.json")"
  read -r install_ms push_ms run_ms total_ms < <(json_get \
    '" ".join(str(j["timings_ms"].get(k, "")) for k in ("install", "push", "run", "total"))' \
    <"$WORK/report-$round.json")

  echo "deploy: $label: cli ${cli_ms} ms, npm ci ${npm_ms} ms, agent (${tier}) ${agent_ms} ms (post ${post_ms}, install ${install_ms}, push ${push_ms}), agent --sandbox=none ${bare_ms} ms, agent --job-network=host ${hostnet_ms} ms" >&2
  [ "$round" = 0 ] && continue
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$cli_ms" "$npm_ms" "$agent_ms" "$post_ms" \
    "$install_ms" "$push_ms" "$run_ms" "$total_ms" "$bare_ms" "$hostnet_ms" "$hostnet_push_ms" "$tier" >>"$RAW"
done
echo "deploy: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt" >&2
cp "$WORK/report-$RUNS.json" "$OUT/last-report.json"

print_table "$RAW" | tee "$OUT/table.md"

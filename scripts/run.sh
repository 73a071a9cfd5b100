#!/usr/bin/env bash
# The main job: install what is missing, build, start the agent, post the example app as a
# bundle and print the final report.
#
# Target: the local Convex stand-in (tests/standin), unless real Convex credentials are
# configured: CONVEX_TEAM_TOKEN plus DEPLOY_AGENT_DEPLOYMENT (the agent mints a deploy key) or
# DEPLOY_AGENT_CREATE_PROJECT (the per-session flow: a new project that the agent deletes after
# DEPLOY_AGENT_TTL_SECONDS, default 3600), or CONVEX_DEPLOY_KEY (sent as the Convex-Deploy-Key
# header). Against the stand-in the per-session flow runs. DEPLOY_AGENT_TARGET picks dev or
# prod (default prod); DEPLOY_AGENT_APP another app folder (default examples/chat-app).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"

BIN="$ROOT/build/bin"
APP="${DEPLOY_AGENT_APP:-$ROOT/examples/chat-app}"
TARGET="${DEPLOY_AGENT_TARGET:-prod}"
WORK="$(mktemp -d)"
PIDS=()
source "$ROOT/scripts/lib/servers.sh"
cleanup() {
  stop_servers
  rm -rf "$WORK"
}
trap cleanup EXIT

AGENT_TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
AGENT_ARGS=(--listen 127.0.0.1:0 --state-dir "$ROOT/.state")
QUERY="target=$TARGET"
HEADERS=()

if [ -n "${CONVEX_DEPLOY_KEY:-}" ]; then
  echo "run: using CONVEX_DEPLOY_KEY against the Convex cloud"
  HEADERS+=(-H "Convex-Deploy-Key: $CONVEX_DEPLOY_KEY")
elif [ -n "${CONVEX_TEAM_TOKEN:-}" ] && [ -n "${DEPLOY_AGENT_CREATE_PROJECT:-}" ]; then
  echo "run: using CONVEX_TEAM_TOKEN to create project $DEPLOY_AGENT_CREATE_PROJECT on the Convex cloud"
  QUERY="$QUERY&create_project=$DEPLOY_AGENT_CREATE_PROJECT&ttl_seconds=${DEPLOY_AGENT_TTL_SECONDS:-3600}"
elif [ -n "${CONVEX_TEAM_TOKEN:-}" ] && [ -n "${DEPLOY_AGENT_DEPLOYMENT:-}" ]; then
  echo "run: using CONVEX_TEAM_TOKEN to deploy to $DEPLOY_AGENT_DEPLOYMENT on the Convex cloud"
  QUERY="$QUERY&deployment=$DEPLOY_AGENT_DEPLOYMENT"
else
  echo "run: no Convex credentials configured: deploying to the LOCAL CONVEX STAND-IN (tests/standin), not the Convex cloud"
  # A configured proxy still serves npm's registry, but the stand-in is on loopback.
  export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
  STANDIN_TEAM_TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  start_server standin "$BIN/convex-standin" --listen 127.0.0.1:0 --team-token "$STANDIN_TEAM_TOKEN"
  STANDIN_URL="$SERVER_URL"
  echo "run: stand-in at $STANDIN_URL"
  AGENT_ARGS+=(--convex-url "$STANDIN_URL")
  # The stand-in lives for this run only, and so does the agent's state: a project deletion
  # still pending from an earlier run must not reach this stand-in, whose ids start again at 1.
  AGENT_ARGS+=(--state-dir "$WORK/state")
  # The per-session flow: a project of its own, deleted by the agent when its time is up.
  QUERY="$QUERY&create_project=demo-session-$(date +%s)&ttl_seconds=${DEPLOY_AGENT_TTL_SECONDS:-600}"
  export CONVEX_TEAM_TOKEN="$STANDIN_TEAM_TOKEN"
  # The example's dependencies were cached by setup; prefer them over the registry.
  AGENT_ARGS+=(--npm-cache "$ROOT/toolchain/npm-cache")
fi

export DEPLOY_AGENT_TOKEN="$AGENT_TOKEN"
start_server agent "$BIN/deploy-agent" "${AGENT_ARGS[@]}"
AGENT_URL="$SERVER_URL"
echo "run: agent at $AGENT_URL"

tar -C "$APP" --exclude=node_modules --exclude='.env*' -czf "$WORK/bundle.tar.gz" .
echo "run: posting $(basename "$APP") ($(stat -c %s "$WORK/bundle.tar.gz") bytes) with $QUERY"
ACCEPTED="$(curl -sS -X POST "$AGENT_URL/v1/deploys?$QUERY" -H "Authorization: Bearer $AGENT_TOKEN" \
  -H 'Content-Type: application/gzip' "${HEADERS[@]}" --data-binary @"$WORK/bundle.tar.gz")"
echo "$ACCEPTED"
ID="$(printf '%s' "$ACCEPTED" | sed -n 's/.*"id": *"\(dep_[0-9a-f]*\)".*/\1/p')"
[ -n "$ID" ] || { echo "run: the agent did not accept the bundle" >&2; exit 1; }

for _ in $(seq 1 20); do
  REPORT="$(curl -sS "$AGENT_URL/v1/deploys/$ID?wait=30" -H "Authorization: Bearer $AGENT_TOKEN")"
  case "$REPORT" in *'"status": "succeeded"'*|*'"status": "failed"'*) break ;; esac
done
echo "run: CLI output (GET /v1/deploys/$ID/log):"
curl -sS "$AGENT_URL/v1/deploys/$ID/log" -H "Authorization: Bearer $AGENT_TOKEN" | sed 's/^/    /'
if [ -n "${STANDIN_URL:-}" ]; then
  echo "run: what the stand-in received (GET $STANDIN_URL/_standin/pushes):"
  curl -sS "$STANDIN_URL/_standin/pushes" | sed 's/^/    /'; echo
fi
echo "run: final report (GET /v1/deploys/$ID):"
echo "$REPORT"
URL="$(printf '%s\n' "$REPORT" | grep -A3 '"deployment": {' | sed -n 's/.*"url": "\([^"]*\)".*/\1/p' | head -n1)"
[ -z "$URL" ] || echo "run: the app's deployment URL (report .deployment.url): $URL"
case "$REPORT" in *'"status": "succeeded"'*) exit 0 ;; *) exit 1 ;; esac

# Sourced by scripts/run.sh, bench/deploy.sh and bench/load.sh. Needs WORK (a scratch folder) and a PIDS array.

# Starts a server whose first stdout line is `listening on URL` and sets SERVER_URL. Runs in
# the calling shell (not a subshell) so the PID is remembered and the pipe stays open.
start_server() {
  local name="$1"; shift
  mkfifo "$WORK/$name.out"
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  PIDS+=($!)
  exec {fd}<"$WORK/$name.out"
  local line=""
  if ! read -r -u "$fd" line || [[ "$line" != "listening on "* ]]; then
    echo "$name did not start:" >&2
    cat "$WORK/$name.log" >&2
    exit 1
  fi
  SERVER_URL="${line#listening on }"
}

# Stops every server start_server started and waits for them.
stop_servers() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}

json_get() {  # json_get EXPR < json ; EXPR is a python expression over `j`
  python3 -c 'import json,sys; j=json.load(sys.stdin); v='"$1"'; print("" if v is None else v)'
}

# Prints a deploy key the stand-in at $1 mints for deployment $2 (its control API).
mint_standin_key() {
  curl -sS -f --max-time 10 -X POST "$1/_standin/deploy_keys" -H 'Content-Type: application/json' \
    --data "{\"deployment\":\"$2\"}" | json_get 'j["deployKey"]'
}

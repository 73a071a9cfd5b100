# Sourced by scripts/run.sh and bench/deploy.sh. Needs WORK (a scratch folder) and a PIDS array.

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

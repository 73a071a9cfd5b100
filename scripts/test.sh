#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit and end-to-end) with CTest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT/build"
ctest --output-on-failure -j"$(nproc)" "$@"

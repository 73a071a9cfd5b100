#!/usr/bin/env bash
# Extraction benchmark: the agent's intake (build/bin/bench-extract, which calls
# da::bundle::detectFormat + extractArchive with the default limits) against `bsdtar -xf`,
# on the same archives, in the same run. See docs/benchmarks.md for results and reading.
#
# Corpora are generated at run time into a temp dir (nothing binary is committed):
#   chat-app   examples/chat-app (a real, small Convex app)
#   synthetic  ~3000 generated TypeScript files, ~40 MB of varied text (seeded, so every run
#              generates the same bytes)
# each packed by bsdtar as tar.gz, tar and zip.
#
# Environment: BENCH_RUNS (10), BENCH_WARMUP (2), BENCH_FILES (3000), BENCH_SEED (42),
# BENCH_OUT (build/bench/extract: hyperfine JSON exports and the table), BENCH_KEEP=1 keeps
# the temp dir.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${BENCH_RUNS:-10}"
WARMUP="${BENCH_WARMUP:-2}"
FILES="${BENCH_FILES:-3000}"
SEED="${BENCH_SEED:-42}"
OUT="${BENCH_OUT:-$ROOT/build/bench/extract}"
OURS="$ROOT/build/bin/bench-extract"

need_pkg() {  # need_pkg COMMAND DEBIAN_PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "extract: installing $2" >&2
  if ! apt-get install -y "$2" >/dev/null 2>&1; then
    apt-get update >/dev/null && apt-get install -y "$2" >/dev/null
  fi
}
need_pkg hyperfine hyperfine
need_pkg bsdtar libarchive-tools
need_pkg python3 python3
[ -x "$OURS" ] || cmake --build "$ROOT/build" -j2 --target bench-extract

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-extract.XXXXXX")"
SHM_BASE=""
cleanup() {
  [ -z "$SHM_BASE" ] || rm -rf "$SHM_BASE"
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "extract: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
mkdir -p "$OUT" "$WORK/corpora" "$WORK/archives"

# ---- corpora ------------------------------------------------------------------------------

cp -r "$ROOT/examples/chat-app" "$WORK/corpora/chat-app"
rm -rf "$WORK/corpora/chat-app/node_modules"

# A synthetic app: Convex-style modules of queries/mutations with random identifiers, numbers,
# words and hex tokens, so it compresses like real code (a few x), not absurdly. Files are
# 2-25 KB (mean ~13.5 KB) in ~130 folders up to 4 levels deep.
generate_synthetic() {
  local dir="$1"
  mkdir -p "$dir"
  cat >"$dir/package.json" <<'JSON'
{ "name": "synthetic-app", "private": true, "dependencies": { "convex": "^1.49.0" } }
JSON
  (cd "$dir" && awk -v files="$FILES" -v seed="$SEED" '
    function word() { return vocab[int(rand() * nv)] }
    function hex(n,   s, i) { s = ""; for (i = 0; i < n; i++) s = s substr("0123456789abcdef", int(rand() * 16) + 1, 1); return s }
    function ident() { return word() toupper(substr(word(), 1, 1)) substr(word(), 2) }
    function sentence(n,   s, i) { s = word(); for (i = 1; i < n; i++) s = s " " word(); return s }
    BEGIN {
      srand(seed)
      split("ba be bi bo bu ca ce ci co cu da de di do du fa fe fi fo fu ga ge gi go gu ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu va ve vi vo vu za ze zi zo zu", syl, " ")
      nv = 600
      for (i = 0; i < nv; i++) { w = ""; k = 2 + int(rand() * 3); for (j = 0; j < k; j++) w = w syl[1 + int(rand() * 50)]; vocab[i] = w }
      for (f = 0; f < files; f++) {
        if (f % 4 == 3) d = sprintf("src/components/%s%02d/%s", "group", f % 24, (f % 3 == 0 ? "parts" : "views"))
        else d = sprintf("convex/area%02d/mod%d", f % 40, int(f / 40) % 2)
        if (!(d in made)) { made[d] = 1; system("mkdir -p " d) }
        path = sprintf("%s/%s_%04d.ts", d, ident(), f)
        target = 2000 + int(rand() * 23000)
        size = 0
        line = "import { query, mutation } from \"./_generated/server\";\nimport { v } from \"convex/values\";\n"
        printf "%s", line > path; size += length(line)
        while (size < target) {
          r = rand()
          if (r < 0.35) {
            name = ident()
            line = sprintf("\n// %s.\nexport const %s = query({\n  args: { %s: v.id(\"%s\"), %s: v.optional(v.number()) },\n  handler: async (ctx, args) => {\n    const rows = await ctx.db.query(\"%s\").withIndex(\"by_%s\", (q) => q.eq(\"%s\", args.%s)).take(%d);\n    return rows.filter((r) => r.%s > %d).map((r) => ({ ...r, tag: \"%s\" }));\n  },\n});\n", \
              sentence(8 + int(rand() * 10)), name, word(), word(), word(), word(), word(), word(), word(), 1 + int(rand() * 500), word(), int(rand() * 100000), hex(16))
          } else if (r < 0.6) {
            name = ident()
            line = sprintf("\nexport const %s = mutation({\n  args: { %s: v.string(), %s: v.array(v.number()) },\n  handler: async (ctx, { %s, %s }) => {\n    if (%s.length > %d) throw new Error(\"%s\");\n    return await ctx.db.insert(\"%s\", { %s, %s, at: %d, key: \"%s\" });\n  },\n});\n", \
              name, word(), word(), word(), word(), word(), int(rand() * 1000), sentence(5 + int(rand() * 6)), word(), word(), word(), int(rand() * 2000000000), hex(32))
          } else if (r < 0.8) {
            line = sprintf("\nconst %s = [", toupper(ident()))
            n = 8 + int(rand() * 24)
            for (i = 0; i < n; i++) line = line sprintf("%s%d", (i ? ", " : ""), int(rand() * 1000000))
            line = line "];\n"
          } else {
            line = sprintf("\n/**\n * %s\n * %s\n * @see %s\n */\n", sentence(10 + int(rand() * 8)), sentence(6 + int(rand() * 10)), hex(40))
          }
          printf "%s", line > path; size += length(line)
        }
        close(path)
      }
    }')
}
echo "extract: generating synthetic corpus ($FILES files, seed $SEED)" >&2
generate_synthetic "$WORK/corpora/synthetic"

corpus_line() {  # files, bytes of a corpus dir
  local dir="$1"
  printf '%s files, %s bytes' "$(find "$dir" -type f | wc -l)" "$(find "$dir" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')"
}

CORPORA=(chat-app synthetic)
FORMATS=(tar.gz tar zip)
for c in "${CORPORA[@]}"; do
  src="$WORK/corpora/$c"
  bsdtar -czf "$WORK/archives/$c.tar.gz" -C "$src" .
  bsdtar -cf "$WORK/archives/$c.tar" -C "$src" .
  bsdtar --format zip -cf "$WORK/archives/$c.zip" -C "$src" .
  echo "extract: corpus $c: $(corpus_line "$src")" >&2
  for f in "${FORMATS[@]}"; do
    echo "extract:   $c.$f: $(stat -c %s "$WORK/archives/$c.$f") bytes" >&2
  done
done

# ---- correctness gate: our extractor must refuse nothing and unpack what bsdtar unpacks ----

for c in "${CORPORA[@]}"; do
  for f in "${FORMATS[@]}"; do
    a="$WORK/archives/$c.$f"
    if ! BENCH_EXTRACT_VERBOSE=1 "$OURS" "$a" "$WORK/check-ours"; then
      echo "extract: FAILED: bench-extract refused $c.$f (see above)" >&2
      exit 1
    fi
    mkdir "$WORK/check-bsdtar"
    bsdtar -xf "$a" -C "$WORK/check-bsdtar"
    if ! diff -r "$WORK/check-ours" "$WORK/check-bsdtar" >/dev/null; then
      echo "extract: FAILED: $c.$f unpacks differently with bench-extract and bsdtar" >&2
      exit 1
    fi
    rm -rf "$WORK/check-ours" "$WORK/check-bsdtar"
  done
done
echo "extract: every archive unpacks, identically to bsdtar" >&2

# ---- timing -------------------------------------------------------------------------------
# Two destinations, both measured (BENCH_DESTS="disk tmpfs"):
#   disk   a folder next to the archives (TMPDIR, by default /tmp: the filesystem the agent's
#          state dir would be on). The previous run's output is MOVED into a trash folder
#          (emptied at the end), not deleted: on an ext4 without journal (this VM's root),
#          creating inodes right after deleting thousands costs up to ~1 ms each (the
#          allocator skips "recently deleted" inodes), which would time the preparation step
#          rather than the extractor.
#   tmpfs  /dev/shm: no disk, no allocator effects; what is left is each tool's own work
#          (decompression, parsing, syscalls). Output is removed with rm -rf there.
# bench-extract wants a DEST that does not exist; bsdtar -C wants an existing empty one.
# hyperfine runs each command through sh and subtracts the shell's own start-up.

DESTS="${BENCH_DESTS:-disk tmpfs}"
echo "extract: load average before timing: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/load.txt" >&2
for dest in $DESTS; do
  case "$dest" in
    disk) base="$WORK/dest"; mkdir -p "$base/trash"
          clear_ours="[ ! -e '$base/ours' ] || mv '$base/ours' \"\$(mktemp -d -p '$base/trash')/\""
          clear_bsd="{ [ ! -e '$base/bsdtar' ] || mv '$base/bsdtar' \"\$(mktemp -d -p '$base/trash')/\"; } && mkdir '$base/bsdtar'" ;;
    tmpfs) [ -d /dev/shm ] || { echo "extract: no /dev/shm, skipping tmpfs" >&2; continue; }
          base="$(mktemp -d /dev/shm/bench-extract.XXXXXX)"; SHM_BASE="$base"
          clear_ours="rm -rf '$base/ours'"
          clear_bsd="rm -rf '$base/bsdtar' && mkdir '$base/bsdtar'" ;;
    *) echo "extract: unknown destination $dest (disk or tmpfs)" >&2; exit 2 ;;
  esac
  for c in "${CORPORA[@]}"; do
    for f in "${FORMATS[@]}"; do
      a="$WORK/archives/$c.$f"
      echo "extract: timing $c.$f -> $dest" >&2
      hyperfine --style basic --runs "$RUNS" --warmup "$WARMUP" \
        --export-json "$OUT/$dest.$c.$f.json" \
        --prepare "$clear_ours" -n ours "'$OURS' '$a' '$base/ours'" \
        --prepare "$clear_bsd" -n bsdtar "bsdtar -xf '$a' -C '$base/bsdtar'" \
        >"$OUT/$dest.$c.$f.txt"
    done
  done
  rm -rf "$base"
done

echo "extract: load average after timing: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt" >&2

# ---- table --------------------------------------------------------------------------------

python3 - "$OUT" "$RUNS" "$WARMUP" "$DESTS" "${CORPORA[@]}" <<'PY' | tee "$OUT/table.md"
import json, os, statistics, sys
out, runs, warmup, dests, corpora = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(), sys.argv[5:]
print(f"runs={runs} warmup={warmup}; times in ms, median [min-max]; ratio = ours median / bsdtar median")
print()
print("| dest | corpus | format | ours ms | bsdtar ms | ratio |")
print("|---|---|---|---|---|---|")
for d in dests:
  for c in corpora:
    for f in ("tar.gz", "tar", "zip"):
        path = f"{out}/{d}.{c}.{f}.json"
        if not os.path.exists(path):
            continue
        res = {r["command"]: r for r in json.load(open(path))["results"]}
        def cell(r):
            t = [x * 1000 for x in r["times"]]
            return statistics.median(t), f"{statistics.median(t):.1f} [{min(t):.1f}-{max(t):.1f}]"
        om, o = cell(res["ours"])
        bm, b = cell(res["bsdtar"])
        print(f"| {d} | {c} | {f} | {o} | {b} | {om / bm:.2f} |")
PY

#!/usr/bin/env bash
# A/B: server CPU per operation of two commits, side by side in one run.
#
#   scripts/ab.sh OLD NEW [ROUNDS]     # default 5 alternating rounds
#
# Builds the release examples of both commits (git worktrees under target/ab),
# then for each round and scenario runs the OLD and NEW server in turn (the order
# alternates between rounds) against the same load generator (this checkout's),
# and prints the medians and NEW/OLD ratios with each side's spread over the
# rounds, so a difference can be told from noise.
#
# Environment:
#   SERVER     bench_server (default: its coreloop echo) or echo (the example as
#              shipped; EXTRA passes it options, e.g. EXTRA="--idle-timeout 0")
#   SCENARIOS  names from the list below (default "1x64 100x64")
#   THREADS    server threads (default 2); DUR, WARM: seconds measured and warm-up
#
# Needs: cargo, git, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,18p' "$0"; exit 2; }
OLD=$1 NEW=$2 ROUNDS=${3:-5}
SERVER=${SERVER:-bench_server}
SCENARIOS=${SCENARIOS:-"1x64 100x64"}
THREADS=${THREADS:-2}
DUR=${DUR:-3}
WARM=${WARM:-1}
EXTRA=${EXTRA:-}
OUT=target/ab
mkdir -p "$OUT"
rm -f "$OUT/runs.jsonl"

declare -A LOAD=(
  [1x64]="echo --conns 1 --inflight 1 --size 64"
  [100x64]="echo --conns 100 --inflight 1 --size 64"
  [100x64x16]="echo --conns 100 --inflight 16 --size 64"
  [100x16K]="echo --conns 100 --inflight 1 --size 16384"
  [connrate8]="connrate --clients 8"
)

build() { # REV SIDE
  local dir="$OUT/$2"
  git worktree remove --force "$dir" 2>/dev/null || rm -rf "$dir"
  git worktree add --detach --force "$dir" "$1" >/dev/null
  # A target directory per side that outlives the worktree: the next run only
  # rebuilds what changed.
  (cd "$dir" && CARGO_TARGET_DIR="$PWD/../target-$2" cargo build --release --quiet --example bench_server --example echo)
}
cleanup() {
  [ -n "${SPID:-}" ] && kill -TERM "$SPID" 2>/dev/null
  for side in old new; do git worktree remove --force "$OUT/$side" 2>/dev/null || true; done
}
trap cleanup EXIT

echo "== building $OLD (old), $NEW (new) and the load generator" >&2
build "$OLD" old
build "$NEW" new
cargo build --release --quiet --example loadgen
LOADGEN=target/release/examples/loadgen

start() { # SIDE -> SPID, SADDR
  local bin="$OUT/target-$1/release/examples"
  if [ "$SERVER" = echo ]; then
    # shellcheck disable=SC2086
    "$bin/echo" --addr 127.0.0.1:0 --reactors "$THREADS" $EXTRA >"$OUT/banner.txt" 2>/dev/null &
  else
    "$bin/bench_server" --kind coreloop --threads "$THREADS" >"$OUT/banner.txt" &
  fi
  SPID=$!
  for _ in $(seq 100); do grep -q listening "$OUT/banner.txt" 2>/dev/null && break; sleep 0.05; done
  SADDR=$(awk '{print $3}' "$OUT/banner.txt")
}

echo "== $SERVER $EXTRA, $THREADS threads, $ROUNDS rounds of ${DUR}s: $SCENARIOS" >&2
for round in $(seq "$ROUNDS"); do
  for sc in $SCENARIOS; do
    sides="old new"; [ $((round % 2)) = 0 ] && sides="new old"
    for side in $sides; do
      start "$side"
      # shellcheck disable=SC2086
      line=$("$LOADGEN" ${LOAD[$sc]} --addr "$SADDR" --duration "$DUR" --warmup "$WARM" --server-pid "$SPID" --json)
      kill -TERM "$SPID"; wait "$SPID" || true; SPID=
      echo "{\"round\":$round,\"scenario\":\"$sc\",\"side\":\"$side\",\"result\":$line}" >>"$OUT/runs.jsonl"
      echo "  round $round $sc $side: $line" | cut -c1-160 >&2
    done
  done
done

python3 - "$OUT/runs.jsonl" "$OLD" "$NEW" "$SERVER $EXTRA" <<'PY'
import json, statistics, sys
path, old, new, server = sys.argv[1:5]
runs = [json.loads(l) for l in open(path)]
def vals(sc, side, key):
    return [r["result"][key] for r in runs if r["scenario"] == sc and r["side"] == side]
print(f"server: {server}; old = {old}, new = {new}; medians of {len(vals(runs[0]['scenario'], 'old', 'ops_per_s'))} rounds [min-max]")
print()
print("| scenario | CPU/op old (µs) | CPU/op new (µs) | new ÷ old | user/op old | user/op new | ops/s old | ops/s new |")
print("|---|---|---|---|---|---|---|---|")
for sc in dict.fromkeys(r["scenario"] for r in runs):
    row = [sc]
    cpu = {s: vals(sc, s, "server_cpu_us_per_op") for s in ("old", "new")}
    usr = {s: vals(sc, s, "server_user_us_per_op") for s in ("old", "new")}
    ops = {s: vals(sc, s, "ops_per_s") for s in ("old", "new")}
    m = {s: statistics.median(cpu[s]) for s in cpu}
    row += [f"{m['old']:.2f} [{min(cpu['old']):.2f}-{max(cpu['old']):.2f}]",
            f"{m['new']:.2f} [{min(cpu['new']):.2f}-{max(cpu['new']):.2f}]",
            f"{m['new'] / m['old']:.3f}×"]
    row += [f"{statistics.median(usr[s]):.2f}" for s in ("old", "new")]
    row += [f"{statistics.median(ops[s]):.0f}" for s in ("old", "new")]
    print("| " + " | ".join(row) + " |")
PY

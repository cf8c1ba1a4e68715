#!/usr/bin/env bash
# Fan-out to 10,000 subscribers, the two ways, side by side in one run: the kv
# example with --fanout broadcast (one message per reactor, each writing to its
# own subscribers) and --fanout send (one Handle::send per subscriber), driven by
# `loadgen pubsub` (10,000 subscribers on one channel, one publisher); rounds
# alternate between the two. Prints medians: messages fanned out per second,
# deliveries per second, and the server's CPU per message and per delivery.
#
#   scripts/bench_fanout.sh [ROUNDS]    # default 5 rounds; about 2 minutes
#
# Server and subscribers are two processes: each holds 10,000 descriptors, under
# this machine's limit of 20,000 per process. Needs: cargo, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SUBSCRIBERS=${SUBSCRIBERS:-10000}
SIZE=${SIZE:-64}
DUR=${DUR:-3}
WARM=${WARM:-1}
OUT=${OUT:-target/bench_fanout}
mkdir -p "$OUT"
rm -f "$OUT/runs.jsonl"
cargo build --release --quiet --example kv --example loadgen
BIN=target/release/examples
REACTORS=$(nproc)

trap '[ -n "${SPID:-}" ] && kill -TERM "$SPID" 2>/dev/null; true' EXIT
for round in $(seq "$ROUNDS"); do
  for mode in broadcast send; do
    "$BIN/kv" --addr 127.0.0.1:0 --reactors "$REACTORS" --max-clients $((SUBSCRIBERS + 100)) --fanout "$mode" >"$OUT/banner.txt" &
    SPID=$!
    for _ in $(seq 100); do grep -q listening "$OUT/banner.txt" 2>/dev/null && break; sleep 0.05; done
    addr=$(awk '{print $3}' "$OUT/banner.txt")
    line=$("$BIN/loadgen" pubsub --addr "$addr" --conns "$SUBSCRIBERS" --size "$SIZE" \
      --duration "$DUR" --warmup "$WARM" --server-pid "$SPID" --json)
    kill -TERM "$SPID"; wait "$SPID" || true; SPID=
    echo "{\"round\":$round,\"mode\":\"$mode\",\"result\":$line}" >>"$OUT/runs.jsonl"
    echo "  round $round $mode: $line" >&2
  done
done

python3 - "$OUT/runs.jsonl" "$SUBSCRIBERS" "$REACTORS" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
subs, reactors = sys.argv[2], sys.argv[3]
med = statistics.median
print(f"{subs} subscribers, kv with {reactors} reactors, medians of {len(runs) // 2} alternating rounds.\n")
print("| fan-out | messages/s (each to all) | deliveries/s | server CPU per message (µs) | per delivery (ns) |")
print("|---|---|---|---|---|")
rows = {}
for mode, name in (("broadcast", "`Handle::broadcast`: one message per reactor"), ("send", "`Handle::send` per subscriber")):
    rs = [r["result"] for r in runs if r["mode"] == mode]
    rows[mode] = (med([r["messages_per_s"] for r in rs]), med([r["deliveries_per_s"] for r in rs]),
                  med([r["server_cpu_us_per_message"] for r in rs]), med([r["server_cpu_ns_per_delivery"] for r in rs]))
    m, d, c, n = rows[mode]
    print(f"| {name} | {m:,.0f} | {d:,.0f} | {c:,.0f} | {n:,.0f} |")
b, s = rows["broadcast"], rows["send"]
print(f"\nbroadcast ÷ send: {b[0] / s[0]:.2f}× the messages per second, {b[2] / s[2]:.2f}× the server CPU per message.")
PY

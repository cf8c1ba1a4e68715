#!/usr/bin/env bash
# Regenerates every figure in BENCHMARKS.md: builds the release examples, runs
# coreloop, tokio and the raw-mio reference side by side against loadgen, and
# prints the tables (medians of alternating rounds, ratios to tokio and mio).
#
#   scripts/bench.sh [ROUNDS]        # default 5 rounds; about 12 minutes
#
# Needs: cargo, python3, perf (syscall counts; skipped when absent).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
# shellcheck source=scripts/servers.sh
source scripts/servers.sh
setup target/bench --example bench_server --example loadgen

SCENARIOS=(
  "1x64|echo --conns 1 --inflight 1 --size 64"
  "100x64|echo --conns 100 --inflight 1 --size 64"
  "100x64x16|echo --conns 100 --inflight 16 --size 64"
  "100x16K|echo --conns 100 --inflight 1 --size 16384"
  "connrate8|connrate --clients 8"
)

echo "== throughput and server CPU per operation ($ROUNDS alternating rounds, ${DUR}s each)" >&2
for round in $(seq "$ROUNDS"); do
  for sc in "${SCENARIOS[@]}"; do
    name=${sc%%|*}; args=${sc#*|}
    for kind in coreloop coreloop-reuseport tokio mio; do
      # shellcheck disable=SC2086
      measure "$round" "$name" "$kind" "$OUT/runs.jsonl" $args
    done
  done
done

echo "== 100x64 with one server thread each (the load generator takes the other core)" >&2
for round in $(seq "$ROUNDS"); do
  for kind in coreloop tokio mio; do
    THREADS=1 measure "$round" 100x64-1t "$kind" "$OUT/runs1.jsonl" echo --conns 100 --inflight 1 --size 64
  done
done

if command -v perf >/dev/null; then
  echo "== syscalls per echoed message (perf tracepoints, fixed message count)" >&2
  # connections|messages per connection|server threads
  for spec in "1|20000|$THREADS" "100|2000|$THREADS" "100|2000|1"; do
    IFS='|' read -r conns count threads <<<"$spec"
    kinds=(coreloop coreloop-reuseport tokio mio)
    [ "$threads" = 1 ] && kinds=(coreloop tokio mio)
    for kind in "${kinds[@]}"; do
      THREADS=$threads start_server "$kind"
      perf stat -x, -e 'syscalls:sys_enter_*' -p "$SPID" -o "$OUT/perf.txt" &
      PERF=$!
      sleep 0.5
      "$BIN/loadgen" echo --conns "$conns" --inflight 1 --size 64 --count "$count" --addr "$SADDR" --json >"$OUT/count.json"
      kill -INT "$PERF"; wait "$PERF" || true
      stop_server
      label=$conns; [ "$threads" = 1 ] && label="$conns (1 thread)"
      python3 - "$OUT/perf.txt" "$kind" "$label" "$((conns * count))" >>"$OUT/syscalls.jsonl" <<'PY'
import json, sys
path, kind, conns, msgs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
counts = {}
for line in open(path):
    parts = line.strip().split(",")
    if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_") and parts[0].isdigit() and int(parts[0]) > 0:
        counts[parts[2][len("syscalls:sys_enter_"):]] = int(parts[0])
print(json.dumps({"server": kind, "conns": conns, "msgs": msgs, "counts": counts}))
PY
    done
  done
fi

echo "== memory per idle connection (15000 held)" >&2
for kind in coreloop tokio; do
  start_server "$kind"
  line=$("$BIN/loadgen" hold --conns 15000 --hold 1 --addr "$SADDR" --server-pid "$SPID" --json)
  stop_server
  echo "{\"server\":\"$kind\",\"result\":$line}" >>"$OUT/memory.jsonl"
done

echo "== one port: 19500 connections from two loadgen processes and 4 source addresses" >&2
start_server coreloop
"$BIN/loadgen" hold --conns 9750 --hold 5 --sources 4 --addr "$SADDR" --json >"$OUT/hold1.json" &
H1=$!
"$BIN/loadgen" hold --conns 9750 --hold 5 --sources 4 --addr "$SADDR" --json >"$OUT/hold2.json" &
H2=$!
# Sample once every connection is established (both loadgens hold for 5 s).
PORT=${SADDR##*:}
for _ in $(seq 200); do
  [ "$(ss -tnH state established "( sport = :$PORT )" | wc -l)" -ge 19500 ] && break
  sleep 0.05
done
FDS=$(ls /proc/"$SPID"/fd | wc -l)
RSS=$(awk '/VmRSS/ {print $2}' /proc/"$SPID"/status)
wait "$H1" "$H2"
stop_server
echo "{\"fds\":$FDS,\"rss_kib\":$RSS,\"a\":$(cat "$OUT/hold1.json"),\"b\":$(cat "$OUT/hold2.json")}" >"$OUT/oneport.json"

python3 scripts/bench_report.py "$OUT"

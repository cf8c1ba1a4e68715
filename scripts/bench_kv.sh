#!/usr/bin/env bash
# The kv example against Debian's redis-server, side by side in one run:
# redis-benchmark -t set,get,incr -c 50 at -P 1 and -P 16, rounds alternating
# between servers; medians of requests per second, p50/p99 latency and the
# server's CPU time per request (from /proc/PID/stat).
#
#   scripts/bench_kv.sh [ROUNDS]      # default 5 rounds; about 10 minutes
#
# Servers: kv with one reactor per CPU, and with one reactor (on a machine whose
# cores the load generator shares, one reactor leaves it a core, as
# single-threaded Redis does); redis-server 7 (--save '' --appendonly no) as it
# ships (one thread) and with --io-threads 2. Needs: cargo,
# redis-server, redis-benchmark, redis-cli, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
N1=${N1:-100000}    # requests per test at -P 1
N16=${N16:-400000}  # requests per test at -P 16
OUT=${OUT:-target/bench_kv}
PORT=${PORT:-6395}
mkdir -p "$OUT"
rm -f "$OUT/runs.jsonl"
cargo build --release --quiet --example kv
REACTORS=$(nproc)

start() { # KIND -> SPID
  case $1 in
    kv) target/release/examples/kv --addr 127.0.0.1:$PORT --reactors "$REACTORS" >/dev/null & ;;
    kv1) target/release/examples/kv --addr 127.0.0.1:$PORT --reactors 1 >/dev/null & ;;
    redis) redis-server --port $PORT --bind 127.0.0.1 --save '' --appendonly no >/dev/null & ;;
    redis-io2) redis-server --port $PORT --bind 127.0.0.1 --save '' --appendonly no --io-threads 2 >/dev/null & ;;
  esac
  SPID=$!
  for _ in $(seq 100); do redis-cli -p $PORT ping >/dev/null 2>&1 && return; sleep 0.05; done
  echo "$1 did not start" >&2; exit 1
}
stop() { kill -TERM "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=; }
trap '[ -n "${SPID:-}" ] && kill -TERM "$SPID" 2>/dev/null; true' EXIT
cpu() { awk '{print $14 + $15}' /proc/"$1"/stat; } # clock ticks, user + system

for round in $(seq "$ROUNDS"); do
  for P in 1 16; do
    n=$N1; [ "$P" = 16 ] && n=$N16
    for kind in kv kv1 redis redis-io2; do
      start "$kind"
      before=$(cpu "$SPID")
      csv=$(redis-benchmark -p $PORT -t set,get,incr -c 50 -n "$n" -P "$P" --csv 2>/dev/null)
      after=$(cpu "$SPID")
      stop
      python3 - "$round" "$kind" "$P" "$n" "$before" "$after" "$csv" >>"$OUT/runs.jsonl" <<'PY'
import json, sys, csv, io
round_, kind, p, n, before, after, text = sys.argv[1:8]
rows = list(csv.reader(io.StringIO(text)))
tests = {r[0]: {"rps": float(r[1]), "p50": float(r[4]), "p99": float(r[6])} for r in rows[1:]}
cpu_us = (float(after) - float(before)) * 10_000 / (3 * int(n))  # 100 ticks/s
print(json.dumps({"round": int(round_), "server": kind, "pipeline": int(p), "tests": tests, "cpu_us_per_req": cpu_us}))
PY
      echo "  round $round -P $P $kind: $(tail -1 "$OUT/runs.jsonl" | cut -c1-150)" >&2
    done
  done
done

python3 - "$OUT/runs.jsonl" "$REACTORS" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
reactors = sys.argv[2]
med = statistics.median
names = {"kv": f"kv ({reactors} reactors)", "kv1": "kv (1 reactor)", "redis": "redis-server", "redis-io2": "redis-server --io-threads 2"}
rounds = len({r["round"] for r in runs})
print(f"Medians of {rounds} alternating rounds; redis-benchmark -t set,get,incr -c 50.\n")
print("| -P | server | SET req/s | GET req/s | INCR req/s | p50 / p99 ms (GET) | CPU µs/req | req/s ÷ redis (SET, GET, INCR) | CPU ÷ redis |")
print("|---|---|---|---|---|---|---|---|---|")
for p in (1, 16):
    base = [r for r in runs if r["pipeline"] == p and r["server"] == "redis"]
    b_rps = {t: med([r["tests"][t]["rps"] for r in base]) for t in ("SET", "GET", "INCR")}
    b_cpu = med([r["cpu_us_per_req"] for r in base])
    for s in ("kv", "kv1", "redis", "redis-io2"):
        rs = [r for r in runs if r["pipeline"] == p and r["server"] == s]
        rps = {t: med([r["tests"][t]["rps"] for r in rs]) for t in ("SET", "GET", "INCR")}
        p50 = med([r["tests"]["GET"]["p50"] for r in rs]); p99 = med([r["tests"]["GET"]["p99"] for r in rs])
        cpu = med([r["cpu_us_per_req"] for r in rs])
        ratios = ", ".join(f"{rps[t] / b_rps[t]:.2f}×" for t in ("SET", "GET", "INCR"))
        print(f"| {p} | {names[s]} | {rps['SET']:,.0f} | {rps['GET']:,.0f} | {rps['INCR']:,.0f} | {p50:.3f} / {p99:.3f} | {cpu:.2f} | {ratios} | {cpu / b_cpu:.2f}× |")
PY

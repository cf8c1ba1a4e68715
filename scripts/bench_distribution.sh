#!/usr/bin/env bash
# Compares the distribution strategies (round-robin, least-connections, reuse-port)
# with each other and with tokio, and prints the BENCHMARKS.md table:
#   1. server CPU per operation, out of process against loadgen (alternating
#      rounds, medians): 100 connections x 64 B, and connection cycles (8 clients);
#   2. `cargo bench --bench distribution`: criterion throughput of connection
#      cycles, 64-connection echo, and a skewed load (a quarter of the connections
#      send 10x the messages) with each strategy's imbalance (max/min busy share).
#
#   scripts/bench_distribution.sh [ROUNDS]   # default 3 rounds; about 5 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
# shellcheck source=scripts/servers.sh
source scripts/servers.sh
setup target/bench-distribution --example bench_server --example loadgen
KINDS=(coreloop coreloop-leastconn coreloop-reuseport tokio)

SCENARIOS=(
  "100x64|echo --conns 100 --inflight 1 --size 64"
  "connrate8|connrate --clients 8"
)
echo "== server CPU per operation ($ROUNDS alternating rounds, ${DUR}s each)" >&2
for round in $(seq "$ROUNDS"); do
  for sc in "${SCENARIOS[@]}"; do
    name=${sc%%|*}; args=${sc#*|}
    for kind in "${KINDS[@]}"; do
      # shellcheck disable=SC2086
      measure "$round" "$name" "$kind" "$OUT/runs.jsonl" $args
    done
  done
done

echo "== cargo bench --bench distribution" >&2
cargo bench --quiet --bench distribution >"$OUT/criterion.txt" 2>&1

python3 - "$OUT" <<'PY'
import json, os, re, statistics, sys
out = sys.argv[1]
runs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl"))]
def med(s, k, key):
    v = [r["result"].get(key, 0) for r in runs if r["scenario"] == s and r["server"] == k]
    return statistics.median(v) if v else 0
kinds = [("coreloop", "round-robin"), ("coreloop-leastconn", "least-conn"), ("coreloop-reuseport", "reuseport"), ("tokio", "tokio")]
# criterion: "distribution/<group>/<name>/<threads>" then "thrpt: [lo mid hi]"
thrpt, imbalance, current = {}, {}, None
units = {"elem/s": 1, "Kelem/s": 1e3, "Melem/s": 1e6}
for line in open(os.path.join(out, "criterion.txt")):
    m = re.match(r"^(distribution/\S+)/(\S+)/\d+\s*$", line.strip())
    if m:
        current = (m.group(1), m.group(2))
        continue
    m = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+)", line)
    if m and current and current not in thrpt:
        thrpt[current] = float(m.group(1)) * units.get(m.group(2), 1)
    m = re.match(r"imbalance (\S+): busy share per thread \[(.*)\], max/min (\S+)", line.strip())
    if m:
        imbalance[m.group(1)] = (m.group(2), float(m.group(3)))
print("| strategy | CPU/op 100x64 (µs) | CPU/op connection cycle (µs) | ÷ tokio (100x64, cycle) | cycles/s | echo 64 conns (msgs/s) | skewed (msgs/s) | skewed busy share per reactor | max/min |")
print("|---|---|---|---|---|---|---|---|---|")
t64, tcyc = med("100x64", "tokio", "server_cpu_us_per_op"), med("connrate8", "tokio", "server_cpu_us_per_op")
for kind, name in kinds:
    c64, ccyc = med("100x64", kind, "server_cpu_us_per_op"), med("connrate8", kind, "server_cpu_us_per_op")
    cyc = thrpt.get(("distribution/connection_cycle", name), 0)
    echo = thrpt.get(("distribution/echo/64conn/64B", name), 0)
    skew = thrpt.get(("distribution/skewed/64conn/64B", name), 0)
    shares, ratio = imbalance.get(name, ("", 0))
    print(f"| {name} | {c64:.2f} | {ccyc:.2f} | {c64 / t64:.2f}×, {ccyc / tcyc:.2f}× | {cyc:.0f} | {echo:.0f} | {skew:.0f} | {shares} | {ratio:.2f} |")
PY

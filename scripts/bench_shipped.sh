#!/usr/bin/env bash
# The echo example as shipped (idle timeout on), beside bench_server (the bare
# coreloop echo the other benchmarks use), the echo example with --idle-timeout
# 0, and tokio: server CPU per operation in one run, rounds alternating.
#
#   scripts/bench_shipped.sh [ROUNDS]   # default 5 rounds; about 5 minutes
#
# Needs: cargo, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
# shellcheck source=scripts/servers.sh
source scripts/servers.sh
setup target/bench_shipped --example bench_server --example echo --example loadgen

SCENARIOS=(
  "1x64|echo --conns 1 --inflight 1 --size 64"
  "100x64|echo --conns 100 --inflight 1 --size 64"
  "100x64x16|echo --conns 100 --inflight 16 --size 64"
)
KINDS=(coreloop echo-shipped echo-idle0 tokio)
for round in $(seq "$ROUNDS"); do
  for sc in "${SCENARIOS[@]}"; do
    name=${sc%%|*}; args=${sc#*|}
    for kind in "${KINDS[@]}"; do
      # shellcheck disable=SC2086
      measure "$round" "$name" "$kind" "$OUT/runs.jsonl" $args
    done
  done
done

python3 - "$OUT/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
med = statistics.median
kinds = ["coreloop", "echo-shipped", "echo-idle0", "tokio"]
label = {"coreloop": "bench_server", "echo-shipped": "echo example (shipped)", "echo-idle0": "echo --idle-timeout 0", "tokio": "tokio"}
print(f"Medians of {len({r['round'] for r in runs})} alternating rounds; server CPU per operation in µs (user CPU in brackets).\n")
print("| scenario | " + " | ".join(label[k] for k in kinds) + " | shipped ÷ bench_server | shipped ÷ idle 0 |")
print("|---|" + "---|" * (len(kinds) + 2))
for sc in dict.fromkeys(r["scenario"] for r in runs):
    cpu = {k: med([r["result"]["server_cpu_us_per_op"] for r in runs if r["scenario"] == sc and r["server"] == k]) for k in kinds}
    usr = {k: med([r["result"]["server_user_us_per_op"] for r in runs if r["scenario"] == sc and r["server"] == k]) for k in kinds}
    cells = [f"{cpu[k]:.2f} ({usr[k]:.2f})" for k in kinds]
    print(f"| {sc} | " + " | ".join(cells) + f" | {cpu['echo-shipped'] / cpu['coreloop']:.2f}× | {cpu['echo-shipped'] / cpu['echo-idle0']:.2f}× |")
PY

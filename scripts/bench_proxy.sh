#!/usr/bin/env bash
# What the PROXY protocol costs: connection cycles (connect, one 64-byte echo,
# close) against the echo example as shipped with the protocol off, and with it
# required and a v2 (or v1) header sent with the 64 bytes in one write, as
# HAProxy sends them. Server CPU per cycle from /proc, and the server's reads (recvfrom)
# and total syscalls per cycle from perf's tracepoints, rounds alternating.
#
#   scripts/bench_proxy.sh [ROUNDS]   # default 5 rounds; about 2 minutes
#
# Needs: cargo, python3, perf (syscall tracepoints).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
# shellcheck source=scripts/servers.sh
source scripts/servers.sh
setup target/bench_proxy --example echo --example loadgen

CASES=(
  "off|echo-shipped|"
  "required_v2|echo-proxy|--proxy-header v2"
  "required_v1|echo-proxy|--proxy-header v1"
)
for round in $(seq "$ROUNDS"); do
  for c in "${CASES[@]}"; do
    IFS='|' read -r name kind extra <<<"$c"
    start_server "$kind"
    # Count the server's syscalls over the measured window only.
    (sleep "$WARM"; exec perf stat -x, -o "$OUT/perf.txt" \
      -e 'syscalls:sys_enter_recvfrom' -e 'raw_syscalls:sys_enter' -p "$SPID" -- sleep "$DUR") &
    PERF=$!
    # shellcheck disable=SC2086
    line=$("$BIN/loadgen" connrate --addr "$SADDR" --duration "$DUR" --warmup "$WARM" --server-pid "$SPID" --json $extra)
    wait "$PERF" || true
    stop_server
    reads=$(awk -F, '/sys_enter_recvfrom/ {print $1}' "$OUT/perf.txt")
    all=$(awk -F, '/raw_syscalls:sys_enter/ {print $1}' "$OUT/perf.txt")
    echo "{\"round\":$round,\"case\":\"$name\",\"reads\":${reads:-0},\"syscalls\":${all:-0},\"result\":$line}" >>"$OUT/runs.jsonl"
    echo "  round $round $name: $(echo "$line" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.0f cycles/s, %.2f us cpu/cycle" % (r["ops_per_s"], r.get("server_cpu_us_per_op", 0)))')" >&2
  done
done

python3 - "$OUT/runs.jsonl" "$DUR" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
dur = float(sys.argv[2])
med = statistics.median
cases = list(dict.fromkeys(r["case"] for r in runs))
print(f"Medians of {len({r['round'] for r in runs})} alternating rounds; server CPU per cycle in µs; syscalls per cycle over the same window.\n")
print("| listener, client | cycles/s | server CPU µs/cycle | ÷ off | reads/cycle | syscalls/cycle |")
print("|---|---|---|---|---|---|")
cpu = {c: med([r["result"]["server_cpu_us_per_op"] for r in runs if r["case"] == c]) for c in cases}
for c in cases:
    rs = [r for r in runs if r["case"] == c]
    rate = med([r["result"]["ops_per_s"] for r in rs])
    # perf counts a window of DUR seconds; loadgen's ops/s covers the same span.
    reads = med([r["reads"] / (r["result"]["ops_per_s"] * dur) for r in rs])
    calls = med([r["syscalls"] / (r["result"]["ops_per_s"] * dur) for r in rs])
    print(f"| {c} | {rate:.0f} | {cpu[c]:.2f} | {cpu[c] / cpu['off']:.3f}× | {reads:.2f} | {calls:.2f} |")
PY

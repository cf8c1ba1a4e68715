#!/usr/bin/env bash
# TLS side by side: coreloop serving TLS and tokio + tokio-rustls, both from the
# same rustls ServerConfig (TLS 1.3, ECDSA P-256, ring; bench_server makes the
# certificate), against loadgen --tls-ca, rounds alternating:
#   - handshakes: connrate (connect, full handshake, one 64-byte echo, close);
#   - established connections: 64-byte and 16 KiB echoes;
#   - memory per idle connection: N connections held after one echo each, the
#     server's RSS growth divided by N (the plain servers too, for reference).
# Server CPU per operation from /proc; ratios coreloop-tls ÷ tokio-tls.
#
#   scripts/bench_tls.sh [ROUNDS]   # default 5 rounds; about 6 minutes
#
# Needs: cargo, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
HOLD=${HOLD:-5000}
# shellcheck source=scripts/servers.sh
source scripts/servers.sh
setup target/bench_tls --features tls --example bench_server --example loadgen

SCENARIOS=(
  "handshake8|connrate --clients 8"
  "1x64|echo --conns 1 --inflight 1 --size 64"
  "100x64|echo --conns 100 --inflight 1 --size 64"
  "1x16K|echo --conns 1 --inflight 1 --size 16384"
)
for round in $(seq "$ROUNDS"); do
  for sc in "${SCENARIOS[@]}"; do
    name=${sc%%|*}; args=${sc#*|}
    for kind in coreloop-tls tokio-tls; do
      # shellcheck disable=SC2086
      measure "$round" "$name" "$kind" "$OUT/runs.jsonl" $args --tls-ca "$OUT/ca.pem"
    done
  done
done

echo "== memory per idle connection ($HOLD held)" >&2
for round in $(seq "$ROUNDS"); do
  for kind in coreloop-tls tokio-tls coreloop tokio; do
    start_server "$kind"
    tls=(); case $kind in *-tls) tls=(--tls-ca "$OUT/ca.pem") ;; esac
    line=$("$BIN/loadgen" hold --addr "$SADDR" --conns "$HOLD" --hold 0.5 --server-pid "$SPID" --json "${tls[@]}")
    stop_server
    echo "{\"round\":$round,\"scenario\":\"idle\",\"server\":\"$kind\",\"result\":$line}" >>"$OUT/idle.jsonl"
    echo "  round $round idle $kind: $(echo "$line" | python3 -c 'import json,sys; print("%.0f B/conn" % json.load(sys.stdin)["server_rss_bytes_per_op"])')" >&2
  done
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, os, statistics, sys
out, rounds = sys.argv[1], sys.argv[2]
med = statistics.median
runs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl"))]
def m(rs, scen, server, key):
    return med([r["result"][key] for r in rs if r["scenario"] == scen and r["server"] == server])
scens = list(dict.fromkeys(r["scenario"] for r in runs))
print(f"Medians of {rounds} alternating rounds; server CPU per operation (a handshake cycle, or an echoed message) in µs.\n")
print("| scenario | coreloop-tls µs/op | tokio-tls µs/op | ÷ | user: coreloop-tls | tokio-tls | ÷ | ops/s coreloop-tls | tokio-tls |")
print("|---|---|---|---|---|---|---|---|---|")
for s in scens:
    c, t = m(runs, s, "coreloop-tls", "server_cpu_us_per_op"), m(runs, s, "tokio-tls", "server_cpu_us_per_op")
    cu, tu = m(runs, s, "coreloop-tls", "server_user_us_per_op"), m(runs, s, "tokio-tls", "server_user_us_per_op")
    co, to = m(runs, s, "coreloop-tls", "ops_per_s"), m(runs, s, "tokio-tls", "ops_per_s")
    print(f"| {s} | {c:.2f} | {t:.2f} | {c / t:.3f}× | {cu:.2f} | {tu:.2f} | {cu / tu:.3f}× | {co:.0f} | {to:.0f} |")
idle = [json.loads(l) for l in open(os.path.join(out, "idle.jsonl"))]
print("\n| idle connection | server RSS bytes per connection |")
print("|---|---|")
for k in ("coreloop-tls", "tokio-tls", "coreloop", "tokio"):
    print(f"| {k} | {m(idle, 'idle', k, 'server_rss_bytes_per_op'):.0f} |")
c, t = m(idle, "idle", "coreloop-tls", "server_rss_bytes_per_op"), m(idle, "idle", "tokio-tls", "server_rss_bytes_per_op")
print(f"\ncoreloop-tls ÷ tokio-tls per idle connection: {c / t:.3f}×")
PY

# Shared by scripts/bench.sh and scripts/bench_distribution.sh (sourced).
# Expects BIN, THREADS and OUT to be set.

start_server() { # kind -> sets SPID, SADDR
  "$BIN/bench_server" --kind "$1" --threads "$THREADS" >"$OUT/banner.txt" &
  SPID=$!
  for _ in $(seq 100); do grep -q listening "$OUT/banner.txt" 2>/dev/null && break; sleep 0.05; done
  SADDR=$(awk '{print $3}' "$OUT/banner.txt")
}

stop_server() { kill -TERM "$SPID"; wait "$SPID" || true; }

# A failed step ends the script (set -e): never leave a server running behind it.
trap '[ -n "${SPID:-}" ] && kill -TERM "$SPID" 2>/dev/null; true' EXIT

# Shared by the bench scripts (sourced): setup, starting and stopping the
# compared servers, and one measured loadgen run.

# setup OUT EXAMPLE-ARGS...: the defaults every script shares (DUR, WARM,
# THREADS; each may be set from the environment, OUT too), a fresh output
# directory, and the release build of the examples the script runs.
setup() {
  DUR=${DUR:-3}
  WARM=${WARM:-1}
  THREADS=${THREADS:-2}
  OUT=${OUT:-$1}
  shift
  mkdir -p "$OUT"
  rm -f "$OUT"/*.jsonl
  cargo build --release --quiet "$@"
  BIN=target/release/examples
}

start_server() { # kind -> sets SPID, SADDR
  case $1 in
    # The echo example as users run it (idle timeout 60 s, connection cap), and
    # without its idle timeout.
    echo-shipped) "$BIN/echo" --addr 127.0.0.1:0 --reactors "$THREADS" >"$OUT/banner.txt" 2>/dev/null & ;;
    echo-idle0) "$BIN/echo" --addr 127.0.0.1:0 --reactors "$THREADS" --idle-timeout 0 >"$OUT/banner.txt" 2>/dev/null & ;;
    # The echo example behind a balancer: every connection must open with a
    # PROXY header (loadgen --proxy-header v1|v2 sends one).
    echo-proxy) "$BIN/echo" --addr 127.0.0.1:0 --reactors "$THREADS" --proxy-protocol required >"$OUT/banner.txt" 2>/dev/null & ;;
    # The TLS servers write the certificate they serve for loadgen --tls-ca.
    coreloop-tls|coreloop-tls-reuseport|tokio-tls) "$BIN/bench_server" --kind "$1" --threads "$THREADS" --tls-ca-out "$OUT/ca.pem" >"$OUT/banner.txt" & ;;
    *) "$BIN/bench_server" --kind "$1" --threads "$THREADS" >"$OUT/banner.txt" & ;;
  esac
  SPID=$!
  for _ in $(seq 100); do grep -q listening "$OUT/banner.txt" 2>/dev/null && break; sleep 0.05; done
  SADDR=$(awk '{print $3}' "$OUT/banner.txt")
}

stop_server() { kill -TERM "$SPID"; wait "$SPID" || true; }

# measure ROUND SCENARIO KIND FILE LOADGEN-ARGS...: starts a KIND server, runs
# loadgen against it for DUR seconds after WARM, stops it, appends one JSON line
# to FILE and prints a progress line to stderr.
measure() {
  local round=$1 scenario=$2 kind=$3 file=$4 line
  shift 4
  start_server "$kind"
  line=$("$BIN/loadgen" "$@" --addr "$SADDR" --duration "$DUR" --warmup "$WARM" --server-pid "$SPID" --json)
  stop_server
  echo "{\"round\":$round,\"scenario\":\"$scenario\",\"server\":\"$kind\",\"result\":$line}" >>"$file"
  echo "  round $round $scenario $kind: $(echo "$line" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.0f ops/s, %.2f us cpu/op" % (r["ops_per_s"], r.get("server_cpu_us_per_op", 0)))')" >&2
}

# A failed step ends the script (set -e): never leave a server running behind it.
# (`|| true`: under set -e a failed kill of a server already gone would end the
# trap, and the script, with status 1.)
trap 'if [ -n "${SPID:-}" ]; then kill -TERM "$SPID" 2>/dev/null || true; fi' EXIT

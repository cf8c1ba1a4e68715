"""Prints the BENCHMARKS.md tables from the files scripts/bench.sh wrote."""
import json
import os
import statistics
import sys

out = sys.argv[1]
runs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl"))]
scenarios = []
for r in runs:
    if r["scenario"] not in scenarios:
        scenarios.append(r["scenario"])


def med(scenario, server, key, runs=runs):
    vals = [r["result"].get(key, 0) for r in runs if r["scenario"] == scenario and r["server"] == server]
    return statistics.median(vals) if vals else 0


SERVERS = ("coreloop", "coreloop-reuseport", "tokio", "mio")
print("### Server CPU per operation (µs; medians) and ratios\n")
print("coreloop = round-robin acceptor (default); coreloop-rp = `Distribution::ReusePort`.\n")
print("| scenario | coreloop | coreloop-rp | tokio | raw mio | coreloop ÷ best(tokio, mio) | coreloop-rp ÷ best | user: coreloop | coreloop-rp | tokio | user ratio (coreloop, rp) ÷ tokio |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for s in scenarios:
    c, rp, t, m = (med(s, k, "server_cpu_us_per_op") for k in SERVERS)
    cu, rpu, tu = (med(s, k, "server_user_us_per_op") for k in ("coreloop", "coreloop-reuseport", "tokio"))
    best = min(t, m)
    print(f"| {s} | {c:.2f} | {rp:.2f} | {t:.2f} | {m:.2f} | {c / best:.2f}× | {rp / best:.2f}× | {cu:.2f} | {rpu:.2f} | {tu:.2f} | {cu / tu if tu else 0:.2f}×, {rpu / tu if tu else 0:.2f}× |")

print("\n### Throughput (ops/s; medians) and latency (µs; medians of p99)\n")
print("| scenario | coreloop | coreloop-rp | tokio | raw mio | coreloop ÷ tokio | rp ÷ tokio | p99 coreloop | p99 rp | p99 tokio | p99 mio |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for s in scenarios:
    c, rp, t, m = (med(s, k, "ops_per_s") for k in SERVERS)
    pc, prp, pt, pm = (med(s, k, "p99_us") for k in SERVERS)
    print(f"| {s} | {c:.0f} | {rp:.0f} | {t:.0f} | {m:.0f} | {c / t:.2f}× | {rp / t:.2f}× | {pc:.0f} | {prp:.0f} | {pt:.0f} | {pm:.0f} |")

path = os.path.join(out, "runs1.jsonl")
if os.path.exists(path):
    one = [json.loads(l) for l in open(path)]

    def med1(server, key):
        return med("100x64-1t", server, key, one)

    print("\n### 100x64 with one server thread each\n")
    print("| server | CPU/op (µs) | ÷ best(tokio, mio) | user CPU/op (µs) | ÷ tokio | ops/s | ÷ tokio | p99 (µs) |")
    print("|---|---|---|---|---|---|---|---|")
    best = min(med1("tokio", "server_cpu_us_per_op"), med1("mio", "server_cpu_us_per_op"))
    for k in ("coreloop", "tokio", "mio"):
        cpu, user, ops, p99 = (med1(k, key) for key in ("server_cpu_us_per_op", "server_user_us_per_op", "ops_per_s", "p99_us"))
        tu, tops = med1("tokio", "server_user_us_per_op"), med1("tokio", "ops_per_s")
        print(f"| {k} | {cpu:.2f} | {cpu / best:.2f}× | {user:.2f} | {user / tu:.2f}× | {ops:.0f} | {ops / tops:.2f}× | {p99:.0f} |")

path = os.path.join(out, "syscalls.jsonl")
if os.path.exists(path):
    print("\n### Syscalls per echoed message (server, perf tracepoints)\n")
    print("| connections | server | per message | by syscall (per message) |")
    print("|---|---|---|---|")
    for line in open(path):
        r = json.loads(line)
        total = sum(r["counts"].values()) / r["msgs"]
        parts = ", ".join(
            f"{k} {v / r['msgs']:.3f}" for k, v in sorted(r["counts"].items(), key=lambda kv: -kv[1]) if v / r["msgs"] >= 0.001
        )
        print(f"| {r['conns']} | {r['server']} | {total:.3f} | {parts} |")

path = os.path.join(out, "memory.jsonl")
if os.path.exists(path):
    print("\n### Memory per idle connection (server RSS growth ÷ 15,000 held connections)\n")
    print("| server | bytes per connection |")
    print("|---|---|")
    for line in open(path):
        r = json.loads(line)
        print(f"| {r['server']} | {r['result'].get('server_rss_bytes_per_op', 0):.0f} |")

path = os.path.join(out, "oneport.json")
if os.path.exists(path):
    r = json.load(open(path))
    held = r["a"]["ops"] + r["b"]["ops"]
    errors = r["a"]["errors"] + r["b"]["errors"]
    print(f"\n### One port\n\n{held} connections held on one listening port, each verified with one echo "
          f"({errors} errors); server descriptors {r['fds']}, server RSS {r['rss_kib']} KiB.")

//! The distribution strategies against each other (and the tokio baseline, same
//! thread count): connection cycles per second, echo round trips per second, and a
//! skewed load — a quarter of the connections send 10× the messages — after which
//! each strategy's imbalance is printed: every reactor's busy share (its thread's
//! CPU time over the wall time, from `/proc/self/task/*/schedstat`) and max/min.
//!
//! Run with `cargo bench --bench distribution`. The imbalance lines start with
//! `imbalance`: `cargo bench --bench distribution 2>&1 | grep imbalance`.

#[path = "support/client.rs"]
mod client;
#[path = "support/servers.rs"]
mod servers;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use servers::{Kind, Running};

/// The strategies, then the baseline, all at CPU-count threads.
fn compared() -> [(Kind, &'static str); 4] {
    [
        (Kind::Coreloop, "round-robin"),
        (Kind::CoreloopLeastConn, "least-conn"),
        (Kind::CoreloopReusePort, "reuseport"),
        (Kind::Tokio, "tokio"),
    ]
}

fn any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn connection_cycles(c: &mut Criterion) {
    let threads = num_cpus::get();
    let mut group = c.benchmark_group("distribution/connection_cycle");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    for (kind, name) in compared() {
        let server = Running::start(kind, threads, any()).expect("start the server");
        let addr = server.addr();
        group.bench_function(BenchmarkId::new(name, threads), |b| b.iter(|| client::cycle(addr)));
        server.stop();
    }
    group.finish();
}

const CONNS: usize = 64;
const HEAVY_WEIGHT: u64 = 10;

/// Which connections are heavy: a quarter of them, picked by a fixed
/// pseudo-random permutation (not every fourth, which round-robin over 2 or 4
/// reactors would pile onto one).
fn heavy_set() -> Vec<bool> {
    let mut order: Vec<usize> = (0..CONNS).collect();
    order.sort_by_key(|&i| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17));
    let mut heavy = vec![false; CONNS];
    for &i in &order[..CONNS / 4] {
        heavy[i] = true;
    }
    heavy
}

/// `iters` 64-byte round trips, one in flight per connection, shared so that
/// heavy connections do `HEAVY_WEIGHT` times as many as light ones.
fn skewed_round_trips(streams: &[TcpStream], heavy: &[bool], iters: u64) -> Duration {
    let weights: u64 = heavy.iter().map(|&h| if h { HEAVY_WEIGHT } else { 1 }).sum();
    let unit = iters.div_ceil(weights).max(1);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for (s, &h) in streams.iter().zip(heavy) {
            scope.spawn(move || {
                let msg = [9u8; 64];
                let mut back = [0u8; 64];
                for _ in 0..unit * if h { HEAVY_WEIGHT } else { 1 } {
                    (&*s).write_all(&msg).unwrap();
                    (&*s).read_exact(&mut back).unwrap();
                }
            });
        }
    });
    start.elapsed()
}

/// CPU nanoseconds of this process's threads whose name starts with `prefix`
/// (the kernel keeps 15 bytes of a name).
fn thread_cpu_ns(prefix: &str) -> Vec<(u32, u64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let tid = task.file_name().to_string_lossy().parse().unwrap_or(0);
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        let ns = schedstat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        threads.push((tid, ns));
    }
    threads.sort_unstable();
    threads
}

/// Runs the skewed load for a fixed count of messages and prints each event-loop
/// thread's busy share and the max/min ratio.
fn print_imbalance(name: &str, streams: &[TcpStream], heavy: &[bool]) {
    let prefix = if name == "tokio" {
        "tokio-rt-worker"
    } else {
        "coreloop-reacto"
    };
    let before = thread_cpu_ns(prefix);
    let start = Instant::now();
    skewed_round_trips(streams, heavy, 200_000);
    let wall = start.elapsed().as_nanos() as f64;
    let after = thread_cpu_ns(prefix);
    let shares: Vec<f64> = after
        .iter()
        .filter_map(|(tid, ns)| {
            let was = before.iter().find(|(t, _)| t == tid)?.1;
            Some((ns - was) as f64 / wall)
        })
        .collect();
    let max = shares.iter().copied().fold(0.0, f64::max);
    let min = shares.iter().copied().fold(f64::INFINITY, f64::min);
    let listed: Vec<String> = shares.iter().map(|s| format!("{:.0}%", s * 100.0)).collect();
    println!(
        "imbalance {name}: busy share per thread [{}], max/min {:.2}",
        listed.join(", "),
        max / min.max(1e-9)
    );
}

/// 64 connections, one 64-byte message in flight each: evenly loaded (`echo`), or
/// with a quarter of them sending 10× the messages (`skewed`, followed by the
/// imbalance printout).
fn message_loads(c: &mut Criterion) {
    let threads = num_cpus::get();
    for (load, heavy) in [("echo", vec![false; CONNS]), ("skewed", heavy_set())] {
        let mut group = c.benchmark_group(format!("distribution/{load}/{CONNS}conn/64B"));
        group.throughput(Throughput::Elements(1));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        for (kind, name) in compared() {
            let server = Running::start(kind, threads, any()).expect("start the server");
            // Opened one by one, in order, as clients of a real service arrive.
            let streams = client::connect_all(server.addr(), CONNS);
            group.bench_function(BenchmarkId::new(name, threads), |b| {
                b.iter_custom(|iters| skewed_round_trips(&streams, &heavy, iters))
            });
            if heavy.contains(&true) {
                print_imbalance(name, &streams, &heavy);
            }
            drop(streams);
            server.stop();
        }
        group.finish();
    }
}

criterion_group!(benches, connection_cycles, message_loads);
criterion_main!(benches);

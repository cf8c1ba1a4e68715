//! Echo round trips per second: 1 and 64 connections, 64 B and 16 KiB messages, 1
//! and 16 in flight. Each group has coreloop at 1 reactor and at CPU-count
//! reactors, the tokio baseline and the raw-mio reference, side by side.
//!
//! Run with `cargo bench --bench echo`. (For server CPU per operation, the figure
//! that matters on a machine where the client competes for the cores, use
//! `scripts/bench.sh`.)

#[path = "support/client.rs"]
mod client;
#[path = "support/servers.rs"]
mod servers;

use std::net::SocketAddr;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use servers::Running;

fn echo(c: &mut Criterion) {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    for conns in [1, 64] {
        for size in [64, 16 * 1024] {
            for inflight in [1, 16] {
                let mut group = c.benchmark_group(format!("echo/{conns}conn/{size}B/{inflight}inflight"));
                group.throughput(Throughput::Elements(1));
                group.sample_size(10);
                group.warm_up_time(Duration::from_millis(500));
                group.measurement_time(Duration::from_secs(2));
                for (kind, threads) in servers::compared() {
                    let server = Running::start(kind, threads, any).expect("start the server");
                    let streams = client::connect_all(server.addr(), conns);
                    group.bench_function(BenchmarkId::new(kind.name(), threads), |b| {
                        b.iter_custom(|iters| client::round_trips(&streams, iters, size, inflight))
                    });
                    drop(streams);
                    server.stop();
                }
                group.finish();
            }
        }
    }
}

criterion_group!(benches, echo);
criterion_main!(benches);

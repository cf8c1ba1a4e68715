//! Connection cycles per second: connect → one 64-byte echo → close, against an
//! in-process server: coreloop at 1 reactor and at CPU-count reactors, the tokio
//! baseline and the raw-mio reference with the same thread count, side by side.
//!
//! Run with `cargo bench --bench connections`.

#[path = "support/client.rs"]
mod client;
#[path = "support/servers.rs"]
mod servers;

use std::net::SocketAddr;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use servers::Running;

fn connection_cycles(c: &mut Criterion) {
    let mut group = c.benchmark_group("connection_cycle");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    for (kind, threads) in servers::compared() {
        let server = Running::start(kind, threads, SocketAddr::from(([127, 0, 0, 1], 0))).expect("start the server");
        let addr = server.addr();
        group.bench_function(BenchmarkId::new(kind.name(), threads), |b| {
            b.iter(|| client::cycle(addr))
        });
        server.stop();
    }
    group.finish();
}

criterion_group!(benches, connection_cycles);
criterion_main!(benches);

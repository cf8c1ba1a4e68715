//! Connection cycles per second: connect → one 64-byte echo → close, against an
//! in-process server: coreloop at 1 reactor and at CPU-count reactors, the tokio
//! baseline and the raw-mio reference with the same thread count, side by side.
//!
//! `proxy_preamble` prices the PROXY protocol: the same cycle on a listener with
//! the protocol off, and on one that requires it with a v2 header (and a v1
//! header) sent with the client's 64 bytes in one write, as HAProxy sends them.
//!
//! Run with `cargo bench --bench connections`.

#[path = "support/client.rs"]
mod client;
#[path = "support/servers.rs"]
mod servers;

use std::net::SocketAddr;
use std::time::Duration;

use coreloop::{Listen, ProxyProtocol, Server};
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

fn proxy_preamble(c: &mut Criterion) {
    let mut group = c.benchmark_group("proxy_preamble");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    let v1 = b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 80\r\n".to_vec();
    for (name, mode, header) in [
        ("off", ProxyProtocol::Off, Vec::new()),
        ("required_v2", ProxyProtocol::Required, v2_header()),
        ("required_v1", ProxyProtocol::Required, v1),
    ] {
        let server = Server::builder()
            .reactors(1)
            .max_connections(1 << 20)
            .listen(Listen::tcp(SocketAddr::from(([127, 0, 0, 1], 0))).proxy_protocol(mode))
            .start(|_| servers::Echo)
            .expect("start the server");
        let addr = server.local_addrs()[0];
        group.bench_function(name, |b| b.iter(|| client::cycle_with(addr, &header)));
        let _ = server.shutdown(Duration::from_secs(1));
    }
    group.finish();
}

/// A PROXY v2 header as HAProxy's `send-proxy-v2` sends it: TCP over IPv4, no
/// TLVs (28 bytes).
fn v2_header() -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]); // v2 PROXY, TCP4, 12 address bytes
    h.extend_from_slice(&[192, 0, 2, 10, 127, 0, 0, 1]);
    h.extend_from_slice(&40000u16.to_be_bytes());
    h.extend_from_slice(&80u16.to_be_bytes());
    h
}

criterion_group!(benches, connection_cycles, proxy_preamble);
criterion_main!(benches);

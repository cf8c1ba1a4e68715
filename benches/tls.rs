//! TLS side by side (feature `tls`): coreloop serving TLS at 1 reactor and at
//! CPU-count reactors, and tokio + tokio-rustls with CPU-count workers, all
//! three from the same `rustls::ServerConfig` — TLS 1.3, an ECDSA P-256
//! certificate, rustls's ring provider (`benches/support/servers.rs`, `tls`).
//!
//! - `tls_handshake`: connect → full TLS 1.3 handshake (the client keeps no
//!   session, so nothing is resumed) → one 64-byte echo → `close_notify` and
//!   close, one after another;
//! - `tls_echo/64B`, `tls_echo/16KiB`: round trips on one established
//!   connection.
//!
//! Run with `cargo bench --features tls --bench tls`. The client (rustls's
//! blocking `StreamOwned`) shares the 2 cores with the server, so these rates
//! are bounded by it; `scripts/bench_tls.sh` measures the server's CPU per
//! handshake and per message, and its memory per idle connection.

#[path = "support/servers.rs"]
mod servers;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coreloop::rustls::client::Resumption;
use coreloop::rustls::{ClientConfig, ClientConnection, StreamOwned};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use servers::{Kind, Running};

type Client = StreamOwned<ClientConnection, TcpStream>;

/// The servers compared: coreloop at 1 and at CPU-count reactors, tokio-rustls
/// with CPU-count workers.
fn compared() -> [(Kind, usize); 3] {
    let cpus = num_cpus::get();
    [
        (Kind::CoreloopTls, 1),
        (Kind::CoreloopTls, cpus),
        (Kind::TokioTls, cpus),
    ]
}

/// The client configuration with resumption off: every connect a full handshake.
fn full_handshakes() -> Arc<ClientConfig> {
    let mut config = (*servers::tls::client_config()).clone();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Client {
    let conn = ClientConnection::new(Arc::clone(config), servers::tls::server_name()).expect("client session");
    let sock = TcpStream::connect(addr).expect("connect to the bench server");
    sock.set_nodelay(true).unwrap();
    StreamOwned::new(conn, sock)
}

/// One echo of `msg` (written whole, read back whole).
fn round_trip(s: &mut Client, msg: &[u8], back: &mut [u8]) {
    s.write_all(msg).unwrap();
    s.read_exact(back).unwrap();
}

fn handshakes(c: &mut Criterion) {
    let mut group = c.benchmark_group("tls_handshake");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    let config = full_handshakes();
    let (msg, mut back) = ([7u8; 64], [0u8; 64]);
    for (kind, threads) in compared() {
        let server = Running::start(kind, threads, SocketAddr::from(([127, 0, 0, 1], 0))).expect("start the server");
        let addr = server.addr();
        group.bench_function(BenchmarkId::new(kind.name(), threads), |b| {
            b.iter(|| {
                let mut s = connect(addr, &config);
                round_trip(&mut s, &msg, &mut back);
                assert_eq!(back, msg);
                s.conn.send_close_notify();
                let _ = s.conn.complete_io(&mut s.sock);
            })
        });
        server.stop();
    }
    group.finish();
}

fn echo(c: &mut Criterion) {
    let config = servers::tls::client_config();
    for (label, size) in [("64B", 64), ("16KiB", 16 * 1024)] {
        let mut group = c.benchmark_group(format!("tls_echo/{label}"));
        group.throughput(Throughput::Elements(1));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        let msg = vec![5u8; size];
        let mut back = vec![0u8; size];
        for (kind, threads) in compared() {
            let server =
                Running::start(kind, threads, SocketAddr::from(([127, 0, 0, 1], 0))).expect("start the server");
            let mut s = connect(server.addr(), &config);
            group.bench_function(BenchmarkId::new(kind.name(), threads), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        round_trip(&mut s, &msg, &mut back);
                    }
                    start.elapsed()
                })
            });
            assert_eq!(back, msg);
            drop(s);
            server.stop();
        }
        group.finish();
    }
}

criterion_group!(benches, handshakes, echo);
criterion_main!(benches);

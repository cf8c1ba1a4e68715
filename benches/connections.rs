//! Connection cycles per second: connect → one 64-byte echo → close, against an
//! in-process server. coreloop at 1 reactor and at CPU-count reactors, and a tokio
//! multi-thread server with the same thread count, side by side in one group.
//!
//! Run with `cargo bench --bench connections`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use coreloop::{Context, Handler, Server};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

struct Echo;

impl Handler for Echo {
    type Conn = ();
    type Message = ();
    fn on_open(&mut self, _cx: &mut Context<'_>) {}
    fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        cx.write(input);
        input.clear();
    }
}

/// A tokio echo server: task per connection, 4 KiB buffer, `read` + `write_all`.
fn tokio_echo(threads: usize) -> (tokio::runtime::Runtime, SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_io()
        .build()
        .expect("tokio runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind tokio listener");
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (rt, addr)
}

fn cycle(addr: SocketAddr, msg: &[u8; 64]) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    s.write_all(msg).unwrap();
    let mut back = [0u8; 64];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, msg);
}

fn connection_cycles(c: &mut Criterion) {
    let cpus = num_cpus::get();
    let msg = [7u8; 64];
    let mut group = c.benchmark_group("connection_cycle");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));

    for reactors in [1, cpus] {
        let server = Server::builder()
            .reactors(reactors)
            .bind(([127, 0, 0, 1], 0))
            .start(|_| Echo)
            .expect("start coreloop");
        let addr = server.local_addrs()[0];
        group.bench_function(BenchmarkId::new("coreloop", reactors), |b| b.iter(|| cycle(addr, &msg)));
        server.shutdown(Duration::from_secs(1)).expect("shutdown");
    }

    let (rt, addr) = tokio_echo(cpus);
    group.bench_function(BenchmarkId::new("tokio", cpus), |b| b.iter(|| cycle(addr, &msg)));
    rt.shutdown_timeout(Duration::from_secs(1));
    group.finish();
}

criterion_group!(benches, connection_cycles);
criterion_main!(benches);

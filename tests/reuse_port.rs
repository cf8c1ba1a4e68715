//! Reuse-port distribution: no acceptor thread; each reactor owns an
//! `SO_REUSEPORT` listener on the same address and accepts for itself. The cap,
//! shutdown and byte-exact echo behave as in the acceptor modes.

mod util;

use std::io::{ErrorKind, Read, Write};

use coreloop::{Distribution, Error, Server};
use util::*;

fn reuse_port_server(reactors: usize, cap: usize) -> Server {
    Server::builder()
        .reactors(reactors)
        .distribution(Distribution::ReusePort)
        .max_connections(cap)
        .bind(localhost())
        .start(|_| Echo)
        .unwrap()
}

/// Listening TCP sockets on `port`, from `/proc/net/tcp` (state 0A is LISTEN).
fn listeners_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port_hex = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[1].ends_with(&port_hex) && f[3] == "0A"
        })
        .count()
}

#[test]
fn every_reactor_listens_and_serves_byte_exact() {
    let server = reuse_port_server(2, 1 << 20);
    let handle = server.handle();
    let addr = server.local_addrs()[0];
    assert_eq!(listeners_on(addr.port()), 2, "one SO_REUSEPORT listener per reactor");

    let clients: Vec<_> = (0..64).map(|_| connect(addr)).collect();
    for (i, c) in clients.iter().enumerate() {
        let data = pattern(10_000, i as u64);
        assert!(roundtrip(c, &data) == data);
    }
    let stats = handle.stats();
    assert_eq!(stats.total().accepted, 64);
    // The kernel hashes connections over the listeners: with 64 connections, a
    // reactor with none would be a 2^-63 event.
    assert!(stats.reactors.iter().all(|r| r.accepted > 0), "{stats}");
    assert!(
        !coreloop_threads().iter().any(|t| t == "coreloop-accept"),
        "no acceptor thread"
    );
    drop(clients);
    server.shutdown(DEADLINE).unwrap();
    assert_eq!(listeners_on(addr.port()), 0);
    let refused = std::net::TcpStream::connect(addr).expect_err("listeners closed");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn the_cap_holds_and_a_close_lets_the_next_client_in() {
    let server = reuse_port_server(2, 2);
    let handle = server.handle();
    let addr = server.local_addrs()[0];
    let mut first: Vec<_> = (0..2).map(|_| connect(addr)).collect();
    for c in &first {
        assert_eq!(roundtrip(c, b"in"), b"in");
    }
    let mut waiting = connect(addr);
    waiting.write_all(b"me too").unwrap();
    assert_no_reply_yet(&mut waiting);
    let mut buf = [0u8; 6];
    assert_eq!(handle.stats().total().accepted, 2);

    drop(first.pop());
    waiting.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"me too");
}

#[test]
fn reuse_port_serves_tcp_addresses_only() {
    let err = Server::builder()
        .distribution(Distribution::ReusePort)
        .bind_unix(std::env::temp_dir().join("coreloop-reuse-port-unix.sock"))
        .start(|_| Echo)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config {
                option: "distribution",
                ..
            }
        ),
        "{err:?}"
    );
}

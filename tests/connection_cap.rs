//! The connection cap: at the cap the acceptor stops accepting (the next client
//! waits in the kernel backlog, neither accepted nor dropped) and resumes as soon as
//! a connection closes.

mod util;

use std::io::{Read, Write};

use coreloop::Server;
use util::*;

#[test]
fn the_client_over_the_cap_waits_and_is_served_after_a_close() {
    const CAP: usize = 3;
    let server = Server::builder()
        .reactors(2)
        .max_connections(CAP)
        .bind(localhost())
        .start(|_| Echo)
        .unwrap();
    let handle = server.handle();
    let addr = server.local_addrs()[0];
    let mut first: Vec<_> = (0..CAP).map(|_| connect(addr)).collect();
    for c in &first {
        assert_eq!(roundtrip(c, b"in"), b"in");
    }

    // The kernel completes the handshake (backlog), but the server must not accept.
    let mut waiting = connect(addr);
    waiting.write_all(b"let me in").unwrap();
    assert_no_reply_yet(&mut waiting);
    let mut buf = [0u8; 9];
    let stats = handle.stats();
    assert_eq!(stats.total().accepted, CAP as u64, "{stats}");
    assert_eq!(
        stats.reactors.iter().map(|r| r.active).sum::<u64>(),
        CAP as u64,
        "per-reactor counts"
    );

    // One leaves: the waiting client is accepted and served.
    drop(first.pop());
    waiting.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"let me in");
    let stats = handle.stats();
    assert_eq!(stats.total().accepted, CAP as u64 + 1);
    wait_for("three connections open", || handle.stats().total().active == CAP as u64);
}

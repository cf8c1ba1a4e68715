//! Blocking clients for the criterion benches: the measured work is the server's.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Opens `n` connections with `TCP_NODELAY`.
pub fn connect_all(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let s = TcpStream::connect(addr).expect("connect to the bench server");
            s.set_nodelay(true).unwrap();
            s
        })
        .collect()
}

/// Runs `iters` round trips of `size` bytes spread over `streams`, each keeping
/// `inflight` messages outstanding; returns the elapsed time.
pub fn round_trips(streams: &[TcpStream], iters: u64, size: usize, inflight: usize) -> Duration {
    let per_conn = iters.div_ceil(streams.len() as u64).max(1);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for s in streams {
            scope.spawn(move || {
                let msg = vec![5u8; size * inflight];
                let mut back = vec![0u8; size * inflight];
                let mut left = per_conn;
                while left > 0 {
                    let batch = left.min(inflight as u64) as usize;
                    (&*s).write_all(&msg[..size * batch]).unwrap();
                    (&*s).read_exact(&mut back[..size * batch]).unwrap();
                    left -= batch as u64;
                }
            });
        }
    });
    start.elapsed()
}

/// One connect → 64-byte echo → close cycle.
pub fn cycle(addr: SocketAddr) {
    cycle_with(addr, &[]);
}

/// A [`cycle`] whose 64 bytes follow `preamble` (a PROXY header) in the same
/// write, as a balancer sends them when the client's first bytes are there.
pub fn cycle_with(addr: SocketAddr, preamble: &[u8]) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    let msg = [7u8; 64];
    let mut first = Vec::with_capacity(preamble.len() + msg.len());
    first.extend_from_slice(preamble);
    first.extend_from_slice(&msg);
    s.write_all(&first).unwrap();
    let mut back = [0u8; 64];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
}

//! A large write to a client that reads slowly: the socket takes part, the rest is
//! queued and flushed on the writable edge, nothing is lost or reordered.

mod util;

use std::io::Read;

use util::*;

#[test]
fn sixteen_mebibytes_to_a_slow_reader_arrive_whole_and_in_order() {
    const SIZE: usize = 16 << 20;
    let (server, mut stream) = blasting(Blast { size: SIZE, seed: 3 });
    // The reply is far larger than the socket buffers, so the server has queued
    // part of it; read it back a little at a time.
    let mut got = Vec::with_capacity(SIZE);
    let mut buf = [0u8; 1500];
    while got.len() < SIZE {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "server closed early at {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == pattern(SIZE, 3), "the reply differs from what was written");
    let handle = server.handle();
    wait_for("bytes_out to count the whole reply", || {
        handle.stats().total().bytes_out == SIZE as u64
    });
}

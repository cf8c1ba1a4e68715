//! A large write to a client that reads slowly: the socket takes part, the rest is
//! queued and flushed on the writable edge, nothing is lost or reordered.

mod util;

use std::io::Read;

use bytes::{Bytes, BytesMut};
use coreloop::{Context, Handler, Server};
use util::*;

/// Replies to any input with `SIZE` bytes of pattern, written with `write` and
/// `write_bytes` alternately so both the copy and the zero-copy paths are queued.
struct Blast;

const SIZE: usize = 16 << 20;

impl Handler for Blast {
    type Conn = ();

    fn on_open(&mut self, _cx: &mut Context<'_>) {}

    fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        input.clear();
        let data = Bytes::from(pattern(SIZE, 3));
        for (i, chunk) in data.chunks(100_000).enumerate() {
            if i % 2 == 0 {
                cx.write(chunk);
            } else {
                cx.write_bytes(data.slice_ref(chunk));
            }
        }
    }
}

#[test]
fn sixteen_mebibytes_to_a_slow_reader_arrive_whole_and_in_order() {
    let server = Server::builder()
        .reactors(1)
        .bind(localhost())
        .start(|_| Blast)
        .unwrap();
    let handle = server.handle();
    let mut stream = connect(server.local_addrs()[0]);
    std::io::Write::write_all(&mut stream, b"go").unwrap();
    // The reply is far larger than the socket buffers, so the server must have
    // queued part of it; read it back a little at a time.
    let mut got = Vec::with_capacity(SIZE);
    let mut buf = [0u8; 1500];
    while got.len() < SIZE {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "server closed early at {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == pattern(SIZE, 3), "the reply differs from what was written");
    wait_for("bytes_out to count the whole reply", || {
        handle.stats().total().bytes_out == SIZE as u64
    });
}

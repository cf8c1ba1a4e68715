//! Correctness of the fast path's shortcuts: a short read ends the read (so data
//! arriving later must raise a new edge and be read), writes go out in few
//! `writev`s of many buffers, accepted connections are handed out in batches.

mod util;

use std::io::{Read, Write};
use std::sync::mpsc;
use std::thread;

use bytes::{Buf, Bytes, BytesMut};
use coreloop::{Context, Handler, Server};
use util::*;

/// Length-prefixed frames (u32 big-endian length, then the body). Replies to each
/// frame with its body reversed, as a frame; reports each frame's length.
struct Frames {
    seen: mpsc::Sender<usize>,
}

impl Handler for Frames {
    type Conn = ();

    fn on_open(&mut self, _cx: &mut Context<'_>) {}

    fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        while input.len() >= 4 {
            let len = u32::from_be_bytes(input[..4].try_into().unwrap()) as usize;
            if input.len() < 4 + len {
                break; // a partial frame stays in `input` for the next call
            }
            input.advance(4);
            let mut body = input.split_to(len).to_vec();
            body.reverse();
            cx.write(&(len as u32).to_be_bytes());
            cx.write(&body);
            let _ = self.seen.send(len);
        }
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn reversed_frame(body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    b.reverse();
    frame(&b)
}

fn frames_server() -> (Server, mpsc::Receiver<usize>) {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(1)
        .bind(localhost())
        .start(move |_| Frames { seen: tx.clone() })
        .unwrap();
    (server, rx)
}

#[test]
fn pipelined_frames_in_one_write_are_all_answered() {
    let (server, _rx) = frames_server();
    let s = connect(server.local_addrs()[0]);
    let bodies: Vec<Vec<u8>> = (0..500).map(|i| pattern(i % 97, i as u64)).collect();
    let burst: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
    let expect: Vec<u8> = bodies.iter().flat_map(|b| reversed_frame(b)).collect();
    assert!(roundtrip(&s, &burst) == expect);
}

#[test]
fn a_frame_dribbled_byte_by_byte_is_never_lost() {
    // Every byte is a separate segment (TCP_NODELAY), so every read is short and
    // ends the read; the next byte must raise a new edge and be read then.
    let (server, rx) = frames_server();
    let mut s = connect(server.local_addrs()[0]);
    s.set_nodelay(true).unwrap();
    let body = pattern(300, 1);
    for b in frame(&body) {
        s.write_all(&[b]).unwrap();
        s.flush().unwrap();
    }
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), 300);
    let mut got = vec![0; 304];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, reversed_frame(&body));

    // A frame split at every possible point between two writes.
    let body = pattern(40, 2);
    let f = frame(&body);
    for cut in 1..f.len() {
        s.write_all(&f[..cut]).unwrap();
        s.write_all(&f[cut..]).unwrap();
        let mut got = vec![0; f.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, reversed_frame(&body), "split at {cut}");
    }
}

/// Writes `n` separate shared buffers of `size` bytes in one callback: more slices
/// than one `writev` takes (64).
struct ManyBuffers {
    n: usize,
    size: usize,
}

impl Handler for ManyBuffers {
    type Conn = ();

    fn on_open(&mut self, _cx: &mut Context<'_>) {}

    fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        input.clear();
        for i in 0..self.n {
            cx.write_bytes(Bytes::from(pattern(self.size, i as u64)));
            cx.write(b"|"); // copied bytes between shared ones
        }
    }
}

fn expected_many(n: usize, size: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            let mut v = pattern(size, i as u64);
            v.push(b'|');
            v
        })
        .collect()
}

#[test]
fn more_buffers_than_one_writev_takes_arrive_in_order() {
    for (n, size) in [(300, 2048), (1000, 4096)] {
        let server = Server::builder()
            .reactors(1)
            .bind(localhost())
            .start(move |_| ManyBuffers { n, size })
            .unwrap();
        let mut s = connect(server.local_addrs()[0]);
        s.write_all(b"go").unwrap();
        let expect = expected_many(n, size);
        // Read slowly at first, so part of the output is queued (and later flushed
        // from the queue with writev too).
        let mut got = vec![0; 1000];
        s.read_exact(&mut got).unwrap();
        thread::sleep(std::time::Duration::from_millis(50)); // let the socket fill: load shape, not sync
        let mut rest = vec![0; expect.len() - 1000];
        s.read_exact(&mut rest).unwrap();
        got.extend(rest);
        assert!(got == expect, "{n} buffers of {size} bytes differ");
    }
}

#[test]
fn a_burst_of_connects_larger_than_one_reactors_share_is_served_and_balanced() {
    const CLIENTS: usize = 200;
    let server = echo_server(2);
    let handle = server.handle();
    let addr = server.local_addrs()[0];
    let start = std::sync::Arc::new(std::sync::Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let start = std::sync::Arc::clone(&start);
            thread::spawn(move || {
                start.wait(); // connect all at once: the acceptor sees a backlog
                let s = connect(addr);
                let data = pattern(1000, i as u64);
                assert!(roundtrip(&s, &data) == data);
                s
            })
        })
        .collect();
    let streams: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let stats = handle.stats();
    assert_eq!(stats.total().accepted, CLIENTS as u64);
    for r in &stats.reactors {
        assert_eq!(r.accepted, (CLIENTS / 2) as u64, "{stats}");
    }
    drop(streams);
}

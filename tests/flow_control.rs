//! Flow control: a handler sees its connection's queued output and whether it is
//! over the high watermark; one that stops answering because of it is called
//! again with the requests it left — without new bytes from the peer — once the
//! output drains: no request lost, none answered twice, memory near the high
//! watermark. A handler producing output on its own hears `on_writable`.

mod util;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, BytesMut};
use coreloop::{Builder, Context, Handler, Server};
use util::*;

/// Each request byte `g` gets a reply of `REPLY` bytes: its sequence number
/// (8 bytes) then filler. Answers only while the connection is writable, and
/// records the most output it ever saw queued.
struct BigReplies {
    max_queued: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

const REPLY: usize = 8 * 1024;

impl Handler for BigReplies {
    type Conn = u64; // next sequence number

    fn on_open(&mut self, _cx: &mut Context<'_>) -> u64 {
        0
    }

    fn on_data(&mut self, seq: &mut u64, cx: &mut Context<'_>, input: &mut BytesMut) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        while !input.is_empty() && cx.is_writable() {
            assert_eq!(input.get_u8(), b'g');
            cx.write(&seq.to_be_bytes());
            cx.write(&[b'v'; REPLY - 8]);
            *seq += 1;
            self.max_queued.fetch_max(cx.queued_output(), Ordering::Relaxed);
        }
    }
}

fn big_replies(builder: Builder) -> (Server, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (max_queued, calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (m, c) = (Arc::clone(&max_queued), Arc::clone(&calls));
    let server = builder
        .reactors(1)
        .bind(localhost())
        .start(move |_| BigReplies {
            max_queued: Arc::clone(&m),
            calls: Arc::clone(&c),
        })
        .unwrap();
    (server, max_queued, calls)
}

/// Sends every request at once, then reads all the replies: each in order,
/// each exactly once.
fn pipeline_then_read(server: &Server, requests: usize) {
    let mut client = connect(server.local_addrs()[0]);
    client.write_all(&vec![b'g'; requests]).unwrap();
    let mut reply = vec![0u8; REPLY];
    for expected in 0..requests as u64 {
        client.read_exact(&mut reply).unwrap();
        let seq = u64::from_be_bytes(reply[..8].try_into().unwrap());
        assert_eq!(seq, expected, "replies in order, none lost or repeated");
        assert!(reply[8..].iter().all(|&b| b == b'v'));
    }
    client
        .set_read_timeout(Some(std::time::Duration::from_millis(50)))
        .unwrap();
    assert!(client.read(&mut [0u8; 1]).is_err(), "nothing more");
}

/// The client: 16,000 pipelined requests (8 KiB replies, 128 MiB in
/// all) read only after all are sent. Without flow control one read's worth of
/// requests produced ~64 MB of output and passed `max_output`.
#[test]
fn a_late_reader_gets_every_reply_and_memory_stays_near_the_high_watermark() {
    let (server, max_queued, _) = big_replies(Server::builder());
    pipeline_then_read(&server, 16_000);
    let max = max_queued.load(Ordering::Relaxed);
    let bound = Builder::DEFAULT_HIGH_WATERMARK + REPLY;
    eprintln!("most output queued for the connection: {max} bytes (bound {bound})");
    assert!(max <= bound, "{max} bytes queued, over {bound}");
    let stats = server.handle().stats().total();
    assert!(stats.pauses >= 1, "reading paused at the high watermark: {stats:?}");
}

/// With a high watermark of one byte the handler answers one request per call;
/// the socket takes each reply at once, so nothing drains later: the reactor
/// hands the rest back on its own, the client never sends another byte.
#[test]
fn held_back_requests_come_back_without_new_bytes_when_the_socket_took_everything() {
    let (server, max_queued, calls) = big_replies(Server::builder().write_watermarks(0, 1));
    pipeline_then_read(&server, 100);
    assert!(calls.load(Ordering::Relaxed) >= 100, "one request per call");
    assert!(max_queued.load(Ordering::Relaxed) <= REPLY);
}

/// Streams `TOTAL` bytes on request, in chunks, while writable; resumes in
/// `on_writable`.
struct Streamer {
    max_queued: Arc<AtomicUsize>,
    resumed: Arc<AtomicUsize>,
}

const CHUNK: usize = 64 * 1024;
const TOTAL: usize = 64 << 20;

impl Streamer {
    fn pump(&self, sent: &mut usize, cx: &mut Context<'_>) {
        while *sent < TOTAL && cx.is_writable() {
            let chunk = pattern(CHUNK, (*sent / CHUNK) as u64);
            cx.write(&chunk);
            *sent += CHUNK;
            self.max_queued.fetch_max(cx.queued_output(), Ordering::Relaxed);
        }
    }
}

impl Handler for Streamer {
    type Conn = usize; // bytes sent so far

    fn on_open(&mut self, _cx: &mut Context<'_>) -> usize {
        0
    }

    fn on_data(&mut self, sent: &mut usize, cx: &mut Context<'_>, input: &mut BytesMut) {
        input.clear();
        self.pump(sent, cx);
    }

    fn on_writable(&mut self, sent: &mut usize, cx: &mut Context<'_>) {
        self.resumed.fetch_add(1, Ordering::Relaxed);
        self.pump(sent, cx);
    }
}

#[test]
fn a_stream_resumes_in_on_writable_and_stays_bounded() {
    let (max_queued, resumed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (m, r) = (Arc::clone(&max_queued), Arc::clone(&resumed));
    let server = Server::builder()
        .reactors(1)
        .bind(localhost())
        .start(move |_| Streamer {
            max_queued: Arc::clone(&m),
            resumed: Arc::clone(&r),
        })
        .unwrap();
    let mut client = connect(server.local_addrs()[0]);
    client.write_all(b"go").unwrap();
    let mut chunk = vec![0u8; CHUNK];
    for i in 0..TOTAL / CHUNK {
        client.read_exact(&mut chunk).unwrap();
        assert!(chunk == pattern(CHUNK, i as u64), "chunk {i} intact and in order");
    }
    assert!(
        resumed.load(Ordering::Relaxed) >= 1,
        "the stream was resumed by on_writable"
    );
    let max = max_queued.load(Ordering::Relaxed);
    assert!(max <= Builder::DEFAULT_HIGH_WATERMARK + CHUNK, "{max} bytes queued");
}

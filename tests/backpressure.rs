//! Slow readers: a client that writes as fast as it can and never reads must not
//! grow the server's memory past the high watermark (plus one read); reading
//! resumes — and picks up what arrived while paused — once the client drains its
//! echo. Everyone else is served meanwhile.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use coreloop::{Builder, Server};
use util::example;
use util::*;

const LOW: usize = 64 * 1024;
const HIGH: usize = 256 * 1024;

/// Writes up to `limit` bytes of pattern until the socket stays full for
/// `stall`; returns how many bytes were sent.
fn write_until_stalled(stream: &TcpStream, limit: usize, stall: Duration) -> usize {
    let data = pattern(limit, 77);
    let mut s = stream.try_clone().unwrap();
    s.set_write_timeout(Some(stall)).unwrap();
    let mut sent = 0;
    while sent < limit {
        match s.write(&data[sent..(sent + (1 << 20)).min(limit)]) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("write failed: {e}"),
        }
    }
    sent
}

#[test]
fn a_client_that_never_reads_is_paused_and_costs_a_bounded_queue() {
    let server = Server::builder()
        .reactors(1)
        .write_watermarks(LOW, HIGH)
        .bind(localhost())
        .start(|_| Echo)
        .unwrap();
    let handle = server.handle();
    let addr = server.local_addrs()[0];

    let hostile = connect(addr);
    let sent = write_until_stalled(&hostile, 64 << 20, Duration::from_millis(500));
    assert!(
        sent < 64 << 20,
        "the server must stop reading a client that never reads"
    );
    let stats = handle.stats().total();
    assert!(stats.pauses >= 1, "{stats:?}");
    // What the server read and has not written is what it holds: bounded by the
    // high watermark plus the one read that crossed it.
    let held = stats.bytes_in - stats.bytes_out;
    assert!(
        held <= (HIGH + Builder::DEFAULT_READ_BUFFER) as u64,
        "server holds {held} bytes for one client"
    );

    // Another client is served promptly meanwhile.
    let polite = connect(addr);
    let data = pattern(200_000, 5);
    assert!(roundtrip(&polite, &data) == data);

    // The hostile client starts reading: everything it sent comes back, in order,
    // including what the server left in the socket while paused.
    hostile.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::with_capacity(sent);
    (&hostile).read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), sent);
    assert!(back == pattern(64 << 20, 77)[..sent]);
}

#[test]
fn never_reading_clients_do_not_grow_the_echo_servers_memory() {
    let server = example::start(&["--reactors", "1"]);
    // Warm up: let the reactor allocate its buffers once.
    let warm = connect(server.addr);
    assert!(roundtrip(&warm, &pattern(1 << 20, 1)) == pattern(1 << 20, 1));
    let before = server.rss_kib();

    let hostiles: Vec<TcpStream> = (0..2).map(|_| connect(server.addr)).collect();
    let writers: Vec<_> = hostiles
        .iter()
        .map(|h| {
            let h = h.try_clone().unwrap();
            thread::spawn(move || write_until_stalled(&h, 64 << 20, Duration::from_millis(500)))
        })
        .collect();
    for w in writers {
        assert!(w.join().unwrap() < 64 << 20);
    }
    let grown_kib = server.rss_kib().saturating_sub(before);
    // Per never-reading client: the high watermark plus one read buffer, plus a
    // little allocator slack for the whole process.
    let bound_kib = (2 * (Builder::DEFAULT_HIGH_WATERMARK + Builder::DEFAULT_READ_BUFFER) + (2 << 20)) as u64 / 1024;
    assert!(
        grown_kib <= bound_kib,
        "RSS grew {grown_kib} KiB, bound {bound_kib} KiB"
    );
    drop(hostiles);
}

#[test]
fn output_sent_to_a_peer_that_never_reads_is_bounded_by_max_output() {
    let (tx, rx) = std::sync::mpsc::channel();
    let server = Server::builder()
        .reactors(1)
        .write_watermarks(LOW, HIGH)
        .max_output(1 << 20)
        .bind(localhost())
        .start(move |_| Recorder { tx: tx.clone() })
        .unwrap();
    let handle = server.handle();
    let (_deaf, deaf_id) = open(server.local_addrs()[0], &rx);
    let (bystander, _) = open(server.local_addrs()[0], &rx);
    // Push far more than the socket buffers and the limit hold; the reads that
    // pause at the high watermark cannot stop this, only the output limit can.
    let chunk = bytes::Bytes::from(vec![1u8; 64 * 1024]);
    let closed = (0..400).find_map(|_| {
        let _ = handle.send(deaf_id, chunk.clone());
        rx.try_recv().ok()
    });
    let closed = closed.unwrap_or_else(|| next(&rx));
    assert_eq!(closed, Seen::Close(deaf_id, coreloop::CloseReason::OutputLimit));
    assert_eq!(roundtrip(&bystander, b"unaffected"), b"unaffected");
}

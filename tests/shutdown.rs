//! Graceful shutdown: listeners close first, handlers are told, queued output is
//! flushed within the grace period, every connection closes, threads are joined.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use coreloop::CloseReason;
use util::example;
use util::*;

#[test]
fn shutdown_closes_listener_tells_handlers_and_closes_every_connection() {
    let (server, rx) = recorder_server(2);
    let addr = server.local_addrs()[0];
    let mut clients: Vec<_> = (0..4).map(|_| connect(addr)).collect();
    let mut ids: Vec<_> = (0..4)
        .map(|_| match next(&rx) {
            Seen::Open(id, _) => id,
            other => panic!("expected open, got {other:?}"),
        })
        .collect();

    let report = server.shutdown(DEADLINE).unwrap();
    assert!(report.completed);
    let total = report.stats.total();
    assert_eq!((total.accepted, total.closed, total.active), (4, 4, 0));

    // Every handler saw the notice and then the close, for each connection.
    let events: Vec<Seen> = rx.try_iter().collect();
    ids.sort();
    for id in &ids {
        assert!(
            events.contains(&Seen::Shutdown(*id)),
            "no shutdown notice for {id}: {events:?}"
        );
        assert!(
            events.contains(&Seen::Close(*id, CloseReason::Shutdown)),
            "no close for {id}: {events:?}"
        );
    }
    // Clients see end of stream; the listener is gone.
    for c in &mut clients {
        assert_eq!(read_to_end(c), b"");
    }
    // Refused — retried, because a child forked by another test in this binary
    // holds a copy of every descriptor (the listener too) until it execs.
    wait_for("connects to be refused", || {
        TcpStream::connect(addr).is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused)
    });
}

const SIZE: usize = 8 << 20;

#[test]
fn shutdown_flushes_queued_output_to_a_reading_client() {
    let (server, mut stream) = blasting(Blast { size: SIZE, seed: 11 });
    // Shut down while most of the reply is still queued in the server.
    server.handle().shutdown(DEADLINE);
    let got = read_to_end(&mut stream);
    assert_eq!(got.len(), SIZE, "the client must get the whole reply before the close");
    assert!(got == pattern(SIZE, 11));
    let report = server.join().unwrap();
    assert!(report.completed);
}

#[test]
fn shutdown_deadline_closes_connections_whose_client_does_not_read() {
    let (server, mut stream) = blasting(Blast { size: SIZE, seed: 11 });
    // The client never reads: the queue cannot drain, the deadline must end it.
    let report = server.shutdown(Duration::from_millis(200)).unwrap();
    assert!(!report.completed, "output was still queued at the deadline");
    assert_eq!(report.stats.total().active, 0);
    let mut buf = vec![0; 64 * 1024];
    let mut received = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => received += n,
        }
    }
    assert!(received < SIZE, "a closed connection cannot have delivered everything");
}

/// A client that keeps sending while it reads the echo, until end of stream.
/// `progress` counts the bytes it has received so far. A `slow` one pauses between
/// reads, so the server's send queue is full whenever the server closes: a close
/// that resets the connection would then visibly destroy queued bytes.
fn busy_client(
    addr: std::net::SocketAddr,
    seed: u64,
    slow: bool,
    progress: Arc<AtomicUsize>,
) -> thread::JoinHandle<usize> {
    let data = pattern(32 << 20, seed);
    let stream = connect(addr); // connected before the caller goes on
    thread::spawn(move || {
        let mut writer = stream.try_clone().unwrap();
        let sender = {
            let data = data.clone();
            thread::spawn(move || {
                for chunk in data.chunks(16 * 1024) {
                    if writer.write_all(chunk).is_err() {
                        break;
                    }
                }
            })
        };
        let mut got = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n) = (&stream).read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            progress.fetch_add(n, Ordering::Relaxed);
            if slow {
                thread::sleep(Duration::from_millis(1)); // a slow consumer, by design
            }
        }
        drop(stream);
        sender.join().unwrap();
        assert!(
            got == data[..got.len()],
            "client {seed}: the echo is not a prefix of what was sent"
        );
        got.len()
    })
}

#[test]
fn shutdown_under_load_returns_within_the_grace_period_and_loses_nothing_read() {
    let server = echo_server(2);
    let addr = server.local_addrs()[0];
    let progress = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..6)
        .map(|seed| busy_client(addr, seed, seed % 2 == 1, Arc::clone(&progress)))
        .collect();
    wait_for("the clients to be busy", || progress.load(Ordering::Relaxed) > 4 << 20);

    let started = Instant::now();
    let report = server.shutdown(Duration::from_secs(3)).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3) + Duration::from_secs(2),
        "shutdown overran its grace"
    );
    let received: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    // The clients read until end of stream: every byte the server wrote reached them.
    let total = report.stats.total();
    assert_eq!(total.bytes_out, received as u64);
    assert_eq!(total.active, 0);
}

#[test]
fn the_echo_example_on_sigterm_exits_within_grace_with_busy_clients_and_flushes_readers() {
    let server = example::start(&["--reactors", "2", "--grace", "2"]);
    // The first client (reactor 0) floods and never reads: its output can't drain.
    let flooder = connect(server.addr);
    let flood = {
        let f = flooder.try_clone().unwrap();
        thread::spawn(move || {
            let chunk = vec![0u8; 64 * 1024];
            while (&f).write_all(&chunk).is_ok() {}
        })
    };
    // The second (reactor 1) reads everything it is sent back.
    let progress = Arc::new(AtomicUsize::new(0));
    let reader = busy_client(server.addr, 99, true, Arc::clone(&progress));
    wait_for("the reader to be served", || progress.load(Ordering::Relaxed) > 1 << 20);

    let started = Instant::now();
    server.signal("-TERM");
    let received = reader.join().unwrap();
    let (code, lines) = server.finish();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2 + 3), "exited after {took:?}");
    assert_eq!(code, 0, "{lines:?}");
    drop(flooder);
    let _ = flood.join();
    // Every byte the server wrote to the reader reached it: no reset cut it short.
    assert_eq!(
        example::exit_value(&lines, 1, "bytes_out"),
        received as u64,
        "{lines:?}"
    );
}

/// A grace shorter than the linger time, with a peer that neither sends nor
/// closes: everything was written, the connection only lingers at the deadline,
/// and `completed` says so (it used to say `false` with nothing queued).
#[test]
fn completed_is_exact_when_the_grace_ends_while_an_idle_peer_lingers() {
    let (server, rx) = recorder_with(
        coreloop::Server::builder()
            .reactors(1)
            .linger(Duration::from_secs(5))
            .bind(localhost()),
    );
    let (mut idle, _) = open(server.local_addrs()[0], &rx);
    assert_eq!(roundtrip(&idle, b"hello\n"), b"hello\n");
    let started = std::time::Instant::now();
    let report = server.shutdown(Duration::from_millis(300)).unwrap();
    assert!(report.completed, "nothing was left unwritten: {report:?}");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the grace bounds the linger: took {took:?}"
    );
    assert_eq!(read_to_end(&mut idle), b"");
}

//! Zero-downtime restarts: a new server takes the listening sockets over from the
//! running one through the handover socket, the old one drains. No connection
//! attempt is refused or reset — those waiting in the accept queue included — and
//! no established connection loses a byte.

mod util;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use coreloop::{Error, Report, Server};
use util::load::Load;
use util::*;

fn echo_at(addr: SocketAddr, handover: &Path, grace: Duration) -> Server {
    Server::builder()
        .reactors(2)
        .bind(addr)
        .handover(handover, grace)
        .start(|_| Echo)
        .expect("echo server starts")
}

/// Joins `server` on a thread, so a test can wait for it with a deadline.
fn joining(server: Server) -> mpsc::Receiver<coreloop::Result<Report>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(server.join());
    });
    rx
}

fn joined(rx: &mpsc::Receiver<coreloop::Result<Report>>, what: &str) -> Report {
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("{what} did not stop"))
        .expect("the server stops cleanly")
}

#[test]
fn restart_under_load_fails_no_connection_and_loses_no_byte() {
    let dir = TempDir::new("handover-load");
    let path = dir.path("handover.sock");
    let old = echo_at(localhost(), &path, DEADLINE);
    let addr = old.local_addrs()[0];
    let old_handle = old.handle();
    let load = Load::start(addr, 4, 4, &[]);
    wait_for("cycles on the old server", || load.cycles() >= 200);
    let streamed_before = load.streamed();

    let new = echo_at(addr, &path, DEADLINE);
    let old_done = joining(old);
    let handed = load.cycles();
    // The successor serves new connections; the old one, draining, its streams.
    wait_for("cycles on the new server", || {
        new.handle().stats().total().accepted >= 200 && load.cycles() >= handed + 200
    });
    wait_for("the streams, served by the old server", || {
        load.streamed() >= streamed_before + 64 * 4096
    });
    let report = load.stop();
    assert!(report.failures.is_empty(), "failed: {:#?}", report.failures);
    assert_eq!(
        old_handle.stats().total().active,
        0,
        "the streams closed, by their clients"
    );
    let old_report = joined(&old_done, "the old server");
    assert!(old_report.completed, "the old server flushed everything");
    let old_total = old_report.stats.total();
    assert!(old_total.accepted >= 200, "{old_total:?}");
    let new_report = new.shutdown(Duration::from_secs(5)).unwrap();
    // Every connection was accepted by one of the two, once.
    let accepted = old_total.accepted + new_report.stats.total().accepted;
    assert_eq!(accepted, report.cycles + 4, "{} cycles and 4 streams", report.cycles);
}

#[test]
fn connections_waiting_in_the_accept_queue_are_served_by_the_successor() {
    let dir = TempDir::new("handover-queue");
    let path = dir.path("handover.sock");
    // A cap of one: the old server accepts one connection, the rest wait in
    // the listener's accept queue.
    let old = Server::builder()
        .reactors(1)
        .max_connections(1)
        .bind(localhost())
        .handover(&path, DEADLINE)
        .start(|_| Echo)
        .unwrap();
    let addr = old.local_addrs()[0];
    let held = connect(addr);
    assert_eq!(roundtrip(&held, b"held"), b"held");
    let mut queued: Vec<_> = (0..5).map(|_| connect(addr)).collect();
    for (i, q) in queued.iter_mut().enumerate() {
        q.write_all(format!("queued {i}").as_bytes()).unwrap();
    }
    assert_no_reply_yet(&mut queued[0]);

    let new = echo_at(addr, &path, DEADLINE);
    let old_done = joining(old);
    for (i, q) in queued.iter_mut().enumerate() {
        let want = format!("queued {i}");
        let mut got = vec![0; want.len()];
        q.read_exact(&mut got)
            .expect("the successor serves a queued connection");
        assert_eq!(got, want.as_bytes());
    }
    // The old server, draining, still serves the connection it holds.
    assert_eq!(roundtrip(&held, b"still here"), b"still here");
    assert!(old_done.try_recv().is_err(), "the old server waits for its connection");
    drop(held);
    let old_report = joined(&old_done, "the old server");
    assert_eq!(old_report.stats.total().accepted, 1);
    assert_eq!(new.handle().stats().total().accepted, 5);
    new.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn the_old_server_closes_what_is_left_at_its_grace() {
    let dir = TempDir::new("handover-grace");
    let path = dir.path("handover.sock");
    let grace = Duration::from_millis(300);
    let old = echo_at(localhost(), &path, grace);
    let addr = old.local_addrs()[0];
    let mut idle = connect(addr);
    assert_eq!(roundtrip(&idle, b"x"), b"x");
    let new = echo_at(addr, &path, grace);
    let old_done = joining(old);
    let took = Instant::now();
    assert!(read_to_end(&mut idle).is_empty(), "closed at the grace");
    assert!(took.elapsed() >= grace - Duration::from_millis(50), "closed too early");
    joined(&old_done, "the old server");
    assert_eq!(roundtrip(&connect(addr), b"new"), b"new");
    new.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_unix_listener_is_handed_over_and_its_path_kept() {
    let dir = TempDir::new("handover-unix");
    let (path, sock) = (dir.path("handover.sock"), dir.path("echo.sock"));
    let start = || {
        Server::builder()
            .reactors(1)
            .bind_unix(&sock)
            .handover(&path, Duration::from_secs(5))
            .start(|_| Echo)
            .unwrap()
    };
    let old = start();
    let client = UnixStream::connect(&sock).unwrap();
    assert_eq!(unix_roundtrip(&client, b"old"), b"old");
    let new = start();
    let old_done = joining(old);
    drop(client);
    joined(&old_done, "the old server");
    assert!(sock.exists(), "the old server left the successor's path alone");
    assert_eq!(unix_roundtrip(&UnixStream::connect(&sock).unwrap(), b"new"), b"new");
    new.shutdown(Duration::from_secs(5)).unwrap();
    assert!(!sock.exists(), "the last server removes its path");
    assert!(!path.exists(), "and its handover socket");
}

#[test]
fn restarts_chain_and_a_first_start_binds() {
    let dir = TempDir::new("handover-chain");
    let path = dir.path("handover.sock");
    // Nothing at the path: a first start binds as usual.
    let mut server = echo_at(localhost(), &path, Duration::from_secs(5));
    let addr = server.local_addrs()[0];
    for round in 0..3 {
        let next = echo_at(addr, &path, Duration::from_secs(5));
        let done = joining(server);
        joined(&done, "the previous server");
        let payload = format!("round {round}");
        assert_eq!(roundtrip(&connect(addr), payload.as_bytes()), payload.as_bytes());
        assert_eq!(next.handle().stats().total().accepted, 1);
        server = next;
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
    // A crashed server's socket file (nothing listens) is no obstacle either.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let fresh = echo_at(localhost(), &path, Duration::from_secs(5));
    assert_eq!(roundtrip(&connect(fresh.local_addrs()[0]), b"fresh"), b"fresh");
    fresh.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_successor_that_fails_midway_leaves_the_old_server_serving() {
    let dir = TempDir::new("handover-fail");
    let path = dir.path("handover.sock");
    let old = echo_at(localhost(), &path, Duration::from_secs(5));
    let addr = old.local_addrs()[0];
    // Asks, receives the sockets (a plain read discards them), and goes away
    // without saying it serves.
    let mut quitter = UnixStream::connect(&path).unwrap();
    quitter.set_read_timeout(Some(DEADLINE)).unwrap();
    quitter.write_all(b"?").unwrap();
    let mut count = [0u8; 1];
    quitter.read_exact(&mut count).unwrap();
    assert_eq!(count, [1], "one listening socket offered");
    drop(quitter);
    // Still serving, and a real successor can still take over.
    assert_eq!(roundtrip(&connect(addr), b"still"), b"still");
    let new = echo_at(addr, &path, Duration::from_secs(5));
    joined(&joining(old), "the old server");
    assert_eq!(roundtrip(&connect(addr), b"new"), b"new");
    new.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_handover_path_that_is_not_a_socket_is_a_clear_error() {
    let dir = TempDir::new("handover-file");
    let path = dir.path("not-a-socket");
    std::fs::write(&path, "data").unwrap();
    let err = Server::builder()
        .reactors(1)
        .bind(localhost())
        .handover(&path, Duration::from_secs(1))
        .start(|_| Echo)
        .expect_err("a file in the way is refused");
    assert!(matches!(&err, Error::Handover { path: p, .. } if *p == path), "{err:?}");
    assert!(err.to_string().contains("not-a-socket"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"data", "the file is left alone");
}

#[test]
fn handover_refuses_configurations_it_cannot_serve() {
    let refused = |b: coreloop::Builder| b.handover("/tmp/x.sock", Duration::from_secs(1)).start(|_| Echo).err();
    let err = refused(Server::builder().reactors(1)).expect("no listener");
    assert!(err.to_string().contains("handover"), "{err}");
    let err = refused(
        Server::builder()
            .reactors(2)
            .distribution(coreloop::Distribution::ReusePort)
            .bind(localhost()),
    )
    .expect("reuse-port");
    assert!(err.to_string().contains("reuse-port"), "{err}");
}

//! Idle timeout: a connection with no traffic for the timeout closes with
//! `CloseReason::IdleTimeout`, never before; traffic keeps a connection open.

mod util;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use coreloop::{CloseReason, Server};
use util::*;

const TIMEOUT: Duration = Duration::from_millis(400);

#[test]
fn idle_connections_close_and_busy_ones_stay() {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(1)
        .idle_timeout(TIMEOUT)
        .bind(localhost())
        .start(move |_| LineEcho { tx: tx.clone() })
        .unwrap();
    let addr = server.local_addrs()[0];
    let opened = Instant::now();
    let (idle, idle_id) = open(addr, &rx);
    let (busy, busy_id) = open(addr, &rx);
    // The idle client only reads: the server's FIN (a graceful close) ends it.
    let (eof_tx, eof_rx) = mpsc::channel();
    let mut idle_reader = idle.try_clone().unwrap();
    std::thread::spawn(move || {
        let rest = read_to_end(&mut idle_reader);
        let _ = eof_tx.send((opened.elapsed(), rest));
    });

    // The busy client talks every 100 ms for three timeouts' worth of time.
    let mut idle_fin_at = None;
    while opened.elapsed() < TIMEOUT * 3 {
        assert_eq!(roundtrip(&busy, b"ping\n"), b"ping\n");
        if let Ok((at, rest)) = eof_rx.recv_timeout(Duration::from_millis(100)) {
            assert_eq!(rest, b"");
            idle_fin_at = Some(at);
        }
    }
    let fin_at = idle_fin_at.expect("the idle connection was closed");
    assert!(
        fin_at >= TIMEOUT,
        "closed after {fin_at:?}, before the {TIMEOUT:?} timeout"
    );
    assert!(rx.try_recv().is_err(), "the busy one stays open; the idle one lingers");
    drop(idle); // the peer's close ends the linger
    assert_eq!(next(&rx), Seen::Close(idle_id, CloseReason::IdleTimeout));

    // The busy one is still open and served.
    assert_eq!(roundtrip(&busy, b"still here\n"), b"still here\n");
    assert!(rx.try_recv().is_err());
    drop(busy);
    assert_eq!(next(&rx), Seen::Close(busy_id, CloseReason::PeerClosed));
}

#[test]
fn zero_idle_timeout_is_refused_and_none_turns_it_off() {
    let err = Server::builder()
        .idle_timeout(Duration::ZERO)
        .bind(localhost())
        .start(|_| Echo)
        .unwrap_err();
    assert!(err.to_string().contains("idle_timeout"), "{err}");
    assert!(
        Server::builder()
            .idle_timeout(None)
            .bind(localhost())
            .start(|_| Echo)
            .is_ok()
    );
}

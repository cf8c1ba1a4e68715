//! Graceful shutdown: listeners close first, handlers are told, queued output is
//! flushed within the grace period, every connection closes, threads are joined.

mod util;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::Duration;

use coreloop::CloseReason;
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
    let total = report.stats().total();
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
    let refused = TcpStream::connect(addr).expect_err("the listener must be closed");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
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
    assert_eq!(report.stats().total().active, 0);
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

//! Every duration the library takes works up to `Duration::MAX`: one too long for
//! the clock to represent means "never" in practice; nothing panics, no thread
//! dies, and the server still shuts down.

mod util;

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use bytes::BytesMut;
use coreloop::{Context, Endpoint, Handler, Origin, ReactorContext, Server};
use util::*;

#[test]
fn shutdown_with_the_longest_grace_closes_gracefully_and_completes() {
    let server = echo_server(2);
    let mut client = connect(server.local_addrs()[0]);
    assert_eq!(roundtrip(&client, b"before"), b"before");
    let handle = server.handle();
    handle.shutdown(Duration::MAX);
    handle.shutdown(Duration::MAX); // a second call changes nothing
    // The connection is closed gracefully: its FIN arrives, then we close.
    assert!(read_to_end(&mut client).is_empty());
    drop(client);
    let report = server.join().expect("no thread died");
    assert!(report.completed);
    assert_eq!(report.stats.total().closed, 1);
}

/// Reports outbound connects: opened, or failed with the error's kind.
struct Dialer {
    tx: Sender<Result<u64, io::ErrorKind>>,
}

impl Handler for Dialer {
    type Conn = ();

    fn on_open(&mut self, cx: &mut Context<'_>) {
        if let Origin::Connected { tag } = cx.origin() {
            let _ = self.tx.send(Ok(tag));
        }
    }

    fn on_data(&mut self, _conn: &mut (), _cx: &mut Context<'_>, input: &mut BytesMut) {
        input.clear();
    }

    fn on_connect_error(
        &mut self,
        _cx: &mut ReactorContext<'_, Self::Conn>,
        _tag: u64,
        _to: &Endpoint,
        error: io::Error,
    ) {
        let _ = self.tx.send(Err(error.kind()));
    }
}

#[test]
fn the_longest_connect_timeout_connects_and_fails_as_any_other() {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(1)
        .connect_timeout(Duration::MAX)
        .bind(localhost())
        .start(move |_| Dialer { tx: tx.clone() })
        .unwrap();
    let handle = server.handle();
    handle.connect(server.local_addrs()[0], 1).unwrap();
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), Ok(1));
    // A port nobody listens on: refused at once, the timeout never involved.
    let closed = std::net::TcpListener::bind(localhost()).unwrap();
    let nobody: SocketAddr = closed.local_addr().unwrap();
    drop(closed);
    handle.connect(nobody, 2).unwrap();
    assert_eq!(
        rx.recv_timeout(DEADLINE).unwrap(),
        Err(io::ErrorKind::ConnectionRefused)
    );
    let report = server
        .shutdown(Duration::from_secs(5))
        .expect("the reactor did not die");
    assert_eq!(report.stats.total().panics, 0);
}

#[test]
fn the_longest_idle_timeout_never_closes_and_shuts_down() {
    let server = Server::builder()
        .reactors(1)
        .idle_timeout(Duration::MAX)
        .bind(localhost())
        .start(|_| Echo)
        .unwrap();
    let mut client = connect(server.local_addrs()[0]);
    for _ in 0..3 {
        assert_eq!(roundtrip(&client, b"still here"), b"still here");
    }
    let handle = server.handle();
    handle.shutdown(Duration::from_secs(5));
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    drop(client);
    let report = server.join().expect("no thread died");
    assert!(report.completed);
    assert_eq!(report.stats.total().closed, 1);
}

//! Outbound connections: `connect` opens a nonblocking connection on a reactor; the
//! same Handler sees it open (with its tag) or sees the failure — refused,
//! unreachable, timed out, no such Unix socket, or shut down while connecting.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use bytes::BytesMut;
use coreloop::{Context, Endpoint, Handler, Origin, PeerAddr, ReactorContext, Server};
use socket2::{Domain, Socket, Type};
use util::*;

#[derive(Debug)]
enum Ev {
    Open(Origin, PeerAddr),
    Data(Vec<u8>),
    Failed(u64, Endpoint, ErrorKind),
}

/// Greets every outbound connection it opens and reports everything.
struct Client {
    tx: Sender<Ev>,
}

impl Handler for Client {
    type Conn = ();

    fn on_open(&mut self, cx: &mut Context<'_>) {
        if let Origin::Connected { tag } = cx.origin() {
            cx.write(format!("hello, I am tag {tag}\n").as_bytes());
        }
        let _ = self.tx.send(Ev::Open(cx.origin(), cx.peer_addr().clone()));
    }

    fn on_data(&mut self, _conn: &mut (), _cx: &mut Context<'_>, input: &mut BytesMut) {
        let _ = self.tx.send(Ev::Data(input.split().to_vec()));
    }

    fn on_connect_error(
        &mut self,
        _cx: &mut ReactorContext<'_, Self::Conn>,
        tag: u64,
        to: &Endpoint,
        error: std::io::Error,
    ) {
        let _ = self.tx.send(Ev::Failed(tag, to.clone(), error.kind()));
    }
}

/// A client-only engine: no listener, one reactor.
fn client(timeout: Duration) -> (Server, Receiver<Ev>) {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(1)
        .connect_timeout(timeout)
        .start(move |_| Client { tx: tx.clone() })
        .unwrap();
    (server, rx)
}

fn event(rx: &Receiver<Ev>) -> Ev {
    rx.recv_timeout(DEADLINE).expect("an event from the handler")
}

#[test]
fn connect_opens_a_connection_served_by_the_same_handler() {
    let upstream = TcpListener::bind(localhost()).unwrap();
    let addr = upstream.local_addr().unwrap();
    let (engine, rx) = client(DEADLINE);
    engine.handle().connect(addr, 7).unwrap();

    let (mut peer, _) = upstream.accept().unwrap();
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    match event(&rx) {
        Ev::Open(Origin::Connected { tag: 7 }, PeerAddr::Tcp(a)) => assert_eq!(a, addr),
        other => panic!("expected an outbound open, got {other:?}"),
    }
    let mut greeting = [0u8; 18];
    peer.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"hello, I am tag 7\n");
    peer.write_all(b"welcome").unwrap();
    let mut got = Vec::new();
    while got.len() < 7 {
        match event(&rx) {
            Ev::Data(d) => got.extend(d),
            other => panic!("expected data, got {other:?}"),
        }
    }
    assert_eq!(got, b"welcome");
    // Outbound connections count in the stats, not against the accept cap.
    assert_eq!(engine.handle().stats().total().active, 1);
}

#[test]
fn a_refused_connect_reaches_the_handler() {
    let addr = TcpListener::bind(localhost()).unwrap().local_addr().unwrap(); // closed again
    let (engine, rx) = client(DEADLINE);
    engine.handle().connect(addr, 1).unwrap();
    match event(&rx) {
        Ev::Failed(1, Endpoint::Tcp(a), ErrorKind::ConnectionRefused) => assert_eq!(a, addr),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_unreachable_address_reaches_the_handler() {
    // TCP to the broadcast address is refused by the local stack with ENETUNREACH:
    // nothing leaves the machine.
    let (engine, rx) = client(DEADLINE);
    engine
        .handle()
        .connect(SocketAddr::from(([255, 255, 255, 255], 9)), 2)
        .unwrap();
    match event(&rx) {
        Ev::Failed(2, _, ErrorKind::NetworkUnreachable) => {}
        other => panic!("expected unreachable, got {other:?}"),
    }
}

/// A listener whose accept queue is full: further SYNs are dropped, so a connect
/// to it stays pending.
fn black_hole() -> (Socket, std::net::TcpStream, SocketAddr) {
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&localhost().into()).unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let filler = std::net::TcpStream::connect(addr).unwrap(); // takes the only place
    (l, filler, addr)
}

#[test]
fn a_connect_that_never_completes_times_out() {
    let (_listener, _filler, addr) = black_hole();
    let (engine, rx) = client(Duration::from_millis(300));
    engine.handle().connect(addr, 3).unwrap();
    match event(&rx) {
        Ev::Failed(3, _, ErrorKind::TimedOut) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn shutdown_fails_connects_still_pending() {
    let (_listener, _filler, addr) = black_hole();
    let (engine, rx) = client(DEADLINE);
    let handle = engine.handle();
    handle.connect(addr, 4).unwrap();
    handle.connect(addr, 5).unwrap();
    // Commands run in order: once a third command's effect is seen, both connects
    // are pending.
    handle
        .connect(Endpoint::Unix("/nonexistent/coreloop.sock".into()), 6)
        .unwrap();
    assert!(matches!(event(&rx), Ev::Failed(6, _, ErrorKind::NotFound)));
    let report = engine.shutdown(DEADLINE).unwrap();
    let mut tags: Vec<u64> = rx
        .try_iter()
        .map(|e| match e {
            Ev::Failed(tag, _, ErrorKind::ConnectionAborted) => tag,
            other => panic!("expected aborted connects, got {other:?}"),
        })
        .collect();
    tags.sort();
    assert_eq!(tags, [4, 5]);
    assert!(report.completed);
}

#[test]
fn unix_connects_succeed_and_fail_like_tcp_ones() {
    let dir = std::env::temp_dir().join(format!("coreloop-connect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("up.sock");
    let _ = std::fs::remove_file(&path);
    let upstream = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let (engine, rx) = client(DEADLINE);
    engine.handle().connect(path.as_path(), 8).unwrap();
    let (mut peer, _) = upstream.accept().unwrap();
    match event(&rx) {
        Ev::Open(Origin::Connected { tag: 8 }, PeerAddr::Unix(Some(p))) => assert_eq!(p, path),
        other => panic!("expected a Unix open, got {other:?}"),
    }
    let mut greeting = [0u8; 18];
    peer.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"hello, I am tag 8\n");

    engine.handle().connect(dir.join("missing.sock"), 9).unwrap();
    assert!(matches!(
        event(&rx),
        Ev::Failed(9, Endpoint::Unix(_), ErrorKind::NotFound)
    ));
    drop(upstream);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Opens an upstream connection from inside a handler for each accepted client,
/// on the client's reactor (a proxy's first step).
struct Dialer {
    upstream: SocketAddr,
    tx: Sender<(usize, Origin)>,
}

impl Handler for Dialer {
    type Conn = ();

    fn on_open(&mut self, cx: &mut Context<'_>) {
        if cx.origin() == Origin::Accepted {
            cx.connect(self.upstream, 42).unwrap();
        }
        let _ = self.tx.send((cx.reactor(), cx.origin()));
    }

    fn on_data(&mut self, _conn: &mut (), _cx: &mut Context<'_>, input: &mut BytesMut) {
        input.clear();
    }
}

#[test]
fn a_handler_connects_from_its_own_reactor() {
    let upstream = TcpListener::bind(localhost()).unwrap();
    let up = upstream.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(2)
        .bind(localhost())
        .start(move |_| Dialer {
            upstream: up,
            tx: tx.clone(),
        })
        .unwrap();
    let _client = connect(server.local_addrs()[0]);
    let (accepted_on, origin) = rx.recv_timeout(DEADLINE).unwrap();
    assert_eq!(origin, Origin::Accepted);
    let _ = upstream.accept().unwrap();
    let (dialed_on, origin) = rx.recv_timeout(DEADLINE).unwrap();
    assert_eq!(origin, Origin::Connected { tag: 42 });
    assert_eq!(dialed_on, accepted_on, "Context::connect stays on the caller's reactor");
}

#[test]
fn connect_from_binds_the_chosen_source_address() {
    let upstream = TcpListener::bind(localhost()).unwrap();
    let addr = upstream.local_addr().unwrap();
    let (engine, rx) = client(DEADLINE);
    let source = SocketAddr::from(([127, 0, 0, 3], 0));
    engine.handle().connect_from(addr, source, 11).unwrap();
    let (_peer, seen_from) = upstream.accept().unwrap();
    assert_eq!(
        seen_from.ip(),
        source.ip(),
        "the upstream sees the chosen source address"
    );
    assert!(matches!(event(&rx), Ev::Open(Origin::Connected { tag: 11 }, _)));

    // A source address that is not local fails at bind, and the handler hears of it.
    let foreign = SocketAddr::from(([192, 0, 2, 1], 0)); // TEST-NET-1: never assigned here
    engine.handle().connect_from(addr, foreign, 12).unwrap();
    match event(&rx) {
        Ev::Failed(12, _, ErrorKind::AddrNotAvailable) => {}
        other => panic!("expected a bind failure, got {other:?}"),
    }
}

//! Panics in user code: a panicking callback closes its connection with
//! `CloseReason::Panic`, the reactor serves everyone else, the count shows in
//! stats. A reactor thread that dies anyway is routed around, and `join` reports it.

mod util;

use std::sync::mpsc::{self, Sender};

use bytes::BytesMut;
use coreloop::{CloseReason, Context, Error, Handler, Server};
use util::*;

/// A panic payload whose destructor panics too: dropping it kills the thread that
/// caught the first panic. The only way user code can take a reactor down.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the panic payload exploded");
    }
}

/// Echoes; panics on `panic`, detonates on `bomb`; `on_open` panics for the first
/// connection when `panic_on_first_open`; `on_close` panics after a panic close.
struct Fragile {
    tx: Sender<Seen>,
    opens: usize,
    panic_on_first_open: bool,
}

impl Handler for Fragile {
    type Conn = ();

    fn on_open(&mut self, cx: &mut Context<'_>) {
        self.opens += 1;
        if self.panic_on_first_open && self.opens == 1 {
            panic!("on_open failed");
        }
        let _ = self.tx.send(Seen::Open(cx.id(), String::new()));
    }

    fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        match &input[..] {
            b"panic" => panic!("on_data failed"),
            b"bomb" => std::panic::panic_any(Bomb),
            _ => cx.write(input),
        }
        input.clear();
    }

    fn on_close(&mut self, _conn: (), cx: &mut Context<'_>, why: CloseReason) {
        let _ = self.tx.send(Seen::Close(cx.id(), why));
        if why == CloseReason::Panic {
            panic!("on_close failed too");
        }
    }
}

fn fragile_server(reactors: usize, panic_on_first_open: bool) -> (Server, mpsc::Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(reactors)
        .bind(localhost())
        .start(move |_| Fragile {
            tx: tx.clone(),
            opens: 0,
            panic_on_first_open,
        })
        .unwrap();
    (server, rx)
}

#[test]
fn a_panicking_callback_closes_only_its_connection() {
    let (server, rx) = fragile_server(1, false);
    let addr = server.local_addrs()[0];
    let (mut victim, victim_id) = open(addr, &rx);
    let (other, _) = open(addr, &rx);

    std::io::Write::write_all(&mut victim, b"panic").unwrap();
    assert_eq!(next(&rx), Seen::Close(victim_id, CloseReason::Panic));
    assert_eq!(read_to_end(&mut victim), b"");

    // Same reactor, still serving.
    assert_eq!(roundtrip(&other, b"fine"), b"fine");
    drop(other);
    let report = server.shutdown(DEADLINE).unwrap();
    // on_data panicked, then on_close panicked too: both are counted.
    assert_eq!(report.stats.total().panics, 2);
}

#[test]
fn a_panic_in_on_open_drops_that_connection_only() {
    let (server, rx) = fragile_server(1, true);
    let addr = server.local_addrs()[0];
    let mut first = connect(addr);
    assert_eq!(read_to_end(&mut first), b"", "the first connection is dropped");
    let (second, _) = open(addr, &rx);
    assert_eq!(roundtrip(&second, b"served"), b"served");
    let total = server.handle().stats().total();
    assert_eq!((total.panics, total.accepted, total.active), (1, 2, 1));
}

#[test]
fn a_dead_reactor_gets_no_more_connections_and_join_reports_it() {
    let (server, rx) = fragile_server(2, false);
    let handle = server.handle();
    let addr = server.local_addrs()[0];
    // Round-robin: the first connection lands on reactor 0.
    let (mut doomed, doomed_id) = open(addr, &rx);
    assert_eq!(doomed_id.reactor(), 0);

    std::io::Write::write_all(&mut doomed, b"bomb").unwrap();
    let _ = std::io::Read::read_to_end(&mut doomed, &mut Vec::new());
    // The dying reactor releases its connection from the counts as it stops
    // taking commands.
    wait_for("reactor 0 to stop", || handle.stats().reactors[0].closed == 1);

    // Every new connection goes to the live reactor and is served.
    let clients: Vec<_> = (0..4).map(|_| connect(addr)).collect();
    for c in &clients {
        assert_eq!(roundtrip(c, b"alive"), b"alive");
        let Seen::Open(id, _) = next(&rx) else {
            panic!("expected open")
        };
        assert_eq!(id.reactor(), 1);
    }
    drop(clients);
    handle.shutdown(DEADLINE);
    match server.join() {
        Err(Error::ReactorDied { index: 0 }) => {}
        other => panic!("expected reactor 0 reported dead, got {other:?}"),
    }
}

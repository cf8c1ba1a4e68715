//! The cross-thread Handle: `send` across reactors in order, from any thread and
//! from inside a handler on another reactor; typed messages to a connection and to
//! a reactor; stale ids; a full inbox.

mod util;

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Barrier};

use bytes::BytesMut;
use coreloop::{ConnId, Context, Error, Handler, ReactorContext, Server};
use util::*;

/// Messages a Relay handler understands.
enum Msg {
    /// Write this line to the connection (runs on its reactor).
    Line(String),
    /// Reply on the channel with the reactor index that ran this.
    WhereAmI(Sender<usize>),
    /// Say so on the channel, then block this reactor until the barrier opens.
    Hold(Sender<()>, Arc<Barrier>),
}

/// Reports opens; a line `to <id-index> <text>` received on any connection is sent
/// with `Handle::send` to the connection with that index in `ids` (so from inside
/// a handler, across reactors).
struct Relay {
    opened: Sender<ConnId>,
    ids: Arc<std::sync::Mutex<Vec<ConnId>>>,
}

impl Handler<Msg> for Relay {
    type Conn = ();

    fn on_open(&mut self, cx: &mut Context<'_, Msg>) {
        self.ids.lock().unwrap().push(cx.id());
        let _ = self.opened.send(cx.id());
    }

    fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_, Msg>, input: &mut BytesMut) {
        while let Some(end) = input.iter().position(|&b| b == b'\n') {
            let line = input.split_to(end + 1);
            let text = std::str::from_utf8(&line).unwrap();
            let mut parts = text.splitn(3, ' ');
            if let (Some("to"), Some(i), Some(rest)) = (parts.next(), parts.next(), parts.next()) {
                let target = self.ids.lock().unwrap()[i.parse::<usize>().unwrap()];
                cx.handle().send(target, rest.to_string()).unwrap();
            }
        }
    }

    fn on_message(&mut self, _conn: &mut (), cx: &mut Context<'_, Msg>, msg: Msg) {
        match msg {
            Msg::Line(l) => cx.write(l.as_bytes()),
            Msg::WhereAmI(tx) => tx.send(cx.reactor()).unwrap(),
            Msg::Hold(held, b) => {
                held.send(()).unwrap();
                b.wait();
            }
        }
    }

    fn on_reactor_message(&mut self, cx: &mut ReactorContext<'_, (), Msg>, msg: Msg) {
        match msg {
            Msg::WhereAmI(tx) => tx.send(cx.reactor()).unwrap(),
            Msg::Hold(held, b) => {
                held.send(()).unwrap();
                b.wait();
            }
            Msg::Line(_) => {}
        }
    }
}

fn relay_server(reactors: usize, inbox: usize) -> (Server<Msg>, Receiver<ConnId>) {
    let (tx, rx) = mpsc::channel();
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = Server::builder()
        .reactors(reactors)
        .inbox_capacity(inbox)
        .bind(localhost())
        .start(move |_| Relay {
            opened: tx.clone(),
            ids: Arc::clone(&ids),
        })
        .unwrap();
    (server, rx)
}

fn read_lines(stream: &std::net::TcpStream, n: usize) -> Vec<String> {
    let mut r = BufReader::new(stream);
    (0..n)
        .map(|_| {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            l
        })
        .collect()
}

#[test]
fn send_from_another_thread_arrives_in_order() {
    let (server, rx) = relay_server(2, 64 * 1024);
    let handle = server.handle();
    let stream = connect(server.local_addrs()[0]);
    let id = rx.recv_timeout(DEADLINE).unwrap();
    let sender = std::thread::spawn(move || {
        for i in 0..2000 {
            loop {
                match handle.send(id, format!("line {i}\n")) {
                    Ok(()) => break,
                    Err(Error::InboxFull { .. }) => std::thread::yield_now(),
                    Err(e) => panic!("send failed: {e}"),
                }
            }
        }
    });
    let lines = read_lines(&stream, 2000);
    sender.join().unwrap();
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l, &format!("line {i}\n"));
    }
}

#[test]
fn a_handler_sends_to_a_connection_on_another_reactor() {
    let (server, rx) = relay_server(2, 1024);
    let addr = server.local_addrs()[0];
    let a = connect(addr);
    let a_id = rx.recv_timeout(DEADLINE).unwrap();
    let b = connect(addr);
    let b_id = rx.recv_timeout(DEADLINE).unwrap();
    assert_ne!(
        a_id.reactor(),
        b_id.reactor(),
        "round-robin puts them on different reactors"
    );
    // a's handler (reactor 0) sends to b (reactor 1), 100 lines in order.
    for i in 0..100 {
        std::io::Write::write_all(&mut &a, format!("to 1 from-a {i}\n").as_bytes()).unwrap();
    }
    let lines = read_lines(&b, 100);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l, &format!("from-a {i}\n"));
    }
}

#[test]
fn messages_run_on_the_owning_reactor() {
    let (server, rx) = relay_server(2, 1024);
    let handle = server.handle();
    let addr = server.local_addrs()[0];
    let _a = connect(addr);
    let _a_id = rx.recv_timeout(DEADLINE).unwrap();
    let b = connect(addr);
    let b_id = rx.recv_timeout(DEADLINE).unwrap();

    let (tx, where_rx) = mpsc::channel();
    handle.message(b_id, Msg::WhereAmI(tx.clone())).unwrap();
    assert_eq!(where_rx.recv_timeout(DEADLINE).unwrap(), b_id.reactor());
    handle.message(b_id, Msg::Line("pushed\n".into())).unwrap();
    assert_eq!(read_lines(&b, 1), ["pushed\n"]);
    for r in 0..2 {
        handle.message_reactor(r, Msg::WhereAmI(tx.clone())).unwrap();
        assert_eq!(where_rx.recv_timeout(DEADLINE).unwrap(), r);
    }
    // A message of another type does not compile (see the doctest on
    // `Handle::message`).
    assert!(matches!(
        handle.message_reactor(9, Msg::Line(String::new())),
        Err(Error::NoReactor { index: 9, reactors: 2 })
    ));
}

#[test]
fn sends_to_a_stale_id_are_dropped_and_counted_never_delivered_to_the_new_occupant() {
    let (server, rx) = relay_server(1, 1024);
    let handle = server.handle();
    let addr = server.local_addrs()[0];
    let old = connect(addr);
    let old_id = rx.recv_timeout(DEADLINE).unwrap();
    drop(old);
    wait_for("the old connection to close", || handle.stats().total().active == 0);
    let new = connect(addr);
    let new_id = rx.recv_timeout(DEADLINE).unwrap();
    assert_ne!(old_id, new_id);

    handle.send(old_id, &b"for the old one\n"[..]).unwrap();
    handle
        .message(old_id, Msg::Line("also for the old one\n".into()))
        .unwrap();
    handle.send(new_id, &b"for the new one\n"[..]).unwrap();
    // Commands run in order: once the new one's line arrives, the stale ones were handled.
    assert_eq!(read_lines(&new, 1), ["for the new one\n"]);
    assert_eq!(handle.stats().total().stale, 2);
    new.set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    assert!((&new).read(&mut [0u8; 64]).is_err(), "nothing else arrives");
}

#[test]
fn a_full_inbox_refuses_with_inbox_full() {
    let (server, rx) = relay_server(1, 4);
    let handle = server.handle();
    let stream = connect(server.local_addrs()[0]);
    let id = rx.recv_timeout(DEADLINE).unwrap();
    // Hold the reactor inside a callback so nothing drains its inbox.
    let barrier = Arc::new(Barrier::new(2));
    let (held_tx, held) = mpsc::channel();
    handle
        .message_reactor(0, Msg::Hold(held_tx, Arc::clone(&barrier)))
        .unwrap();
    held.recv_timeout(DEADLINE).unwrap(); // the reactor is inside the callback, its inbox empty
    let mut accepted = 0;
    let refused = loop {
        match handle.send(id, &b"x"[..]) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted <= 4, "the inbox holds at most 4 commands");
    };
    assert_eq!(accepted, 4);
    assert!(matches!(refused, Error::InboxFull { index: 0 }), "{refused:?}");
    barrier.wait();
    let mut got = vec![0u8; accepted];
    (&stream).read_exact(&mut got).unwrap();
    assert!(got.iter().all(|&b| b == b'x'));
}

/// `Error::NotConnected` is for ids this server never had (another server's);
/// an id whose connection closed is no error: the command is dropped and counted.
#[test]
fn not_connected_is_for_foreign_ids_and_a_closed_id_is_counted_as_stale() {
    let (big, big_rx) = relay_server(2, 1024);
    let (small, small_rx) = relay_server(1, 1024);
    // A connection on reactor 1 of the two-reactor server.
    let clients: Vec<_> = (0..2).map(|_| connect(big.local_addrs()[0])).collect();
    let foreign = (0..2)
        .map(|_| big_rx.recv_timeout(DEADLINE).unwrap())
        .find(|id| id.reactor() == 1)
        .expect("round-robin puts one connection on reactor 1");
    let handle = small.handle();
    for err in [
        handle.send(foreign, &b"x"[..]).unwrap_err(),
        handle.close(foreign).unwrap_err(),
    ] {
        assert!(matches!(err, Error::NotConnected { id } if id == foreign), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("connection {foreign} does not belong to this server")
        );
    }
    // One of its own, closed: accepted, then dropped and counted by the reactor.
    let own = connect(small.local_addrs()[0]);
    let id = small_rx.recv_timeout(DEADLINE).unwrap();
    drop(own);
    wait_for("the connection to close", || handle.stats().total().active == 0);
    handle.send(id, &b"too late"[..]).unwrap();
    handle.close(id).unwrap();
    wait_for("both commands to count as stale", || handle.stats().total().stale == 2);
    drop(clients);
}

//! Reactor-local work: a broadcast reaches every reactor once, and each writes to
//! its own subscribers (order per publisher kept); a reactor message can write
//! to, close and visit its reactor's connections by id, and only its own.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc::{self, Sender};

use bytes::{Bytes, BytesMut};
use coreloop::{ConnId, Context, Handler, ReactorContext, Server};
use util::*;

#[derive(Clone, Debug)]
enum Msg {
    /// Write to every subscriber of this reactor.
    Publish(Bytes),
    /// Write to one connection by id; report whether it was written.
    WriteTo(ConnId, Bytes, Sender<bool>),
    /// Close one connection by id; report whether it was this reactor's.
    Kick(ConnId, Sender<bool>),
    /// Report `(reactor, subscribers, connections)`.
    Count(Sender<(usize, usize, usize)>),
}

/// Lines: `sub` subscribes (reply `ok ID`), `pub TEXT` broadcasts `TEXT` to every
/// subscriber on every reactor.
struct PubSub {
    opened: Sender<ConnId>,
}

impl Handler<Msg> for PubSub {
    type Conn = bool; // subscribed

    fn on_open(&mut self, cx: &mut Context<'_, Msg>) -> bool {
        let _ = self.opened.send(cx.id());
        false
    }

    fn on_data(&mut self, subscribed: &mut bool, cx: &mut Context<'_, Msg>, input: &mut BytesMut) {
        while let Some(end) = input.iter().position(|&b| b == b'\n') {
            let line = input.split_to(end + 1).freeze();
            if &line[..] == b"sub\n" {
                *subscribed = true;
                let reply = format!("ok {}\n", cx.id());
                cx.write(reply.as_bytes());
            } else if let Some(text) = line.strip_prefix(b"pub ") {
                let text = line.slice_ref(text);
                cx.handle().broadcast(Msg::Publish(text)).unwrap();
            }
        }
    }

    fn on_reactor_message(&mut self, cx: &mut ReactorContext<'_, bool, Msg>, msg: Msg) {
        match msg {
            Msg::Publish(text) => cx.for_each(|conn| {
                if *conn.state() {
                    assert!(conn.write_bytes(text.clone()));
                }
            }),
            Msg::WriteTo(id, data, done) => done.send(cx.write_bytes(id, data)).unwrap(),
            Msg::Kick(id, done) => done.send(cx.close(id)).unwrap(),
            Msg::Count(tx) => {
                let mut subscribers = 0;
                cx.for_each(|conn| subscribers += usize::from(*conn.state()));
                tx.send((cx.reactor(), subscribers, cx.connections())).unwrap();
            }
        }
    }
}

fn pubsub(reactors: usize) -> (Server<Msg>, mpsc::Receiver<ConnId>) {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(reactors)
        .bind(localhost())
        .start(move |_| PubSub { opened: tx.clone() })
        .unwrap();
    (server, rx)
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    l
}

#[test]
fn a_broadcast_reaches_subscribers_on_every_reactor_in_publisher_order() {
    let (server, opened) = pubsub(3);
    let addr = server.local_addrs()[0];
    let mut subs: Vec<(TcpStream, BufReader<TcpStream>)> = (0..9)
        .map(|_| {
            let s = connect(addr);
            let r = BufReader::new(s.try_clone().unwrap());
            (s, r)
        })
        .collect();
    let mut reactors = std::collections::HashSet::new();
    for (s, r) in &mut subs {
        s.write_all(b"sub\n").unwrap();
        assert!(line(r).starts_with("ok "));
    }
    for _ in 0..9 {
        reactors.insert(opened.recv_timeout(DEADLINE).unwrap().reactor());
    }
    assert_eq!(reactors.len(), 3, "subscribers on every reactor");

    let mut publisher = connect(addr);
    let lines: String = (0..200).map(|i| format!("pub message {i}\n")).collect();
    publisher.write_all(lines.as_bytes()).unwrap();
    for (_, r) in &mut subs {
        for i in 0..200 {
            assert_eq!(line(r), format!("message {i}\n"));
        }
    }
    let handle = server.handle();
    let (tx, rx) = mpsc::channel();
    for r in 0..3 {
        handle.message_reactor(r, Msg::Count(tx.clone())).unwrap();
    }
    let mut counts: Vec<_> = (0..3).map(|_| rx.recv_timeout(DEADLINE).unwrap()).collect();
    counts.sort();
    assert_eq!(counts.iter().map(|c| c.1).sum::<usize>(), 9, "{counts:?}");
    assert_eq!(counts.iter().map(|c| c.2).sum::<usize>(), 10, "{counts:?}");
}

#[test]
fn a_reactor_message_writes_to_and_closes_its_own_connections_by_id() {
    let (server, opened) = pubsub(2);
    let addr = server.local_addrs()[0];
    let a = connect(addr);
    let a_id = opened.recv_timeout(DEADLINE).unwrap();
    let b = connect(addr);
    let b_id = opened.recv_timeout(DEADLINE).unwrap();
    assert_ne!(a_id.reactor(), b_id.reactor());
    let handle = server.handle();
    let (tx, rx) = mpsc::channel();

    // Its own connection: written; another reactor's: refused.
    handle
        .message_reactor(
            a_id.reactor(),
            Msg::WriteTo(a_id, Bytes::from_static(b"direct\n"), tx.clone()),
        )
        .unwrap();
    assert!(rx.recv_timeout(DEADLINE).unwrap());
    assert_eq!(line(&mut BufReader::new(a.try_clone().unwrap())), "direct\n");
    handle
        .message_reactor(
            a_id.reactor(),
            Msg::WriteTo(b_id, Bytes::from_static(b"no\n"), tx.clone()),
        )
        .unwrap();
    assert!(!rx.recv_timeout(DEADLINE).unwrap());

    // Closed gracefully by id: b sees end of stream.
    handle
        .message_reactor(b_id.reactor(), Msg::Kick(b_id, tx.clone()))
        .unwrap();
    assert!(rx.recv_timeout(DEADLINE).unwrap());
    let mut b = b;
    assert_eq!(read_to_end(&mut b), b"");
    drop(b);
    wait_for("b to close", || handle.stats().total().active == 1);
    // A closed id is refused too.
    handle
        .message_reactor(b_id.reactor(), Msg::WriteTo(b_id, Bytes::from_static(b"late\n"), tx))
        .unwrap();
    assert!(!rx.recv_timeout(DEADLINE).unwrap());
}

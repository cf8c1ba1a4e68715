//! Half-close: the peer's FIN reaches the handler (`on_eof`), queued output is
//! written before the socket closes, a handler may keep writing after the FIN and
//! close later, and a handler may shut down its own sending side and keep reading.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::sync::mpsc::{self, Sender};
use std::thread;

use bytes::BytesMut;
use coreloop::{ConnId, Context, Handler, Server};
use util::*;

#[test]
fn a_client_that_sends_one_mebibyte_and_shuts_down_gets_it_all_back_then_eof() {
    let server = echo_server(2);
    let mut stream = connect(server.local_addrs()[0]);
    let data = pattern(1 << 20, 7);
    let mut writer = stream.try_clone().unwrap();
    let sent = data.clone();
    let t = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let got = read_to_end(&mut stream);
    t.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data);
}

/// Counts input; at the peer's FIN writes a summary and stays open.
struct Summarize {
    ids: Sender<ConnId>,
}

impl Handler for Summarize {
    type Conn = usize;

    fn on_open(&mut self, cx: &mut Context<'_>) -> usize {
        let _ = self.ids.send(cx.id());
        0
    }

    fn on_data(&mut self, count: &mut usize, _cx: &mut Context<'_>, input: &mut BytesMut) {
        *count += input.len();
        input.clear();
    }

    fn on_eof(&mut self, count: &mut usize, cx: &mut Context<'_>) {
        cx.write(format!("got {count}\n").as_bytes());
        // No close: the connection stays open for writing.
    }
}

#[test]
fn a_handler_keeps_writing_after_the_peers_fin_and_closes_later() {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(1)
        .bind(localhost())
        .start(move |_| Summarize { ids: tx.clone() })
        .unwrap();
    let handle = server.handle();
    let stream = connect(server.local_addrs()[0]);
    let id = rx.recv_timeout(DEADLINE).unwrap();
    (&stream).write_all(&[1u8; 1000]).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();

    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "got 1000\n");
    assert_eq!(handle.stats().total().active, 1, "still open after the peer's FIN");

    handle.close(id).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

/// Greets, then shuts down its sending side; reports input after that.
struct GreetAndHalfClose {
    seen: Sender<Vec<u8>>,
}

impl Handler for GreetAndHalfClose {
    type Conn = ();

    fn on_open(&mut self, cx: &mut Context<'_>) {
        cx.write(b"hello");
        cx.shutdown_write();
    }

    fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        let _ = self.seen.send(input.split().to_vec());
        cx.write(b"dropped: writing is shut down");
    }
}

#[test]
fn a_handler_shuts_down_its_sending_side_and_keeps_reading() {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(1)
        .bind(localhost())
        .start(move |_| GreetAndHalfClose { seen: tx.clone() })
        .unwrap();
    let mut stream = connect(server.local_addrs()[0]);
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hello", "the greeting, then end of stream");

    stream.write_all(b"after your FIN").unwrap();
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), b"after your FIN");
}

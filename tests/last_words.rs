//! Last words: before a limit closes a connection (`InputLimit`, `IdleTimeout`)
//! the handler may write a final reply, which arrives whole, followed by a
//! graceful close (our FIN, then linger: a client still sending is not reset).
//! A handler that closed on its own is told `Local`, however much it left unread.

mod util;

use std::io::{Read, Write};
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use bytes::BytesMut;
use coreloop::{CloseReason, Context, Handler, Server};
use util::*;

/// Answers complete lines with `ok`; a line `bye` is answered `bye` and closed
/// (whatever follows it is left unread); limits get an error line.
struct Polite {
    tx: Sender<CloseReason>,
}

impl Handler for Polite {
    type Conn = ();

    fn on_open(&mut self, _cx: &mut Context<'_>) {}

    fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        while let Some(end) = input.iter().position(|&b| b == b'\n') {
            let line = input.split_to(end + 1);
            if &line[..] == b"bye\n" {
                cx.write(b"bye\n");
                return cx.close(); // leaves the rest of `input` unread
            }
            cx.write(b"ok\n");
        }
    }

    fn on_limit(&mut self, _conn: &mut (), cx: &mut Context<'_>, why: CloseReason) {
        writeln!(cx, "-ERR closing: {why}");
    }

    fn on_close(&mut self, _conn: (), _cx: &mut Context<'_>, why: CloseReason) {
        let _ = self.tx.send(why);
    }
}

fn polite(max_input: usize, idle: Option<Duration>) -> (Server, mpsc::Receiver<CloseReason>) {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(1)
        .max_input(max_input)
        .idle_timeout(idle)
        .bind(localhost())
        .start(move |_| Polite { tx: tx.clone() })
        .unwrap();
    (server, rx)
}

/// Reads until end of stream; `Err` if the connection was reset instead.
fn read_all(s: &mut std::net::TcpStream) -> std::io::Result<String> {
    let mut all = String::new();
    s.read_to_string(&mut all).map(|_| all)
}

#[test]
fn the_input_limit_lets_the_handler_explain_then_closes_gracefully() {
    let (server, rx) = polite(1024, None);
    let mut client = connect(server.local_addrs()[0]);
    client.write_all(b"first\n").unwrap();
    // A line that never ends, past the limit; the client keeps sending after
    // the server decided to close: lingering reads and drops it, no reset.
    client.write_all(&[b'x'; 4096]).unwrap();
    client.write_all(&[b'y'; 64 * 1024]).unwrap();
    let all = read_all(&mut client).expect("a FIN, not a reset");
    assert_eq!(all, "ok\n-ERR closing: unconsumed input over the limit\n");
    drop(client);
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), CloseReason::InputLimit);
}

#[test]
fn the_idle_timeout_lets_the_handler_explain_then_closes_gracefully() {
    let (server, rx) = polite(1024, Some(Duration::from_millis(200)));
    let mut client = connect(server.local_addrs()[0]);
    client.write_all(b"hello\n").unwrap();
    let all = read_all(&mut client).expect("a FIN, not a reset");
    assert_eq!(all, "ok\n-ERR closing: idle timeout\n");
    drop(client);
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), CloseReason::IdleTimeout);
}

#[test]
fn a_handler_that_closed_itself_is_told_local_whatever_it_left_unread() {
    let (server, rx) = polite(16, None);
    let mut client = connect(server.local_addrs()[0]);
    let mut request = b"bye\n".to_vec();
    request.extend_from_slice(&[b'z'; 1000]); // far over max_input, never read
    client.write_all(&request).unwrap();
    assert_eq!(read_all(&mut client).expect("a FIN, not a reset"), "bye\n");
    drop(client);
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), CloseReason::Local);
}

//! The input limit: a handler that leaves more than `max_input` bytes unconsumed
//! (a frame that never completes) gets the connection closed with
//! `CloseReason::InputLimit`; complete frames flow as before.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc;

use coreloop::{CloseReason, Server};
use util::*;

#[test]
fn a_frame_that_never_ends_is_cut_off_at_the_limit() {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(1)
        .max_input(1024)
        .bind(localhost())
        .start(move |_| LineEcho { tx: tx.clone() })
        .unwrap();
    let addr = server.local_addrs()[0];
    let (mut hostile, hostile_id) = open(addr, &rx);
    let (honest, _) = open(addr, &rx);

    // Up to the limit a partial line is kept...
    hostile.write_all(&[b'a'; 1000]).unwrap();
    (&honest).write_all(b"one line\n").unwrap();
    let mut line = String::new();
    BufReader::new(&honest).read_line(&mut line).unwrap();
    assert_eq!(line, "one line\n");
    assert!(rx.try_recv().is_err(), "nothing closed yet");

    // ...one byte more than the limit, still without an end, closes it.
    hostile.write_all(&[b'a'; 25]).unwrap();
    assert_eq!(next(&rx), Seen::Close(hostile_id, CloseReason::InputLimit));
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut hostile, &mut rest);
    assert!(rest.is_empty());

    // A long line under the limit, split across writes, still works.
    let long = [vec![b'x'; 1000], b"\n".to_vec()].concat();
    assert_eq!(roundtrip(&honest, &long), long);
}

//! Closing from the server side: a handler's close and `Handle::close`, each after
//! the queued output is written.

mod util;

use std::io::{BufRead, BufReader, Write};

use coreloop::CloseReason;
use util::*;

#[test]
fn handler_close_sends_queued_output_then_closes() {
    let (server, rx) = recorder_server(2);
    let (mut stream, id) = open(server.local_addrs()[0], &rx);
    stream.write_all(b"close\n").unwrap();
    assert_eq!(read_to_end(&mut stream), b"bye\n");
    // The server sent its FIN and lingers until ours: close, as a client does.
    drop(stream);
    assert_eq!(next(&rx), Seen::Close(id, CloseReason::Local));
}

#[test]
fn handle_close_closes_the_named_connection_only() {
    let (server, rx) = recorder_server(1);
    let handle = server.handle();
    let addr = server.local_addrs()[0];
    let (mut target, target_id) = open(addr, &rx);
    let (other, _) = open(addr, &rx);

    handle.close(target_id).unwrap();
    assert_eq!(read_to_end(&mut target), b"");
    drop(target);
    assert_eq!(next(&rx), Seen::Close(target_id, CloseReason::Local));
    assert_eq!(roundtrip(&other, b"unaffected"), b"unaffected");
}

#[test]
fn ids_name_themselves_in_the_reply() {
    let (server, rx) = recorder_server(1);
    let (stream, id) = open(server.local_addrs()[0], &rx);
    (&stream).write_all(b"id\n").unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), id.to_string());
}

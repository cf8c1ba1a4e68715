//! Peers that vanish mid-stream: the connection closes with a reason the handler
//! sees, nothing leaks, and everyone else is served on.

mod util;

use std::io::{Read, Write};
use std::time::Duration;

use coreloop::CloseReason;
use socket2::SockRef;
use util::*;

fn reset_on_drop(stream: &std::net::TcpStream) {
    // SO_LINGER 0: closing sends RST instead of FIN.
    SockRef::from(stream).set_linger(Some(Duration::ZERO)).unwrap();
}

#[test]
fn reset_mid_request_closes_with_an_error_reason() {
    let (server, rx) = recorder_server(1);
    let handle = server.handle();
    let addr = server.local_addrs()[0];
    let (mut stream, id) = open(addr, &rx);
    stream.write_all(b"partial request with no end").unwrap();
    let mut echo = [0u8; 27];
    stream.read_exact(&mut echo).unwrap();
    reset_on_drop(&stream);
    drop(stream);
    match next(&rx) {
        Seen::Close(closed, CloseReason::Io(kind)) => {
            assert_eq!(closed, id);
            assert_eq!(kind, std::io::ErrorKind::ConnectionReset);
        }
        other => panic!("expected a close with an I/O reason, got {other:?}"),
    }
    wait_for("the reset connection to leave the slab", || {
        handle.stats().total().active == 0
    });

    // The server serves a new client normally.
    let other = connect(addr);
    assert_eq!(roundtrip(&other, b"still here"), b"still here");
}

#[test]
fn client_leaving_while_output_is_queued_is_closed_and_others_are_served() {
    let (server, rx) = recorder_server(2);
    let handle = server.handle();
    let addr = server.local_addrs()[0];
    let bystander = connect(addr);
    let (mut leaver, _) = open(addr, &rx);
    let Seen::Open(_, _) = next(&rx) else {
        panic!("expected open")
    };

    // Send a lot, read a little, then go: the echo the server queued can't be
    // delivered, and the server must notice and close (reset or broken pipe).
    let chunk = pattern(256 * 1024, 1);
    for _ in 0..16 {
        if leaver.write_all(&chunk).is_err() {
            break;
        }
        let mut some = [0u8; 1024];
        leaver.read_exact(&mut some).unwrap();
    }
    reset_on_drop(&leaver);
    drop(leaver);
    match next(&rx) {
        Seen::Close(_, CloseReason::Io(_) | CloseReason::PeerClosed) => {}
        other => panic!("expected the leaver to close, got {other:?}"),
    }
    wait_for("only the bystander to remain", || handle.stats().total().active == 1);
    let data = pattern(100_000, 9);
    assert!(roundtrip(&bystander, &data) == data);
}

#[test]
fn orderly_close_by_the_peer_is_reported_as_peer_closed() {
    let (server, rx) = recorder_server(1);
    let (stream, id) = open(server.local_addrs()[0], &rx);
    drop(stream);
    assert_eq!(next(&rx), Seen::Eof(id));
    assert_eq!(next(&rx), Seen::Close(id, CloseReason::PeerClosed));
}

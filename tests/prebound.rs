//! Pre-bound listeners: a `std::net::TcpListener` or `UnixListener` the caller
//! opened is served as it is; a caller-owned Unix socket file is left in place.

mod util;

use std::os::unix::net::{UnixListener, UnixStream};

use coreloop::{Endpoint, Server};
use util::*;

#[test]
fn a_tcp_listener_opened_by_the_caller_is_served() {
    let listener = std::net::TcpListener::bind(localhost()).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .reactors(2)
        .listener(listener)
        .start(|_| Echo)
        .unwrap();
    assert_eq!(server.local_addrs(), [addr]);
    let c = connect(addr);
    let data = pattern(300_000, 2);
    assert!(roundtrip(&c, &data) == data);
}

#[test]
fn a_unix_listener_opened_by_the_caller_is_served_and_its_file_left_alone() {
    let dir = TempDir::new("prebound-unix");
    let path = dir.path("owned.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = Server::builder()
        .reactors(1)
        .unix_listener(listener)
        .start(|_| Echo)
        .unwrap();
    assert_eq!(server.endpoints(), [Endpoint::Unix(path.clone())]);
    let s = UnixStream::connect(&path).unwrap();
    assert_eq!(unix_roundtrip(&s, b"ping"), b"ping");
    drop(s);
    server.shutdown(DEADLINE).unwrap();
    assert!(path.exists(), "the caller owns the path; the server does not remove it");
}

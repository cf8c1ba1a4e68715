//! Socket options on accepted connections, read back from the server's own socket.
//! The server runs in this process, so its accepted socket is one of our
//! descriptors: find it by its peer address (the client's local address).

mod util;

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

use coreloop::Server;
use socket2::SockRef;
use util::*;

/// Runs `f` on the server-side socket whose peer is `client`.
fn with_accepted_socket<T>(client: SocketAddr, f: impl Fn(SockRef<'_>) -> T) -> Option<T> {
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        // SAFETY: `fd` is open (listed just now) and the server keeps its connection
        // open for this test's duration; the borrow ends within this iteration.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = SockRef::from(&borrowed);
        if sock.peer_addr().ok().and_then(|a| a.as_socket()) == Some(client) {
            return Some(f(sock));
        }
    }
    None
}

fn accepted_nodelay(server: &Server) -> bool {
    let handle = server.handle();
    let client = connect(server.local_addrs()[0]);
    wait_for("the connection to be accepted", || handle.stats().total().active == 1);
    let local = client.local_addr().unwrap();
    with_accepted_socket(local, |s| s.tcp_nodelay().unwrap()).expect("the accepted socket is in this process")
}

#[test]
fn accepted_streams_get_tcp_nodelay_by_default() {
    let server = echo_server(1);
    assert!(accepted_nodelay(&server));
}

#[test]
fn tcp_nodelay_can_be_turned_off() {
    let server = Server::builder()
        .reactors(1)
        .nodelay(false)
        .bind(localhost())
        .start(|_| Echo)
        .unwrap();
    assert!(!accepted_nodelay(&server));
}

//! Socket activation: the echo example with `--listen-fds` serves a listening
//! socket passed the systemd way (`LISTEN_FDS`, `LISTEN_FDS_FIRST_FD`), through the
//! `listenfd` crate. In a binary of its own: the first test leaves a descriptor
//! inheritable while it spawns the child, which only children of this file see.

mod util;

use std::os::fd::AsRawFd;
use std::process::Command;

use socket2::SockRef;
use util::example;
use util::*;

#[test]
fn the_echo_example_serves_a_socket_passed_by_a_service_manager() {
    let listener = std::net::TcpListener::bind(localhost()).unwrap();
    let addr = listener.local_addr().unwrap();
    // A service manager opens the socket and lets the child inherit it.
    SockRef::from(&listener).set_cloexec(false).unwrap();
    let fd = listener.as_raw_fd().to_string();
    let server = example::spawn_example(
        Command::new(example::echo_bin())
            .env("LISTEN_FDS", "1")
            .env("LISTEN_FDS_FIRST_FD", &fd)
            .env_remove("LISTEN_PID"),
        &["--listen-fds", "--reactors", "1"],
    );
    drop(listener); // the child holds its own copy now
    assert_eq!(server.banner, format!("listening on {addr} with 1 reactors"));
    let c = connect(addr);
    assert_eq!(roundtrip(&c, b"activated"), b"activated");
    drop(c);
    server.signal("-TERM");
    let (code, lines) = server.finish();
    assert_eq!(code, 0, "{lines:?}");
}

#[test]
fn listen_fds_without_sockets_is_a_bind_error_naming_listen_fds() {
    let out = Command::new(example::echo_bin())
        .args(["--listen-fds"])
        .env_remove("LISTEN_FDS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("LISTEN_FDS"), "{stderr}");
}

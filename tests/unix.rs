//! Unix domain sockets: a Unix listener beside TCP ones on the same server, Unix
//! peer addresses, stale socket files from a crashed run removed — and only those:
//! a live socket or a file that is not a socket is never touched.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};

use coreloop::{Endpoint, Error, Server};
use util::example;
use util::*;

#[test]
fn unix_and_tcp_listeners_feed_the_same_reactors() {
    let dir = TempDir::new("unix-both");
    let path = dir.path("echo.sock");
    let (server, _rx) = {
        let (tx, rx) = std::sync::mpsc::channel();
        let server = Server::builder()
            .reactors(2)
            .bind(localhost())
            .bind_unix(&path)
            .start(move |_| Recorder { tx: tx.clone() })
            .unwrap();
        (server, rx)
    };
    assert_eq!(server.endpoints()[1], Endpoint::Unix(path.clone()));
    let tcp = connect(server.local_addrs()[0]);
    assert_eq!(roundtrip(&tcp, b"over tcp"), b"over tcp");

    let unix = UnixStream::connect(&path).unwrap();
    let data = pattern(1 << 20, 4);
    assert!(
        unix_roundtrip(&unix, &data) == data,
        "1 MiB over the Unix socket, byte-exact"
    );

    // The peer is a Unix peer (an unnamed client socket).
    (&unix).write_all(b"peer\n").unwrap();
    let mut line = String::new();
    BufReader::new(&unix).read_line(&mut line).unwrap();
    assert_eq!(line, "unix:(unnamed)\n");

    drop((tcp, unix));
    server.shutdown(DEADLINE).unwrap();
    assert!(!path.exists(), "the socket file is removed when the server stops");
}

#[test]
fn a_stale_socket_file_from_a_crashed_run_is_replaced() {
    let dir = TempDir::new("unix-stale");
    let path = dir.path("stale.sock");
    // A crashed server's leftover: a socket file nobody listens on. It is made by
    // binding without listening, not by dropping a listener: another test in this
    // binary forks a child, which holds a copy of every open descriptor until it
    // execs, and a listener copied that way would still accept for a moment.
    let leftover = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    leftover.bind(&socket2::SockAddr::unix(&path).unwrap()).unwrap();
    drop(leftover); // the file stays
    assert!(path.exists());
    let server = Server::builder().reactors(1).bind_unix(&path).start(|_| Echo).unwrap();
    let s = UnixStream::connect(&path).unwrap();
    assert_eq!(unix_roundtrip(&s, b"fresh"), b"fresh");
    drop(s);
    drop(server);
}

#[test]
fn a_live_socket_is_never_taken_over() {
    let dir = TempDir::new("unix-live");
    let path = dir.path("live.sock");
    let owner = UnixListener::bind(&path).unwrap();
    let err = Server::builder()
        .reactors(1)
        .bind_unix(&path)
        .start(|_| Echo)
        .unwrap_err();
    match &err {
        Error::Bind { addr, source } => {
            assert_eq!(*addr, Endpoint::Unix(path.clone()));
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
            assert!(source.to_string().contains("another process"), "{source}");
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    // The owner still has its socket.
    let _c = UnixStream::connect(&path).unwrap();
    assert!(owner.accept().is_ok());
}

#[test]
fn a_path_that_is_not_a_socket_is_never_removed() {
    let dir = TempDir::new("unix-file");
    let path = dir.path("important.txt");
    std::fs::write(&path, b"do not delete").unwrap();
    let err = Server::builder()
        .reactors(1)
        .bind_unix(&path)
        .start(|_| Echo)
        .unwrap_err();
    let Error::Bind { source, .. } = &err else {
        panic!("expected a bind error, got {err:?}")
    };
    assert!(source.to_string().contains("not a socket"), "{source}");
    assert_eq!(std::fs::read(&path).unwrap(), b"do not delete");
}

#[test]
fn the_echo_example_serves_a_unix_socket() {
    let dir = TempDir::new("unix-example");
    let path = dir.path("echo.sock");
    let server = example::spawn_example(
        &mut std::process::Command::new(example::echo_bin()),
        &["--unix", path.to_str().unwrap(), "--reactors", "1"],
    );
    assert_eq!(
        server.banner,
        format!("listening on unix:{} with 1 reactors", path.display())
    );
    let s = UnixStream::connect(&path).unwrap();
    let data = pattern(100_000, 8);
    assert!(unix_roundtrip(&s, &data) == data);
    drop(s);
    server.signal("-TERM");
    let (code, lines) = server.finish();
    assert_eq!(code, 0, "{lines:?}");
    assert!(!path.exists(), "the example removes its socket file on exit");
}

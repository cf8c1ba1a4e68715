//! Socket options, read back from the server's own sockets: the listener (backlog,
//! `SO_REUSEADDR`), accepted connections (`TCP_NODELAY`, buffer sizes, keepalive),
//! and outbound ones. The server runs in this process, so its sockets are our
//! descriptors: they are found by address, or read through `Context::socket`.

mod util;

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::mpsc;
use std::time::Duration;

use bytes::BytesMut;
use coreloop::{Context, Distribution, Error, Handler, Server, TcpKeepalive};
use socket2::{Domain, SockRef, Socket, Type};
use util::*;

/// Runs `f` on every socket descriptor of this process for which it returns
/// `Some`, collecting the results.
fn sockets<T>(mut f: impl FnMut(SockRef<'_>) -> Option<T>) -> Vec<T> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        // SAFETY: `fd` is open (listed just now) and the server keeps its sockets
        // open for this test's duration; the borrow ends within this iteration.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Some(t) = f(SockRef::from(&borrowed)) {
            found.push(t);
        }
    }
    found
}

/// Runs `f` on the server-side socket whose peer is `client`.
fn with_accepted_socket<T>(client: SocketAddr, f: impl Fn(SockRef<'_>) -> T) -> Option<T> {
    sockets(|s| (s.peer_addr().ok().and_then(|a| a.as_socket()) == Some(client)).then(|| f(s))).pop()
}

/// Runs `f` on every listening socket bound to `addr`.
fn with_listeners<T>(addr: SocketAddr, f: impl Fn(SockRef<'_>) -> T) -> Vec<T> {
    sockets(|s| {
        let bound = s.local_addr().ok().and_then(|a| a.as_socket()) == Some(addr);
        (bound && s.is_listener().unwrap_or(false)).then(|| f(s))
    })
}

/// A listening socket's backlog: Linux reports it in `TCP_INFO`'s `tcpi_sacked`
/// for a listener (and the queue length in `tcpi_unacked`).
fn listen_backlog(s: &SockRef<'_>) -> u32 {
    // SAFETY: tcp_info is plain data; getsockopt writes at most `len` bytes into it.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        );
        assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
        info.tcpi_sacked
    }
}

/// What the kernel reports after setting `SO_SNDBUF`/`SO_RCVBUF` to `n` on a fresh
/// TCP socket (Linux doubles it, and caps it at the system maximum).
fn kernel_buffer_sizes(n: usize) -> (usize, usize) {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_send_buffer_size(n).unwrap();
    s.set_recv_buffer_size(n).unwrap();
    (s.send_buffer_size().unwrap(), s.recv_buffer_size().unwrap())
}

#[derive(Debug, PartialEq)]
struct Options {
    nodelay: bool,
    send_buffer: usize,
    recv_buffer: usize,
    keepalive: bool,
    keepalive_time: Duration,
    keepalive_interval: Duration,
    keepalive_retries: u32,
}

fn options(s: &SockRef<'_>) -> Options {
    Options {
        nodelay: s.tcp_nodelay().unwrap(),
        send_buffer: s.send_buffer_size().unwrap(),
        recv_buffer: s.recv_buffer_size().unwrap(),
        keepalive: s.keepalive().unwrap(),
        keepalive_time: s.tcp_keepalive_time().unwrap(),
        keepalive_interval: s.tcp_keepalive_interval().unwrap(),
        keepalive_retries: s.tcp_keepalive_retries().unwrap(),
    }
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

#[test]
fn listeners_get_the_backlog_and_reuseaddr() {
    for (distribution, listeners) in [(Distribution::RoundRobin, 1), (Distribution::ReusePort, 2)] {
        let server = Server::builder()
            .reactors(2)
            .distribution(distribution)
            .backlog(7)
            .bind(localhost())
            .start(|_| Echo)
            .unwrap();
        let found = with_listeners(server.local_addrs()[0], |s| {
            (listen_backlog(&s), s.reuse_address().unwrap())
        });
        assert_eq!(found, vec![(7, true); listeners], "{distribution:?}");
    }
    let server = echo_server(1);
    let found = with_listeners(server.local_addrs()[0], |s| listen_backlog(&s));
    assert_eq!(found, [coreloop::Builder::DEFAULT_BACKLOG]);
}

/// Reports what `read` finds on each connection's socket in `on_open` (through
/// `Context::socket`), and echoes.
struct Probe<T> {
    tx: mpsc::Sender<T>,
    read: fn(&SockRef<'_>) -> T,
}

fn probe<T>(tx: &mpsc::Sender<T>, read: fn(&SockRef<'_>) -> T) -> Probe<T> {
    Probe { tx: tx.clone(), read }
}

impl<T: Send + 'static> Handler for Probe<T> {
    type Conn = ();
    fn on_open(&mut self, cx: &mut Context<'_>) {
        let _ = self.tx.send((self.read)(&cx.socket()));
    }
    fn on_data(&mut self, _: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        cx.write(input);
        input.clear();
    }
}

#[test]
fn buffer_sizes_and_keepalive_reach_accepted_and_outbound_connections() {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(1)
        .send_buffer_size(96 * 1024)
        .recv_buffer_size(80 * 1024)
        .keepalive(
            TcpKeepalive::new()
                .with_time(Duration::from_secs(77))
                .with_interval(Duration::from_secs(11))
                .with_retries(4),
        )
        .bind(localhost())
        .start(move |_| probe(&tx, options))
        .unwrap();
    let want = Options {
        nodelay: true,
        send_buffer: kernel_buffer_sizes(96 * 1024).0,
        recv_buffer: kernel_buffer_sizes(80 * 1024).1,
        keepalive: true,
        keepalive_time: Duration::from_secs(77),
        keepalive_interval: Duration::from_secs(11),
        keepalive_retries: 4,
    };
    let addr = server.local_addrs()[0];

    // Accepted: seen from the handler through `Context::socket`, and from outside.
    let client = connect(addr);
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), want);
    let outside = with_accepted_socket(client.local_addr().unwrap(), |s| options(&s)).unwrap();
    assert_eq!(outside, want);
    // The client is a plain socket: the options are the server's, not the defaults.
    let plain = options(&SockRef::from(&client));
    assert_ne!(plain.keepalive_time, want.keepalive_time);

    // Outbound: the server connects to itself; both ends report.
    server.handle().connect(addr, 1).unwrap();
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), want);
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), want);
}

#[test]
fn a_restarted_server_binds_again_despite_time_wait() {
    // The server closes first, so its side of the connection sits in TIME_WAIT on
    // the listening port; without SO_REUSEADDR the next bind fails.
    let (server, rx) = recorder_server(1);
    let addr = server.local_addrs()[0];
    let (mut stream, _) = open(addr, &rx);
    std::io::Write::write_all(&mut stream, b"close\n").unwrap();
    assert!(read_to_end(&mut stream).ends_with(b"bye\n"));
    drop(stream);
    server.shutdown(DEADLINE).unwrap();

    let again = Server::builder().reactors(1).bind(addr).start(|_| Echo).unwrap();
    let c = connect(again.local_addrs()[0]);
    assert_eq!(roundtrip(&c, b"again"), b"again");
}

#[test]
fn bad_buffer_sizes_are_refused_naming_the_option() {
    for (builder, option) in [
        (Server::builder().send_buffer_size(0), "send_buffer_size"),
        (Server::builder().recv_buffer_size(usize::MAX), "recv_buffer_size"),
    ] {
        match builder.bind(localhost()).start(|_| Echo) {
            Err(Error::Config { option: o, .. }) => assert_eq!(o, option),
            other => panic!("expected a config error for {option}, got {other:?}"),
        }
    }
}

#[test]
fn an_option_the_kernel_refuses_names_the_option_and_address() {
    // A keepalive idle time of zero is refused by the kernel (EINVAL).
    let err = Server::builder()
        .keepalive(TcpKeepalive::new().with_time(Duration::ZERO))
        .bind(localhost())
        .start(|_| Echo)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::SocketOption {
                option: "SO_KEEPALIVE",
                ..
            }
        ) && text.contains("127.0.0.1"),
        "{text}"
    );
}

fn buffer_sizes(s: &SockRef<'_>) -> (usize, usize) {
    (s.send_buffer_size().unwrap(), s.recv_buffer_size().unwrap())
}

#[test]
fn unix_connections_get_the_buffer_sizes_too() {
    let dir = TempDir::new("unix-buffers");
    let path = dir.path("buffers.sock");
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(1)
        .send_buffer_size(96 * 1024)
        .recv_buffer_size(80 * 1024)
        .bind_unix(&path)
        .start(move |_| probe(&tx, buffer_sizes))
        .unwrap();
    let fresh = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    fresh.set_send_buffer_size(96 * 1024).unwrap();
    fresh.set_recv_buffer_size(80 * 1024).unwrap();
    let want = (fresh.send_buffer_size().unwrap(), fresh.recv_buffer_size().unwrap());
    let plain = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let default = buffer_sizes(&SockRef::from(&plain));
    assert_ne!(default, want, "the sizes differ from the defaults");
    // Accepted, then both ends of an outbound connection.
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), want);
    server.handle().connect(path.as_path(), 1).unwrap();
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), want);
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), want);
    assert_eq!(unix_roundtrip(&plain, b"sized"), b"sized");
}

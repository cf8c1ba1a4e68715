//! Shared helpers for the integration tests: servers on port 0, clients with
//! timeouts, waiting for a condition with a deadline, and handlers that report what
//! they saw.
#![allow(dead_code)] // each test file uses its own subset

pub mod example;
pub mod load;
#[cfg(feature = "tls")]
pub mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use coreloop::{CloseReason, ConnId, Context, Handler, Server};

/// Upper bound on any single wait in a test. Generous: CI machines are slow, and a
/// passing test never waits this long.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Echoes every byte back.
#[derive(Debug)]
pub struct Echo;

impl Handler for Echo {
    type Conn = ();

    fn on_open(&mut self, _cx: &mut Context<'_>) {}

    fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        cx.write(input);
        input.clear();
    }
}

pub fn echo_server(reactors: usize) -> Server {
    Server::builder()
        .reactors(reactors)
        .bind(localhost())
        .start(|_| Echo)
        .expect("echo server starts")
}

/// A blocking client with timeouts, so a broken server fails the test instead of
/// hanging it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the test server");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Polls `cond` until it holds; panics naming `what` after [`DEADLINE`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// Deterministic bytes covering every value, zero included.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Sends `data` from one thread while reading the echo on this one, so neither side
/// can stall on full socket buffers. Returns what came back.
pub fn roundtrip(stream: &TcpStream, data: &[u8]) -> Vec<u8> {
    roundtrip_with(stream, stream.try_clone().unwrap(), data)
}

/// [`roundtrip`] over a Unix domain socket.
pub fn unix_roundtrip(stream: &std::os::unix::net::UnixStream, data: &[u8]) -> Vec<u8> {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    roundtrip_with(stream, stream.try_clone().unwrap(), data)
}

fn roundtrip_with(mut reader: impl Read, mut writer: impl Write + Send + 'static, data: &[u8]) -> Vec<u8> {
    let owned = data.to_vec();
    let t = thread::spawn(move || writer.write_all(&owned));
    let mut got = vec![0; data.len()];
    reader.read_exact(&mut got).expect("read the echo");
    t.join().unwrap().expect("write the payload");
    got
}

/// Reads until end of stream.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("read to end of stream");
    got
}

/// What a [`Recorder`] saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Open(ConnId, String),
    Eof(ConnId),
    Shutdown(ConnId),
    Close(ConnId, CloseReason),
}

/// An echo handler that reports its callbacks on a channel, with the reactor
/// thread's name on open. A line `close` makes it write `bye` and close.
#[derive(Debug)]
pub struct Recorder {
    pub tx: Sender<Seen>,
}

pub fn recorder_server(reactors: usize) -> (Server, Receiver<Seen>) {
    recorder_with(Server::builder().reactors(reactors).bind(localhost()))
}

/// A [`Recorder`] server from a configured builder.
pub fn recorder_with(builder: coreloop::Builder) -> (Server, Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    let server = builder
        .start(move |_| Recorder { tx: tx.clone() })
        .expect("recorder server starts");
    (server, rx)
}

impl Handler for Recorder {
    type Conn = ();

    fn on_open(&mut self, cx: &mut Context<'_>) {
        let name = thread::current().name().unwrap_or("").to_string();
        let _ = self.tx.send(Seen::Open(cx.id(), name));
    }

    fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        if &input[..] == b"close\n" {
            cx.write(b"bye\n");
            cx.close();
        } else if &input[..] == b"id\n" {
            cx.write(format!("{}\n", cx.id()).as_bytes());
        } else if &input[..] == b"peer\n" {
            cx.write(format!("{}\n", cx.peer_addr()).as_bytes());
        } else {
            cx.write(input);
        }
        input.clear();
    }

    fn on_eof(&mut self, _conn: &mut (), cx: &mut Context<'_>) {
        let _ = self.tx.send(Seen::Eof(cx.id()));
        cx.close();
    }

    fn on_shutdown(&mut self, _conn: &mut (), cx: &mut Context<'_>) {
        let _ = self.tx.send(Seen::Shutdown(cx.id()));
    }

    fn on_close(&mut self, _conn: (), cx: &mut Context<'_>, why: CloseReason) {
        let _ = self.tx.send(Seen::Close(cx.id(), why));
    }
}

/// Receives the next event, failing after [`DEADLINE`].
pub fn next(rx: &Receiver<Seen>) -> Seen {
    rx.recv_timeout(DEADLINE).expect("the handler reports an event")
}

/// Names of this process's threads whose name starts with `coreloop`.
/// (The kernel keeps 15 bytes of a name: `coreloop-reacto`, `coreloop-accept`.)
pub fn coreloop_threads() -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) {
            let comm = comm.trim().to_string();
            if comm.starts_with("coreloop") {
                names.push(comm);
            }
        }
    }
    names
}

/// Replies to any input with `size` bytes of `pattern(size, seed)`, far more than
/// socket buffers hold, so the server must queue most of it. Chunks alternate
/// between `write` and `write_bytes`, so both the copying and the zero-copy output
/// paths are queued.
#[derive(Debug, Clone, Copy)]
pub struct Blast {
    pub size: usize,
    pub seed: u64,
}

impl Handler for Blast {
    type Conn = ();

    fn on_open(&mut self, _cx: &mut Context<'_>) {}

    fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        input.clear();
        let data = bytes::Bytes::from(pattern(self.size, self.seed));
        for (i, chunk) in data.chunks(100_000).enumerate() {
            if i % 2 == 0 {
                cx.write(chunk);
            } else {
                cx.write_bytes(data.slice_ref(chunk));
            }
        }
    }
}

/// Starts a one-reactor [`Blast`] server, connects, triggers the reply and waits
/// until the server has written part of it (the rest is queued).
pub fn blasting(blast: Blast) -> (Server, TcpStream) {
    let server = Server::builder()
        .reactors(1)
        .bind(localhost())
        .start(move |_| blast)
        .unwrap();
    let handle = server.handle();
    let mut stream = connect(server.local_addrs()[0]);
    stream.write_all(b"go").unwrap();
    wait_for("the reply to be partly written", || {
        handle.stats().total().bytes_out > 0
    });
    (server, stream)
}

/// Echoes complete `\n`-terminated lines and leaves a partial line in the input;
/// reports each close with its reason.
#[derive(Debug)]
pub struct LineEcho {
    pub tx: Sender<Seen>,
}

impl Handler for LineEcho {
    type Conn = ();

    fn on_open(&mut self, cx: &mut Context<'_>) {
        let _ = self.tx.send(Seen::Open(cx.id(), String::new()));
    }

    fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        while let Some(end) = input.iter().position(|&b| b == b'\n') {
            let line = input.split_to(end + 1);
            cx.write(&line);
        }
    }

    fn on_close(&mut self, _conn: (), cx: &mut Context<'_>, why: CloseReason) {
        let _ = self.tx.send(Seen::Close(cx.id(), why));
    }
}

/// Connects and waits for the handler's open event; returns the stream and its id.
pub fn open(addr: SocketAddr, rx: &Receiver<Seen>) -> (TcpStream, ConnId) {
    let stream = connect(addr);
    match next(rx) {
        Seen::Open(id, _) => (stream, id),
        other => panic!("expected an open, got {other:?}"),
    }
}

/// A fresh directory for this test's socket files, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("coreloop-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, file: &str) -> std::path::PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Asserts that nothing arrives on `stream` for a short window (a client waiting
/// in the backlog over the connection cap), then restores the normal timeout.
pub fn assert_no_reply_yet(stream: &mut TcpStream) {
    stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut buf = [0u8; 1];
    let err = stream.read_exact(&mut buf).expect_err("no reply may come yet");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err:?}"
    );
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
}

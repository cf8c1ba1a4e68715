//! TLS on the reactors (feature `tls`): byte-exact echo through rustls clients,
//! what the handler sees of a session, client certificates, hostile clients,
//! flow control, close_notify and truncation, half-close and shutdown, outbound
//! TLS, certificate reloading. Real clients no one here wrote (openssl, Python)
//! are in `tests/peers.rs`.
#![cfg(feature = "tls")]

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use coreloop::rustls::pki_types::ServerName;
use coreloop::{CloseReason, ConnId, Context, Handler, Listen, Origin, ReactorContext, Server, TlsAcceptor, TlsError};
use util::tls::*;
use util::*;

/// What the probe handler saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// `on_open`: what was negotiated, as a line.
    Open(ConnId, String),
    Eof(ConnId, usize),
    Close(ConnId, CloseReason),
    ConnectError(u64, String),
}

/// Echoes; tells what it sees; `!bye` makes it answer `bye` and close; at end
/// of stream it answers how many bytes it got, then closes.
struct Probe {
    tx: Sender<Event>,
    /// Greets each connection with what was negotiated.
    greet: bool,
}

#[derive(Default)]
struct Seen {
    bytes: usize,
}

fn describe(cx: &Context<'_>) -> String {
    let tls = cx.tls().expect("a TLS connection");
    format!(
        "peer={} alpn={} sni={} version={:?} suite={:?} certs={}",
        cx.peer_addr(),
        tls.alpn_protocol().map(String::from_utf8_lossy).unwrap_or_default(),
        tls.server_name().unwrap_or("-"),
        tls.protocol_version().unwrap(),
        tls.cipher_suite().unwrap().suite(),
        tls.peer_certificates().map_or(0, <[_]>::len),
    )
}

impl Handler for Probe {
    type Conn = Seen;

    fn on_open(&mut self, cx: &mut Context<'_>) -> Seen {
        let line = describe(cx);
        if self.greet {
            writeln!(cx, "{line}");
        }
        if let Origin::Connected { .. } = cx.origin() {
            cx.write(b"ping from the client side");
        }
        let _ = self.tx.send(Event::Open(cx.id(), line));
        Seen::default()
    }

    fn on_data(&mut self, seen: &mut Seen, cx: &mut Context<'_>, input: &mut BytesMut) {
        seen.bytes += input.len();
        if input.ends_with(b"!bye") {
            cx.write(b"bye");
            cx.close();
        } else if let Origin::Connected { .. } = cx.origin() {
            // The client side: report what the server echoed, then close.
            let _ = self
                .tx
                .send(Event::Open(cx.id(), String::from_utf8_lossy(input).into_owned()));
            cx.close();
        } else {
            cx.write(input);
        }
        input.clear();
    }

    fn on_eof(&mut self, seen: &mut Seen, cx: &mut Context<'_>) {
        let _ = self.tx.send(Event::Eof(cx.id(), seen.bytes));
        write!(cx, "eof after {} bytes", seen.bytes);
        cx.close();
    }

    fn on_close(&mut self, _: Seen, cx: &mut Context<'_>, why: CloseReason) {
        let _ = self.tx.send(Event::Close(cx.id(), why));
    }

    fn on_connect_error(
        &mut self,
        _cx: &mut ReactorContext<'_, Seen>,
        tag: u64,
        _to: &coreloop::Endpoint,
        e: std::io::Error,
    ) {
        let _ = self.tx.send(Event::ConnectError(tag, e.to_string()));
    }
}

fn probe_server(
    listen: Listen,
    greet: bool,
    tune: impl FnOnce(coreloop::Builder) -> coreloop::Builder,
) -> (Server, Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    let server = tune(Server::builder().reactors(1).listen(listen))
        .start(move |_| Probe { tx: tx.clone(), greet })
        .expect("the TLS server starts");
    (server, rx)
}

fn event(rx: &Receiver<Event>) -> Event {
    rx.recv_timeout(DEADLINE).expect("an event from the handler")
}

fn tls_listen(config: Arc<coreloop::rustls::ServerConfig>) -> Listen {
    Listen::tcp(localhost()).tls(config)
}

fn wait_stat(server: &Server, what: &str, f: impl Fn(&coreloop::ReactorStats) -> bool) {
    let handle = server.handle();
    wait_for(what, || f(&handle.stats().total()));
}

#[test]
fn echoes_byte_exact_at_every_size_and_split() {
    let pki = Pki::new("echo");
    let (server, _rx) = probe_server(tls_listen(pki.server_config(&[])), false, |b| b);
    let addr = server.local_addrs()[0];
    let mut client = tls_connect(addr, pki.client_config(&[]));
    for (size, piece) in [
        (1, 1),
        (100, 7),
        (16_383, 16_383),
        (16_384, 16_384),
        (16_385, 1000),
        (100_000, 4096),
        (1 << 20, 16_384),
        (3 << 20, 65_536),
    ] {
        let data = pattern(size, size as u64);
        assert!(
            echo_through(&mut client, &data, piece) == data,
            "size {size}, pieces of {piece}"
        );
    }
    // Ciphertext split anywhere: records cut across reads at random points.
    let mut conn =
        coreloop::rustls::ClientConnection::new(pki.client_config(&[]), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    let data = pattern(200_000, 77);
    let mut wire = Vec::new();
    let mut left = &data[..];
    while !left.is_empty() {
        let n = conn.writer().write(left).unwrap();
        left = &left[n..];
        while conn.wants_write() {
            conn.write_tls(&mut wire).unwrap();
        }
    }
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut rest = &wire[..];
    let mut back = Vec::new();
    let mut buf = vec![0; 65_536];
    while !rest.is_empty() || back.len() < data.len() {
        if !rest.is_empty() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let n = (1 + (rng % 3000) as usize).min(rest.len());
            sock.write_all(&rest[..n]).unwrap();
            rest = &rest[n..];
        }
        if rest.is_empty() || rng.is_multiple_of(4) {
            // Read what came back: waiting once all is sent, else only taking
            // what is there (the server may hold an incomplete record).
            sock.set_nonblocking(!rest.is_empty()).unwrap();
            let n = match sock.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => r.unwrap(),
            };
            assert!(n > 0, "the server closed");
            let mut fresh = &buf[..n];
            while !fresh.is_empty() {
                conn.read_tls(&mut fresh).unwrap();
                conn.process_new_packets().unwrap();
                let _ = conn.reader().read_to_end(&mut back);
            }
        }
    }
    assert!(back == data, "the echo of ciphertext cut at random points");
    assert_eq!(server.handle().stats().total().tls_handshakes, 2);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn the_handler_sees_alpn_sni_version_and_suite() {
    let pki = Pki::new("alpn");
    let (server, rx) = probe_server(tls_listen(pki.server_config(&[b"h2", b"http/1.1"])), true, |b| b);
    let addr = server.local_addrs()[0];
    let mut client = tls_connect(addr, pki.client_config(&[b"http/1.1"]));
    let Event::Open(_, line) = event(&rx) else {
        panic!("no open")
    };
    assert!(line.contains("alpn=http/1.1 sni=localhost version=TLSv1_3"), "{line}");
    assert!(line.contains("suite=TLS13_"), "{line}");
    assert!(line.contains("certs=0"), "{line}");
    let mut greeting = vec![0; line.len() + 1];
    client.read_exact(&mut greeting).unwrap();
    assert_eq!(String::from_utf8(greeting).unwrap(), format!("{line}\n"));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn client_certificates_required_optional_and_from_the_wrong_ca() {
    let (pki, clients, strangers) = (Pki::new("server"), Pki::new("clients"), Pki::new("strangers"));
    let with = |p: &Pki| pki.client_config_with_cert(&p.client);
    for required in [true, false] {
        let config = pki.server_config_with_clients(&clients, required);
        let (server, rx) = probe_server(tls_listen(config), true, |b| b);
        let addr = server.local_addrs()[0];
        // A certificate from the trusted CA: the handler sees it.
        let mut ok = tls_connect(addr, with(&clients));
        let Event::Open(_, line) = event(&rx) else { panic!() };
        assert!(line.contains("certs=1"), "{line}");
        let mut greeting = vec![0; line.len() + 1];
        ok.read_exact(&mut greeting).unwrap();
        // From another CA: refused, closed, counted.
        let refused = try_tls_connect(addr, with(&strangers));
        assert!(refused.is_err(), "a stranger's certificate was accepted");
        wait_stat(&server, "the stranger counted", |t| t.tls_errors == 1);
        // None at all: refused when required, served when optional.
        match try_tls_connect(addr, pki.client_config(&[])) {
            Err(_) => {
                assert!(required, "no certificate refused though optional");
                wait_stat(&server, "the anonymous client counted", |t| t.tls_errors == 2);
            }
            Ok(_) => {
                assert!(!required, "no certificate accepted though required");
                let Event::Open(_, line) = event(&rx) else { panic!() };
                assert!(line.contains("certs=0"), "{line}");
            }
        }
        server.shutdown(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn plaintext_garbage_and_bad_records_are_closed_and_counted() {
    let pki = Pki::new("garbage");
    let (server, rx) = probe_server(tls_listen(pki.server_config(&[])), false, |b| b);
    let addr = server.local_addrs()[0];
    let cases: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        &[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 255, 254],
        // A handshake record header, then nonsense.
        &[0x16, 0x03, 0x01, 0x00, 0x08, 9, 9, 9, 9, 9, 9, 9, 9],
        // A record far longer than TLS allows.
        &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3],
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let mut s = connect(addr);
        s.write_all(bytes).unwrap();
        // Closed: an alert perhaps, then the end of stream or a reset.
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert!(got.len() < 64, "case {i}: {} bytes back", got.len());
        if i < 2 {
            // Not a TLS record at all (TlsError::NotTls): closed at its first
            // byte, before rustls sees it, so not even an alert comes back.
            assert!(got.is_empty(), "case {i}: {got:?}");
        }
        wait_stat(&server, "the case counted", |t| t.tls_errors == i as u64 + 1);
    }
    assert!(rx.try_recv().is_err(), "the handler saw none of them");
    let stats = server.handle().stats().total();
    assert_eq!((stats.active, stats.tls_handshakes), (0, 0));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn silent_and_slow_handshakes_are_closed_at_the_deadline_without_spinning() {
    let pki = Pki::new("slow");
    let deadline = Duration::from_millis(300);
    let (server, _rx) = probe_server(tls_listen(pki.server_config(&[])), false, |b| {
        b.preamble_timeout(deadline)
    });
    let addr = server.local_addrs()[0];
    // A ClientHello, to send a byte at a time.
    let mut conn =
        coreloop::rustls::ClientConnection::new(pki.client_config(&[]), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();

    let polls_before = server.handle().stats().total().polls;
    let start = Instant::now();
    let mut silent = connect(addr);
    let mut slow = connect(addr);
    slow.set_nodelay(true).unwrap();
    let mut sent = 0;
    let closed = loop {
        // One byte every 20 ms: the hello would take seconds.
        if slow.write_all(&hello[sent..=sent]).is_err() {
            break true;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(20)); // the client's pace, not a wait for the server
        if start.elapsed() > deadline * 10 {
            break false;
        }
        slow.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let gone = matches!(slow.read(&mut b), Ok(0) | Err(_))
            && !matches!(slow.read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock);
        slow.set_nonblocking(false).unwrap();
        if gone {
            break true;
        }
    };
    assert!(closed, "the slow client was not closed");
    assert!(sent < hello.len(), "the whole hello went out");
    assert!(read_to_end(&mut silent).is_empty(), "the silent client is closed");
    let took = start.elapsed();
    assert!(took >= deadline - Duration::from_millis(50), "closed after {took:?}");
    wait_stat(&server, "both counted", |t| t.tls_errors == 2);
    // A few poll turns per byte received, not a busy loop.
    let polls = server.handle().stats().total().polls - polls_before;
    assert!(polls < 4 * sent as u64 + 50, "{polls} polls for {sent} bytes");
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn handshakes_beyond_the_limit_wait_for_a_place() {
    let pki = Pki::new("limit");
    let (server, rx) = probe_server(tls_listen(pki.server_config(&[])), true, |b| b.max_handshakes(1));
    let addr = server.local_addrs()[0];
    // The first client starts a handshake and stalls: it holds the one place.
    let mut conn =
        coreloop::rustls::ClientConnection::new(pki.client_config(&[]), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    let mut staller = connect(addr);
    staller.write_all(&hello[..10]).unwrap();
    wait_for("the first handshake to start", || {
        // Its bytes were read: the server holds them.
        server.handle().stats().total().bytes_in >= 10
    });
    // The second waits: no ServerHello comes while the place is taken.
    let waiting = std::thread::spawn({
        let config = pki.client_config(&[]);
        move || {
            let mut c = tls_connect(addr, config);
            let mut line = [0u8; 5];
            c.read_exact(&mut line).unwrap();
            line
        }
    });
    wait_for("the second connection to be taken on", || {
        server.handle().stats().total().accepted >= 2
    });
    // From its acceptance on, a window in which nothing may happen (what is
    // checked is an absence, so no condition can end the wait early).
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiting.is_finished(), "the second handshake did not wait");
    assert_eq!(
        server.handle().stats().total().bytes_in,
        10,
        "the waiting connection's ClientHello is left unread"
    );
    assert!(rx.try_recv().is_err());
    // The first gives up: the second gets its place and completes.
    staller.shutdown(Shutdown::Both).unwrap();
    drop(staller);
    assert_eq!(&waiting.join().unwrap(), b"peer=");
    assert!(matches!(event(&rx), Event::Open(..)));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

/// Answers `N\n` with N KiB, consuming requests only while its connection is
/// writable; records the most output it ever saw queued.
struct Amplify {
    most_queued: Arc<std::sync::atomic::AtomicUsize>,
}

impl Handler for Amplify {
    type Conn = ();

    fn on_open(&mut self, _cx: &mut Context<'_>) {}

    fn on_data(&mut self, _: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        while cx.is_writable() {
            let Some(end) = input.iter().position(|&b| b == b'\n') else {
                break;
            };
            let n: usize = std::str::from_utf8(&input[..end]).unwrap().parse().unwrap();
            input.advance(end + 1);
            cx.write(&pattern(n * 1024, n as u64));
            self.most_queued
                .fetch_max(cx.queued_output(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn on_writable(&mut self, _: &mut (), _cx: &mut Context<'_>) {}
}

#[test]
fn flow_control_holds_through_tls() {
    let pki = Pki::new("flow");
    let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let high = 256 * 1024;
    let server = Server::builder()
        .reactors(1)
        .write_watermarks(64 * 1024, high)
        .listen(tls_listen(pki.server_config(&[])))
        .start({
            let most = Arc::clone(&most);
            move |_| Amplify {
                most_queued: Arc::clone(&most),
            }
        })
        .unwrap();
    let mut client = tls_connect(server.local_addrs()[0], pki.client_config(&[]));
    // 200 requests of 64 KiB replies (12.8 MB), sent before reading any.
    let requests = "64\n".repeat(200);
    client.write_all(requests.as_bytes()).unwrap();
    client.flush().unwrap();
    wait_stat(&server, "the server to stop answering", |t| t.pauses >= 1);
    let mut got = vec![0; 64 * 1024];
    client.sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for i in 0..200 {
        if let Err(e) = client.read_exact(&mut got) {
            panic!("reply {i}: {e}; server: {:?}", server.handle().stats().total());
        }
        assert!(got == pattern(64 * 1024, 64), "a reply differs");
    }
    let most = most.load(std::sync::atomic::Ordering::Relaxed);
    assert!(most <= high + 64 * 1024, "{most} bytes queued at most");
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_graceful_close_sends_close_notify_and_a_truncation_is_reported() {
    let pki = Pki::new("close");
    let (server, rx) = probe_server(tls_listen(pki.server_config(&[])), false, |b| b);
    let addr = server.local_addrs()[0];
    // The handler closes: the client sees `bye`, then a clean close_notify.
    let mut client = tls_connect(addr, pki.client_config(&[]));
    client.write_all(b"!bye").unwrap();
    client.flush().unwrap();
    assert_eq!(
        read_to_close(&mut client).expect("close_notify, not a truncation"),
        b"bye"
    );
    let Event::Open(first, _) = event(&rx) else { panic!() };
    assert_eq!(event(&rx), Event::Close(first, CloseReason::Local));
    // The client goes away without close_notify: reported as such, counted.
    let mut client = tls_connect(addr, pki.client_config(&[]));
    assert_eq!(echo_through(&mut client, b"partial", 7), b"partial");
    client.sock.shutdown(Shutdown::Both).unwrap();
    let Event::Open(second, _) = event(&rx) else { panic!() };
    assert_eq!(event(&rx), Event::Close(second, CloseReason::Tls(TlsError::Truncated)));
    wait_stat(&server, "the truncation counted", |t| t.tls_errors == 1);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn half_close_and_shutdown_through_tls() {
    let pki = Pki::new("half");
    let (server, rx) = probe_server(tls_listen(pki.server_config(&[])), false, |b| b);
    let addr = server.local_addrs()[0];
    // The client sends, then close_notify and its FIN: the handler hears the
    // end of stream and still answers.
    let mut client = tls_connect(addr, pki.client_config(&[]));
    assert_eq!(echo_through(&mut client, b"hello", 5), b"hello");
    client.conn.send_close_notify();
    client.flush().unwrap();
    client.sock.shutdown(Shutdown::Write).unwrap();
    let Event::Open(id, _) = event(&rx) else { panic!() };
    assert_eq!(event(&rx), Event::Eof(id, 5));
    assert_eq!(read_to_close(&mut client).unwrap(), b"eof after 5 bytes");
    // Shutdown: what is queued is flushed, then close_notify.
    let mut client = tls_connect(addr, pki.client_config(&[]));
    let data = pattern(100_000, 3);
    assert!(echo_through(&mut client, &data, 10_000) == data);
    assert_eq!(echo_through(&mut client, b"last words", 10), b"last words");
    let report = server.shutdown(Duration::from_secs(5)).unwrap();
    assert!(report.completed);
    assert_eq!(read_to_close(&mut client).expect("close_notify at shutdown"), b"");
}

#[test]
fn outbound_tls_connects_and_a_bad_certificate_is_a_connect_error() {
    let pki = Pki::new("outbound");
    let (server, _server_events) = probe_server(tls_listen(pki.server_config(&[b"x"])), false, |b| b);
    let addr = server.local_addrs()[0];
    let (tx, rx) = mpsc::channel();
    let client = Server::builder()
        .reactors(1)
        .start(move |_| Probe {
            tx: tx.clone(),
            greet: false,
        })
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    client
        .handle()
        .connect_tls(addr, pki.client_config(&[b"x"]), name.clone(), 7)
        .unwrap();
    let Event::Open(id, line) = event(&rx) else { panic!() };
    assert!(line.contains("alpn=x sni=- version=TLSv1_3"), "{line}");
    assert!(line.contains("certs=1"), "the server's certificate: {line}");
    assert_eq!(event(&rx), Event::Open(id, "ping from the client side".into()));
    // A server the client does not trust: its connect fails, the handler hears why.
    let stranger = Pki::new("stranger");
    client
        .handle()
        .connect_tls(addr, stranger.client_config(&[]), name, 8)
        .unwrap();
    loop {
        match event(&rx) {
            Event::ConnectError(tag, why) => {
                assert_eq!(tag, 8);
                // The kind, and rustls's own reason.
                assert!(
                    why.contains("certificate refused") && why.contains("UnknownIssuer"),
                    "{why}"
                );
                break;
            }
            Event::Close(..) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(client.handle().stats().total().tls_errors, 1);
    client.shutdown(Duration::from_secs(5)).unwrap();
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_new_certificate_applies_to_new_connections() {
    let (old, new) = (Pki::new("old"), Pki::new("new"));
    let acceptor = TlsAcceptor::new(old.server_config(&[]));
    let (server, _rx) = probe_server(Listen::tcp(localhost()).tls(acceptor.clone()), false, |b| b);
    let addr = server.local_addrs()[0];
    let mut before = tls_connect(addr, old.client_config(&[]));
    acceptor.set_config(new.server_config(&[]));
    // New connections get the new certificate: trusted by the new CA only.
    assert!(try_tls_connect(addr, old.client_config(&[])).is_err());
    let mut after = tls_connect(addr, new.client_config(&[]));
    assert!(echo_through(&mut after, b"new", 3) == b"new");
    // The connection from before keeps its session.
    assert!(echo_through(&mut before, b"old", 3) == b"old");
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn tls_on_a_unix_socket_and_after_a_proxy_header() {
    let pki = Pki::new("unix");
    let dir = TempDir::new("tls-unix");
    let path = dir.path("tls.sock");
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(1)
        .listen(Listen::unix(&path).tls(pki.server_config(&[])))
        .listen(
            Listen::tcp(localhost())
                .proxy_protocol(coreloop::ProxyProtocol::Required)
                .tls(pki.server_config(&[])),
        )
        .start(move |_| Probe {
            tx: tx.clone(),
            greet: false,
        })
        .unwrap();
    // Unix: a TLS stream over a Unix socket.
    let sock = std::os::unix::net::UnixStream::connect(&path).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let conn =
        coreloop::rustls::ClientConnection::new(pki.client_config(&[]), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut unix = coreloop::rustls::StreamOwned::new(conn, sock);
    unix.write_all(b"over unix").unwrap();
    let mut back = [0u8; 9];
    unix.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"over unix");
    assert!(matches!(event(&rx), Event::Open(..)));
    // A PROXY header, then TLS: the handler sees the client the header named.
    let addr: SocketAddr = server.local_addrs()[0];
    let mut sock = connect(addr);
    sock.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 443\r\n").unwrap();
    let conn =
        coreloop::rustls::ClientConnection::new(pki.client_config(&[]), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut proxied = coreloop::rustls::StreamOwned::new(conn, sock);
    assert_eq!(echo_through(&mut proxied, b"via proxy", 9), b"via proxy");
    let Event::Open(_, line) = event(&rx) else { panic!() };
    assert!(line.starts_with("peer=192.0.2.7:5555 "), "{line}");
    server.shutdown(Duration::from_secs(5)).unwrap();
}

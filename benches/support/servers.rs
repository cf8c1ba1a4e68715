//! The servers every benchmark compares, runnable in-process (criterion benches)
//! or as a process of their own (`examples/bench_server.rs`):
//!
//! - coreloop: the echo handler on N reactors;
//! - tokio: the multi-thread runtime with N workers, a task per connection, a
//!   4 KiB buffer, `read` + `write_all` — the idiomatic baseline;
//! - raw mio: N threads, each with its own `SO_REUSEPORT` listener and `Poll`, no
//!   library around it — the near-limit floor a library can approach;
//! - with the `tls` feature, coreloop serving TLS and tokio with tokio-rustls, both
//!   from the same `rustls::ServerConfig` (see [`tls`]).
#![allow(dead_code)] // each user takes the servers it needs

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::BytesMut;
use coreloop::{Context, Handler, Server};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use socket2::{Domain, Socket, Type};

/// The echo handler.
pub struct Echo;

impl Handler for Echo {
    type Conn = ();
    fn on_open(&mut self, _cx: &mut Context<'_>) {}
    fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        cx.write(input);
        input.clear();
    }
}

/// Which server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Coreloop,
    /// coreloop with `Distribution::LeastConnections`.
    CoreloopLeastConn,
    /// coreloop with `Distribution::ReusePort` (no acceptor thread).
    CoreloopReusePort,
    Tokio,
    Mio,
    /// coreloop serving TLS (`Listen::tls`), round-robin.
    CoreloopTls,
    /// coreloop serving TLS with `Distribution::ReusePort`.
    CoreloopTlsReusePort,
    /// tokio with tokio-rustls: a task per connection, as [`Kind::Tokio`].
    TokioTls,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "coreloop" => Some(Kind::Coreloop),
            "coreloop-leastconn" => Some(Kind::CoreloopLeastConn),
            "coreloop-reuseport" => Some(Kind::CoreloopReusePort),
            "tokio" => Some(Kind::Tokio),
            "mio" => Some(Kind::Mio),
            "coreloop-tls" => Some(Kind::CoreloopTls),
            "coreloop-tls-reuseport" => Some(Kind::CoreloopTlsReusePort),
            "tokio-tls" => Some(Kind::TokioTls),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Coreloop => "coreloop",
            Kind::CoreloopLeastConn => "coreloop-leastconn",
            Kind::CoreloopReusePort => "coreloop-reuseport",
            Kind::Tokio => "tokio",
            Kind::Mio => "mio",
            Kind::CoreloopTls => "coreloop-tls",
            Kind::CoreloopTlsReusePort => "coreloop-tls-reuseport",
            Kind::TokioTls => "tokio-tls",
        }
    }

    /// Whether this server speaks TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Kind::CoreloopTls | Kind::CoreloopTlsReusePort | Kind::TokioTls)
    }
}

/// The servers each criterion group compares: coreloop at 1 reactor and at
/// CPU-count reactors, then tokio and raw mio with the same thread count.
pub fn compared() -> [(Kind, usize); 4] {
    let cpus = num_cpus::get();
    [
        (Kind::Coreloop, 1),
        (Kind::Coreloop, cpus),
        (Kind::Tokio, cpus),
        (Kind::Mio, cpus),
    ]
}

/// A running echo server of any kind.
pub enum Running {
    Coreloop(Server),
    Tokio(tokio::runtime::Runtime, SocketAddr),
    Mio(MioEcho),
}

impl Running {
    pub fn start(kind: Kind, threads: usize, addr: SocketAddr) -> io::Result<Running> {
        Ok(match kind {
            Kind::Coreloop | Kind::CoreloopLeastConn | Kind::CoreloopReusePort => Running::Coreloop(
                Server::builder()
                    .reactors(threads)
                    .distribution(match kind {
                        Kind::CoreloopLeastConn => coreloop::Distribution::LeastConnections,
                        Kind::CoreloopReusePort => coreloop::Distribution::ReusePort,
                        _ => coreloop::Distribution::RoundRobin,
                    })
                    .max_connections(1 << 20)
                    .bind(addr)
                    .start(|_| Echo)
                    .map_err(io::Error::other)?,
            ),
            Kind::Tokio => {
                let (rt, addr) = tokio_echo(threads, addr)?;
                Running::Tokio(rt, addr)
            }
            Kind::Mio => Running::Mio(MioEcho::start(threads, addr)?),
            #[cfg(feature = "tls")]
            Kind::CoreloopTls | Kind::CoreloopTlsReusePort => Running::Coreloop(
                Server::builder()
                    .reactors(threads)
                    .distribution(match kind {
                        Kind::CoreloopTlsReusePort => coreloop::Distribution::ReusePort,
                        _ => coreloop::Distribution::RoundRobin,
                    })
                    .max_connections(1 << 20)
                    .listen(coreloop::Listen::tcp(addr).tls(tls::server_config()))
                    .start(|_| Echo)
                    .map_err(io::Error::other)?,
            ),
            #[cfg(feature = "tls")]
            Kind::TokioTls => {
                let (rt, addr) = tls::tokio_echo(threads, addr)?;
                Running::Tokio(rt, addr)
            }
            #[cfg(not(feature = "tls"))]
            Kind::CoreloopTls | Kind::CoreloopTlsReusePort | Kind::TokioTls => {
                return Err(io::Error::other(
                    "the TLS servers need the `tls` feature (--features tls)",
                ));
            }
        })
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Running::Coreloop(s) => s.local_addrs()[0],
            Running::Tokio(_, a) => *a,
            Running::Mio(m) => m.addr,
        }
    }

    pub fn stop(self) {
        match self {
            Running::Coreloop(s) => {
                let _ = s.shutdown(Duration::from_secs(1));
            }
            Running::Tokio(rt, _) => rt.shutdown_timeout(Duration::from_secs(1)),
            Running::Mio(m) => m.stop(),
        }
    }
}

/// tokio: task per connection, 4 KiB buffer, `read` + `write_all`.
pub fn tokio_echo(threads: usize, addr: SocketAddr) -> io::Result<(tokio::runtime::Runtime, SocketAddr)> {
    tokio_serve(threads, addr, tokio_echo_loop)
}

/// A tokio runtime with `threads` workers whose listener at `addr` spawns
/// `serve` for each accepted connection (`TCP_NODELAY` set).
pub fn tokio_serve<F, Fut>(
    threads: usize,
    addr: SocketAddr,
    serve: F,
) -> io::Result<(tokio::runtime::Runtime, SocketAddr)>
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_io()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind(addr))?;
    let addr = listener.local_addr()?;
    rt.spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(serve(s));
        }
    });
    Ok((rt, addr))
}

/// One tokio connection's echo: a 4 KiB buffer, `read`, `write_all` and a
/// `flush` (nothing for a socket; what sends the records of a TLS stream).
async fn tokio_echo_loop<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() || s.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The raw-mio reference: N threads, each its own `SO_REUSEPORT` listener and
/// `Poll`; reads until a short read, writes at once, queues only what the socket
/// does not take.
pub struct MioEcho {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
    threads: Vec<JoinHandle<()>>,
}

const LISTENER: Token = Token(usize::MAX - 1);
const WAKE: Token = Token(usize::MAX);

fn reuseport_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_tcp_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(TcpListener::from_std(s.into()))
}

struct MioConn {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl MioEcho {
    pub fn start(threads: usize, addr: SocketAddr) -> io::Result<MioEcho> {
        let first = reuseport_listener(addr)?;
        let addr = first.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut listeners = vec![first];
        for _ in 1..threads {
            listeners.push(reuseport_listener(addr)?);
        }
        let mut wakers = Vec::new();
        let mut handles = Vec::new();
        for (i, mut listener) in listeners.into_iter().enumerate() {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
            wakers.push(Arc::clone(&waker));
            poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
            let stop = Arc::clone(&stop);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("mio-echo-{i}"))
                    .spawn(move || mio_loop(poll, listener, &stop))?,
            );
        }
        Ok(MioEcho {
            addr,
            stop,
            wakers,
            threads: handles,
        })
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            let _ = w.wake();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn mio_loop(mut poll: Poll, listener: TcpListener, stop: &AtomicBool) {
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<MioConn> = Slab::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if poll.poll(&mut events, None).is_err() {
            continue;
        }
        for ev in events.iter() {
            match ev.token() {
                WAKE => {}
                LISTENER => loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let entry = conns.vacant_entry();
                            let token = Token(entry.key());
                            if poll
                                .registry()
                                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                                .is_ok()
                            {
                                entry.insert(MioConn {
                                    stream,
                                    pending: Vec::new(),
                                });
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                },
                Token(key) => {
                    let Some(c) = conns.get_mut(key) else { continue };
                    let mut dead = false;
                    if ev.is_writable() && !c.pending.is_empty() {
                        match c.stream.write(&c.pending) {
                            Ok(n) => {
                                c.pending.drain(..n);
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(_) => dead = true,
                        }
                    }
                    if ev.is_readable() || ev.is_read_closed() {
                        loop {
                            match c.stream.read(&mut buf) {
                                Ok(0) => {
                                    dead = true;
                                    break;
                                }
                                Ok(n) => {
                                    if c.pending.is_empty() {
                                        match c.stream.write(&buf[..n]) {
                                            Ok(w) => c.pending.extend_from_slice(&buf[w..n]),
                                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                                c.pending.extend_from_slice(&buf[..n])
                                            }
                                            Err(_) => dead = true,
                                        }
                                    } else {
                                        c.pending.extend_from_slice(&buf[..n]);
                                    }
                                    if n < buf.len() {
                                        break;
                                    }
                                }
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                Err(_) => {
                                    dead = true;
                                    break;
                                }
                            }
                        }
                    }
                    if dead {
                        conns.remove(key);
                    }
                }
            }
        }
    }
}

/// The TLS setup both TLS servers share: one self-signed certificate for
/// `localhost` and 127.0.0.1 with an ECDSA P-256 key (rcgen's default), made
/// once per process; TLS 1.3 only; rustls's ring provider (the one coreloop's
/// `tls` feature and tokio-rustls are built with here). Server and client
/// configurations are made once, so session tickets and resumption stay off the
/// measured path unless a client keeps its own configuration between connects.
#[cfg(feature = "tls")]
pub mod tls {
    use std::io;
    use std::net::SocketAddr;
    use std::sync::{Arc, OnceLock};

    use coreloop::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use coreloop::rustls::{self, ClientConfig, RootCertStore, ServerConfig};

    struct Identity {
        cert: CertificateDer<'static>,
        pem: String,
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    }

    fn identity() -> &'static Identity {
        static ID: OnceLock<Identity> = OnceLock::new();
        ID.get_or_init(|| {
            let names = vec!["localhost".to_string(), "127.0.0.1".into()];
            let made = rcgen::generate_simple_self_signed(names).expect("make a certificate");
            let cert = made.cert.der().clone();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("TLS 1.3")
                .with_no_client_auth()
                .with_single_cert(vec![cert.clone()], key)
                .expect("the certificate and key");
            let mut roots = RootCertStore::empty();
            roots.add(cert.clone()).expect("trust the certificate");
            let client = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("TLS 1.3")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Identity {
                pem: made.cert.pem(),
                cert,
                server: Arc::new(server),
                client: Arc::new(client),
            }
        })
    }

    /// The server configuration both TLS servers use.
    pub fn server_config() -> Arc<ServerConfig> {
        Arc::clone(&identity().server)
    }

    /// A client configuration trusting the servers' certificate.
    pub fn client_config() -> Arc<ClientConfig> {
        Arc::clone(&identity().client)
    }

    /// The servers' certificate, in PEM (for a client in another process).
    pub fn cert_pem() -> &'static str {
        &identity().pem
    }

    /// The servers' certificate.
    pub fn cert() -> CertificateDer<'static> {
        identity().cert.clone()
    }

    /// The name clients check the certificate against.
    pub fn server_name() -> ServerName<'static> {
        ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// tokio + tokio-rustls: as [`tokio_echo`](super::tokio_echo) (task per
    /// connection, 4 KiB buffer, `read` + `write_all`), with the handshake and a
    /// flush after each write.
    pub fn tokio_echo(threads: usize, addr: SocketAddr) -> io::Result<(tokio::runtime::Runtime, SocketAddr)> {
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config());
        super::tokio_serve(threads, addr, move |s| {
            let acceptor = acceptor.clone();
            async move {
                if let Ok(s) = acceptor.accept(s).await {
                    super::tokio_echo_loop(s).await;
                }
            }
        })
    }
}

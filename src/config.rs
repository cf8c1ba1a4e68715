//! The configuration a server runs with: [`Config`], the [`Distribution`]
//! strategies, and the listeners to open with what each expects of its
//! connections ([`Listen`]).
//!
//! Plain data, read by every thread after start. What the defaults are and which
//! values are allowed belongs to the builder (`builder.rs`), which validates a
//! configuration before any of it is used.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use socket2::TcpKeepalive;

use crate::net::{ListenOptions, SocketOptions};
use crate::proxy::{ProxyPolicy, ProxyProtocol};

/// How accepted connections are spread over the reactors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Distribution {
    /// One acceptor thread owns the listeners and hands connections to the
    /// reactors in turn (skipping any that stopped). The default: exact balance by
    /// connection count.
    #[default]
    RoundRobin,
    /// One acceptor thread hands each connection to the running reactor with the
    /// fewest open connections (read from the reactors' counters, without a lock,
    /// counting connections handed over and not yet taken on). Fills a reactor
    /// emptied by closes first; suits connections of very different lifetimes.
    LeastConnections,
    /// No acceptor thread: every reactor opens its own `SO_REUSEPORT` listener on
    /// each bind address and accepts for itself; the kernel spreads connections by
    /// hashing. Saves the hand-off (a wake and a context switch per accept batch);
    /// balance is statistical. Linux only; TCP `bind` addresses only.
    ReusePort,
}

/// A server's settings, validated by the builder before start.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) reactors: usize,
    pub(crate) backlog: u32,
    pub(crate) nodelay: bool,
    pub(crate) read_buffer: usize,
    pub(crate) read_budget: usize,
    pub(crate) inbox_capacity: usize,
    pub(crate) max_connections: usize,
    pub(crate) high_watermark: usize,
    pub(crate) low_watermark: usize,
    pub(crate) max_input: usize,
    pub(crate) max_output: usize,
    pub(crate) accept_backoff: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) linger: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_timers: usize,
    pub(crate) preamble_timeout: Duration,
    /// The most TLS handshakes in progress per reactor.
    pub(crate) max_handshakes: usize,
    /// Zero-downtime restart: the Unix socket path, and the drain grace.
    pub(crate) handover: Option<(PathBuf, Duration)>,
    /// What each listener expects of its connections, by listener index (set at
    /// start, once the listeners are open).
    pub(crate) policies: std::sync::Arc<[ListenerPolicy]>,
    pub(crate) distribution: Distribution,
    pub(crate) send_buffer: Option<usize>,
    pub(crate) recv_buffer: Option<usize>,
    pub(crate) keepalive: Option<TcpKeepalive>,
    pub(crate) pin_cores: bool,
}

/// A listener to add with [`Builder::listen`](crate::Builder::listen): where, and
/// what its connections start with.
///
/// # Examples
///
/// Behind HAProxy (`send-proxy-v2`) on a private network: every connection
/// must start with a PROXY header, and only the balancers may send one.
///
/// ```
/// use coreloop::{Listen, ProxyProtocol, Server};
///
/// let builder = Server::builder().listen(
///     Listen::tcp(([0, 0, 0, 0], 7878))
///         .proxy_protocol(ProxyProtocol::Required)
///         .trusted_proxies(["10.0.0.0/8".parse().unwrap()]),
/// );
/// ```
#[derive(Debug)]
pub struct Listen {
    pub(crate) spec: ListenSpec,
    pub(crate) policy: ListenerPolicy,
}

/// What a listener expects of its connections before they open: a PROXY
/// header, a TLS handshake.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListenerPolicy {
    pub(crate) proxy: ProxyPolicy,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsAcceptor>,
}

impl Listen {
    /// A TCP listener on `addr` (as [`Builder::bind`](crate::Builder::bind)).
    pub fn tcp(addr: impl Into<SocketAddr>) -> Self {
        Self::from_spec(ListenSpec::Tcp(addr.into()))
    }

    /// A Unix domain socket listener at `path` (as
    /// [`Builder::bind_unix`](crate::Builder::bind_unix)).
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Self::from_spec(ListenSpec::Unix(path.into()))
    }

    /// A TCP listener the caller opened (as
    /// [`Builder::listener`](crate::Builder::listener)).
    pub fn tcp_listener(listener: std::net::TcpListener) -> Self {
        Self::from_spec(ListenSpec::TcpListener(listener))
    }

    /// A Unix listener the caller opened (as
    /// [`Builder::unix_listener`](crate::Builder::unix_listener)).
    pub fn unix_listener(listener: std::os::unix::net::UnixListener) -> Self {
        Self::from_spec(ListenSpec::UnixListener(listener))
    }

    /// Every socket a service manager passed (as
    /// [`Builder::listen_fds`](crate::Builder::listen_fds)); the settings below
    /// apply to each.
    pub fn listen_fds() -> Self {
        Self::from_spec(ListenSpec::ListenFds)
    }

    fn from_spec(spec: ListenSpec) -> Self {
        Self {
            spec,
            policy: ListenerPolicy::default(),
        }
    }

    /// Whether connections start with a PROXY protocol header (version 1 or 2)
    /// from a load balancer in front: [`ProxyProtocol::Off`] (the default),
    /// `Optional` or `Required`. The header is read on the connection's reactor
    /// before [`Handler::on_open`](crate::Handler::on_open), bounded in size
    /// ([`MAX_PROXY_HEADER`](crate::MAX_PROXY_HEADER)) and in time
    /// ([`Builder::preamble_timeout`](crate::Builder::preamble_timeout)); the
    /// handler sees the client it names as [`Context::peer_addr`](crate::Context::peer_addr)
    /// and the rest in [`Context::proxy`](crate::Context::proxy), and never a
    /// byte of the header.
    pub fn proxy_protocol(mut self, mode: ProxyProtocol) -> Self {
        self.policy.proxy.mode = mode;
        self
    }

    /// The networks whose peers may send a PROXY header (by default, any peer).
    /// With [`ProxyProtocol::Optional`], what anyone else sends is the client's
    /// own data, never read as a header — so a client connecting directly cannot
    /// claim another address; with [`ProxyProtocol::Required`], anyone else is
    /// refused. Set it whenever clients could reach the listener without going
    /// through the balancer.
    pub fn trusted_proxies(mut self, networks: impl IntoIterator<Item = ipnet::IpNet>) -> Self {
        self.policy.proxy.trusted = networks.into_iter().collect();
        self
    }

    /// Serves TLS on this listener (feature `tls`), with `acceptor`'s
    /// configuration — a `rustls::ServerConfig`, or a
    /// [`TlsAcceptor`](crate::TlsAcceptor) whose configuration can be replaced
    /// while the server runs. The handshake runs on the connection's reactor
    /// before [`Handler::on_open`](crate::Handler::on_open) (after the PROXY
    /// header, if the listener expects one), bounded in time by
    /// [`Builder::preamble_timeout`](crate::Builder::preamble_timeout) and in
    /// number by [`Builder::max_handshakes`](crate::Builder::max_handshakes);
    /// the handler sees plaintext only, and what was negotiated in
    /// [`Context::tls`](crate::Context::tls).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, acceptor: impl Into<crate::tls::TlsAcceptor>) -> Self {
        self.policy.tls = Some(acceptor.into());
        self
    }
}

impl From<ListenSpec> for Listen {
    fn from(spec: ListenSpec) -> Self {
        Self::from_spec(spec)
    }
}

/// A listener to open (or adopt) at start.
#[derive(Debug)]
pub(crate) enum ListenSpec {
    Tcp(SocketAddr),
    Unix(PathBuf),
    TcpListener(std::net::TcpListener),
    UnixListener(std::os::unix::net::UnixListener),
    /// Every socket passed by a service manager (`LISTEN_FDS`).
    ListenFds,
    /// A listening socket handed over by a predecessor process, with the Unix
    /// socket path it serves (this process removes it when it stops).
    Inherited(std::os::fd::OwnedFd, Option<PathBuf>),
}

impl Config {
    /// The options every TCP connection gets.
    pub(crate) fn socket_options(&self) -> SocketOptions {
        SocketOptions {
            nodelay: self.nodelay,
            send_buffer: self.send_buffer,
            recv_buffer: self.recv_buffer,
            keepalive: self.keepalive.clone(),
        }
    }

    /// The options listeners are opened with.
    pub(crate) fn listen_options(&self) -> ListenOptions {
        ListenOptions {
            backlog: self.backlog,
            reuse_port: self.distribution == Distribution::ReusePort,
            socket: self.socket_options(),
        }
    }
}

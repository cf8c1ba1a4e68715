//! Configuration: the [`Builder`], every default and limit (its associated
//! constants), and the one function that validates a configuration before any
//! socket is opened or thread started.
//!
//! Most of this file's length is the documentation of each option: what it
//! bounds, its default and why; it holds no logic beyond `validate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use socket2::TcpKeepalive;

use crate::config::{Config, Distribution, Listen, ListenSpec};
use crate::error::{Error, Result};
use crate::handler::Handler;
use crate::server::Server;

/// Configures and starts a [`Server`]. Made by [`Server::builder`].
///
/// Options are taken by value and checked together by [`start`](Builder::start),
/// which returns [`Error::Config`] naming the option before anything is started.
///
/// # Examples
///
/// ```
/// # use coreloop::{Context, Handler, Server};
/// # use bytes::BytesMut;
/// # struct Echo;
/// # impl Handler for Echo {
/// #     type Conn = ();
/// #     fn on_open(&mut self, _: &mut Context<'_>) {}
/// #     fn on_data(&mut self, _: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
/// #         cx.write(input);
/// #         input.clear();
/// #     }
/// # }
/// # fn main() -> coreloop::Result<()> {
/// let server = Server::builder()
///     .reactors(2)
///     .bind(([127, 0, 0, 1], 0))
///     .start(|_reactor| Echo)?;
/// println!("listening on {}", server.local_addrs()[0]);
/// server.shutdown(std::time::Duration::from_secs(1))?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct Builder {
    config: Config,
    listeners: Vec<Listen>,
}

/// Defaults, and the limits `start` enforces.
impl Builder {
    /// Default listen backlog: the argument to `listen()`. Large enough to absorb a
    /// burst of connects while the acceptor is busy or paused at the connection
    /// cap; the kernel caps it further at `net.core.somaxconn`.
    pub const DEFAULT_BACKLOG: u32 = 1024;

    /// Default size of each reactor's shared read buffer (64 KiB): one read takes
    /// up to this much, and it is allocated once per reactor, never per connection.
    pub const DEFAULT_READ_BUFFER: usize = 64 * 1024;

    /// Default number of full reads one connection gets per loop turn before the
    /// reactor serves others (fairness): with the default buffer, 1 MiB per turn.
    pub const DEFAULT_READ_BUDGET: usize = 16;

    /// Default bound on each reactor's command inbox (commands from a `Handle`).
    pub const DEFAULT_INBOX_CAPACITY: usize = 64 * 1024;

    /// Default cap on open connections across all reactors (2^20).
    pub const DEFAULT_MAX_CONNECTIONS: usize = 1 << 20;

    /// Default output high watermark (256 KiB): above it the reactor stops reading
    /// the connection until its queued output drains below the low watermark.
    pub const DEFAULT_HIGH_WATERMARK: usize = 256 * 1024;

    /// Default output low watermark (64 KiB).
    pub const DEFAULT_LOW_WATERMARK: usize = 64 * 1024;

    /// Default limit on output queued for one connection (64 MiB): past it the
    /// connection is closed, since its peer is not reading.
    pub const DEFAULT_MAX_OUTPUT: usize = 64 * 1024 * 1024;

    /// Default limit on input a handler may leave unconsumed (1 MiB).
    pub const DEFAULT_MAX_INPUT: usize = 1024 * 1024;

    /// Default linger time (2 s): after a graceful close sends its FIN, how long
    /// the reactor waits for the peer to close before closing anyway.
    pub const DEFAULT_LINGER: Duration = Duration::from_secs(2);

    /// Default time an outbound connect may take before it fails with `TimedOut`
    /// (10 s).
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Default pause after `accept` fails for lack of descriptors or memory
    /// (250 ms).
    pub const DEFAULT_ACCEPT_BACKOFF: Duration = Duration::from_millis(250);

    /// Default limit on the handler's timers armed at once on one reactor
    /// (2^20, about 64 MiB of wheel entries at most).
    pub const DEFAULT_MAX_TIMERS: usize = 1 << 20;

    /// The most reactors a server may run: one per core is the intent; this only
    /// refuses absurd values before threads are spawned.
    pub const MAX_REACTORS: usize = 1024;

    /// The largest socket buffer size accepted by
    /// [`send_buffer_size`](Builder::send_buffer_size) and
    /// [`recv_buffer_size`](Builder::recv_buffer_size) (1 GiB); the kernel caps it
    /// further (`net.core.wmem_max`, `net.core.rmem_max`).
    pub const MAX_SOCKET_BUFFER: usize = 1 << 30;

    /// The longest [`linger`](Builder::linger) time (60 s).
    pub const MAX_LINGER: Duration = Duration::from_secs(60);

    /// Default time a connection has to complete its preamble — its PROXY
    /// protocol header, its TLS handshake — before it is closed (5 s).
    pub const DEFAULT_PREAMBLE_TIMEOUT: Duration = Duration::from_secs(5);

    /// Default most TLS handshakes in progress at once on one reactor (64).
    pub const DEFAULT_MAX_HANDSHAKES: usize = 64;
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            config: Config {
                reactors: num_cpus::get(),
                backlog: Self::DEFAULT_BACKLOG,
                nodelay: true,
                read_buffer: Self::DEFAULT_READ_BUFFER,
                read_budget: Self::DEFAULT_READ_BUDGET,
                inbox_capacity: Self::DEFAULT_INBOX_CAPACITY,
                max_connections: Self::DEFAULT_MAX_CONNECTIONS,
                high_watermark: Self::DEFAULT_HIGH_WATERMARK,
                low_watermark: Self::DEFAULT_LOW_WATERMARK,
                max_input: Self::DEFAULT_MAX_INPUT,
                max_output: Self::DEFAULT_MAX_OUTPUT,
                accept_backoff: Self::DEFAULT_ACCEPT_BACKOFF,
                idle_timeout: None,
                linger: Self::DEFAULT_LINGER,
                connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
                max_timers: Self::DEFAULT_MAX_TIMERS,
                preamble_timeout: Self::DEFAULT_PREAMBLE_TIMEOUT,
                max_handshakes: Self::DEFAULT_MAX_HANDSHAKES,
                handover: None,
                policies: std::sync::Arc::from(Vec::new()),
                distribution: Distribution::RoundRobin,
                send_buffer: None,
                recv_buffer: None,
                keepalive: None,
                pin_cores: false,
            },
            listeners: Vec::new(),
        }
    }
}

impl Builder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Number of reactor threads (event loops). Default: the CPU count as
    /// `num_cpus::get()` reports it (honouring cgroup quotas and affinity).
    pub fn reactors(mut self, n: usize) -> Self {
        self.config.reactors = n;
        self
    }

    /// Adds a TCP listener on `addr`. May be called more than once: every listener
    /// feeds the same reactors. Port 0 asks the OS for a free port; read it back with
    /// [`Server::local_addrs`].
    pub fn bind(mut self, addr: impl Into<SocketAddr>) -> Self {
        self.listeners.push(ListenSpec::Tcp(addr.into()).into());
        self
    }

    /// Adds a Unix domain socket listener at `path`, beside any TCP listeners.
    ///
    /// A socket file left at `path` by a crashed run (nobody accepts on it) is
    /// removed first; a path where another process accepts, or that is not a socket,
    /// is never touched and the start fails with [`Error::Bind`](crate::Error::Bind).
    /// The file is removed when the server stops.
    pub fn bind_unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.listeners.push(ListenSpec::Unix(path.into()).into());
        self
    }

    /// Adds a TCP listener the caller opened (bound and listening already; its
    /// backlog is left as it is). It is made nonblocking, and the connection
    /// options (`TCP_NODELAY`, buffer sizes, keepalive) are set on it for accepted
    /// sockets to inherit.
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.listeners.push(ListenSpec::TcpListener(listener).into());
        self
    }

    /// Adds a Unix domain socket listener the caller opened; its path is left alone
    /// when the server stops.
    pub fn unix_listener(mut self, listener: std::os::unix::net::UnixListener) -> Self {
        self.listeners.push(ListenSpec::UnixListener(listener).into());
        self
    }

    /// Adds every listening socket passed by a service manager (systemd socket
    /// activation: `LISTEN_FDS`, and `LISTEN_PID` when set), TCP or Unix, through
    /// the `listenfd` crate.
    ///
    /// # Errors
    ///
    /// At start, [`Error::Bind`](crate::Error::Bind) if `LISTEN_FDS` passes no
    /// socket, or one that is not a TCP or Unix stream listener.
    pub fn listen_fds(mut self) -> Self {
        self.listeners.push(ListenSpec::ListenFds.into());
        self
    }

    /// Adds a listener configured with [`Listen`]: where to listen, and what its
    /// connections start with (a PROXY protocol header from a load balancer).
    /// [`bind`](Self::bind) and the others are shorthands for a plain one.
    ///
    /// # Examples
    ///
    /// ```
    /// use coreloop::{Listen, ProxyProtocol, Server};
    /// let builder = Server::builder()
    ///     .listen(Listen::tcp(([127, 0, 0, 1], 0)).proxy_protocol(ProxyProtocol::Required));
    /// ```
    pub fn listen(mut self, listen: Listen) -> Self {
        self.listeners.push(listen);
        self
    }

    /// How long a connection may take over its preamble — the PROXY protocol
    /// header of a listener that expects one, and the TLS handshake of a TLS
    /// connection — before it is closed
    /// ([`ProxyError::Late`](crate::ProxyError::Late), or `TlsError::Late`
    /// with the `tls` feature); with
    /// [`ProxyProtocol::Optional`](crate::ProxyProtocol::Optional), a connection
    /// that has sent nothing by then is opened without a header. A client that
    /// sends nothing, or its hello a byte at a time, is closed at it. Default
    /// [`DEFAULT_PREAMBLE_TIMEOUT`](Self::DEFAULT_PREAMBLE_TIMEOUT); 1 ms to 60 s.
    pub fn preamble_timeout(mut self, timeout: Duration) -> Self {
        self.config.preamble_timeout = timeout;
        self
    }

    /// Zero-downtime restarts through a Unix socket at `path`: at start, if a
    /// running server (an earlier run of this program) answers there, this one
    /// takes over its listening sockets — in the order of this builder's
    /// listeners, which must match its — instead of binding, and once serving
    /// tells it to drain ([`Handle::drain`](crate::Handle::drain), for at most
    /// `grace`). Then it waits at `path` to hand over in its turn. No connection
    /// attempt is refused or reset during the change, those waiting in the accept
    /// queue included, and the old process finishes its connections.
    ///
    /// With nothing at `path`, the server binds as usual. Not with
    /// [`Distribution::ReusePort`] (one listener per reactor) or
    /// [`listen_fds`](Self::listen_fds) (the service manager holds the sockets
    /// already: restarts are its business). The guide's chapter
    /// [Scaling out](crate::guide::scaling_out) has the procedure.
    ///
    /// # Errors
    ///
    /// At start, [`Error::Handover`](crate::Error::Handover) if a server answers
    /// at `path` but the takeover fails, or its listeners do not match.
    pub fn handover(mut self, path: impl Into<PathBuf>, grace: Duration) -> Self {
        self.config.handover = Some((path.into(), grace));
        self
    }

    /// How connections are spread over the reactors. Default
    /// [`Distribution::RoundRobin`].
    ///
    /// All three balance connections, not traffic, and cost the same per message;
    /// they differ in what a new connection costs and how it is placed:
    /// round-robin for alike, long-lived connections (exact counts);
    /// least-connections when lifetimes differ a lot (closes leave reactors
    /// uneven); reuse-port for high rates of short connections (no hand-off from
    /// an acceptor thread). BENCHMARKS.md in the repository measures them.
    ///
    /// # Examples
    ///
    /// ```
    /// use coreloop::{Distribution, Server};
    /// let builder = Server::builder()
    ///     .distribution(Distribution::LeastConnections)
    ///     .bind(([127, 0, 0, 1], 0));
    /// ```
    pub fn distribution(mut self, distribution: Distribution) -> Self {
        self.config.distribution = distribution;
        self
    }

    /// How long an outbound connect may take before it fails with `TimedOut`.
    /// Default [`DEFAULT_CONNECT_TIMEOUT`](Self::DEFAULT_CONNECT_TIMEOUT); more than
    /// zero. Any longer duration is accepted: one too long for the clock to
    /// represent (`Duration::MAX`) means no timeout in practice.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// The listen backlog (the argument to `listen()`): how many connections the
    /// kernel completes and queues while the acceptor is busy or paused at the
    /// connection cap; past it new connects wait (their SYN is dropped and
    /// retried). Default [`DEFAULT_BACKLOG`](Self::DEFAULT_BACKLOG); the kernel caps it at
    /// `net.core.somaxconn`. Listeners passed in already listening keep theirs.
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.config.backlog = backlog;
        self
    }

    /// Whether TCP connections get `TCP_NODELAY` (Nagle's algorithm off).
    /// Default `true`: a server answering requests should not hold small replies back.
    ///
    /// Like every connection option, it is set on the listener, which accepted
    /// sockets inherit on Linux (no `setsockopt` per accepted connection), and on
    /// each outbound socket. `SO_REUSEADDR` is always set on listeners coreloop
    /// opens.
    pub fn nodelay(mut self, on: bool) -> Self {
        self.config.nodelay = on;
        self
    }

    /// The kernel send buffer size (`SO_SNDBUF`) of connections. Default: the
    /// kernel's, which grows it on demand for TCP (`net.ipv4.tcp_wmem`); setting
    /// it fixes it. Linux doubles the value for its bookkeeping and caps it at
    /// `net.core.wmem_max`. 1 byte to [`MAX_SOCKET_BUFFER`](Self::MAX_SOCKET_BUFFER).
    ///
    /// TCP sockets inherit it from the listener; accepted Unix sockets do not, so
    /// for them it costs one `setsockopt` per accept (only when set).
    pub fn send_buffer_size(mut self, bytes: usize) -> Self {
        self.config.send_buffer = Some(bytes);
        self
    }

    /// The kernel receive buffer size (`SO_RCVBUF`) of connections; for TCP set
    /// before `listen`/`connect`, so it also sizes the window scale. Default: the
    /// kernel's (auto-tuned for TCP, `net.ipv4.tcp_rmem`). Linux doubles the value
    /// and caps it at `net.core.rmem_max`. 1 byte to [`MAX_SOCKET_BUFFER`](Self::MAX_SOCKET_BUFFER). Unix
    /// sockets: as for [`send_buffer_size`](Self::send_buffer_size).
    pub fn recv_buffer_size(mut self, bytes: usize) -> Self {
        self.config.recv_buffer = Some(bytes);
        self
    }

    /// TCP keepalive for connections (`SO_KEEPALIVE`, with the idle time, probe
    /// interval and probe count of `keepalive`): finds peers that vanished without
    /// a FIN on connections that are otherwise quiet. Off by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use coreloop::{Server, TcpKeepalive};
    /// let builder = Server::builder().keepalive(
    ///     TcpKeepalive::new()
    ///         .with_time(Duration::from_secs(60))
    ///         .with_interval(Duration::from_secs(10))
    ///         .with_retries(5),
    /// );
    /// ```
    pub fn keepalive(mut self, keepalive: TcpKeepalive) -> Self {
        self.config.keepalive = Some(keepalive);
        self
    }

    /// Pins reactor *i* to the *i*-th CPU this process may run on (through the
    /// `core_affinity` crate), so a reactor keeps its caches and never migrates.
    /// With more reactors than CPUs, the reactors past the last CPU run unpinned
    /// and a warning is logged; the server starts all the same. Off by default:
    /// pinning helps on a machine dedicated to the server and hurts when other
    /// busy processes share the cores.
    pub fn pin_cores(mut self, on: bool) -> Self {
        self.config.pin_cores = on;
        self
    }

    /// Size of each reactor's shared read buffer. Default [`DEFAULT_READ_BUFFER`](Self::DEFAULT_READ_BUFFER);
    /// 1 KiB to 16 MiB.
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.config.read_buffer = bytes;
        self
    }

    /// Full reads one connection gets per loop turn before others are served.
    /// Default [`DEFAULT_READ_BUDGET`](Self::DEFAULT_READ_BUDGET).
    pub fn read_budget(mut self, reads: usize) -> Self {
        self.config.read_budget = reads;
        self
    }

    /// Bound on each reactor's command inbox: a [`Handle`](crate::Handle) command
    /// sent to a reactor whose inbox is full fails with
    /// [`Error::InboxFull`](crate::Error::InboxFull). Default [`DEFAULT_INBOX_CAPACITY`](Self::DEFAULT_INBOX_CAPACITY).
    pub fn inbox_capacity(mut self, commands: usize) -> Self {
        self.config.inbox_capacity = commands;
        self
    }

    /// Cap on open connections across all reactors. At the cap the acceptor stops
    /// accepting — new connections wait in the kernel's listen backlog, none is
    /// accepted and dropped — and resumes as soon as one closes.
    /// Default [`DEFAULT_MAX_CONNECTIONS`](Self::DEFAULT_MAX_CONNECTIONS).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// Output back-pressure per connection, in bytes queued and not yet taken by
    /// the socket. Above `high` the reactor stops reading the connection (so a peer
    /// that sends and never reads cannot grow the server's memory); once the queue
    /// drains to `low` or below, reading resumes. Defaults
    /// [`DEFAULT_LOW_WATERMARK`](Self::DEFAULT_LOW_WATERMARK) and [`DEFAULT_HIGH_WATERMARK`](Self::DEFAULT_HIGH_WATERMARK).
    pub fn write_watermarks(mut self, low: usize, high: usize) -> Self {
        self.config.low_watermark = low;
        self.config.high_watermark = high;
        self
    }

    /// The most input a handler may leave unconsumed (a partial frame). A
    /// connection whose unconsumed input grows past it is closed with
    /// [`CloseReason::InputLimit`](crate::CloseReason::InputLimit). Default
    /// [`DEFAULT_MAX_INPUT`](Self::DEFAULT_MAX_INPUT).
    pub fn max_input(mut self, bytes: usize) -> Self {
        self.config.max_input = bytes;
        self
    }

    /// The most output that may be queued for one connection (written by its
    /// handler or sent with [`Handle::send`](crate::Handle::send) and not yet taken
    /// by the socket). Past it the connection is closed with
    /// [`CloseReason::OutputLimit`](crate::CloseReason::OutputLimit): the watermarks
    /// stop a connection's own input from growing its queue, this bounds what
    /// others send to a peer that does not read. Default [`DEFAULT_MAX_OUTPUT`](Self::DEFAULT_MAX_OUTPUT); at
    /// least the high watermark.
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.config.max_output = bytes;
        self
    }

    /// Closes connections with no traffic in either direction for `timeout`
    /// ([`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout)), after
    /// [`Handler::on_limit`](crate::Handler::on_limit) could write a last reply.
    /// Off (`None`) by default. A connection closes a millisecond or two after its
    /// timeout (activity is timed at the start of the loop turn that saw it); the
    /// cost is one store per read or write and one timer re-armed per timeout
    /// period per busy connection. At least 1 ms; any longer duration is accepted
    /// (`Duration::MAX` never fires in practice).
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.idle_timeout = timeout.into();
        self
    }

    /// How long a graceful close waits for the peer's end of stream after sending
    /// its FIN. A graceful close (the handler's, a `Handle`'s, or shutdown's) first
    /// writes every queued byte, then shuts down the sending side and reads (and
    /// drops) input until the peer closes, so a peer still sending cannot make the
    /// kernel reset the connection and discard the end of the reply. Zero closes
    /// right after the FIN. Default [`DEFAULT_LINGER`](Self::DEFAULT_LINGER); at most 60 s.
    pub fn linger(mut self, time: Duration) -> Self {
        self.config.linger = time;
        self
    }

    /// How long the acceptor pauses when `accept` fails for lack of descriptors
    /// or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`), instead of retrying in a
    /// busy loop. Default [`DEFAULT_ACCEPT_BACKOFF`](Self::DEFAULT_ACCEPT_BACKOFF); 1 ms to 60 s.
    pub fn accept_backoff(mut self, pause: Duration) -> Self {
        self.config.accept_backoff = pause;
        self
    }

    /// The most timers the handler may have armed at once on one reactor
    /// ([`Context::set_timer`](crate::Context::set_timer),
    /// [`ReactorContext::set_timer`](crate::ReactorContext::set_timer)); past it
    /// arming fails with [`Error::TimerLimit`](crate::Error::TimerLimit). The
    /// reactor's own timers (idle, linger, connect) are bounded by its
    /// connections and not counted. Default
    /// [`DEFAULT_MAX_TIMERS`](Self::DEFAULT_MAX_TIMERS); at least 1.
    pub fn max_timers(mut self, timers: usize) -> Self {
        self.config.max_timers = timers;
        self
    }

    /// The most TLS handshakes in progress at once on one reactor (feature
    /// `tls`): a handshake costs public-key operations, so a burst of new
    /// connections is served a few at a time while established ones go on being
    /// served. A connection beyond it waits, unread, for a place (its
    /// [`preamble_timeout`](Self::preamble_timeout) runs meanwhile). Default
    /// [`DEFAULT_MAX_HANDSHAKES`](Self::DEFAULT_MAX_HANDSHAKES); at least 1.
    pub fn max_handshakes(mut self, handshakes: usize) -> Self {
        self.config.max_handshakes = handshakes;
        self
    }

    /// Validates the configuration, opens every listener, calls `factory` once per
    /// reactor (with the reactor's index) and starts the threads.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting (nothing is opened or started),
    /// [`Error::Bind`] naming the address that failed, [`Error::Setup`] if a poll
    /// instance or thread cannot be created.
    pub fn start<H, F, M>(self, factory: F) -> Result<Server<M>>
    where
        H: Handler<M>,
        F: FnMut(usize) -> H,
        M: Send + 'static,
    {
        self.validate()?;
        Server::start(self.config, self.listeners, factory)
    }

    /// Refuses every invalid setting, naming the option. Runs before any socket is
    /// opened or thread spawned.
    fn validate(&self) -> Result<()> {
        let refuse = |option, reason: String| Err(Error::Config { option, reason });
        let c = &self.config;
        if c.reactors == 0 {
            return refuse("reactors", "must be at least 1".into());
        }
        if c.reactors > Self::MAX_REACTORS {
            return refuse(
                "reactors",
                format!("{} is more than the maximum of {}", c.reactors, Self::MAX_REACTORS),
            );
        }
        if c.backlog == 0 {
            return refuse("backlog", "must be at least 1".into());
        }
        if !(1024..=16 * 1024 * 1024).contains(&c.read_buffer) {
            return refuse(
                "read_buffer_size",
                format!("{} is outside 1 KiB..=16 MiB", c.read_buffer),
            );
        }
        if c.read_budget == 0 {
            return refuse("read_budget", "must be at least 1".into());
        }
        if c.inbox_capacity == 0 {
            return refuse("inbox_capacity", "must be at least 1".into());
        }
        if c.max_connections == 0 {
            return refuse("max_connections", "must be at least 1".into());
        }
        if c.high_watermark == 0 {
            return refuse("write_watermarks", "the high watermark must be at least 1".into());
        }
        if c.low_watermark > c.high_watermark {
            return refuse(
                "write_watermarks",
                format!("low ({}) is above high ({})", c.low_watermark, c.high_watermark),
            );
        }
        if c.max_input == 0 {
            return refuse("max_input", "must be at least 1".into());
        }
        if c.max_output < c.high_watermark {
            return refuse(
                "max_output",
                format!("{} is below the high watermark ({})", c.max_output, c.high_watermark),
            );
        }
        if c.accept_backoff < Duration::from_millis(1) || c.accept_backoff > Duration::from_secs(60) {
            return refuse(
                "accept_backoff",
                format!(
                    "{:?} is outside 1 ms..=60 s (zero would retry accept in a busy loop)",
                    c.accept_backoff
                ),
            );
        }
        if c.preamble_timeout < Duration::from_millis(1) || c.preamble_timeout > Duration::from_secs(60) {
            return refuse(
                "preamble_timeout",
                format!("{:?} is outside 1 ms..=60 s", c.preamble_timeout),
            );
        }
        if c.max_handshakes == 0 {
            return refuse("max_handshakes", "must be at least 1".into());
        }
        if c.max_timers == 0 {
            return refuse("max_timers", "must be at least 1".into());
        }
        if c.connect_timeout.is_zero() {
            return refuse("connect_timeout", "must be more than zero".into());
        }
        if c.linger > Self::MAX_LINGER {
            return refuse("linger", format!("{:?} is more than {:?}", c.linger, Self::MAX_LINGER));
        }
        for (option, size) in [("send_buffer_size", c.send_buffer), ("recv_buffer_size", c.recv_buffer)] {
            if let Some(n) = size
                && !(1..=Self::MAX_SOCKET_BUFFER).contains(&n)
            {
                return refuse(option, format!("{n} is outside 1..={}", Self::MAX_SOCKET_BUFFER));
            }
        }
        if c.idle_timeout.is_some_and(|t| t < Duration::from_millis(1)) {
            return refuse(
                "idle_timeout",
                "must be at least 1 ms; pass `None` to turn it off".into(),
            );
        }
        if c.handover.is_some() {
            if c.distribution == Distribution::ReusePort {
                return refuse(
                    "handover",
                    "not with reuse-port distribution (one listener per reactor)".into(),
                );
            }
            if self.listeners.iter().any(|l| matches!(l.spec, ListenSpec::ListenFds)) {
                return refuse(
                    "handover",
                    "not with listen_fds: the service manager holds the sockets across restarts".into(),
                );
            }
            if self.listeners.is_empty() {
                return refuse("handover", "there is no listener to hand over".into());
            }
            if self.listeners.len() > crate::handover::MAX_LISTENERS {
                return refuse(
                    "handover",
                    format!("at most {} listeners", crate::handover::MAX_LISTENERS),
                );
            }
        }
        if c.distribution == Distribution::ReusePort {
            if !cfg!(target_os = "linux") {
                return refuse("distribution", "reuse-port distribution needs Linux".into());
            }
            if self.listeners.iter().any(|l| !matches!(l.spec, ListenSpec::Tcp(_))) {
                return refuse(
                    "distribution",
                    "reuse-port distribution serves TCP `bind` addresses only".into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Builder::default().validate().unwrap();
    }

    #[test]
    fn inverted_watermarks_name_the_option() {
        let e = Builder::default()
            .write_watermarks(20, 10)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("write_watermarks") && e.contains("above high"), "{e}");
    }
}

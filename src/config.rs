//! The configuration a server runs with: [`Config`], the [`Distribution`]
//! strategies, and the listeners to open ([`ListenSpec`]).
//!
//! Plain data, read by every thread after start. What the defaults are and which
//! values are allowed belongs to the builder (`builder.rs`), which validates a
//! configuration before any of it is used.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use socket2::TcpKeepalive;

use crate::net::{ListenOptions, SocketOptions};

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
    pub(crate) distribution: Distribution,
    pub(crate) send_buffer: Option<usize>,
    pub(crate) recv_buffer: Option<usize>,
    pub(crate) keepalive: Option<TcpKeepalive>,
    pub(crate) pin_cores: bool,
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

//! # coreloop
//!
//! An event-loop library sized to the machine: **one reactor thread per CPU core**,
//! each polling its own slab of nonblocking sockets with [mio], and **one shared
//! acceptor** that accepts connections and hands them to the reactors.
//!
//! A listening port can carry any number of connections; what limits a server is
//! how much work it spends per connection and per message. coreloop serves every
//! connection from a fixed, small set of loops — not a thread, task or process per
//! client — so the cost of a connection is its socket and a slab entry, and the
//! cost of a message is one `read`, one `write` and a share of one `epoll_wait`.
//!
//! ## The model
//!
//! ```text
//!             listeners (TCP, backlog = config)
//!                      │ readable
//!                 ┌────▼─────┐   inbox + mio::Waker, one wake per accept batch
//!                 │ acceptor │──────────────┬──────────────┐
//!                 └──────────┘              │              │
//!                                     ┌─────▼────┐   ┌─────▼────┐
//!    Handle (Clone + Send + Sync) ───►│reactor 0 │   │reactor 1 │ …one per core
//!    shutdown / stats via inboxes     │Poll+Slab │   │Poll+Slab │
//!                                     └──────────┘   └──────────┘
//! ```
//!
//! - The **acceptor** (thread `coreloop-acceptor`) accepts until the listener is
//!   drained and hands connections out round-robin (or, with
//!   [`Distribution::LeastConnections`], to the reactor with the fewest); each
//!   reactor that received some is woken once per batch. With
//!   [`Distribution::ReusePort`] there is no acceptor: each reactor accepts on its
//!   own `SO_REUSEPORT` listener.
//! - A **reactor** (thread `coreloop-reactor-{i}`) owns each connection it is given
//!   for that connection's whole life: connection state needs no locks. Sockets are
//!   registered once, edge-triggered, for both directions.
//! - Your code is a [`Handler`]: one instance per reactor, made by the factory you
//!   pass to [`Builder::start`]. Per-connection state is the handler's associated
//!   type [`Handler::Conn`], stored inline in the reactor's slab.
//!
//! ## What a handler sees
//!
//! [`Handler::on_data`] receives every byte not yet consumed as a `&mut BytesMut`:
//! consume what forms complete messages and leave the rest; it is handed back with
//! the next bytes. Writes made through the [`Context`] during a callback are sent
//! with one `write` after the callback returns; what the socket does not take is
//! queued and sent when the socket becomes writable. Reads go through one buffer per
//! reactor, so an idle connection holds no buffer at all.
//!
//! A panic in a callback is caught: that connection closes with
//! [`CloseReason::Panic`] and the reactor goes on serving the others.
//!
//! Beyond bytes in and out, a handler gets what protocols need from the loop:
//!
//! - **flow control**: [`Context::is_writable`] says when the connection's queued
//!   output is over the high watermark; a handler that stops answering then gets
//!   [`Handler::on_data`] again with what it left, without new bytes from the
//!   peer, once the output drains (and [`Handler::on_writable`] for output it
//!   produces on its own);
//! - **timers**: [`Context::set_timer`] on a connection ([`Handler::on_timer`]),
//!   [`ReactorContext::set_timer`] on the reactor ([`Handler::on_reactor_timer`],
//!   armed at [`Handler::on_start`]), in one wheel per reactor: O(1) to arm and
//!   cancel, never early, never for a closed connection;
//! - **last words**: [`Handler::on_limit`] may write a final reply before a limit
//!   (input, idle time) closes the connection gracefully.
//!
//! [`guide::writing_a_protocol`] builds a Redis-protocol server from these, step
//! by step. [`guide::scaling_out`] runs servers behind HAProxy or nginx with the
//! PROXY protocol ([`Listen::proxy_protocol`]) and restarts them without
//! dropping a connection ([`Builder::handover`]). [`guide::tls`] serves TLS on
//! the reactors with rustls (cargo feature `tls`).
//!
//! ## Example: an echo server
//!
//! ```
//! use std::io::{Read, Write};
//! use std::time::Duration;
//!
//! use bytes::BytesMut;
//! use coreloop::{Context, Handler, Server};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     type Conn = ();
//!
//!     fn on_open(&mut self, _cx: &mut Context<'_>) {}
//!
//!     fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
//!         cx.write(input); // sent once the callback returns
//!         input.clear(); // all consumed
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder()
//!     .reactors(2)
//!     .bind(([127, 0, 0, 1], 0))
//!     .start(|_reactor_index| Echo)?;
//!
//! let mut client = std::net::TcpStream::connect(server.local_addrs()[0])?;
//! client.write_all(b"hello")?;
//! let mut reply = [0; 5];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"hello");
//!
//! let report = server.shutdown(Duration::from_secs(1))?;
//! assert_eq!(report.stats.total().accepted, 1);
//! # Ok(())
//! # }
//! ```
//!
//! ## Limits
//!
//! Every buffer and count is bounded, so a hostile or slow client costs a bounded
//! amount of memory and CPU ([`Builder`] sets each):
//!
//! - **connections**: at [`Builder::max_connections`] the acceptor stops accepting;
//!   clients wait in the kernel backlog until a connection closes;
//! - **output**: above the high watermark ([`Builder::write_watermarks`]) the reactor
//!   stops reading a connection until its peer drains the queue;
//! - **input**: a handler that leaves more than [`Builder::max_input`] unconsumed gets
//!   the connection closed ([`CloseReason::InputLimit`]);
//! - **output sent by others**: a connection with more than [`Builder::max_output`]
//!   queued (its peer does not read what [`Handle::send`] pushes) is closed
//!   ([`CloseReason::OutputLimit`]);
//! - **time**: [`Builder::idle_timeout`] closes silent connections;
//! - **descriptors**: when `accept` runs out of them it pauses for
//!   [`Builder::accept_backoff`] instead of spinning.
//!
//! ## Closing
//!
//! A graceful close ([`Context::close`], [`Handle::close`], shutdown) writes every
//! queued byte, sends a FIN, then reads and drops input until the peer closes (at
//! most [`Builder::linger`]): closing a socket with unread input would make the
//! kernel reset it and discard the reply's last bytes.
//!
//! ## Beyond the connection a request came in on
//!
//! - [`Handle`] (`Clone + Send + Sync`) reaches any connection from any thread,
//!   including from a handler on another reactor: [`Handle::send`] queues bytes,
//!   [`Handle::message`] runs [`Handler::on_message`] on the connection's own
//!   reactor, [`Handle::close`] closes. Messages are typed: a handler taking
//!   messages of type `M` implements `Handler<M>` and its handle is a
//!   `Handle<M>`, so a message of another type does not compile. A command for a
//!   connection that has closed is dropped (and counted as
//!   [`ReactorStats::stale`]), never delivered to a connection reusing its slot.
//! - [`Handle::broadcast`] sends one message to every reactor, and
//!   [`Handle::message_reactor`] to one: [`Handler::on_reactor_message`] runs with
//!   a [`ReactorContext`] that writes to, closes and visits every connection of
//!   that reactor — a fan-out to any number of connections crosses threads once
//!   per reactor.
//! - [`Handle::connect`] and [`Context::connect`] open outbound TCP or Unix
//!   connections served by the same handler ([`Context::origin`] tells them apart;
//!   failures reach [`Handler::on_connect_error`]).
//! - Listeners can be TCP ([`Builder::bind`]), Unix ([`Builder::bind_unix`]), opened
//!   by the caller ([`Builder::listener`]) or passed by systemd
//!   ([`Builder::listen_fds`]).
//!
//! ## Distribution, sockets and observability
//!
//! - [`Builder::distribution`] picks how connections are spread:
//!   [`Distribution::RoundRobin`] (default; exact balance by count),
//!   [`Distribution::LeastConnections`] (fills reactors emptied by closes; suits
//!   connections of very different lifetimes), [`Distribution::ReusePort`] (no
//!   hand-off: the cheapest per new connection; balance is the kernel's hash).
//! - Socket options are set through `socket2` on the listener, before `listen`,
//!   and inherited by accepted sockets: [`Builder::backlog`], [`Builder::nodelay`],
//!   [`Builder::send_buffer_size`], [`Builder::recv_buffer_size`],
//!   [`Builder::keepalive`]; [`Context::socket`] reaches one connection's socket.
//! - [`Builder::pin_cores`] pins reactor *i* to CPU *i*.
//! - [`Handle::stats`] returns every reactor's counters with totals
//!   ([`Stats::total`]); printing a [`Stats`] gives a table.
//!
//! ## Shutdown
//!
//! [`Handle::shutdown`] closes the listeners first, then each reactor notifies its
//! handlers ([`Handler::on_shutdown`]), writes what is queued for up to the grace
//! period and closes every connection ([`Handler::on_close`] sees
//! [`CloseReason::Shutdown`]). [`Server::join`] returns every reactor's final
//! counters and whether the flush completed in time.
//!
//! ## Logging
//!
//! coreloop never prints. It logs through the [`log`] facade: the server's start
//! (reactors, distribution, endpoints) at `info`; connection life (open, close and
//! why) at `trace`; accept back-off at `warn` (rate-limited: one line per 5 s, with
//! the count of failures folded into it); handler panics, a stale Unix socket file
//! removed, and pinning that could not be done at `warn`; a reactor or acceptor
//! that stops at `error`.
//!
//! [mio]: https://docs.rs/mio

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod acceptor;
mod admission;
mod builder;
mod config;
mod conn;
mod context;
mod endpoint;
mod error;
pub mod guide;
mod handle;
mod handler;
mod handover;
mod id;
mod inbox;
mod local;
mod net;
mod outbuf;
mod proxy;
mod reactor;
mod reason;
mod server;
mod stats;
mod timer;
#[cfg(feature = "tls")]
mod tls;
mod token;

pub use builder::Builder;
pub use config::{Distribution, Listen};
pub use context::{Context, Origin};
pub use endpoint::{Endpoint, PeerAddr};
pub use error::{Error, Result};
pub use handle::Handle;
pub use handler::Handler;
pub use id::ConnId;
pub use local::{LocalConn, ReactorContext};
pub use proxy::{MAX_HEADER as MAX_PROXY_HEADER, ProxyError, ProxyHeader, ProxyProtocol};
pub use reason::CloseReason;
/// The rustls this crate speaks (feature `tls`), for its `ServerConfig`,
/// `ClientConfig` and certificate types.
#[cfg(feature = "tls")]
pub use rustls;
pub use server::{Report, Server};
pub use stats::{ReactorStats, Stats};
pub use timer::TimerId;
#[cfg(feature = "tls")]
pub use tls::{CIPHERTEXT_LIMIT as TLS_CIPHERTEXT_LIMIT, TlsAcceptor, TlsError, TlsInfo};

/// The `ipnet` crate, whose networks [`Listen::trusted_proxies`] takes
/// (`"10.0.0.0/8".parse::<ipnet::IpNet>()`), re-exported so versions match.
pub use ipnet;
/// The `socket2` crate coreloop sets socket options with, re-exported so that
/// [`Context::socket`] and [`TcpKeepalive`] match the version in use.
pub use socket2;
/// TCP keepalive timings for [`Builder::keepalive`] (from `socket2`).
pub use socket2::TcpKeepalive;

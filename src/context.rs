//! The [`Context`] a handler callback receives for one connection: what it may
//! know about and do to the connection it is called for.
//!
//! A context only records requests (bytes to write, close, timers); the reactor
//! carries out the writes and closes after the callback returns, which is what
//! lets all of a callback's writes leave in one syscall.
//!
//! The file is a little over 400 lines, nearly half of them documentation: this
//! is the type handler authors read most.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::time::Duration;

use bytes::Bytes;

use crate::endpoint::{Endpoint, PeerAddr};
use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::id::ConnId;
use crate::net::Stream;
use crate::outbuf::OutBuf;
use crate::proxy::ProxyHeader;
use crate::timer::{Due, TimerId, TimerList, Timers};

/// What a handler callback can see and do for the connection it is called for.
///
/// A context records requests — bytes to write, a close, a half-close, timers —
/// and the reactor carries them out once the callback returns: every write of
/// one callback leaves in one `write` (or `writev`) call. `write!(cx, …)` formats
/// straight into the reactor's staging buffer, with no allocation and no trait to
/// import; it implements [`io::Write`] and [`fmt::Write`] too, for code generic
/// over writers.
///
/// `M` is the handler's message type (see [`Handler`](crate::Handler)); a
/// handler without messages writes `Context<'_>`.
///
/// # Examples
///
/// A line-based greeter: greets on open, answers each complete line, says goodbye
/// and closes on `quit`.
///
/// ```
/// use bytes::BytesMut;
/// use coreloop::{Context, Handler};
///
/// struct Greeter;
///
/// impl Handler for Greeter {
///     type Conn = u32; // lines answered on this connection
///
///     fn on_open(&mut self, cx: &mut Context<'_>) -> u32 {
///         let (peer, id) = (cx.peer_addr().clone(), cx.id());
///         writeln!(cx, "hello {peer}, you are {id}");
///         0
///     }
///
///     fn on_data(&mut self, answered: &mut u32, cx: &mut Context<'_>, input: &mut BytesMut) {
///         // Consume complete lines only; a partial line stays in `input`.
///         while let Some(end) = input.iter().position(|&b| b == b'\n') {
///             let line = input.split_to(end + 1);
///             if &line[..] == b"quit\n" {
///                 cx.write(b"bye\n");
///                 cx.close(); // after "bye" is written
///                 return;
///             }
///             *answered += 1;
///             write!(cx, "{answered} ");
///             cx.write(&line);
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Context<'a, M = ()> {
    conn: ConnRef<'a>,
    scope: Scope<'a, M>,
    /// The socket is open: writes are staged (false in `on_close`).
    live: bool,
    requests: Requests,
}

/// The connection a context is for, as the reactor lends it.
#[derive(Debug)]
pub(crate) struct ConnRef<'a> {
    pub(crate) id: ConnId,
    pub(crate) origin: Origin,
    pub(crate) peer: &'a PeerAddr,
    pub(crate) proxy: Option<&'a ProxyHeader>,
    /// The TLS session, on a TLS connection.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<&'a crate::tls::Session>,
    pub(crate) socket: &'a Stream,
    /// Bytes queued for the socket before this callback.
    pub(crate) queued: usize,
    /// Output passed the high watermark and has not drained to the low one.
    pub(crate) over_high: bool,
    /// The connection's timers.
    pub(crate) timers: &'a mut TimerList,
}

/// What the reactor lends every callback: its staging buffer, handle and timers.
#[derive(Debug)]
pub(crate) struct Scope<'a, M> {
    pub(crate) out: &'a mut OutBuf,
    pub(crate) handle: &'a Handle<M>,
    pub(crate) timers: &'a mut Timers,
    pub(crate) high_watermark: usize,
}

impl<'a, M: Send + 'static> Context<'a, M> {
    /// A context for a callback on an open connection: writes go to `out`.
    pub(crate) fn new(conn: ConnRef<'a>, scope: Scope<'a, M>) -> Self {
        Self {
            conn,
            scope,
            live: true,
            requests: Requests::default(),
        }
    }

    /// A context for `on_close`: the socket is closing, writes are discarded.
    pub(crate) fn closed(conn: ConnRef<'a>, scope: Scope<'a, M>) -> Self {
        Self {
            live: false,
            ..Self::new(conn, scope)
        }
    }

    /// The connection's id, valid for its whole life and never for another one.
    pub fn id(&self) -> ConnId {
        self.conn.id
    }

    /// The index of the reactor running this callback.
    pub fn reactor(&self) -> usize {
        self.conn.id.reactor()
    }

    /// How the connection came to be: accepted, or opened by `connect`.
    pub fn origin(&self) -> Origin {
        self.conn.origin
    }

    /// The address of the client: the connection's peer, or — when the
    /// connection came through a load balancer that sent a PROXY protocol header
    /// ([`Listen::proxy_protocol`](crate::Listen::proxy_protocol)) — the client
    /// the header named (the balancer is then [`ProxyHeader::balancer`]).
    pub fn peer_addr(&self) -> &PeerAddr {
        self.conn.peer
    }

    /// What the PROXY protocol header said, if the connection started with one:
    /// the client's and the balancer's addresses, the authority (TLS server name)
    /// and unique id the balancer sent.
    pub fn proxy(&self) -> Option<&ProxyHeader> {
        self.conn.proxy
    }

    /// What was negotiated, on a TLS connection (feature `tls`): the ALPN
    /// protocol, the server name the client asked for (SNI), the protocol
    /// version, the cipher suite, the peer's certificates. `None` on a plain
    /// connection.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<crate::tls::TlsInfo<'_>> {
        self.conn.tls.map(crate::tls::Session::info)
    }

    /// The connection's socket, to read or set a socket option through `socket2`
    /// (for example `cx.socket().recv_buffer_size()`, or `tcp_user_timeout` for one
    /// connection). In [`Handler::on_close`](crate::Handler::on_close) the descriptor
    /// is still open (it closes right after), so options and `TCP_INFO` can be read
    /// there.
    ///
    /// Reading or writing data through it would bypass the reactor's buffers and
    /// break the connection's framing; use [`write`](Self::write) instead.
    pub fn socket(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(self.conn.socket)
    }

    /// Queues `data` to be written after the callback returns (copied into the
    /// reactor's staging buffer: no allocation per call).
    ///
    /// In [`Handler::on_close`](crate::Handler::on_close) the socket is gone and the
    /// bytes are discarded.
    pub fn write(&mut self, data: &[u8]) {
        if self.live {
            self.scope.out.write(data);
        }
    }

    /// Queues `data` without copying it when it is large (from 1 KiB); smaller
    /// buffers are copied like [`write`](Self::write). Useful for sending one shared
    /// payload to many connections.
    pub fn write_bytes(&mut self, data: Bytes) {
        if self.live {
            self.scope.out.write_bytes(data);
        }
    }

    /// Formats into the staging buffer, as [`write`](Self::write) would the
    /// formatted bytes, with no allocation: what `write!(cx, …)` and
    /// `writeln!(cx, …)` call. It cannot fail, so there is nothing to unwrap; this
    /// method takes precedence over the [`io::Write`] and [`fmt::Write`] ones,
    /// so the macros work whichever of those traits is in scope.
    pub fn write_fmt(&mut self, args: fmt::Arguments<'_>) {
        match args.as_str() {
            Some(s) => self.write(s.as_bytes()),
            None => {
                let _ = fmt::Write::write_fmt(self, args);
            }
        }
    }

    /// Bytes waiting to be sent on this connection: those the socket has not
    /// taken yet plus those written during this callback.
    pub fn queued_output(&self) -> usize {
        self.conn.queued + self.scope.out.len()
    }

    /// Whether more output may be produced now: `false` once the queued output
    /// is above the high watermark ([`Builder::write_watermarks`](crate::Builder::write_watermarks)),
    /// and until it has drained to the low one.
    ///
    /// A handler that stops producing when told `false` is called back when it
    /// may go on: [`on_data`](crate::Handler::on_data) again with the input it
    /// left (for replies to requests), and
    /// [`on_writable`](crate::Handler::on_writable) (for output of its own).
    pub fn is_writable(&self) -> bool {
        let writable = !self.conn.over_high && self.queued_output() <= self.scope.high_watermark;
        if !writable {
            self.requests.held_back.set(true);
        }
        writable
    }

    /// Closes the connection once every queued byte is written (a graceful close);
    /// no further input is delivered for it.
    pub fn close(&mut self) {
        self.requests.close = true;
    }

    /// Shuts down the sending side (sends a FIN) once every queued byte is
    /// written, keeping the connection open for input: the peer sees end of stream
    /// and may still send. Later writes on this connection are discarded.
    pub fn shutdown_write(&mut self) {
        self.requests.shutdown_write = true;
    }

    /// Arms a timer on this connection: after `after` (never earlier; within a
    /// millisecond or two later, when the reactor is not busy),
    /// [`Handler::on_timer`](crate::Handler::on_timer) runs with `tag`. Timers are
    /// cancelled when the connection closes and never fire for another connection.
    /// Arming and cancelling are O(1).
    ///
    /// # Errors
    ///
    /// [`Error::TimerLimit`] if the reactor already has
    /// [`Builder::max_timers`](crate::Builder::max_timers) of the handler's timers
    /// armed; [`Error::ConnectionClosed`] in
    /// [`on_close`](crate::Handler::on_close).
    ///
    /// # Examples
    ///
    /// A request timeout: answer within a second or close.
    ///
    /// ```
    /// # use bytes::BytesMut;
    /// # use coreloop::{Context, Handler, TimerId};
    /// # use std::time::Duration;
    /// struct Deadline;
    ///
    /// impl Handler for Deadline {
    ///     type Conn = Option<TimerId>;
    ///
    ///     fn on_open(&mut self, cx: &mut Context<'_>) -> Option<TimerId> {
    ///         cx.set_timer(Duration::from_secs(1), 0).ok()
    ///     }
    ///
    ///     fn on_data(&mut self, timer: &mut Option<TimerId>, cx: &mut Context<'_>, input: &mut BytesMut) {
    ///         if let Some(t) = timer.take() {
    ///             cx.cancel_timer(t); // answered in time
    ///         }
    ///         cx.write(input);
    ///         input.clear();
    ///     }
    ///
    ///     fn on_timer(&mut self, _timer: &mut Option<TimerId>, cx: &mut Context<'_>, _tag: u64) {
    ///         cx.write(b"too slow\n");
    ///         cx.close();
    ///     }
    /// }
    /// ```
    pub fn set_timer(&mut self, after: Duration, tag: u64) -> Result<TimerId> {
        let id = self.conn.id;
        if !self.live {
            return Err(Error::ConnectionClosed { id });
        }
        let due = Due::Conn {
            slot: id.slot(),
            generation: id.generation(),
            tag,
        };
        self.scope
            .timers
            .arm_user(after, due, Some(&mut *self.conn.timers))
            .map_err(|too_many| Error::TimerLimit {
                reactor: id.reactor(),
                max: too_many.max,
            })
    }

    /// Cancels a timer this connection armed. Returns whether it was still
    /// armed (`false` once it has fired, or for another connection's timer).
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        let id = self.conn.id;
        let mine = matches!(
            self.scope.timers.wheel.get(timer),
            Some(&Due::Conn { slot, generation, .. }) if slot == id.slot() && generation == id.generation()
        );
        mine && self.scope.timers.remove(timer, Some(&mut *self.conn.timers)).is_some()
    }

    /// Opens an outbound connection on this reactor (see
    /// [`Handle::connect_on`]); `tag` comes back in [`Context::origin`] on success or
    /// in [`Handler::on_connect_error`](crate::Handler::on_connect_error).
    ///
    /// # Errors
    ///
    /// As [`Handle::connect_on`].
    pub fn connect(&self, to: impl Into<Endpoint>, tag: u64) -> Result<()> {
        self.scope.handle.connect_on(self.reactor(), to, tag)
    }

    /// Opens an outbound TLS connection on this reactor (see
    /// [`Handle::connect_tls`]; feature `tls`).
    ///
    /// # Errors
    ///
    /// As [`Handle::connect_on`].
    #[cfg(feature = "tls")]
    pub fn connect_tls(
        &self,
        to: impl Into<Endpoint>,
        config: std::sync::Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
        tag: u64,
    ) -> Result<()> {
        let reactor = self.reactor();
        self.scope.handle.connect_tls_on(reactor, to, config, server_name, tag)
    }

    /// A handle to the whole server, usable from any thread.
    pub fn handle(&self) -> &Handle<M> {
        self.scope.handle
    }

    /// What the callback asked for, once it has returned.
    pub(crate) fn requests(&self) -> Requests {
        self.requests.clone()
    }
}

/// Writes are staged like [`Context::write`]; they never fail.
impl<M: Send + 'static> io::Write for Context<'_, M> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Context::write(self, buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Context::write(self, buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `write!(cx, …)` formats into the staging buffer, no allocation; never fails.
impl<M: Send + 'static> fmt::Write for Context<'_, M> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        Context::write(self, s.as_bytes());
        Ok(())
    }
}

/// How a connection came to be, from [`Context::origin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// Accepted from one of the server's listeners.
    Accepted,
    /// Opened by `connect`, with the caller's tag.
    Connected {
        /// The tag passed to `connect`.
        tag: u64,
    },
}

/// What a callback asked the reactor to do after it returns.
#[derive(Debug, Clone, Default)]
pub(crate) struct Requests {
    pub(crate) close: bool,
    pub(crate) shutdown_write: bool,
    /// It asked [`Context::is_writable`] and was told no: it may have left
    /// requests in its input to be delivered again once output drains.
    pub(crate) held_back: Cell<bool>,
}

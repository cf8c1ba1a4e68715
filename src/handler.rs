//! The user's code: the [`Handler`] trait and why a connection closed.
//!
//! This file defines the contract only; the reactor decides when each callback runs.

use std::fmt;
use std::io;

use bytes::BytesMut;

use crate::context::Context;
use crate::endpoint::Endpoint;
use crate::handle::Handle;

/// The application logic of a server: one instance per reactor.
///
/// The builder's factory makes one handler per reactor (it receives the reactor
/// index), and each handler only ever runs on its reactor's thread, so it needs no
/// locks. Per-connection state is [`Handler::Conn`], created by
/// [`on_open`](Handler::on_open) and stored inline in the reactor's slab: no
/// allocation and no lock per connection.
///
/// Every callback runs inside `catch_unwind`: a panic closes that connection with
/// [`CloseReason::Panic`] and the reactor serves every other connection on.
///
/// # Examples
///
/// An echo handler:
///
/// ```
/// use bytes::BytesMut;
/// use coreloop::{Context, Handler};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     type Conn = ();
///     type Message = ();
///
///     fn on_open(&mut self, _cx: &mut Context<'_>) {}
///
///     fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
///         cx.write(input);
///         input.clear();
///     }
/// }
/// ```
pub trait Handler: Send + 'static {
    /// Per-connection state, kept in the reactor's slab while the connection is open.
    type Conn: 'static;

    /// The type of application messages sent to this handler through
    /// [`Handle::message`] and [`Handle::message_reactor`]. Use `()` if unused.
    type Message: Send + 'static;

    /// A connection was opened on this reactor. Returns its state.
    ///
    /// Writes made here (a greeting) are sent once the callback returns.
    fn on_open(&mut self, cx: &mut Context<'_>) -> Self::Conn;

    /// Bytes arrived. `input` holds every byte received and not yet consumed; what the
    /// handler leaves in it (a partial frame) is kept and handed back, with more
    /// bytes after it, on the next call.
    ///
    /// Writes made during the call are flushed with one `write`/`writev` after it
    /// returns; what the socket does not take is queued and sent when it is writable.
    fn on_data(&mut self, conn: &mut Self::Conn, cx: &mut Context<'_>, input: &mut BytesMut);

    /// The peer shut down its sending side (end of stream); no more input will come.
    /// Input the handler left unconsumed in `on_data` (an incomplete frame) is
    /// discarded.
    ///
    /// The default closes the connection once queued output is written. A handler
    /// that wants to keep writing after the peer's end of stream (half-close)
    /// overrides this and calls [`Context::close`] when it is done.
    fn on_eof(&mut self, conn: &mut Self::Conn, cx: &mut Context<'_>) {
        let _ = conn;
        cx.close();
    }

    /// The server is shutting down. Called once per open connection before it is
    /// closed, so protocol code can say goodbye; writes made here are flushed within
    /// the shutdown grace period. The default does nothing.
    fn on_shutdown(&mut self, conn: &mut Self::Conn, cx: &mut Context<'_>) {
        let _ = (conn, cx);
    }

    /// A message sent with [`Handle::message`] to this open connection. Runs on the
    /// connection's reactor, like every other callback for it. The default drops it.
    fn on_message(&mut self, conn: &mut Self::Conn, cx: &mut Context<'_>, msg: Self::Message) {
        let _ = (conn, cx, msg);
    }

    /// A message sent with [`Handle::message_reactor`] to this handler's reactor.
    /// The default drops it.
    fn on_reactor_message(&mut self, reactor: usize, handle: &Handle, msg: Self::Message) {
        let _ = (reactor, handle, msg);
    }

    /// An outbound connection started with `connect(to, tag)` failed (refused,
    /// unreachable, timed out, or the server shut down first). A successful one
    /// arrives at [`on_open`](Handler::on_open) instead, where
    /// [`Context::origin`] carries the same `tag`. The default drops the error.
    fn on_connect_error(&mut self, tag: u64, to: &Endpoint, error: io::Error, handle: &Handle) {
        let _ = (tag, to, error, handle);
    }

    /// The connection is closed; its state is handed back for the last time.
    /// The socket is already unusable: writes made here are discarded.
    fn on_close(&mut self, conn: Self::Conn, cx: &mut Context<'_>, why: CloseReason) {
        let _ = (conn, cx, why);
    }
}

/// Why a connection closed, as [`Handler::on_close`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The handler called [`Context::close`] (or kept the default
    /// [`Handler::on_eof`]) and the queued output was written.
    Local,
    /// The peer closed its side and no more output was queued.
    PeerClosed,
    /// A socket error: reset, broken pipe and the like.
    Io(io::ErrorKind),
    /// A handler callback for this connection panicked.
    Panic,
    /// The server shut down.
    Shutdown,
    /// The handler left more than the configured `max_input` bytes unconsumed.
    InputLimit,
    /// No traffic in either direction for the configured idle timeout.
    IdleTimeout,
    /// More output was queued for the connection than the configured
    /// `max_output`: its peer does not read what it is sent.
    OutputLimit,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local => f.write_str("closed by the handler"),
            CloseReason::PeerClosed => f.write_str("closed by the peer"),
            CloseReason::Io(kind) => write!(f, "socket error: {kind}"),
            CloseReason::Panic => f.write_str("a handler callback panicked"),
            CloseReason::Shutdown => f.write_str("server shutdown"),
            CloseReason::InputLimit => f.write_str("unconsumed input over the limit"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::OutputLimit => f.write_str("queued output over the limit"),
        }
    }
}

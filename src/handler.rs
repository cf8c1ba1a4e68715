//! The user's code: the [`Handler`] trait.
//!
//! This file defines the contract only; the reactor decides when each callback runs.

use std::io;

use bytes::BytesMut;

use crate::context::Context;
use crate::endpoint::Endpoint;
use crate::local::ReactorContext;
use crate::reason::CloseReason;

/// The application logic of a server: one instance per reactor.
///
/// The builder's factory makes one handler per reactor (it receives the reactor
/// index), and each handler only ever runs on its reactor's thread, so it needs no
/// locks. Per-connection state is [`Handler::Conn`], created by
/// [`on_open`](Handler::on_open) and stored inline in the reactor's slab: no
/// allocation and no lock per connection.
///
/// `M` is the type of the application messages a [`Handle`](crate::Handle) sends
/// to connections and reactors ([`on_message`](Handler::on_message),
/// [`on_reactor_message`](Handler::on_reactor_message)); a handler that takes none
/// implements `Handler` and `M` is `()`. The handle is typed by it, so a message
/// of another type does not compile.
///
/// Every callback runs inside `catch_unwind`: a panic closes that connection with
/// [`CloseReason::Panic`] (or, in a reactor-level callback, is counted and
/// logged) and the reactor serves every other connection on.
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
///
///     fn on_open(&mut self, _cx: &mut Context<'_>) {}
///
///     fn on_data(&mut self, _conn: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
///         cx.write(input);
///         input.clear();
///     }
/// }
/// ```
pub trait Handler<M: Send + 'static = ()>: Send + 'static {
    /// Per-connection state, kept in the reactor's slab while the connection is open.
    type Conn: 'static;

    /// The reactor starts, before it serves any connection: arm periodic jobs
    /// here ([`ReactorContext::set_timer`]). The default does nothing.
    fn on_start(&mut self, cx: &mut ReactorContext<'_, Self::Conn, M>) {
        let _ = cx;
    }

    /// A connection was opened on this reactor. Returns its state.
    ///
    /// Writes made here (a greeting) are sent once the callback returns.
    fn on_open(&mut self, cx: &mut Context<'_, M>) -> Self::Conn;

    /// Bytes arrived. `input` holds every byte received and not yet consumed; what the
    /// handler leaves in it (a partial frame) is kept and handed back, with more
    /// bytes after it, on the next call.
    ///
    /// Writes made during the call are flushed with one `write`/`writev` after it
    /// returns; what the socket does not take is queued and sent when it is writable.
    ///
    /// **Flow control**: a handler whose replies can outgrow its requests checks
    /// [`Context::is_writable`] before answering each one, and stops — leaving
    /// the rest in `input` — once it is `false`. The reactor then stops reading
    /// the connection and calls `on_data` again, with what was left and without
    /// waiting for new bytes, once the queued output has drained to the low
    /// watermark. No request is lost or handled twice, and the connection's
    /// memory stays near the high watermark however much the peer pipelines.
    fn on_data(&mut self, conn: &mut Self::Conn, cx: &mut Context<'_, M>, input: &mut BytesMut);

    /// The connection's queued output passed the high watermark and has now
    /// drained to the low one: output produced on the handler's own initiative
    /// (a stream, a subscription) can go on. The default does nothing.
    fn on_writable(&mut self, conn: &mut Self::Conn, cx: &mut Context<'_, M>) {
        let _ = (conn, cx);
    }

    /// The peer shut down its sending side (end of stream); no more input will come.
    /// Input the handler left unconsumed in `on_data` (an incomplete frame) is
    /// discarded.
    ///
    /// The default closes the connection once queued output is written. A handler
    /// that wants to keep writing after the peer's end of stream (half-close)
    /// overrides this and calls [`Context::close`] when it is done.
    fn on_eof(&mut self, conn: &mut Self::Conn, cx: &mut Context<'_, M>) {
        let _ = conn;
        cx.close();
    }

    /// A timer set with [`Context::set_timer`] on this connection is due; `tag`
    /// is the one it was set with. Timers never fire for a connection that has
    /// closed or is closing. The default does nothing.
    fn on_timer(&mut self, conn: &mut Self::Conn, cx: &mut Context<'_, M>, tag: u64) {
        let _ = (conn, cx, tag);
    }

    /// A limit is about to close the connection — `why` is
    /// [`CloseReason::InputLimit`] or [`CloseReason::IdleTimeout`] — and this is the
    /// handler's chance to say why (an error reply). What it writes is flushed,
    /// then the connection closes gracefully (our FIN, then linger) and
    /// [`on_close`](Handler::on_close) sees `why`. Unconsumed input is already
    /// discarded. The default writes nothing.
    fn on_limit(&mut self, conn: &mut Self::Conn, cx: &mut Context<'_, M>, why: CloseReason) {
        let _ = (conn, cx, why);
    }

    /// The server is shutting down. Called once per open connection before it is
    /// closed, so protocol code can say goodbye; writes made here are flushed within
    /// the shutdown grace period. The default does nothing.
    fn on_shutdown(&mut self, conn: &mut Self::Conn, cx: &mut Context<'_, M>) {
        let _ = (conn, cx);
    }

    /// A message sent with [`Handle::message`](crate::Handle::message) to this
    /// open connection. Runs on the connection's reactor, like every other
    /// callback for it. The default drops it.
    fn on_message(&mut self, conn: &mut Self::Conn, cx: &mut Context<'_, M>, msg: M) {
        let _ = (conn, cx, msg);
    }

    /// A message sent to this reactor with
    /// [`Handle::message_reactor`](crate::Handle::message_reactor) or
    /// [`Handle::broadcast`](crate::Handle::broadcast). `cx` reaches every
    /// connection of the reactor: a fan-out crosses threads once per reactor,
    /// then writes to the local connections. The default drops it.
    fn on_reactor_message(&mut self, cx: &mut ReactorContext<'_, Self::Conn, M>, msg: M) {
        let _ = (cx, msg);
    }

    /// A timer set with [`ReactorContext::set_timer`] is due; `tag` is the one it
    /// was set with. Re-arm it here for a periodic job. The default does nothing.
    fn on_reactor_timer(&mut self, cx: &mut ReactorContext<'_, Self::Conn, M>, tag: u64) {
        let _ = (cx, tag);
    }

    /// An outbound connection started with `connect(to, tag)` failed (refused,
    /// unreachable, timed out, or the server shut down first). A successful one
    /// arrives at [`on_open`](Handler::on_open) instead, where
    /// [`Context::origin`] carries the same `tag`. `cx` can retry, now or after a
    /// back-off ([`ReactorContext::set_timer`]). The default drops the error.
    fn on_connect_error(
        &mut self,
        cx: &mut ReactorContext<'_, Self::Conn, M>,
        tag: u64,
        to: &Endpoint,
        error: io::Error,
    ) {
        let _ = (cx, tag, to, error);
    }

    /// The connection is closed; its state is handed back for the last time.
    /// The socket is already unusable: writes made here are discarded.
    fn on_close(&mut self, conn: Self::Conn, cx: &mut Context<'_, M>, why: CloseReason) {
        let _ = (conn, cx, why);
    }
}

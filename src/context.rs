//! The [`Context`] a handler callback receives: what it may know about and do to the
//! connection it is called for.
//!
//! A context only records requests (bytes to write, close); the reactor carries them
//! out after the callback returns, which is what lets all of a callback's writes
//! leave in one syscall.

use bytes::Bytes;

use crate::endpoint::{Endpoint, PeerAddr};
use crate::error::Result;
use crate::handle::Handle;
use crate::id::ConnId;
use crate::net::Stream;
use crate::outbuf::OutBuf;

/// What a handler callback can see and do for the connection it is called for.
///
/// A context records requests — bytes to write, a close, a half-close — and the
/// reactor carries them out once the callback returns: every write of one
/// callback leaves in one `write` (or `writev`) call.
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
///     type Message = ();
///
///     fn on_open(&mut self, cx: &mut Context<'_>) -> u32 {
///         cx.write(format!("hello {}, you are {}\n", cx.peer_addr(), cx.id()).as_bytes());
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
///             cx.write(b"ok ");
///             cx.write(&line);
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Context<'a> {
    conn: ConnRef<'a>,
    out: &'a mut OutBuf,
    handle: &'a Handle,
    /// The socket is open: writes are staged (false in `on_close`).
    live: bool,
    requests: Requests,
}

/// The connection a context is for, as the reactor lends it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnRef<'a> {
    pub(crate) id: ConnId,
    pub(crate) origin: Origin,
    pub(crate) peer: &'a PeerAddr,
    pub(crate) socket: &'a Stream,
}

impl<'a> Context<'a> {
    /// A context for a callback on an open connection: writes go to `out`.
    pub(crate) fn new(conn: ConnRef<'a>, out: &'a mut OutBuf, handle: &'a Handle) -> Self {
        Self {
            conn,
            out,
            handle,
            live: true,
            requests: Requests::default(),
        }
    }

    /// A context for `on_close`: the socket is closing, writes are discarded.
    pub(crate) fn closed(conn: ConnRef<'a>, out: &'a mut OutBuf, handle: &'a Handle) -> Self {
        Self {
            live: false,
            ..Self::new(conn, out, handle)
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

    /// The address of the connection's peer.
    pub fn peer_addr(&self) -> &PeerAddr {
        self.conn.peer
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
            self.out.write(data);
        }
    }

    /// Queues `data` without copying it when it is large (from 1 KiB); smaller
    /// buffers are copied like [`write`](Self::write). Useful for sending one shared
    /// payload to many connections.
    pub fn write_bytes(&mut self, data: Bytes) {
        if self.live {
            self.out.write_bytes(data);
        }
    }

    /// Bytes written during this callback and not yet sent.
    pub fn pending_write(&self) -> usize {
        self.out.len()
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

    /// Opens an outbound connection on this reactor (see
    /// [`Handle::connect_on`]); `tag` comes back in [`Context::origin`] on success or
    /// in [`Handler::on_connect_error`](crate::Handler::on_connect_error).
    ///
    /// # Errors
    ///
    /// As [`Handle::connect_on`].
    pub fn connect(&self, to: impl Into<Endpoint>, tag: u64) -> Result<()> {
        self.handle.connect_on(self.reactor(), to, tag)
    }

    /// A handle to the whole server, usable from any thread.
    pub fn handle(&self) -> &Handle {
        self.handle
    }

    /// What the callback asked for, once it has returned.
    pub(crate) fn requests(&self) -> Requests {
        self.requests
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
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Requests {
    pub(crate) close: bool,
    pub(crate) shutdown_write: bool,
}

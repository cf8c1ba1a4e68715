//! The [`Context`] a handler callback receives: what it may know about and do to the
//! connection it is called for.
//!
//! A context only records requests (bytes to write, close); the reactor carries them
//! out after the callback returns, which is what lets all of a callback's writes
//! leave in one syscall.

use bytes::Bytes;

use crate::error::Result;
use crate::handle::Handle;
use crate::id::ConnId;
use crate::net::{Endpoint, PeerAddr, Stream};
use crate::outbuf::OutBuf;

/// What a handler callback can see and do for the connection it is called for.
#[derive(Debug)]
pub struct Context<'a> {
    id: ConnId,
    origin: Origin,
    peer: &'a PeerAddr,
    socket: &'a Stream,
    out: &'a mut OutBuf,
    handle: &'a Handle,
    live: bool,
    close: bool,
    shutdown_write: bool,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        id: ConnId,
        origin: Origin,
        peer: &'a PeerAddr,
        socket: &'a Stream,
        out: &'a mut OutBuf,
        handle: &'a Handle,
        live: bool,
    ) -> Self {
        Self {
            id,
            origin,
            peer,
            socket,
            out,
            handle,
            live,
            close: false,
            shutdown_write: false,
        }
    }

    /// The connection's id, valid for its whole life and never for another one.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The index of the reactor running this callback.
    pub fn reactor(&self) -> usize {
        self.id.reactor()
    }

    /// How the connection came to be: accepted, or opened by `connect`.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The address of the connection's peer.
    pub fn peer_addr(&self) -> &PeerAddr {
        self.peer
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
        socket2::SockRef::from(self.socket)
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
        self.close = true;
    }

    /// Shuts down the sending side (sends a FIN) once every queued byte is
    /// written, keeping the connection open for input: the peer sees end of stream
    /// and may still send. Later writes on this connection are discarded.
    pub fn shutdown_write(&mut self) {
        self.shutdown_write = true;
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
        Requests {
            close: self.close,
            shutdown_write: self.shutdown_write,
        }
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

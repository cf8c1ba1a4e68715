//! Reactor-local work: the [`ReactorContext`] of callbacks that belong to a reactor
//! rather than to one connection — a reactor message or broadcast, a reactor
//! timer, the reactor's start, a failed connect. It reaches every connection of
//! its reactor: write to one by id, close it, visit them all.
//!
//! Writes made here are queued on each connection and flushed once the callback
//! returns (one `writev` per connection written to); closes are carried out then
//! too. Nothing here crosses threads: this is how one message per reactor fans out
//! to all of its connections.

use std::time::Duration;

use bytes::Bytes;
use slab::Slab;

use crate::conn::Conn;
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::id::ConnId;
use crate::timer::{Due, TimerId, Timers};

/// A connection a reactor-level callback wrote to or closed, carried out once it
/// returns.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Touch {
    /// Output was queued; `flush`: the socket was not known to be full before, so
    /// a write may go through now.
    Wrote {
        slot: usize,
        generation: u64,
        flush: bool,
    },
    Close {
        slot: usize,
        generation: u64,
    },
}

/// What a reactor-level callback can see and do: every connection of its reactor.
///
/// `S` is the handler's per-connection state ([`Handler::Conn`](crate::Handler::Conn)),
/// `M` its message type.
///
/// # Examples
///
/// Publish/subscribe with one cross-thread message per reactor: each reactor
/// writes a published line to its own subscribers.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use coreloop::{Context, Handler, ReactorContext};
///
/// #[derive(Clone)]
/// struct Publish(Bytes);
///
/// struct PubSub;
///
/// impl Handler<Publish> for PubSub {
///     type Conn = bool; // subscribed?
///
///     fn on_open(&mut self, _cx: &mut Context<'_, Publish>) -> bool {
///         false
///     }
///
///     fn on_data(&mut self, subscribed: &mut bool, cx: &mut Context<'_, Publish>, input: &mut BytesMut) {
///         if &input[..] == b"subscribe\n" {
///             *subscribed = true;
///         } else {
///             // One message per reactor, whatever the number of subscribers.
///             let _ = cx.handle().broadcast(Publish(input.split().freeze()));
///         }
///         input.clear();
///     }
///
///     fn on_reactor_message(&mut self, cx: &mut ReactorContext<'_, bool, Publish>, msg: Publish) {
///         cx.for_each(|conn| {
///             if *conn.state() {
///                 conn.write_bytes(msg.0.clone()); // shared, not copied
///             }
///         });
///     }
/// }
/// ```
#[derive(Debug)]
pub struct ReactorContext<'a, S, M = ()> {
    index: usize,
    conns: &'a mut Slab<Conn<S>>,
    handle: &'a Handle<M>,
    timers: &'a mut Timers,
    touched: &'a mut Vec<Touch>,
    high_watermark: usize,
}

impl<'a, S, M: Send + 'static> ReactorContext<'a, S, M> {
    pub(crate) fn new(
        index: usize,
        conns: &'a mut Slab<Conn<S>>,
        handle: &'a Handle<M>,
        timers: &'a mut Timers,
        touched: &'a mut Vec<Touch>,
        high_watermark: usize,
    ) -> Self {
        Self {
            index,
            conns,
            handle,
            timers,
            touched,
            high_watermark,
        }
    }

    /// The index of this reactor.
    pub fn reactor(&self) -> usize {
        self.index
    }

    /// A handle to the whole server, usable from any thread.
    pub fn handle(&self) -> &Handle<M> {
        self.handle
    }

    /// Connections open on this reactor (closing ones included).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The state of connection `id`, if it is open on this reactor (not closing).
    pub fn state(&mut self, id: ConnId) -> Option<&mut S> {
        self.open_conn(id).and_then(|c| c.state.as_mut())
    }

    /// Queues `data` (copied) on connection `id`, sent once the callback returns.
    /// Returns `false` if `id` is not open on this reactor or its writing side is
    /// shut. For one payload written to many connections, prefer
    /// [`write_bytes`](Self::write_bytes), which shares it.
    pub fn write(&mut self, id: ConnId, data: &[u8]) -> bool {
        self.write_bytes(id, Bytes::copy_from_slice(data))
    }

    /// Queues `data` on connection `id` without copying it (a clone of a `Bytes`
    /// shares its buffer). Returns as [`write`](Self::write).
    pub fn write_bytes(&mut self, id: ConnId, data: Bytes) -> bool {
        let index = self.index;
        let touched = &mut *self.touched;
        match self.conns.get_mut(id.slot()) {
            Some(c) if id.reactor() == index && c.generation == id.generation() && c.is_open() => {
                queue(c, id.slot(), touched, data)
            }
            _ => false,
        }
    }

    /// Closes connection `id` gracefully (its queued output is written first),
    /// once the callback returns. Returns `false` if it is not open on this reactor.
    pub fn close(&mut self, id: ConnId) -> bool {
        let Some(c) = self.open_conn(id) else { return false };
        let generation = c.generation;
        self.touched.push(Touch::Close {
            slot: id.slot(),
            generation,
        });
        true
    }

    /// Visits every open (not closing) connection of this reactor, in slab order,
    /// with what can be done to each.
    pub fn for_each(&mut self, mut f: impl FnMut(&mut LocalConn<'_, S>)) {
        let (index, high) = (self.index, self.high_watermark);
        for (slot, c) in self.conns.iter_mut() {
            if !c.is_open() {
                continue;
            }
            let mut local = LocalConn {
                id: ConnId::new(index, slot, c.generation),
                conn: c,
                touched: self.touched,
                high_watermark: high,
            };
            f(&mut local);
        }
    }

    /// Arms a reactor timer: after `after` (never earlier),
    /// [`Handler::on_reactor_timer`](crate::Handler::on_reactor_timer) runs with
    /// `tag`. Re-arm it there for a periodic job.
    ///
    /// # Errors
    ///
    /// [`Error::TimerLimit`] if the reactor already has
    /// [`Builder::max_timers`](crate::Builder::max_timers) of the handler's timers
    /// armed.
    pub fn set_timer(&mut self, after: Duration, tag: u64) -> Result<TimerId> {
        let reactor = self.index;
        self.timers
            .arm_user(after, Due::Reactor { tag }, None)
            .map_err(|too_many| Error::TimerLimit {
                reactor,
                max: too_many.max,
            })
    }

    /// Cancels a reactor timer. Returns whether it was still armed.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        matches!(self.timers.wheel.get(timer), Some(Due::Reactor { .. })) && self.timers.remove(timer, None).is_some()
    }

    /// Opens an outbound connection on this reactor (see
    /// [`Handle::connect_on`]).
    ///
    /// # Errors
    ///
    /// As [`Handle::connect_on`].
    pub fn connect(&self, to: impl Into<Endpoint>, tag: u64) -> Result<()> {
        self.handle.connect_on(self.index, to, tag)
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
        self.handle.connect_tls_on(self.index, to, config, server_name, tag)
    }

    fn open_conn(&mut self, id: ConnId) -> Option<&mut Conn<S>> {
        let index = self.index;
        self.conns
            .get_mut(id.slot())
            .filter(|c| id.reactor() == index && c.generation == id.generation() && c.is_open())
    }
}

/// One connection as [`ReactorContext::for_each`] visits it.
#[derive(Debug)]
pub struct LocalConn<'a, S> {
    id: ConnId,
    conn: &'a mut Conn<S>,
    touched: &'a mut Vec<Touch>,
    high_watermark: usize,
}

impl<S> LocalConn<'_, S> {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The connection's state.
    pub fn state(&mut self) -> &mut S {
        self.conn
            .state
            .as_mut()
            .expect("for_each visits open connections only, whose on_open has returned")
    }

    /// Queues `data` (copied); see [`ReactorContext::write`].
    pub fn write(&mut self, data: &[u8]) -> bool {
        self.write_bytes(Bytes::copy_from_slice(data))
    }

    /// Queues `data` without copying; see [`ReactorContext::write_bytes`].
    pub fn write_bytes(&mut self, data: Bytes) -> bool {
        queue(self.conn, self.id.slot(), self.touched, data)
    }

    /// Bytes queued on the connection, not yet taken by its socket.
    pub fn queued_output(&self) -> usize {
        self.conn.queued
    }

    /// Whether more output may be queued now (see
    /// [`Context::is_writable`](crate::Context::is_writable)).
    pub fn is_writable(&self) -> bool {
        !self.conn.over_high && self.conn.queued <= self.high_watermark
    }

    /// Closes the connection gracefully once the callback returns.
    pub fn close(&mut self) {
        self.touched.push(Touch::Close {
            slot: self.id.slot(),
            generation: self.conn.generation,
        });
    }
}

/// Queues `data` on connection `c` (in slot `slot`) for the flush after the
/// callback (or after the batch of commands it belongs to).
pub(crate) fn queue<S>(c: &mut Conn<S>, slot: usize, touched: &mut Vec<Touch>, data: Bytes) -> bool {
    if !c.accepts_output() {
        return false;
    }
    if data.is_empty() {
        return true;
    }
    if !c.touched {
        c.touched = true;
        touched.push(Touch::Wrote {
            slot,
            generation: c.generation,
            flush: c.output.is_empty(),
        });
    }
    c.queued += data.len();
    c.output.push_back(data);
    true
}

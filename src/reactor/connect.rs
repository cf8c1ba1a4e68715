//! Outbound connects, from the nonblocking `connect` to the moment the socket
//! becomes a connection like any accepted one (or the handler hears why not).
//!
//! A connect in progress waits in its own slab, with tokens from the pending
//! range, until the socket turns writable (connected or failed) or the connect
//! timeout passes.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mio::Interest;
use slab::Slab;

use crate::conn::ClientTls;
use crate::endpoint::{Endpoint, PeerAddr};
use crate::handler::Handler;
use crate::net::{SocketOptions, Stream};
use crate::timer::{Due, TimerId};
use crate::token;

use super::Reactor;

/// The connects one reactor has in progress.
#[derive(Debug)]
pub(super) struct Connects {
    pending: Slab<Pending>,
    timeout: Duration,
    options: SocketOptions,
}

/// An outbound connection whose connect has not completed.
#[derive(Debug)]
struct Pending {
    stream: Stream,
    peer: PeerAddr,
    to: Endpoint,
    tag: u64,
    /// TLS to start once connected.
    tls: ClientTls,
    /// Tells this connect apart from a later one in the same slot.
    serial: u64,
    /// Fails the connect with `TimedOut` when it falls due.
    timer: TimerId,
}

impl Connects {
    pub(super) fn new(timeout: Duration, options: SocketOptions) -> Self {
        Self {
            pending: Slab::new(),
            timeout,
            options,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

fn shutting_down() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "the server is shutting down")
}

impl<H: Handler<M>, M: Send + 'static> Reactor<H, M> {
    /// Starts a nonblocking connect.
    pub(super) fn start_connect(&mut self, to: Endpoint, from: Option<SocketAddr>, tag: u64, tls: ClientTls) {
        if self.shutdown_deadline.is_some() {
            return self.connect_failed(tag, &to, shutting_down());
        }
        // syscall: socket + connect (nonblocking)
        let (mut stream, peer) = match Stream::connect(&to, from, &self.connects.options) {
            Ok(s) => s,
            Err(e) => return self.connect_failed(tag, &to, e),
        };
        let entry = self.connects.pending.vacant_entry();
        let slot = entry.key();
        // syscall: registration for the connect's completion (moved, not re-added, on success)
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token::pending(slot), interest)
        {
            return self.connect_failed(tag, &to, e);
        }
        let serial = self.next_generation;
        self.next_generation += 1;
        let due = Due::Connect { slot, serial };
        let timer = self.core.timers.arm(self.connects.timeout, due, None);
        entry.insert(Pending {
            stream,
            peer,
            to,
            tag,
            tls,
            serial,
            timer,
        });
    }

    /// A readiness event for the connect in pending slot `slot`.
    pub(super) fn pending_event(&mut self, slot: usize) {
        let Some(p) = self.connects.pending.get(slot) else {
            return;
        };
        match p.stream.connect_result() {
            Ok(false) => {} // spurious: still connecting
            Ok(true) => {
                let p = self.connects.pending.remove(slot);
                self.core.timers.remove(p.timer, None);
                let via = super::Via::Connect { tag: p.tag, tls: p.tls };
                self.open(p.stream, p.peer, via);
            }
            Err(e) => {
                let p = self.connects.pending.remove(slot);
                self.core.timers.remove(p.timer, None);
                self.connect_failed(p.tag, &p.to, e);
            }
        }
    }

    /// The connect timeout of pending slot `slot` fell due.
    pub(super) fn connect_timed_out(&mut self, slot: usize, serial: u64) {
        if self.connects.pending.get(slot).is_some_and(|p| p.serial == serial) {
            let p = self.connects.pending.remove(slot);
            self.connect_failed(p.tag, &p.to, io::ErrorKind::TimedOut.into());
        }
    }

    /// Shutdown: every connect in progress fails.
    pub(super) fn abort_connects(&mut self) {
        for p in self.connects.pending.drain().collect::<Vec<_>>() {
            self.core.timers.remove(p.timer, None);
            self.connect_failed(p.tag, &p.to, shutting_down());
        }
    }

    fn connect_failed(&mut self, tag: u64, to: &Endpoint, e: io::Error) {
        log::debug!("coreloop: connect to {to} (tag {tag}) failed: {e}");
        self.reactor_callback("on_connect_error", |h, cx| h.on_connect_error(cx, tag, to, e));
    }
}

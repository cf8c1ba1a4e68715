//! What the rest of the server asks of a reactor, through its inbox: connections
//! handed over by the acceptor, and what handles ask — send, message, close,
//! connect, shut down.
//!
//! A command for one connection names it by [`ConnId`]; one whose connection has
//! closed, or is closing, is dropped and counted as stale, never carried out on a
//! connection that reuses its slot.
//!
//! Bytes sent to connections — by `Handle::send`, or written by reactor messages
//! through their `ReactorContext` — are queued on each connection while the
//! batch of commands is drained, and flushed once the batch is done: several
//! messages waiting for one subscriber leave in one `writev`.

use std::mem;
use std::ops::ControlFlow::Continue;
use std::time::Instant;

use crate::conn::{Conn, Verdict};
use crate::handler::Handler;
use crate::id::ConnId;
use crate::inbox::Command;
use crate::local::queue;
use crate::reason::CloseReason;
use crate::stats::bump;

use super::{Core, Reactor};

impl<H: Handler<M>, M: Send + 'static> Reactor<H, M> {
    pub(super) fn run_commands(&mut self) {
        let mut commands = mem::take(&mut self.commands);
        self.inbox.drain_into(&mut commands);
        self.batching = true;
        for cmd in commands.drain(..) {
            match cmd {
                Command::Open(stream, peer, slot, listener) => {
                    bump(&self.core.counters.accepted, 1);
                    self.open(stream, peer, super::Via::Acceptor { slot, listener });
                }
                Command::Close(id) => self.on_live(id, |core, key, c| core.begin_close(key, c, CloseReason::Local)),
                Command::Send(id, data) => self.on_live(id, |core, key, c| {
                    // Flushed with the rest of the batch's output to `c`.
                    queue(c, key, &mut core.touched, data);
                    Continue(())
                }),
                Command::Message(id, msg) => self.on_live(id, |core, key, c| {
                    core.callback(key, c, "on_message", CloseReason::Local, |h, state, cx| {
                        h.on_message(state, cx, msg)
                    })
                }),
                Command::ReactorMessage(msg) => {
                    self.reactor_callback("on_reactor_message", |h, cx| h.on_reactor_message(cx, msg));
                }
                Command::Connect { to, from, tag, tls } => self.start_connect(to, from, tag, tls),
                Command::Shutdown { deadline, drain } => self.begin_shutdown(deadline, drain),
            }
        }
        self.batching = false;
        self.settle_touched();
        self.commands = commands;
    }

    /// Runs `f` on the connection `id` names if it is still open and not closing,
    /// and acts on its verdict; a miss counts as stale.
    fn on_live(&mut self, id: ConnId, f: impl FnOnce(&mut Core<H, M>, usize, &mut Conn<H::Conn>) -> Verdict) {
        let key = id.slot();
        match self.conns.get_mut(key) {
            Some(c) if c.generation == id.generation() && c.is_open() => {
                let verdict = f(&mut self.core, key, c);
                self.settle(key, verdict);
            }
            _ => {
                bump(&self.core.counters.stale, 1);
                log::debug!("coreloop: command for {id} dropped: the connection is gone");
            }
        }
    }

    /// Stops taking connections, tells each open one's handler, and (unless
    /// draining) starts a graceful close of every connection; the loop ends once
    /// all are closed or at `deadline`.
    fn begin_shutdown(&mut self, deadline: Instant, drain: bool) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(deadline);
        self.core.stopping = Some(drain);
        // Reuse-port mode: close this reactor's listeners first.
        self.accept = None;
        self.abort_connects();
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(c) = self.conns.get_mut(key) else { continue };
            if !c.is_open() {
                continue; // already closing
            }
            let verdict = self.core.tell_shutdown(key, c, drain);
            self.settle(key, verdict);
        }
    }
}

impl<H: Handler<M>, M: Send + 'static> Core<H, M> {
    /// Tells an open connection's handler the server shuts down, then (unless
    /// draining) starts closing it gracefully.
    pub(super) fn tell_shutdown(&mut self, key: usize, c: &mut Conn<H::Conn>, drain: bool) -> Verdict {
        let told = self.callback(key, c, "on_shutdown", CloseReason::Shutdown, |h, state, cx| {
            h.on_shutdown(state, cx)
        });
        match told {
            // Draining: it stays open until its handler or peer closes it.
            Continue(()) if drain => Continue(()),
            Continue(()) => self.begin_close(key, c, CloseReason::Shutdown),
            closed => closed,
        }
    }
}
